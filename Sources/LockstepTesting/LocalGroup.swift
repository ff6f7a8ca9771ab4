// LocalGroup: the user's state machine on N simulated members in one process, the way Lockstep
// tests itself: the real protocol core (`Member`, through `SimulatedGroup`), the simulated
// network and clock, faults, and the delivery checker at the end. What an entry is and how it
// is applied are Replica.swift's rules, the same ReplicatedGroup runs on the runtime; this file
// only drives the simulation and waits (in simulated time) for answers.

import Lockstep
import LockstepCore
import LockstepSimulator

/// A replicated group of `Machine` in the deterministic simulator, for tests: members are
/// numbered from 0 (`join` adds more), one seed fixes the whole run, and `check` says whether
/// every member ended with the same state and the run kept the protocol's promises.
///
/// Calls run the simulation as far as they need to: `submit` until the member has applied the
/// command, `state(.linearizable, at:)` until a read marker has gone through the total order;
/// faults happen at the current simulated instant. A member is a simulated process: after
/// `restart`, or after it was removed while alive (a long pause, the minority side of a healed
/// partition), the same number names a new incarnation that joined with a snapshot.
///
/// ```swift
/// import Lockstep
/// import LockstepTesting
/// import Testing
///
/// struct Counter: ReplicatedStateMachine, Codable, Equatable {
///     var total = 0
///     mutating func apply(_ amount: Int, entry: EntryInfo) -> Int {
///         total += amount
///         return total
///     }
/// }
///
/// @Test("A counter survives a crash and a joiner")
/// func counter() throws {
///     let group = try LocalGroup(members: 3, initialState: Counter(), seed: 7)
///     #expect(try group.submit(5, at: 0).response == 5)
///     group.kill(2)
///     try group.enqueue(1, at: 1)
///     let joiner = try group.join()
///     #expect(try group.state(.linearizable, at: joiner).total == 6)
///     try group.check()
/// }
/// ```
///
/// Snapshots: a joiner's state comes from its welcoming member through the machine's own
/// `writeSnapshot` and `restore` (via `MemorySnapshot`), at the simulated instant of the
/// welcome, as one transfer that takes no simulated time. Both are async for a runtime's sake;
/// here they run to their end on the test's thread (they only touch memory), so a snapshot that
/// waits on something else (an actor, a sleep, IO) is reported by `check()` rather than run.
public final class LocalGroup<Machine: ReplicatedStateMachine> {
    /// The simulation underneath, for what this API does not say (link delays, traces, the raw
    /// delivery logs).
    public let simulation: SimulatedGroup
    /// The protocol's configuration (ordered delivery: a state machine needs one order).
    public let configuration: Configuration
    /// A call that waits gives up after this much simulated time, with a `.timedOut` error that
    /// says what it waited for.
    public var operationTimeout: Duration = .seconds(60)
    /// `check()` waits at most this much simulated time for the group to quiesce.
    public var quiescenceTimeout: Duration = .seconds(120)

    private let application = LocalApplication<Machine>()
    private var nextRequest: UInt64 = 1

