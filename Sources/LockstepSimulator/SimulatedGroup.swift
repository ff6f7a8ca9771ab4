// A group of members running the real `OrderingCore`, over simulated links, on a virtual
// clock. Nothing here reads a real clock or an unseeded random source: one seed fixes the run.
//
// The group is processes (`SimulatedProcess`, named by index: a process holds one member
// incarnation at a time), the network between them (`SimulatedNetwork`), the event agenda
// (`SimulatedScheduler`) and each process's member shell (SimulatedMemberShell.swift). This
// file runs the agenda: it decides whether an event reaches its process (a crashed process or a
// failed link loses it, a paused process defers it); SimulatedGroup+Faults.swift carries out the
// faults. A paused member handles nothing until it resumes, then handles what arrived meanwhile
// in arrival order.
// Scripting (SimulatedGroup+Scripting.swift) and observation (SimulatedGroup+Observation.swift)
// are the public face.

import LockstepChecker
import LockstepCore

/// A simulated group: processes running member incarnations, their applications, and the links.
public final class SimulatedGroup {
    /// The first view.
    public let view: View
    public let configuration: Configuration
    public private(set) var eventsProcessed: UInt64 = 0
    /// Core errors: on honest simulated links every one of them is a bug. The member shell
    /// records them (SimulatedMemberShell.swift), hence `internal(set)`.
    public internal(set) var coreErrors: [String] = []
    /// Durable mode: logs that do not hold what they must (SimulatedGroup+Durable.swift).
    public internal(set) var durabilityViolations: [String] = []
    /// Durable mode: the highest persistence frontier any member saw, by view.
    var frontierSeen: [ViewID: UInt64] = [:]
    /// Messages lost to crashes and failed links.
    public private(set) var messagesLost: UInt64 = 0
    /// When the last install by any member happened (virtual nanoseconds).
    public internal(set) var lastInstallAt: UInt64 = 0
    /// Largest random payload filler, in bytes (payloads also carry a 16-byte header).
    public var payloadFillerBytesMax = 48
    /// A joiner that has not been welcomed this long after asking asks again (another member,
    /// the same id). Below the failure timeout: a joiner is a member of the view that adds it
    /// from the install on, and one not started within the failure timeout is suspected (enough
    /// of them cost the view its majority). Any member of that view welcomes it when asked.
    public var joinRetryInterval: Duration = .milliseconds(200)
    /// A joiner asks this many times before it starts afresh as a new incarnation (its id may
    /// be in a view that removed it by then).
    public var joinAttemptsMax = 10
    /// Traffic of views a process has not installed yet that it holds, at most (a bound, like a
    /// runtime's; going past it is reported as a core error).
    public var futureMessagesMax = 1 << 16
    /// Print faults and suspicions as they happen (debugging one seed).
    public var traceEnabled = false
    /// A member removed while alive (a long pause, a false suspicion; not one that left) starts
    /// again as a new incarnation this long after it learns it, as `lockstep node` does; nil
    /// (scripted tests): it stays out. Fault schedules turn it on.
    public var rejoinAfterRemoval: Duration? = nil
    /// An application from outside the simulator (SimulatedGroup+Application.swift), told of
    /// every delivery, install and welcome; nil: only the default application runs.
    public var applicationHook: (any SimulatedApplicationHook)? = nil

    var processes: [SimulatedProcess]
    var scheduler: SimulatedScheduler
    var network: SimulatedNetwork
    /// The one random source of the run: the network's delays, the payloads and the choice of
    /// join contacts draw from it in event order, so the draws (and the run) follow the seed.
    var random: DeterministicRandom
    /// The effects buffer every poll fills: one for the group, emptied and refilled by each poll
    /// with its capacity kept, so a poll allocates nothing once the run is warm.
    var memberEffects: [MemberEffect] = []
    /// How harshly the simulated shells and network treat the members (`Harshness`).
    public var harshness = Harshness.gentle {
        didSet { drawClocks() }
    }
    /// Rows on their way, by link, that a later row may still replace (`rowCoalescingProbability`):
    /// the token of the last row sent on each link, and the tokens replaced.
    var lastRowOnLink: [[(token: UInt64, viewID: ViewID, installs: Bool)?]] = []
    var replacedRows: Set<UInt64> = []
    var nextRowToken: UInt64 = 1
    public private(set) var rowsCoalesced: UInt64 = 0
    /// Data messages sent and not yet arrived or lost (the run is not quiet while any are).
    var dataInFlight = 0
    /// Scripted events not happened yet (the run is not quiet while any are).
    var scheduledWorkPending = 0
    var nextMemberID: UInt64
    var processOfMember: [MemberID: Int] = [:]
    /// Every incarnation's history, for the checker.
    var histories: [MemberID: History] = [:]
    /// Operator sweeps run so far (`recoverStragglers`).
    var sweeps = 0
    /// An operator sweeps at most this many times while the group has not settled.
    let sweepsMax = 10

    /// Virtual time, in nanoseconds.
    public var now: UInt64 { scheduler.now }

