// `lockstep simulate`: many seeded simulations of the real core, each checked; prints progress
// and ends with "N passed, F failed", plus the replay command of every failure.

import ArgumentParser
import LockstepCore
import LockstepSimulator


struct Simulate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run seeded simulations of the ordering core and check every delivery log.")

    @Option(help: "How many seeds to run.")
    var seeds: Int = 1_000

    @Option(help: "The first seed; seeds run from here upwards.")
    var firstSeed: UInt64 = 1

    @Option(help: "Members per group (default: drawn from each seed, 3-7).")
    var members: Int?

    @Option(help: "Delivery mode, ordered or unordered (default: drawn from each seed).")
    var mode: DeliveryMode?

    @Option(help: "Most messages each sender sends in one run.")
    var messages: Int = 300

    @Flag(inversion: .prefixedNo, help: "Pause members at random times.")
    var pauses: Bool = true

    @Flag(help: "Fault schedules: crashes, restarts, partitions, one-way link failures, leaves and joins, then a heal; checks safety, views, virtual synchrony and progress.")
    var faults: Bool = false

    @Flag(help: "Print faults and suspicions as they happen (use with --seeds 1).")
    var trace: Bool = false

    @Option(help: "Seeds run in parallel (default: one per core).")
    var jobs: Int = System.coreCount

    @Flag(help: "Print one line per seed.")
    var verbose: Bool = false

    func validate() throws {
        guard seeds >= 1 else { throw ValidationError("--seeds must be at least 1, got \(seeds)") }
        if let members, !(1...64).contains(members) {
            throw ValidationError("--members must be in 1...64, got \(members)")
        }
        guard (1...256).contains(jobs) else { throw ValidationError("--jobs must be in 1...256, got \(jobs)") }
        guard messages >= 1 else { throw ValidationError("--messages must be at least 1, got \(messages)") }
        guard firstSeed <= UInt64.max - UInt64(seeds) else { throw ValidationError("--first-seed is too large") }
    }

    func run() async throws {
        if faults {
            Output.line("with faults: checking safety, view agreement, virtual synchrony and progress after the heal")
        }
        let clock = ContinuousClock()
        let start = clock.now
        var lastProgress = start
        var passed = 0
        var finished = 0
        var failures: [SimulationReport] = []
        var deliveries = 0
        var viewChanges: UInt64 = 0
        var settleTimes: [UInt64] = []
        let options = { (k: Int) in
            var options = SimulationOptions(
                seed: firstSeed + UInt64(k), memberCount: members, deliveryMode: mode, messagesPerSenderMax: messages,
                pauses: pauses, faults: faults)
            options.trace = trace
            return options
        }
        // Each seed is independent and deterministic, so seeds run in parallel; only the order
        // in which their lines are printed depends on scheduling.
        await withTaskGroup(of: SimulationReport.self) { group in
            var started = 0
            for _ in 0..<min(jobs, seeds) {
                let next = options(started)
                group.addTask { Simulation.run(next) }
                started += 1
            }
            for await report in group {
                if started < seeds {
                    let next = options(started)
                    group.addTask { Simulation.run(next) }
                    started += 1
                }
                finished += 1
                deliveries += report.deliveries
                viewChanges += report.viewChanges
                if let settled = report.settledAfterHealNanoseconds { settleTimes.append(settled) }
                if report.passed {
                    passed += 1
                } else {
                    failures.append(report)
                    Output.line(report.failureDescription)
                }
                if verbose {
                    Output.line(
                        "seed \(report.options.seed): \(report.passed ? "passed" : "FAILED") members=\(report.view.memberCount) senders=\(report.view.senderCount) mode=\(report.configuration.deliveryMode.rawValue) window=\(report.configuration.windowMessagesMax) sent=\(report.messagesSent) delivered=\(report.deliveries) virtual=\(report.virtualNanoseconds / 1_000_000)ms events=\(report.eventsProcessed)\(report.options.faults ? " crashed=\(report.crashedRanks) lost=\(report.messagesLost)" : "")"
                    )
                }
                let now = clock.now
                if now - lastProgress >= .seconds(1) {
                    lastProgress = now
                    let rate = Double(finished) / Self.seconds(now - start)
                    Output.line(
                        "progress: \(finished)/\(seeds) seeds, \(format(rate)) seeds/s, \(failures.count) failed, \(deliveries) deliveries checked"
                    )
                }
            }
        }
        let seconds = Self.seconds(clock.now - start)
        Output.line(
            "ran \(seeds) seeds in \(format(seconds)) s (\(format(Double(seeds) / max(seconds, 1e-9))) seeds/s, \(jobs) jobs), \(deliveries) deliveries checked"
        )
        if faults, !settleTimes.isEmpty {
            settleTimes.sort()
            let p50 = settleTimes[settleTimes.count / 2] / 1_000_000
            let p99 = settleTimes[min(settleTimes.count - 1, settleTimes.count * 99 / 100)] / 1_000_000
            Output.line(
                "views installed: \(viewChanges); last view after the heal (virtual): p50 \(p50) ms, p99 \(p99) ms, max \(settleTimes.last! / 1_000_000) ms")
        }
        for failure in failures.sorted(by: { $0.options.seed < $1.options.seed }) {
            Output.line("replay: \(failure.options.replayCommand)")
        }
        Output.line("\(passed) passed, \(failures.count) failed")
        if !failures.isEmpty { throw ExitCode.failure }
    }

    private static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

private func format(_ value: Double) -> String {
    let rounded = (value * 10).rounded() / 10
    return String(describing: rounded)
}

extension DeliveryMode: ExpressibleByArgument {}
