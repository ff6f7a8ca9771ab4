// `lockstep simulate`: many seeded simulations of the real core, each checked; prints progress
// and ends with "N passed, F failed", plus the replay command of every failure.

import ArgumentParser
import LockstepCore
import LockstepSimulator

struct Simulate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run seeded simulations of the ordering core and check every delivery log.")

    static let membersRange = 1...64
    static let jobsRange = 1...256
    /// How often a progress line is printed.
    static let progressInterval = Duration.seconds(1)

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

    @Flag(
        help: """
            Fault schedules: crashes, restarts, partitions, one-way link failures, leaves and joins, then a heal; \
            checks \
            safety, views, virtual synchrony and progress.
            """)
    var faults: Bool = false

    @Flag(
        help: """
            With --faults: the kind shell of old (a poll after every event, failures seen only by timeouts, every \
            row delivered, one clock), to tell a finding of the harsh one from a protocol bug.
            """)
    var gentle: Bool = false

    @Flag(
        help: """
            Durable mode (ordered): every member logs on a simulated disk whose syncs lag, crashes lose what was not \
            synced; checks that every log holds everything below the persistence frontier and is a prefix of its \
            member's deliveries.
            """)
    var durable: Bool = false

    @Flag(help: "Print faults and suspicions as they happen (use with --seeds 1).")
    var trace: Bool = false

    @Option(help: "Seeds run in parallel (default: one per core).")
    var jobs: Int = System.coreCount

    @Flag(help: "Print one line per seed.")
    var verbose: Bool = false

    func validate() throws {
        guard seeds >= 1 else { throw ValidationError("--seeds must be at least 1, got \(seeds)") }
        if let members, !Self.membersRange.contains(members) {
            throw ValidationError("--members must be in \(Self.membersRange), got \(members)")
        }
        guard Self.jobsRange.contains(jobs) else {
            throw ValidationError("--jobs must be in \(Self.jobsRange), got \(jobs)")
        }
        guard messages >= 1 else { throw ValidationError("--messages must be at least 1, got \(messages)") }
        guard firstSeed <= UInt64.max - UInt64(seeds) else { throw ValidationError("--first-seed is too large") }
    }

    func run() async throws {
        if faults {
            Output.line("with faults: checking safety, view agreement, virtual synchrony and progress after the heal")
        }
        if durable {
            Output.line("durable: checking every log against the persistence frontier and its member's deliveries")
        }
        let stopwatch = Stopwatch()
        let tally = await runSeeds(stopwatch: stopwatch)
        printSummary(tally, seconds: stopwatch.elapsedSeconds)
        if !tally.failures.isEmpty { throw ExitCode.failure }
    }

    /// The options of the k-th seed.
    private func options(_ k: Int) -> SimulationOptions {
        var options = SimulationOptions(
            seed: firstSeed + UInt64(k), memberCount: members, deliveryMode: mode, messagesPerSenderMax: messages,
            pauses: pauses, faults: faults, durable: durable)
        options.harsh = !gentle
        options.trace = trace
        return options
    }

    /// Runs every seed, `jobs` at a time, printing failures and progress as they come.
    private func runSeeds(stopwatch: Stopwatch) async -> Tally {
        var tally = Tally()
        var lastProgress = ContinuousClock.now
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
                tally.add(report)
                if !report.passed { Output.line(report.failureDescription) }
                if verbose { Output.line(Self.seedLine(report)) }
                let now = ContinuousClock.now
                if now - lastProgress >= Self.progressInterval {
                    lastProgress = now
                    let rate = Double(tally.finished) / stopwatch.elapsedSeconds
                    Output.line(
                        "progress: \(tally.finished)/\(seeds) seeds, \(tenths(rate)) seeds/s, "
                            + "\(tally.failures.count) failed, \(tally.deliveries) deliveries checked")
                }
            }
        }
        return tally
    }

    private static func seedLine(_ report: SimulationReport) -> String {
        let configuration = report.configuration
        let faults = report.options.faults ? " crashed=\(report.crashedProcesses) lost=\(report.messagesLost)" : ""
        return "seed \(report.options.seed): \(report.passed ? "passed" : "FAILED") "
            + "members=\(report.view.memberCount) senders=\(report.view.senderCount) "
            + "mode=\(configuration.deliveryMode.rawValue) window=\(configuration.windowMessagesMax) "
            + "sent=\(report.messagesSent) delivered=\(report.deliveries) "
            + "virtual=\(report.virtualNanoseconds / 1_000_000)ms events=\(report.eventsProcessed)\(faults)"
    }

    private func printSummary(_ tally: Tally, seconds: Double) {
        Output.line(
            "ran \(seeds) seeds in \(tenths(seconds)) s (\(tenths(Double(seeds) / max(seconds, 1e-9))) seeds/s, "
                + "\(jobs) jobs), \(tally.deliveries) deliveries checked")
        let settleTimes = tally.settleTimes.sorted()
        if faults, let slowest = settleTimes.last {
            let p50 = settleTimes[settleTimes.count / 2] / 1_000_000
            let p99 = settleTimes[min(settleTimes.count - 1, settleTimes.count * 99 / 100)] / 1_000_000
            Output.line(
                "views installed: \(tally.viewChanges); last view after the heal (virtual): p50 \(p50) ms, "
                    + "p99 \(p99) ms, max \(slowest / 1_000_000) ms")
        }
        for failure in tally.failures.sorted(by: { $0.options.seed < $1.options.seed }) {
            Output.line("replay: \(failure.options.replayCommand)")
        }
        Output.line("\(tally.passed) passed, \(tally.failures.count) failed")
    }

    /// What the seeds so far came to.
    private struct Tally {
        var passed = 0
        var finished = 0
        var failures: [SimulationReport] = []
        var deliveries = 0
        var viewChanges: UInt64 = 0
        var settleTimes: [UInt64] = []

        mutating func add(_ report: SimulationReport) {
            finished += 1
            deliveries += report.deliveries
            viewChanges += report.viewChanges
            if let settled = report.settledAfterHealNanoseconds { settleTimes.append(settled) }
            if report.passed {
                passed += 1
            } else {
                failures.append(report)
            }
        }
    }
}

/// One decimal, without trailing zeros beyond it (1.0, 12.5).
private func tenths(_ value: Double) -> String {
    let rounded = (value * 10).rounded() / 10
    return String(describing: rounded)
}

extension DeliveryMode: ExpressibleByArgument {}
