// `lockstep simulate`: many seeded simulations of the real core, each checked; prints progress
// and ends with "N passed, F failed", plus the replay command of every failure.

import ArgumentParser
import LockstepCore
import LockstepSimulator


struct Simulate: ParsableCommand {
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

    @Flag(help: "Print one line per seed.")
    var verbose: Bool = false

    func validate() throws {
        guard seeds >= 1 else { throw ValidationError("--seeds must be at least 1, got \(seeds)") }
        if let members, !(1...64).contains(members) {
            throw ValidationError("--members must be in 1...64, got \(members)")
        }
        guard messages >= 1 else { throw ValidationError("--messages must be at least 1, got \(messages)") }
        guard firstSeed <= UInt64.max - UInt64(seeds) else { throw ValidationError("--first-seed is too large") }
    }

    func run() throws {
        let clock = ContinuousClock()
        let start = clock.now
        var lastProgress = start
        var passed = 0
        var failures: [SimulationReport] = []
        var deliveries = 0
        for k in 0..<seeds {
            let options = SimulationOptions(
                seed: firstSeed + UInt64(k), memberCount: members, deliveryMode: mode, messagesPerSenderMax: messages,
                pauses: pauses)
            let report = Simulation.run(options)
            deliveries += report.deliveries
            if report.passed {
                passed += 1
            } else {
                failures.append(report)
                Output.line(report.failureDescription)
            }
            if verbose {
                Output.line(
                    "seed \(options.seed): \(report.passed ? "passed" : "FAILED") members=\(report.view.memberCount) senders=\(report.view.senderCount) mode=\(report.configuration.deliveryMode.rawValue) window=\(report.configuration.windowMessagesMax) sent=\(report.messagesSent) delivered=\(report.deliveries) virtual=\(report.virtualNanoseconds / 1_000_000)ms events=\(report.eventsProcessed)"
                )
            }
            let now = clock.now
            if now - lastProgress >= .seconds(1) {
                lastProgress = now
                let seconds = Self.seconds(now - start)
                let rate = Double(k + 1) / seconds
                Output.line("progress: \(k + 1)/\(seeds) seeds, \(format(rate)) seeds/s, \(failures.count) failed, \(deliveries) deliveries checked")
            }
        }
        let seconds = Self.seconds(clock.now - start)
        Output.line("ran \(seeds) seeds in \(format(seconds)) s (\(format(Double(seeds) / max(seconds, 1e-9))) seeds/s), \(deliveries) deliveries checked")
        for failure in failures { Output.line("replay: \(failure.options.replayCommand)") }
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