    /// Creates a group whose members are `m1 ... mN` in processes `0..<N`, plus `spareProcesses`
    /// dormant processes that join later (`join(_:at:)`).
    ///
    ///     let group = try SimulatedGroup(memberCount: 3, configuration: Configuration(), seed: 7)
    ///     group.send(from: 0, count: 100)
    ///     group.crash(2, at: .milliseconds(3))
    ///     _ = group.runUntilQuiet()
    ///
    /// - Parameters:
    ///   - senderRanks: member ranks that send; `nil` for all.
    ///   - linkDelay: the range each link's base delay is drawn from (each message adds up to its
    ///     link's base again as jitter).
    public init(
        memberCount: Int, senderRanks: [Int]? = nil, configuration: Configuration, seed: UInt64,
        linkDelay: ClosedRange<Duration> = .microseconds(5) ... .milliseconds(2), spareProcesses: Int = 0
    ) throws(CoreSetupError) {
        let ids = (1...max(memberCount, 1)).map { MemberID(UInt64($0)) }
        let senders = senderRanks.map { ranks in ranks.map { ids[$0] } }
        let view: View
        do { view = try View(id: ViewID(1), members: ids, senders: senders) } catch { throw .view(error) }
        self.view = view
        self.configuration = configuration
        var processes: [SimulatedProcess] = []
        let firstInstall = [ViewRecord(viewID: 1, members: ids, stateDigest: AppState().digest)]
        for rank in ids.indices {
            let member = try Member<Message>(configuration: configuration, view: view, memberRank: rank)
            processes.append(SimulatedProcess(id: ids[rank], status: .active, member: member))
            processOfMember[ids[rank]] = rank
            histories[ids[rank]] = History(installs: firstInstall)
        }
        let durable = configuration.durable
        nextMemberID = UInt64(ids.count) + 1
        for _ in 0..<spareProcesses {
            processes.append(SimulatedProcess(id: MemberID(0), status: .dormant, member: nil))
        }
        self.processes = processes
        var random = DeterministicRandom(seed: seed)
        network = SimulatedNetwork(processCount: processes.count, delay: linkDelay, using: &random)
        self.random = random
        scheduler = SimulatedScheduler(processCount: processes.count)
        lastRowOnLink = processes.map { _ in processes.map { _ in nil } }
        // Every member's clock starts at once (a runtime ticks from the start): heartbeats and
        // failure detection run even in a group with nothing to send.
        for process in ids.indices { scheduler.startTimer(process) }
        if durable { for process in ids.indices { startDisk(process, view: view) } }
    }

    // MARK: - Running

    /// Runs the group for `duration` of virtual time.
    public func run(for duration: Duration) {
        let end = now + duration.nanosecondsClamped
        while let next = scheduler.nextTime, next <= end {
            processNext()
        }
        scheduler.advance(to: end)
    }

    /// Runs until `done` holds (asked before the first event and after each), at most `limit` of
    /// virtual time. Returns whether `done` held; the clock stops at the event that made it so.
    public func run(until done: () -> Bool, limit: Duration) -> Bool {
        let end = now + limit.nanosecondsClamped
        while !done() {
            guard let next = scheduler.nextTime, next <= end else {
                scheduler.advance(to: end)
                return done()
            }
            processNext()
        }
        return true
    }

    /// Runs until there is no application work, no data in flight, no paused member and no
    /// member between views, and that has lasted `settle` (long enough for the last rows to
    /// spread). Returns false if `limit` of virtual time passed first.
    public func runUntilQuiet(settle: Duration = .milliseconds(200), limit: Duration = .seconds(600)) -> Bool {
        let settleNanoseconds = settle.nanosecondsClamped
        let deadline = now + limit.nanosecondsClamped
        var quietSince: UInt64? = isBusy ? nil : now
        while let next = scheduler.nextTime {
            if let since = quietSince, next >= since + settleNanoseconds {
                scheduler.advance(to: since + settleNanoseconds)
                return true
            }
            if next > deadline { return false }
            processNext()
            if isBusy { quietSince = nil } else if quietSince == nil { quietSince = now }
        }
        return quietSince != nil
    }

    var isBusy: Bool {
        dataInFlight > 0 || scheduledWorkPending > 0 || processes.contains { $0.status == .joining || isBusy($0) }
    }

    /// An active member is busy while its application (or an outside one) has work, it is paused, it holds
    /// undelivered messages, or it is between views (unless it found itself in a minority).
    private func isBusy(_ process: SimulatedProcess) -> Bool {
        guard process.status == .active else { return false }
        let wedged = process.core?.isWedged ?? false
        return process.backlog > 0 || !process.outbox.isEmpty || process.pausedUntil != nil
            || wedged && !process.minority || (process.core?.hasUndelivered ?? false)
            || (process.disk?.syncScheduled ?? false)
    }

    // MARK: - The agenda