    /// `members` members of a first view, all starting from `initialState`, plus `spareMembers`
    /// not started (each `join()` starts one).
    ///
    /// - Parameters:
    ///   - seed: fixes the run: the same seed and the same calls give the same run.
    ///   - harshness: how harshly the simulated shells treat the members (`Harshness.runtimeLike`
    ///     is as harsh as a runtime); gentle by default.
    public init(
        members: Int, initialState: Machine, seed: UInt64, spareMembers: Int = 4,
        configuration: Configuration = Configuration(), harshness: Harshness = .gentle
    ) throws(LocalGroupError) {
        guard (1...configuration.membersMax).contains(members) else {
            throw LocalGroupError(
                .invalidConfiguration, "members must be 1...\(configuration.membersMax), got \(members)")
        }
        guard spareMembers >= 0 else {
            throw LocalGroupError(.invalidConfiguration, "spareMembers must be at least 0, got \(spareMembers)")
        }
        guard configuration.deliveryMode == .ordered else {
            throw LocalGroupError(.invalidConfiguration, "deliveryMode must be ordered for a state machine")
        }
        do {
            try configuration.validate()
            simulation = try SimulatedGroup(
                memberCount: members, configuration: configuration, seed: seed, spareProcesses: spareMembers)
        } catch {
            throw LocalGroupError(.invalidConfiguration, "\(error)")
        }
        self.configuration = configuration
        simulation.harshness = harshness
        // As a `lockstep node` does: a member removed while alive (a long pause, the minority of
        // a healed partition) joins again as a new incarnation; one that left stays out.
        simulation.rejoinAfterRemoval = .milliseconds(100)
        simulation.applicationHook = application
        for member in 0..<members {
            application.replicas[simulation.memberID(member)] = Replica(machine: initialState)
        }
    }

    // MARK: - Calls

    /// Submits `command` at `member` and runs the simulation until that member has applied it.
    /// Throws `.minority` when the member is (or finds itself) in a minority, `.notRunning` when
    /// it stops first, `.timedOut` after `operationTimeout`.
    @discardableResult
    public func submit(
        _ command: Machine.Command, at member: Int
    ) throws(LocalGroupError) -> Submitted<Machine.Response> {
        let request = takeRequest()
        let entry = try encode(command, request: request)
        switch try call(entry, request: request, at: member, "the submit (request \(request))") {
        case .submitted(let submitted): return submitted
        case .refused(let reason): throw LocalGroupError(.commandRefused, reason)
        case .read: preconditionFailure("a command of request \(request) was answered as a read")
        }
    }

    /// Submits `command` at `member` without waiting (it is sent when the simulation runs next).
    public func enqueue(_ command: Machine.Command, at member: Int) throws(LocalGroupError) {
        let entry = try encode(command, request: 0)
        try requireRunning(member)
        simulation.submit(entry, from: member)
    }

    /// The state at `member`: `.local` is what it holds now; `.linearizable` sends a read marker
    /// through the total order and answers when the member applies it (so it includes every
    /// command a `submit` returned for anywhere before), as ReplicatedGroup does.
    public func state(
        _ consistency: ReadConsistency = .linearizable, at member: Int
    ) throws(LocalGroupError) -> Machine {
        switch consistency {
        case .local:
            guard let replica = application.replicas[memberID(member)] else {
                throw LocalGroupError(.notRunning, "member \(member) has no state yet (\(simulation.status(member)))")
            }
            return replica.machine
        case .linearizable:
            let request = takeRequest()
            let marker = Replica<Machine>.readMarker(request: request)
            switch try call(marker, request: request, at: member, "the linearizable read (request \(request))") {
            case .read(let machine): return machine
            case .submitted, .refused: preconditionFailure("a read of request \(request) was answered as a command")
            }
        }
    }

    /// The position of the last command `member` applied (nil: it has no state).
    public func position(at member: Int) -> UInt64? { application.replicas[memberID(member)]?.position }

    /// The view `member` is in (nil: it has none, as a joiner before its welcome).
    public func view(at member: Int) -> GroupView? {
        checkNumber(member)
        guard simulation.isRunning(member), simulation.hasCore(member) else { return nil }
        let core = simulation.core(member)
        return GroupView(core.view, memberRank: core.memberRank)
    }

    /// The member id of `member`'s current incarnation.
    public func memberID(_ member: Int) -> MemberID {
        checkNumber(member)
        return simulation.memberID(member)
    }

    /// Members running now (in a view, or joining).
    public var runningMembers: [Int] { (0..<simulation.processCount).filter { simulation.isRunning($0) } }

    /// Simulated time since the start.
    public var elapsed: Duration { .nanoseconds(Int64(clamping: simulation.now)) }

