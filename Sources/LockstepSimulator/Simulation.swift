// One random simulation: a seed picks the group (3-7 members unless fixed, which of them send,
// ordered or unordered, window and batch limits), the workload (bursts at random times, some
// senders idle so null fill is exercised), link delays and pauses; the run goes to quiescence
// and the checker reads every member's delivery log.

import LockstepChecker
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
    /// A fault schedule: crashes, restarts, symmetric partitions, one-way link failures, leaves
    /// and joins at random times in the first `faultWindow`; then every link heals, an operator
    /// restarts whatever is left outside the group, and every live member sends a few more
    /// messages. Checked: safety, views, virtual synchrony, uniform agreement, no loss and
    /// completeness at the final view's live members, and progress (the run quiesces with every
    /// live member in one view, having delivered everything, within `progressBound` of the
    /// heal; and no connected majority stays wedged, sweep or not: `wedgeBoundFailureTimeouts`).
    public var faults: Bool
    /// Durable mode (ordered): every incarnation logs on a simulated disk whose syncs lag; a
    /// crash loses what was not synced; checked: durability of everything below the
    /// persistence frontier and logs that are prefixes of the deliveries (SimulatedGroup+Durable).
    public var durable: Bool

    public init(
        seed: UInt64, memberCount: Int? = nil, deliveryMode: DeliveryMode? = nil,
        messagesPerSenderMax: Int = 300, pauses: Bool = true, faults: Bool = false, durable: Bool = false
    ) {
        self.faults = faults
        self.durable = durable
        self.seed = seed
        self.memberCount = memberCount
        self.deliveryMode = deliveryMode
        self.messagesPerSenderMax = messagesPerSenderMax
        self.pauses = pauses
    }

    /// Fault runs: the last view must be installed within this of the heal. The operator
    /// restarts stragglers 3 x failureTimeout after the heal; a restarted process asks to join
    /// and the group needs one view change (detection is not needed: the joiner asks), and a
    /// joiner that is not welcomed asks again every 200 ms (after 10 tries it starts afresh).
    /// Measured over 10,000 harsh schedules per mode: the last view came at most 3.2 s after the
    /// heal (p99 1.7 s).
    public var progressBound: Duration = .seconds(5)
    /// Fault runs: after the heal, a connected majority of a view's members may stay stuck in it
    /// (wedged, or restarted out of it by the sweep and not back) with no view installed anywhere
    /// for at most this many failure timeouts (WedgeWatch.swift). A view change takes a few
    /// round trips, a leader's failover one failure timeout more.
    public var wedgeBoundFailureTimeouts = 4
    /// Print faults and suspicions as they happen (debugging one seed).
    public var trace = false
    /// Fault runs treat the members as a runtime does (`Harshness.runtimeLike`); false: the
    /// gentle shell of old.
    public var harsh = true

    /// The one command that replays this run.
    public var replayCommand: String {
        var command = "swift run -c release lockstep simulate --seeds 1 --first-seed \(seed)"
        if let memberCount { command += " --members \(memberCount)" }
        if let deliveryMode { command += " --mode \(deliveryMode.rawValue)" }
        command += " --messages \(messagesPerSenderMax)"
        if !pauses { command += " --no-pauses" }
        if faults { command += " --faults" }
        if faults && !harsh { command += " --gentle" }
        if durable { command += " --durable" }
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
    /// Processes that crashed and messages lost to faults (runs with faults).
    public var crashedProcesses: [Int] = []
    public var messagesLost: UInt64 = 0
    /// Views installed after the first, and the last install's distance from the heal (faults).
    public var viewChanges: UInt64 = 0
    public var settledAfterHealNanoseconds: UInt64? = nil
    /// Broken progress promises (faults): no quiescence, members left in different views.
    public var progressViolations: [String] = []
    /// The processes' state at the end (shown when progress failed).
    public var processSummary: [String] = []

    public var passed: Bool {
        quiesced && violations.isEmpty && coreErrors.isEmpty && progressViolations.isEmpty
    }

    /// A few lines for a failed run: what went wrong and how to replay it.
    public var failureDescription: String {
        let mode = configuration.deliveryMode.rawValue
        var lines = ["seed \(options.seed) FAILED: \(view), mode \(mode), window \(configuration.windowMessagesMax)"]
        if !quiesced { lines.append("  did not quiesce within the virtual time limit (progress violated)") }
        for problem in progressViolations { lines.append("  progress: \(problem)") }
        lines += processSummary.map { "  " + $0 }
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
        let setup = GroupSetup.draw(options, using: &random)
        let spareProcesses = options.faults ? Int.random(in: 0...2, using: &random) : 0
        let group: SimulatedGroup
        do {
            group = try SimulatedGroup(
                memberCount: setup.memberCount, senderRanks: setup.senderRanks,
                configuration: setup.configuration, seed: setup.groupSeed, spareProcesses: spareProcesses)
        } catch {
            preconditionFailure("the simulator built an invalid group: \(error)")
        }
        scheduleWorkload(on: group, messagesPerSenderMax: options.messagesPerSenderMax, using: &random)
        if options.pauses { schedulePauses(on: group, memberCount: setup.memberCount, using: &random) }
        group.traceEnabled = options.trace
        if options.faults && options.harsh { group.harshness = .runtimeLike }
        if options.faults { group.rejoinAfterRemoval = .milliseconds(50) }
        var faults: FaultSchedule? = nil
        if options.faults {
            faults = FaultSchedule.draw(memberCount: setup.memberCount, spareProcesses: spareProcesses, using: &random)
            faults?.schedule(on: group, configuration: setup.configuration, using: &random)
        }
        var watch = WedgeWatch(
            bound: setup.configuration.failureTimeout * options.wedgeBoundFailureTimeouts,
            step: setup.configuration.failureTimeout / 10)
        var progress = ProgressCheck()
        let quiesced: Bool
        if let split = faults?.split {
            // Safety only: no majority survives the split, so nothing may install after it, and
            // nothing may diverge. The run is not expected to quiesce (members stay wedged).
            group.run(for: FaultSchedule.safetyOnlyRun)
            quiesced = true
            progress.checkNothingInstalled(group, after: split)
        } else if options.faults {
            quiesced = runWatched(group, limit: .seconds(60), watch: &watch)
            if quiesced { progress = ProgressCheck(group, bound: options.progressBound) }
        } else {
            quiesced = group.runUntilQuiet(limit: .seconds(600))
        }
        let checker = group.checker
        if options.durable { group.checkDisksAtEnd() }
        let complete = quiesced && faults?.split == nil
        let violations =
            watch.violations
            + checker.check(totalOrder: setup.configuration.deliveryMode == .ordered, quiesced: complete)
        return SimulationReport(
            options: options, view: group.view, configuration: setup.configuration, quiesced: quiesced,
            messagesSent: checker.sent.values.reduce(0) { $0 + $1.count },
            deliveries: checker.delivered.values.reduce(0) { $0 + $1.count },
            eventsProcessed: group.eventsProcessed, virtualNanoseconds: group.now, violations: violations,
            coreErrors: group.coreErrors + wedgeErrors(group, faults: options.faults) + group.durabilityViolations,
            crashedProcesses: group.crashedProcesses, messagesLost: group.messagesLost,
            viewChanges: group.newestViewID > 1 ? group.newestViewID - 1 : 0,
            settledAfterHealNanoseconds: progress.settledAfterHeal, progressViolations: progress.violations,
            processSummary: group.processSummary)
    }

    /// Runs a fault run to quiescence like `runUntilQuiet`, sampling the wedge watch every step
    /// from the heal until the group is quiet (then `runUntilQuiet` lets it settle).
    private static func runWatched(_ group: SimulatedGroup, limit: Duration, watch: inout WedgeWatch) -> Bool {
        let deadline = group.now + limit.nanosecondsClamped
        let healAt = FaultSchedule.heal.nanosecondsClamped
        group.run(for: FaultSchedule.heal)
        watch.sample(group, healAt: healAt)
        while group.isBusy && group.now < deadline {
            group.run(for: .nanoseconds(Int64(min(watch.stepNanoseconds, deadline - group.now))))
            watch.sample(group, healAt: healAt)
        }
        guard group.now < deadline else { return false }
        return group.runUntilQuiet(limit: .nanoseconds(Int64(deadline - group.now)))
    }

    /// Bursts at random times in the first half second; one sender in five stays idle, so the
    /// others must not wait on it (null fill).
    private static func scheduleWorkload(
        on group: SimulatedGroup, messagesPerSenderMax: Int, using random: inout DeterministicRandom
    ) {
        for rank in group.view.senderMemberRanks {
            var budget = random.chance(0.2) ? 0 : Int.random(in: 1...max(1, messagesPerSenderMax), using: &random)
            while budget > 0 {
                let burst = Int.random(in: 1...max(1, budget / 2), using: &random)
                group.send(from: rank, count: burst, at: .microseconds(Int64.random(in: 0...500_000, using: &random)))
                budget -= burst
            }
        }
    }

    /// Up to two pauses per member, well below the failure timeout (nobody may be suspected).
    private static func schedulePauses(
        on group: SimulatedGroup, memberCount: Int, using random: inout DeterministicRandom
    ) {
        for process in 0..<memberCount {
            for _ in 0..<Int.random(in: 0...2, using: &random) {
                group.pause(
                    process, at: .microseconds(Int64.random(in: 0...600_000, using: &random)),
                    for: .microseconds(Int64.random(in: 1_000...100_000, using: &random)))
            }
        }
    }

    /// Failure detection: a wedged member sends nothing new; without faults nobody is suspected
    /// (pauses here stay well below failureTimeout).
    private static func wedgeErrors(_ group: SimulatedGroup, faults: Bool) -> [String] {
        var errors: [String] = []
        for process in 0..<group.processCount where group.status(process) == .active {
            if group.sentAfterWedging(process) > 0 {
                errors.append("process \(process) sent \(group.sentAfterWedging(process)) messages after it wedged")
            }
            if !faults, group.everWedged(process) {
                errors.append("process \(process) wedged without any fault (a false suspicion)")
            }
        }
        return errors
    }
}

