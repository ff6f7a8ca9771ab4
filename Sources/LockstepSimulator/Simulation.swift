// One random simulation: a seed picks the group (3-7 members unless fixed, which of them send,
// ordered or unordered, window and batch limits), the workload (bursts at random times, some
// senders idle so null fill is exercised), link delays and pauses; the run goes to quiescence
// and the checker reads every member's delivery log.

import LockstepCore

/// What to simulate. Everything not fixed here is drawn from the seed.
public struct SimulationOptions: Sendable, Equatable {
    public var seed: UInt64
    /// Members in the group; `nil` draws 3...7 from the seed.
    public var memberCount: Int?
    /// `nil` draws the mode from the seed (ordered three times in four).
    public var deliveryMode: DeliveryMode?
    /// Each sender sends between 1 and this many messages (or none, one sender in five).
    public var messagesPerSenderMax: Int
    /// Pause members at random times.
    public var pauses: Bool
    /// Crash members, fail links and partition the group at random times. Without membership
    /// changes (not built yet) a group stalls after a fault, so these runs check safety only:
    /// no creation, no duplication, one total order (every log a prefix of the longest), FIFO.
    public var faults: Bool

    public init(
        seed: UInt64, memberCount: Int? = nil, deliveryMode: DeliveryMode? = nil, messagesPerSenderMax: Int = 300,
        pauses: Bool = true, faults: Bool = false
    ) {
        self.faults = faults
        self.seed = seed
        self.memberCount = memberCount
        self.deliveryMode = deliveryMode
        self.messagesPerSenderMax = messagesPerSenderMax
        self.pauses = pauses
    }

    /// The one command that replays this run.
    public var replayCommand: String {
        var command = "swift run -c release lockstep simulate --seeds 1 --first-seed \(seed)"
        if let memberCount { command += " --members \(memberCount)" }
        if let deliveryMode { command += " --mode \(deliveryMode.rawValue)" }
        command += " --messages \(messagesPerSenderMax)"
        if !pauses { command += " --no-pauses" }
        if faults { command += " --faults" }
        return command
    }
}

/// The outcome of one simulated run.
public struct SimulationReport: Sendable {
    public var options: SimulationOptions
    public var view: View
    public var configuration: Configuration
    public var quiesced: Bool
    public var messagesSent: Int
    public var deliveries: Int
    public var eventsProcessed: UInt64
    public var virtualNanoseconds: UInt64
    public var violations: [Violation]
    public var coreErrors: [String]
    /// Members that crashed and messages lost to faults (runs with faults).
    public var crashedRanks: [Int] = []
    public var messagesLost: UInt64 = 0

    /// With faults, progress is not expected (no membership yet): only safety counts.
    public var passed: Bool { (quiesced || options.faults) && violations.isEmpty && coreErrors.isEmpty }

    /// A few lines for a failed run: what went wrong and how to replay it.
    public var failureDescription: String {
        var lines = ["seed \(options.seed) FAILED: \(view), mode \(configuration.deliveryMode.rawValue), window \(configuration.windowMessagesMax)"]
        if !quiesced && !options.faults { lines.append("  did not quiesce within the virtual time limit (progress violated)") }
        for error in coreErrors.prefix(5) { lines.append("  core error: \(error)") }
        for violation in violations.prefix(10) { lines.append("  \(violation)") }
        lines.append("  replay: \(options.replayCommand)")
        return lines.joined(separator: "\n")
    }
}