    /// Runs the simulation for `duration` of simulated time.
    public func run(for duration: Duration) { simulation.run(for: duration) }

    // MARK: - Faults (each happens at the current simulated instant)

    /// `member` crashes: it stops for good, and what is on its way to it is lost.
    public func kill(_ member: Int) { now { simulation.crash(member) } }

    /// `member` starts again as a new incarnation (a new member id) and joins with a snapshot.
    public func restart(_ member: Int) { now { simulation.restart(member) } }

    /// Every link between a member in `a` and one in `b` fails, both ways, until `heal()`.
    public func partition(_ a: [Int], from b: [Int]) { now { simulation.cut(Set(a), from: Set(b)) } }

    /// Every failed link works again. A minority side the others removed meanwhile never hears
    /// from them again (they no longer count it in their view): as an operator would, members
    /// still stuck wedged 3 failure timeouts after the heal are restarted as new incarnations,
    /// which join with a snapshot (crashed members stay down).
    public func heal() {
        now { simulation.healLinks() }
        simulation.recoverStragglers(at: elapsed + configuration.failureTimeout * 3, wedgedOnly: true)
    }

    /// `member` handles nothing for `duration` (a stopped process); what reaches it waits.
    public func pause(_ member: Int, for duration: Duration) { now { simulation.pause(member, for: duration) } }

    /// `member` leaves the group gracefully (the others remove it at once).
    public func leave(_ member: Int) { now { simulation.leave(member) } }

    /// A spare member starts and asks to join; returns its number. It is running (joining) from
    /// now; calls at it wait for its welcome.
    public func join() throws(LocalGroupError) -> Int {
        guard let spare = (0..<simulation.processCount).first(where: { simulation.status($0) == .dormant }) else {
            throw LocalGroupError(.noSpareMember, "every spare member has started (LocalGroup(spareMembers:))")
        }
        now { simulation.join(spare) }
        return spare
    }

    // MARK: - The check

    /// Runs the group to quiescence, then checks: every running member is in the final view and
    /// not wedged, all have the same position and states `equal` calls the same, and the
    /// delivery checker (no creation, no duplication, FIFO, one total order, uniform agreement,
    /// virtual synchrony, no loss, completeness) passes. Throws `.checkFailed` listing every
    /// violation.
    public func check(states equal: (Machine, Machine) -> Bool) throws(LocalGroupError) {
        var violations: [String] = []
        let quiesced = simulation.runUntilQuiet(limit: quiescenceTimeout)
        if !quiesced {
            violations.append("the group did not quiesce within \(quiescenceTimeout) of simulated time")
        }
        violations += simulation.coreErrors.map { "core error: \($0)" }
        violations += application.problems
        violations += simulation.checker.check(totalOrder: true, quiesced: quiesced).map(\.description)
        violations += finalViewViolations(equal)
        guard violations.isEmpty else {
            throw LocalGroupError(
                .checkFailed, "\(violations.count) violations at \(elapsed) of simulated time", violations: violations)
        }
    }

    private func finalViewViolations(_ equal: (Machine, Machine) -> Bool) -> [String] {
        var violations: [String] = []
        let running = runningMembers
        let views = Set(running.map { view(at: $0)?.id })
        if views.count > 1 { violations.append("the running members end in different views: \(views)") }
        var reference: (member: Int, replica: Replica<Machine>)?
        for member in running {
            guard let groupView = view(at: member) else {
                violations.append("member \(member) (\(memberID(member))) never joined")
                continue
            }
            if simulation.core(member).isWedged {
                violations.append("member \(member) (\(memberID(member))) is wedged in \(groupView.id)")
            }
            guard let replica = application.replicas[memberID(member)] else {
                violations.append("member \(member) (\(memberID(member))) has no state")
                continue
            }
            guard let first = reference else {
                reference = (member, replica)
                continue
            }
            if replica.position != first.replica.position {
                violations.append(
                    "member \(member) is at position \(replica.position), member \(first.member) at "
                        + "\(first.replica.position)")
            } else if !equal(replica.machine, first.replica.machine) {
                violations.append(
                    "member \(member)'s state \(replica.machine) differs from member \(first.member)'s "
                        + "\(first.replica.machine) at position \(replica.position)")
            }
        }
        return violations
    }