/// What a seed fixes about the group before it runs: size, senders, mode and limits.
private struct GroupSetup {
    var memberCount: Int
    var senderRanks: [Int]?
    var configuration: Configuration
    var groupSeed: UInt64

    static func draw(_ options: SimulationOptions, using random: inout DeterministicRandom) -> GroupSetup {
        let memberCount = options.memberCount ?? Int.random(in: 3...7, using: &random)
        let drawn: DeliveryMode = random.chance(0.25) ? .unordered : .ordered
        let mode = options.durable ? .ordered : (options.deliveryMode ?? drawn)
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
        configuration.durable = options.durable
        return GroupSetup(
            memberCount: memberCount, senderRanks: senderRanks, configuration: configuration,
            groupSeed: random.next())
    }
}

/// Progress after the heal (fault runs that quiesced): every live member in one view, none
/// wedged, and the last view installed within the bound.
private struct ProgressCheck {
    var violations: [String] = []
    var settledAfterHeal: UInt64? = nil

    init() {}

    /// A safety-only schedule: no view may be installed after the split that left no majority
    /// (one a poll batch later at most: acknowledgements that arrived before it).
    mutating func checkNothingInstalled(_ group: SimulatedGroup, after split: Duration) {
        let slack = Harshness.runtimeLike.batchWindow.nanosecondsClamped
        if group.lastInstallAt > split.nanosecondsClamped + slack {
            let at = group.lastInstallAt / 1_000_000
            violations.append("a view was installed at \(at) ms, after the split at \(split) left no majority")
        }
    }

    init(_ group: SimulatedGroup, bound: Duration) {
        let live = group.activeProcesses
        let views = Set(live.map { group.core($0).view.id })
        if views.count != 1 { violations.append("live members end in different views \(views.sorted())") }
        for process in live where group.core(process).isWedged {
            let member = group.memberID(process)
            violations.append("process \(process) (\(member)) ends wedged in \(group.core(process).view.id)")
        }
        if live.isEmpty { violations.append("no live member at the end") }
        let healAt = FaultSchedule.heal.nanosecondsClamped
        let settled = group.lastInstallAt > healAt ? group.lastInstallAt - healAt : 0
        settledAfterHeal = settled
        if settled > bound.nanosecondsClamped {
            violations.append("last view installed \(settled / 1_000_000) ms after the heal, bound \(bound)")
        }
    }
}