public enum Simulation {
    /// Runs one seeded simulation to quiescence and checks it.
    public static func run(_ options: SimulationOptions) -> SimulationReport {
        var random = DeterministicRandom(seed: options.seed)
        let memberCount = options.memberCount ?? Int.random(in: 3...7, using: &random)
        let mode = options.deliveryMode ?? (random.chance(0.25) ? .unordered : .ordered)
        var senderRanks: [Int]? = nil
        if random.chance(0.4) {
            let some = (0..<memberCount).filter { _ in random.chance(0.5) }
            senderRanks = some.isEmpty ? [Int.random(in: 0..<memberCount, using: &random)] : some
        }
        var configuration = Configuration()
        configuration.deliveryMode = mode
        configuration.windowMessagesMax = [1, 2, 3, 8, 32, 128, 1_024].randomElement(using: &random) ?? 8
        configuration.batchMessagesMax = [1, 3, 16, 512].randomElement(using: &random) ?? 16
        configuration.batchBytesMax = [64, 4_096, 1 << 20].randomElement(using: &random) ?? 4_096
        configuration.heartbeatInterval = random.chance(0.5) ? .milliseconds(10) : .milliseconds(100)
        let groupSeed = random.next()

        let group: SimulatedGroup
        do {
            group = try SimulatedGroup(
                memberCount: memberCount, senderRanks: senderRanks, configuration: configuration, seed: groupSeed)
        } catch {
            preconditionFailure("the simulator built an invalid group: \(error)")
        }
        for rank in group.view.senderMemberRanks {
            // One sender in five stays idle: the others must not wait on it (null fill).
            var budget = random.chance(0.2) ? 0 : Int.random(in: 1...max(1, options.messagesPerSenderMax), using: &random)
            while budget > 0 {
                let burst = Int.random(in: 1...max(1, budget / 2), using: &random)
                group.send(from: rank, count: burst, at: .microseconds(Int64.random(in: 0...500_000, using: &random)))
                budget -= burst
            }
        }
        if options.pauses {
            for rank in 0..<memberCount {
                for _ in 0..<Int.random(in: 0...2, using: &random) {
                    group.pause(
                        rank, at: .microseconds(Int64.random(in: 0...600_000, using: &random)),
                        for: .microseconds(Int64.random(in: 1_000...100_000, using: &random)))
                }
            }
        }
        if options.faults {
            // Up to a minority of members crash; sometimes a partition, sometimes a one-way link failure.
            let crashes = Int.random(in: 0...max(0, (memberCount - 1) / 2), using: &random)
            for rank in Array(0..<memberCount).shuffled(using: &random).prefix(crashes) {
                group.crash(rank, at: .microseconds(Int64.random(in: 0...600_000, using: &random)))
            }
            if random.chance(0.3), memberCount >= 2 {
                let side = Set((0..<memberCount).filter { _ in random.chance(0.5) })
                if !side.isEmpty && side.count < memberCount {
                    group.partition(side, at: .microseconds(Int64.random(in: 0...600_000, using: &random)))
                }
            }
            if random.chance(0.3), memberCount >= 2 {
                let from = Int.random(in: 0..<memberCount, using: &random)
                let to = (from + Int.random(in: 1..<memberCount, using: &random)) % memberCount
                group.failLink(from: from, to: to, at: .microseconds(Int64.random(in: 0...600_000, using: &random)))
            }
        }
        // With faults the group may stall for good (until membership exists): run a fixed time.
        let quiesced = options.faults ? (group.run(for: .seconds(3)), false).1 : group.runUntilQuiet()
        let violations = group.checker.check(totalOrder: mode == .ordered, quiesced: quiesced)
        // Failure detection: a wedged member sends nothing new; without faults nobody is suspected
        // (pauses here stay well below failureTimeout).
        var wedgeErrors: [String] = []
        for rank in 0..<memberCount {
            if group.sentAfterWedging(rank) > 0 {
                wedgeErrors.append("member rank \(rank) sent \(group.sentAfterWedging(rank)) messages after it wedged")
            }
            if !options.faults, let at = group.wedgedAt(rank) {
                wedgeErrors.append("member rank \(rank) wedged at \(at) ns without any fault (a false suspicion)")
            }
        }
        let sent = (0..<memberCount).reduce(0) { $0 + group.sentRecords($1).count }
        let delivered = (0..<memberCount).reduce(0) { $0 + group.deliveries($1).count }
        return SimulationReport(
            options: options, view: group.view, configuration: configuration, quiesced: quiesced, messagesSent: sent,
            deliveries: delivered, eventsProcessed: group.eventsProcessed, virtualNanoseconds: group.now,
            violations: violations, coreErrors: group.coreErrors + wedgeErrors, crashedRanks: group.crashedRanks,
            messagesLost: group.messagesLost)
    }
}