    private func processNext() {
        guard let (time, event) = scheduler.popNext() else { return }
        if traceEnabled {
            switch event {
            case .arrival, .timer, .control, .burst, .joinRetry, .resume, .poll: break
            default: print("t=\(time / 1_000_000)ms \(event)")
            }
        }
        eventsProcessed += 1
        switch event {
        case .arrival(let to, let toID, let from, _, let message, let token):
            if case .data = message { dataInFlight -= 1 }
            if token != 0 {
                if replacedRows.remove(token) != nil { return }
                if lastRowOnLink[from][to]?.token == token { lastRowOnLink[from][to] = nil }
            }
            deliver(event, to: to, toID: toID, from: from)
        case .control(let to, let toID, let from, _):
            deliver(event, to: to, toID: toID, from: from)
        case .timer(let process):
            // An entry superseded by an earlier one, or re-queued for later, is not a tick.
            guard isLive(process), scheduler.timerFires(process, queuedFor: time) else { return }
            handleOrDefer(event, at: process)
        case .pause(let process, let until):
            beginPause(process, until: until)
        case .poll(let process), .linkDown(let process, _), .sync(let process, _):
            guard isLive(process) else { return }
            handleOrDefer(event, at: process)
        case .burst, .leave, .joinRetry:
            if case .joinRetry = event {} else { scheduledWorkPending -= 1 }
            guard isLive(event.process) else { return }
            handleOrDefer(event, at: event.process)
        case .crash(let process):
            crashNow(process)
        case .failLink(let from, let to, let reset):
            scheduledWorkPending -= 1
            network.fail(from: from, to: to, fromID: processes[from].id, toID: processes[to].id)
            if reset { noticeReset(from: from, to: to) }
        case .healLink(let from, let to):
            scheduledWorkPending -= 1
            network.heal(from: from, to: to)
        case .healLinks:
            scheduledWorkPending -= 1
            network.healAll()
        case .restart(let process):
            scheduledWorkPending -= 1
            startIncarnation(process)
        case .rejoin(let process, let id):
            scheduledWorkPending -= 1
            if processes[process].id == id, processes[process].status == .removed { startIncarnation(process) }
        case .recoverStragglers(let wedgedOnly):
            sweepStragglers(wedgedOnly: wedgedOnly)
        case .resume(let process):
            endPause(process)
        }
    }

    /// Traffic reaches the incarnation it was sent to, unless that process is not live, holds
    /// another incarnation by now, or the connection is down; then it is lost.
    private func deliver(_ event: SimulatedEvent, to: Int, toID: MemberID?, from: Int) {
        if !isLive(to) || (toID != nil && processes[to].id != toID) || isDown(from, to) {
            messagesLost += 1
        } else {
            handleOrDefer(event, at: to)
        }
    }

    /// A paused process keeps what reaches it for later; a running one handles it now.
    private func handleOrDefer(_ event: SimulatedEvent, at process: Int) {
        if processes[process].pausedUntil != nil {
            processes[process].deferred.append(event)
        } else {
            handle(event)
        }
    }

    func isLive(_ process: Int) -> Bool { processes[process].isLive }

    /// Whether the connection from the incarnation in `from` to the one in `to` is down.
    func isDown(_ from: Int, _ to: Int) -> Bool {
        network.isDown(from: from, to: to, fromID: processes[from].id, toID: processes[to].id)
    }

    // MARK: - Sending

    /// Puts a core message on the link, or counts it lost if the connection is down.
    func transmit(_ message: Message, from: Int, to: Int, toID: MemberID) {
        if isDown(from, to) {
            messagesLost += 1
            if case .data = message { dataInFlight -= 1 }
            return
        }
        let lane: Lane
        var token: UInt64 = 0
        switch message {
        case .data: lane = .data
        case .row(let row):
            lane = .control
            token = coalesceRow(row, from: from, to: to)
        }
        let arrival = network.arrivalTime(from: from, to: to, lane: lane, now: now, using: &random)
        scheduler.schedule(
            at: arrival, .arrival(to: to, toID: toID, from: from, fromID: processes[from].id, message, token: token))
    }

    /// Rows are latest-wins on a runtime's link: a row may replace the one still on its way
    /// before it (of the same view; an install row is never replaced). Returns the row's token.
    private func coalesceRow(_ row: Row, from: Int, to: Int) -> UInt64 {
        let token = nextRowToken
        nextRowToken += 1
        if let last = lastRowOnLink[from][to], last.viewID == row.viewID, !last.installs,
            harshness.rowCoalescingProbability > 0, random.chance(harshness.rowCoalescingProbability)
        {
            replacedRows.insert(last.token)
            rowsCoalesced += 1
        }
        lastRowOnLink[from][to] = (token, row.viewID, row.installNumber != 0)
        return token
    }

    /// Puts a join-handshake message on the control lane, or counts it lost.
    func sendControl(_ control: SimulatedControl, from: Int, to: Int, toID: MemberID?) {
        if isDown(from, to) {
            messagesLost += 1
            return
        }
        let arrival = network.arrivalTime(from: from, to: to, lane: .control, now: now, using: &random)
        scheduler.schedule(at: arrival, .control(to: to, toID: toID, from: from, control))
    }

    /// One trace line, stamped with virtual time.
    func trace(_ line: String) {
        print("t=\(now / 1_000_000)ms \(line)".prefix(300))
    }
}