    // MARK: - Helpers

    /// A member number outside the group is the test's mistake: it stops the test, loudly.
    private func checkNumber(_ member: Int) {
        precondition(
            (0..<simulation.processCount).contains(member),
            "no member \(member): members are 0..<\(simulation.processCount)")
    }

    private func takeRequest() -> UInt64 {
        defer { nextRequest += 1 }
        return nextRequest
    }

    private func encode(_ command: Machine.Command, request: UInt64) throws(LocalGroupError) -> [UInt8] {
        do {
            return try Replica<Machine>.entry(command, request: request, messageBytesMax: configuration.messageBytesMax)
        } catch {
            throw LocalGroupError(.commandTooLarge, error.message)
        }
    }

    /// Sends `entry` from `member` and runs until its answer comes, the member stops or finds
    /// itself in a minority, or `operationTimeout` passes.
    private func call(
        _ entry: [UInt8], request: UInt64, at member: Int, _ what: String
    ) throws(LocalGroupError) -> LocalApplication<Machine>.Answer {
        try requireRunning(member)
        let id = simulation.memberID(member)
        application.awaited[request] = id
        defer {
            application.awaited[request] = nil
            application.answers[request] = nil
        }
        simulation.submit(entry, from: member)
        var failure: LocalGroupError?
        let answered = simulation.run(
            until: {
                if application.answers[request] != nil { return true }
                failure = stopped(member, id: id, before: what)
                return failure != nil
            }, limit: operationTimeout)
        if let failure { throw failure }
        guard answered, let answer = application.answers[request] else {
            throw LocalGroupError(
                .timedOut, "member \(member) (\(id)) did not apply \(what) within \(operationTimeout) of simulated "
                    + "time: \(whereIs(member))")
        }
        return answer
    }

    /// Why `member`'s incarnation `id` can no longer answer, if it cannot.
    private func stopped(_ member: Int, id: MemberID, before what: String) -> LocalGroupError? {
        if simulation.memberID(member) != id || !simulation.isRunning(member) {
            return LocalGroupError(
                .notRunning, "member \(member) (\(id)) stopped before it applied \(what): \(whereIs(member))")
        }
        if simulation.reportedMinority(member) {
            return LocalGroupError(
                .minority, "member \(member) (\(id)) is in a minority of its view, so \(what) cannot complete there: "
                    + whereIs(member))
        }
        return nil
    }

    private func requireRunning(_ member: Int) throws(LocalGroupError) {
        guard (0..<simulation.processCount).contains(member) else {
            throw LocalGroupError(.notRunning, "there is no member \(member) (0..<\(simulation.processCount))")
        }
        guard simulation.isRunning(member) else {
            throw LocalGroupError(.notRunning, "member \(member) is not running: \(whereIs(member))")
        }
    }

    /// Where `member` stands, for an error message.
    private func whereIs(_ member: Int) -> String {
        var line = "\(simulation.memberID(member)) is \(simulation.status(member))"
        if let view = view(at: member) {
            line += " in \(view.id) \(view.members)"
            if simulation.core(member).isWedged { line += ", wedged" }
        }
        return line
    }

    /// Schedules a fault at the current instant and carries it out now.
    private func now(_ schedule: () -> Void) {
        schedule()
        simulation.run(for: .zero)
    }
}

extension LocalGroup where Machine: Equatable {
    /// `check(states:)` with the machine's own `==`.
    public func check() throws(LocalGroupError) { try check(states: ==) }
}
