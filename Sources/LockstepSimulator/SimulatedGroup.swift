// A group of members running the real `OrderingCore`, over simulated links, on a virtual
// clock. Nothing here reads a real clock or an unseeded random source: one seed fixes the run.
//
// A *slot* is a simulated process: it holds one member incarnation at a time (a restart gives
// the slot a new `MemberID`, which joins as a new member). Slots are what tests and the fault
// schedule name; ranks are the core's business and change with every view. Links join slots;
// they are reliable and FIFO (the transport contract) until they fail, with their own random
// delay. A paused member handles nothing until it resumes, then handles what arrived meanwhile
// in arrival order. The shell around each core does what a real runtime does: it sends a view
// and a state snapshot to joiners, holds traffic of a view it has not installed yet, and drops
// traffic of views it has left.

import HeapModule
import LockstepChecker
import LockstepCore

/// What a simulated application holds: how many messages of each sender it has delivered, and
/// a digest chained over every delivery. A joiner starts from the leader's copy (its snapshot).
public struct AppState: Sendable, Equatable {
    public var counts: [MemberID: UInt64] = [:]
    public var digest: UInt64 = 0xcbf2_9ce4_8422_2325
    public init() {}

    mutating func apply(_ record: DeliveredRecord) {
        counts[record.sender] = record.senderSequence + 1
        for value in [record.sender.rawValue, record.senderSequence, record.payloadDigest] {
            digest = (digest ^ value) &* 0x0000_0100_0000_01B3
        }
    }
}

/// A simulated group: slots running member incarnations, their applications, and the links.
public final class SimulatedGroup {
    /// The first view.
    public let view: View
    public let configuration: Configuration
    /// Virtual time, in nanoseconds.
    public private(set) var now: UInt64 = 0
    public private(set) var eventsProcessed: UInt64 = 0
    /// Core errors: on honest simulated links every one of them is a bug.
    public private(set) var coreErrors: [String] = []

    private var slots: [Slot]
    private var queue = Heap<Scheduled>()
    private var order: UInt64 = 0
    private var random: DeterministicRandom
    /// linkDelayBase[from][to], nanoseconds, by slot.
    private var linkDelayBase: [[UInt64]]
    /// Per link and lane (0 control, 1 data): the latest arrival scheduled, for FIFO per lane.
    /// The runtime keeps rows and control frames on a connection of their own beside the data
    /// (docs/WIRE.md, "Lanes"), so rows may overtake data; the simulator does the same.
    private var lastArrival: [[[UInt64]]]
    /// linkFailed[from][to]: the link between these slots is down; what was in flight on it and
    /// everything later is lost.
    private var linkFailed: [[Bool]]
    /// Connections that failed, by incarnation (from, to): a failed connection stays failed even
    /// after the network heals (the transport contract); only new incarnations connect afresh.
    private var failedConnections: Set<[UInt64]> = []
    /// Messages lost to crashes and failed links.
    public private(set) var messagesLost: UInt64 = 0
    private var effects: [Effect] = []
    private var dataInFlight = 0
    private var scheduledWorkPending = 0
    private var nextMemberID: UInt64
    private var slotOfMember: [MemberID: Int] = [:]
    /// Every incarnation's history, for the checker.
    private var histories: [MemberID: History] = [:]
    /// Largest random payload filler, in bytes (payloads also carry a 16-byte header).
    public var payloadFillerBytesMax = 48
    /// Probability that a message on a link is held up by an extra delay of up to `spikeDelayMax`.
    public var spikeProbability = 0.01
    public var spikeDelayMax: Duration = .milliseconds(5)
    /// A joiner that has not been welcomed this long after asking tries again, as a new incarnation.
    public var joinRetryInterval: Duration = .seconds(2)
    /// Traffic of views a slot has not installed yet that it holds, at most (a bound, like a
    /// runtime's; going past it is reported as a core error).
    public var futureMessagesMax = 1 << 16

    public enum Status: Sendable, Equatable {
        /// Not started yet (a slot for a later joiner).
        case dormant
        /// Asked to join; no view yet.
        case joining
        case active
        /// Learned it was removed; it does nothing more.
        case removed
        case crashed
    }

    struct History {
        var sent: [SentRecord] = []
        var delivered: [DeliveredRecord] = []
        var installs: [ViewRecord] = []
        var initialState: AppState? = nil
        var removed = false
    }

    /// A class so that reading a slot's core through the array does not copy the core.
    final class Slot {
        var id: MemberID
        var status: Status
        var core: OrderingCore?
        var app = AppState()
        var backlog = 0
        var nextSenderSequence: UInt64 = 0
        var pausedUntil: UInt64? = nil
        var deferred: [Scheduled.Kind] = []
        var timerAt: UInt64? = nil
        /// The time of this slot's one timer entry in the queue, if any (see `queueTimer`).
        var timerQueuedAt: UInt64? = nil
        /// Traffic of a view not installed yet: (sender, message), in arrival order.
        var future: [(MemberID, Message)] = []
        /// When the member wedged in its current view, and how many messages it had submitted then.
        var wedgedAt: UInt64? = nil
        var everWedged = false
        var sentWhenWedged = 0
        var minority = false
        var joinAskedAt: UInt64 = 0
        /// (member, view) pairs this slot sent its last row of that view to.
        var answeredStragglers: Set<[UInt64]> = []
        init(id: MemberID, status: Status, core: OrderingCore?) {
            self.id = id
            self.status = status
            self.core = core
        }
    }

    enum Control {
        case join(MemberID)
        case redirect(MemberID)
        case welcome(View, rank: Int, AppState, skip: [UInt64])
    }

    struct Scheduled: Comparable {
        enum Kind {
            case arrival(to: Int, toID: MemberID, from: Int, fromID: MemberID, Message)
            case control(to: Int, toID: MemberID?, from: Int, Control)
            case timer(Int)
            case burst(Int, count: Int)
            case pause(Int, until: UInt64)
            case resume(Int)
            case crash(Int)
            case failLink(from: Int, to: Int)
            case healLinks
            case recoverStragglers
            case restart(Int)
            case leave(Int)
            case joinRetry(Int, MemberID)
        }
        var time: UInt64
        var order: UInt64
        var kind: Kind
        static func < (a: Scheduled, b: Scheduled) -> Bool { (a.time, a.order) < (b.time, b.order) }
        static func == (a: Scheduled, b: Scheduled) -> Bool { (a.time, a.order) == (b.time, b.order) }
    }

    /// Creates a group whose members are `m1 ... mN` in slots `0..<N`, plus `spareSlots` dormant
    /// slots for processes that join later (`join(_:at:)`).
    /// - Parameters:
    ///   - senderRanks: member ranks that send; `nil` for all.
    ///   - linkDelay: the range each link's base delay is drawn from (each message adds up to its
    ///     link's base again as jitter).
    public init(
        memberCount: Int, senderRanks: [Int]? = nil, configuration: Configuration, seed: UInt64,
        linkDelay: ClosedRange<Duration> = .microseconds(5) ... .milliseconds(2), spareSlots: Int = 0
    ) throws(CoreSetupError) {
        let ids = (1...max(memberCount, 1)).map { MemberID(UInt64($0)) }
        let senders = senderRanks.map { ranks in ranks.map { ids[$0] } }
        let view: View
        do { view = try View(id: ViewID(1), members: ids, senders: senders) } catch { throw .view(error) }
        self.view = view
        self.configuration = configuration
        var slots: [Slot] = []
        for rank in ids.indices {
            slots.append(
                Slot(id: ids[rank], status: .active, core: try OrderingCore(configuration: configuration, view: view, memberRank: rank)))
            slotOfMember[ids[rank]] = rank
            histories[ids[rank]] = History(installs: [ViewRecord(viewID: 1, members: ids, stateDigest: AppState().digest)])
        }
        nextMemberID = UInt64(ids.count) + 1
        for _ in 0..<spareSlots {
            slots.append(Slot(id: MemberID(0), status: .dormant, core: nil))
        }
        self.slots = slots
        var random = DeterministicRandom(seed: seed)
        let low = linkDelay.lowerBound.nanosecondsClamped
        let high = max(low, linkDelay.upperBound.nanosecondsClamped)
        linkDelayBase = slots.map { _ in slots.map { _ in UInt64.random(in: low...high, using: &random) } }
        lastArrival = slots.map { _ in slots.map { _ in [0, 0] } }
        linkFailed = slots.map { _ in slots.map { _ in false } }
        self.random = random
        // Every member's clock starts at once (a runtime ticks from the start): heartbeats and
        // failure detection run even in a group with nothing to send.
        for slot in ids.indices { queueTimer(slot, at: 0) }
        for slot in ids.indices { slots[slot].timerAt = 0 }
    }

    // MARK: - Scripting (slots)

    /// The application in `slot` asks to send `count` messages at virtual time `at` (default:
    /// now). They wait in the application's backlog while the window is full or the member is
    /// between views; a restart loses the backlog (the application died with the process).
    public func send(from slot: Int, count: Int, at time: Duration? = nil) {
        scheduledWorkPending += 1
        schedule(at: when(time), .burst(slot, count: count))
    }

    /// The process in `slot` handles nothing from `start` for `duration` (a stopped process).
    public func pause(_ slot: Int, at start: Duration? = nil, for duration: Duration) {
        let begin = when(start)
        scheduledWorkPending += 1
        schedule(at: begin, .pause(slot, until: begin + duration.nanosecondsClamped))
    }

    /// The process in `slot` crashes: it stops for good, and what is on its way to it is lost.
    public func crash(_ slot: Int, at time: Duration? = nil) {
        scheduledWorkPending += 1
        schedule(at: when(time), .crash(slot))
    }

    /// The process in `slot` starts again (after a crash, a removal, or for the first time for a
    /// spare slot) as a new incarnation, and joins the group through a random live member.
    public func restart(_ slot: Int, at time: Duration? = nil) {
        scheduledWorkPending += 1
        schedule(at: when(time), .restart(slot))
    }

    /// A spare slot's process starts and joins.
    public func join(_ slot: Int, at time: Duration? = nil) { restart(slot, at: time) }

    /// The member in `slot` leaves gracefully.
    public func leave(_ slot: Int, at time: Duration? = nil) {
        scheduledWorkPending += 1
        schedule(at: when(time), .leave(slot))
    }

    /// The link from `from` to `to` fails (one way): what is in flight on it and everything sent
    /// later is lost, until `healLinks`.
    public func failLink(from: Int, to: Int, at time: Duration? = nil) {
        scheduledWorkPending += 1
        schedule(at: when(time), .failLink(from: from, to: to))
    }

    /// A symmetric partition: every link between `side` and the other slots fails, both ways.
    public func partition(_ side: Set<Int>, at time: Duration? = nil) {
        for a in side {
            for b in slots.indices where !side.contains(b) {
                failLink(from: a, to: b, at: time)
                failLink(from: b, to: a, at: time)
            }
        }
    }

    /// An operator's sweep: every process that crashed, was removed, or is stuck wedged (a
    /// minority after a partition) is restarted as a new incarnation.
    public func recoverStragglers(at time: Duration? = nil) {
        scheduledWorkPending += 1
        schedule(at: when(time), .recoverStragglers)
    }

    /// The latest view installed by any live member, and when the last install happened.
    public var newestViewID: UInt64 { slots.compactMap { $0.status == .active ? $0.core?.view.id.rawValue : nil }.max() ?? 0 }
    public private(set) var lastInstallAt: UInt64 = 0
    private var sweeps = 0

    /// Every failed link works again (new connections; what was lost stays lost).
    public func healLinks(at time: Duration? = nil) {
        scheduledWorkPending += 1
        schedule(at: when(time), .healLinks)
    }

    private func when(_ time: Duration?) -> UInt64 { max(time.map { $0.nanosecondsClamped } ?? now, now) }

    /// Sets the base delay of the link from `from` to `to`.
    public func setLinkDelay(from: Int, to: Int, _ delay: Duration) {
        linkDelayBase[from][to] = delay.nanosecondsClamped
    }

    /// Runs the group for `duration` of virtual time.
    public func run(for duration: Duration) {
        let end = now + duration.nanosecondsClamped
        while let next = queue.min, next.time <= end {
            processNext()
        }
        now = max(now, end)
    }

    /// Runs until there is no application work, no data in flight, no paused member and no
    /// member between views, and that has lasted `settle` (long enough for the last rows to
    /// spread). Returns false if `limit` of virtual time passed first.
    public func runUntilQuiet(settle: Duration = .milliseconds(200), limit: Duration = .seconds(600)) -> Bool {
        let settleNanoseconds = settle.nanosecondsClamped
        let deadline = now + limit.nanosecondsClamped
        var quietSince: UInt64? = isBusy ? nil : now
        while let next = queue.min {
            if let since = quietSince, next.time >= since + settleNanoseconds {
                now = since + settleNanoseconds
                return true
            }
            if next.time > deadline { return false }
            processNext()
            if isBusy { quietSince = nil } else if quietSince == nil { quietSince = now }
        }
        return quietSince != nil
    }

    // MARK: - Observation (slots)

    public var slotCount: Int { slots.count }
    public var memberCount: Int { slots.count }
    public func status(_ slot: Int) -> Status { slots[slot].status }
    /// The core of the member in `slot` (its current view). Only for a slot that has one.
    public func core(_ slot: Int) -> OrderingCore {
        guard let core = slots[slot].core else { preconditionFailure("slot \(slot) has no core (\(slots[slot].status))") }
        return core
    }
    public func hasCore(_ slot: Int) -> Bool { slots[slot].core != nil }
    /// The current incarnation in `slot`.
    public func memberID(_ slot: Int) -> MemberID { slots[slot].id }
    /// What the current incarnation in `slot` delivered.
    public func deliveries(_ slot: Int) -> [DeliveredRecord] { histories[slots[slot].id]?.delivered ?? [] }
    public func sentRecords(_ slot: Int) -> [SentRecord] { histories[slots[slot].id]?.sent ?? [] }
    public func appState(_ slot: Int) -> AppState { slots[slot].app }
    /// The views the current incarnation in `slot` installed (its first view included).
    public func installedViews(_ slot: Int) -> [ViewRecord] { histories[slots[slot].id]?.installs ?? [] }
    /// Messages the application in `slot` still holds back.
    public func backlog(_ slot: Int) -> Int { slots[slot].backlog }
    /// When the member in `slot` wedged in its current view (virtual nanoseconds), if it did.
    public func wedgedAt(_ slot: Int) -> UInt64? { slots[slot].wedgedAt }
    /// Whether the member in `slot` ever wedged.
    public func everWedged(_ slot: Int) -> Bool { slots[slot].everWedged }
    /// The member in `slot` found itself in a minority (and stayed wedged).
    public func reportedMinority(_ slot: Int) -> Bool { slots[slot].minority }

    /// Messages the application submitted after its member wedged, in the current view (must stay 0).
    public func sentAfterWedging(_ slot: Int) -> Int {
        slots[slot].wedgedAt == nil ? 0 : sentRecords(slot).count - slots[slot].sentWhenWedged
    }

    /// Slots whose process crashed (and was not restarted).
    public var crashedRanks: [Int] { slots.indices.filter { slots[$0].status == .crashed } }

    /// Slots with a live member in a view.
    public var activeSlots: [Int] { slots.indices.filter { slots[$0].status == .active } }

    /// One line per slot: status, view, wedge, suspicions and the membership columns (for
    /// failure reports).
    public var slotSummary: [String] {
        slots.indices.map { slot in
            let s = slots[slot]
            var line = "slot \(slot) \(s.id) \(s.status)"
            if let core = s.core {
                let row = core.ownRow
                line += " \(core.view.id) rank \(core.memberRank) leader \(core.leaderRank.map(String.init) ?? "-")"
                line += " wedged \(core.isWedged) suspects \(core.suspectedRanks) backlog \(s.backlog)"
                line += " proposal \(row.proposal.number >> 16).\(row.proposal.number & 0xFFFF) commit \(row.commit.number >> 16).\(row.commit.number & 0xFFFF) install \(row.installNumber)"
                line += " received \(row.received) delivered \(row.delivered) future \(s.future.count)"
                if s.minority { line += " MINORITY" }
            }
            return line
        }
    }

    /// A checker over everything every incarnation sent, delivered and installed.
    public var checker: DeliveryChecker {
        var sent: [MemberID: [SentRecord]] = [:]
        var delivered: [MemberID: [DeliveredRecord]] = [:]
        var membership: [MemberID: MemberHistory] = [:]
        for (id, history) in histories {
            sent[id] = history.sent
            delivered[id] = history.delivered
            membership[id] = MemberHistory(
                installs: history.installs, initialCounts: history.initialState?.counts ?? [:], removed: history.removed)
        }
        return DeliveryChecker(sent: sent, delivered: delivered, membership: membership)
    }

    private var isBusy: Bool {
        dataInFlight > 0 || scheduledWorkPending > 0
            || slots.contains {
                $0.status == .joining
                    || ($0.status == .active
                        && ($0.backlog > 0 || $0.pausedUntil != nil || ($0.core?.isWedged ?? false) && !$0.minority
                            || ($0.core?.hasUndelivered ?? false)))
            }
    }

    // MARK: - Engine

    private func schedule(at time: UInt64, _ kind: Scheduled.Kind) {
        order += 1
        queue.insert(Scheduled(time: time, order: order, kind: kind))
    }

    private func isLive(_ slot: Int) -> Bool { slots[slot].status == .active || slots[slot].status == .joining }

    public var traceEnabled = false

    private func processNext() {
        guard let event = queue.popMin() else { return }
        if traceEnabled {
            switch event.kind {
            case .arrival, .timer, .control, .burst, .joinRetry, .resume: break
            default: print("t=\(event.time / 1_000_000)ms \(event.kind)")
            }
        }
        precondition(event.time >= now, "virtual time went back from \(now) to \(event.time)")
        now = event.time
        eventsProcessed += 1
        switch event.kind {
        case .arrival(let to, let toID, let from, _, let message):
            if case .data = message { dataInFlight -= 1 }
            if !isLive(to) || slots[to].id != toID || isDown(from, to) {
                messagesLost += 1
            } else if slots[to].pausedUntil != nil {
                slots[to].deferred.append(event.kind)
            } else {
                handle(event.kind)
            }
        case .control(let to, let toID, let from, _):
            if !isLive(to) || (toID != nil && slots[to].id != toID) || isDown(from, to) {
                messagesLost += 1
            } else if slots[to].pausedUntil != nil {
                slots[to].deferred.append(event.kind)
            } else {
                handle(event.kind)
            }
        case .timer(let slot):
            guard isLive(slot), slots[slot].timerQueuedAt == event.time else { return }  // superseded by an earlier one
            slots[slot].timerQueuedAt = nil
            guard let wanted = slots[slot].timerAt else { return }
            if wanted > now {
                queueTimer(slot, at: wanted)
                return
            }
            slots[slot].timerAt = nil
            if slots[slot].pausedUntil != nil {
                slots[slot].deferred.append(event.kind)
            } else {
                handle(event.kind)
            }
        case .pause(let slot, let until):
            scheduledWorkPending -= 1
            guard isLive(slot) else { return }
            // The process defers everything until `until`; overlapping pauses merge.
            slots[slot].pausedUntil = max(slots[slot].pausedUntil ?? 0, until)
            schedule(at: until, .resume(slot))
        case .burst, .leave, .joinRetry:
            if case .joinRetry = event.kind {} else { scheduledWorkPending -= 1 }
            guard isLive(event.kind.slot) else { return }
            if slots[event.kind.slot].pausedUntil != nil {
                slots[event.kind.slot].deferred.append(event.kind)
            } else {
                handle(event.kind)
            }
        case .crash(let slot):
            scheduledWorkPending -= 1
            guard isLive(slot) else { return }
            slots[slot].status = .crashed
            slots[slot].pausedUntil = nil
            slots[slot].deferred = []
            slots[slot].backlog = 0  // its application is gone too
        case .failLink(let from, let to):
            scheduledWorkPending -= 1
            linkFailed[from][to] = true
            failedConnections.insert([slots[from].id.rawValue, slots[to].id.rawValue])
        case .healLinks:
            scheduledWorkPending -= 1
            for from in linkFailed.indices {
                for to in linkFailed.indices { linkFailed[from][to] = false }
            }
        case .restart(let slot):
            scheduledWorkPending -= 1
            startIncarnation(slot)
        case .recoverStragglers:
            scheduledWorkPending -= 1
            // Stuck: wedged for longer than two failure timeouts (a member busy installing a view
            // is wedged for a few round trips only).
            let stuckAfter = 2 * configuration.failureTimeout.nanosecondsClamped
            for slot in slots.indices {
                switch slots[slot].status {
                case .crashed, .removed: startIncarnation(slot)
                case .active:
                    if let wedgedAt = slots[slot].wedgedAt, now - wedgedAt > stuckAfter { startIncarnation(slot) }
                case .joining, .dormant: break
                }
            }
            // An operator keeps looking while the group has not settled (a member can get stuck
            // after a sweep, when a late view change leaves it in a minority): up to ten sweeps.
            sweeps += 1
            let unsettled = slots.contains { $0.status == .joining || ($0.status == .active && ($0.core?.isWedged ?? false)) }
            if unsettled && sweeps < 10 {
                scheduledWorkPending += 1
                schedule(at: now + 3 * configuration.failureTimeout.nanosecondsClamped, .recoverStragglers)
            }
        case .resume(let slot):
            guard isLive(slot), let until = slots[slot].pausedUntil, until <= now else { return }  // extended
            slots[slot].pausedUntil = nil
            let deferred = slots[slot].deferred
            slots[slot].deferred = []
            for kind in deferred where isLive(slot) { handle(kind) }
        }
    }

    /// The process in `slot` starts as a new member and asks a random live member to add it.
    private func startIncarnation(_ slot: Int) {
        let id = MemberID(nextMemberID)
        nextMemberID += 1
        let old = slots[slot]
        let fresh = Slot(id: id, status: .joining, core: nil)
        fresh.pausedUntil = nil
        slots[slot] = fresh
        slotOfMember[id] = slot
        histories[id] = History()
        if old.status == .active || old.status == .joining {
            // A restart of a live process: the old incarnation is gone as if crashed.
            messagesLost += 0
        }
        askToJoin(slot, excluding: nil)
    }

    private func askToJoin(_ slot: Int, excluding: Int?) {
        let contacts = slots.indices.filter { $0 != slot && $0 != excluding && slots[$0].status == .active }
        slots[slot].joinAskedAt = now
        schedule(at: now + joinRetryInterval.nanosecondsClamped, .joinRetry(slot, slots[slot].id))
        guard let contact = contacts.randomElement(using: &random) else { return }
        sendControl(.join(slots[slot].id), from: slot, to: contact, toID: slots[contact].id)
    }

    /// The member handles one event now, then its application and effects run.
    private func handle(_ kind: Scheduled.Kind) {
        switch kind {
        case .arrival(let to, _, let from, let fromID, let message):
            guard let core = slots[to].core else {
                holdFuture(to, fromID, message)
                return
            }
            let viewID = message.viewID
            if viewID > core.view.id {
                holdFuture(to, fromID, message)
                if let rank = core.view.rank(of: fromID) { feed(to, .heard(fromMemberRank: rank)) }
            } else if viewID == core.view.id, let rank = core.view.rank(of: fromID) {
                feed(to, .received(message, fromMemberRank: rank))
                pump(to)
            } else if viewID < core.view.id, let last = core.lastRowOfPreviousView, last.viewID == viewID,
                slots[to].answeredStragglers.insert([fromID.rawValue, viewID.rawValue]).inserted
            {
                // The sender is still in a view this member has left: it missed the install.
                // This member's last row of that view carries it (once per straggler and view).
                transmit(.row(last), from: to, to: from, toID: fromID)
            }
        case .control(let to, _, let from, let control):
            handleControl(to, from: from, control)
        case .timer(let slot):
            guard slots[slot].core != nil else { return }
            feed(slot, .tick(Timestamp(nanoseconds: now)))
            pump(slot)
        case .burst(let slot, let count):
            // An application whose member does not send in its view has nothing to send with.
            if let core = slots[slot].core, core.senderRank == nil { return }
            slots[slot].backlog += count
            if slots[slot].core != nil { pump(slot) }
        case .leave(let slot):
            guard slots[slot].core != nil else { return }
            slots[slot].core!.leave()
            pump(slot)
        case .joinRetry(let slot, let id):
            guard slots[slot].id == id, slots[slot].status == .joining else { return }
            // Not welcomed in time (the leader may have failed, or added this incarnation and
            // died before welcoming it): try again as a new incarnation.
            startIncarnation(slot)
        case .pause, .resume, .crash, .failLink, .healLinks, .restart, .recoverStragglers:
            preconditionFailure("pauses and faults are never deferred")
        }
    }

    private func holdFuture(_ slot: Int, _ from: MemberID, _ message: Message) {
        guard slots[slot].future.count < futureMessagesMax else {
            coreErrors.append("\(slots[slot].id) at \(now)ns: more than \(futureMessagesMax) messages of future views held")
            return
        }
        slots[slot].future.append((from, message))
    }

    private func handleControl(_ slot: Int, from: Int, _ control: Control) {
        switch control {
        case .join(let joiner):
            guard slots[slot].core != nil else { return }
            switch slots[slot].core!.requestJoin(joiner) {
            case .accepted: pump(slot)
            case .redirect(let leader):
                if let leaderSlot = slotOfMember[leader], slots[from].id == joiner {
                    sendControl(.redirect(leader), from: slot, to: from, toID: joiner)
                    _ = leaderSlot
                }
            case .refused: break  // the joiner retries after joinRetryInterval
            }
        case .redirect(let leader):
            guard slots[slot].status == .joining, let leaderSlot = slotOfMember[leader], leaderSlot != slot else { return }
            sendControl(.join(slots[slot].id), from: slot, to: leaderSlot, toID: leader)
        case .welcome(let view, let rank, let state, let skip):
            guard slots[slot].status == .joining, view.members.indices.contains(rank), view.members[rank] == slots[slot].id else {
                return
            }
            do {
                slots[slot].core = try OrderingCore(configuration: configuration, view: view, memberRank: rank)
            } catch {
                coreErrors.append("\(slots[slot].id): cannot start in \(view): \(error)")
                return
            }
            slots[slot].core!.skipResentMessages(skip)
            slots[slot].status = .active
            slots[slot].app = state
            histories[slots[slot].id]?.initialState = state
            histories[slots[slot].id]?.installs.append(
                ViewRecord(viewID: view.id.rawValue, members: view.members, stateDigest: state.digest))
            feed(slot, .tick(Timestamp(nanoseconds: now)))
            replayFuture(slot)
            pump(slot)
        }
    }

    /// Feeds the held traffic of the view just installed; keeps what is for later views.
    private func replayFuture(_ slot: Int) {
        guard let view = slots[slot].core?.view else { return }
        let held = slots[slot].future
        slots[slot].future = []
        for (from, message) in held {
            if message.viewID > view.id {
                slots[slot].future.append((from, message))
            } else if message.viewID == view.id, let rank = view.rank(of: from) {
                feed(slot, .received(message, fromMemberRank: rank))
            }
        }
    }

    private func feed(_ slot: Int, _ event: Event) {
        do {
            let before = traceEnabled ? slots[slot].core!.suspectedRanks : []
            try slots[slot].core!.handle(event)
            if traceEnabled, slots[slot].core!.suspectedRanks != before {
                print("t=\(now / 1_000_000)ms slot \(slot) \(slots[slot].id) \(slots[slot].core!.view.id) suspects \(slots[slot].core!.suspectedRanks) after \(event)".prefix(300))
            }
        } catch {
            coreErrors.append("\(slots[slot].id) at \(now)ns: \(error)")
        }
    }

    /// Lets the member's application submit what the window admits, then polls and carries out
    /// the effects; repeats while deliveries or a new view open the window for more.
    private func pump(_ slot: Int) {
        while slots[slot].status == .active, slots[slot].core != nil {
            let submitted = submitBacklog(slot)
            effects.removeAll(keepingCapacity: true)
            let oldView = slots[slot].core!.view
            let ledOldView = slots[slot].core!.leaderRank == slots[slot].core!.memberRank
            let before = traceEnabled ? slots[slot].core!.suspectedRanks : []
            slots[slot].core!.poll(into: &effects)
            if traceEnabled, slots[slot].core!.view == oldView, slots[slot].core!.suspectedRanks != before {
                print("t=\(now / 1_000_000)ms slot \(slot) \(slots[slot].id) \(oldView.id) suspects \(slots[slot].core!.suspectedRanks)")
            }
            let progressed = carryOut(slot, oldView: oldView, ledOldView: ledOldView)
            guard slots[slot].status == .active, slots[slot].core != nil else { break }
            if slots[slot].backlog == 0 || (submitted == 0 && !progressed) { break }
            if slots[slot].core!.sendCapacity == 0 { break }
        }
    }

    private func submitBacklog(_ slot: Int) -> Int {
        let count = min(slots[slot].backlog, slots[slot].core!.sendCapacity)
        let id = slots[slot].id
        for _ in 0..<count {
            let sequence = slots[slot].nextSenderSequence
            let payload = makePayload(sender: id, sequence: sequence)
            do {
                try slots[slot].core!.send(payload)
            } catch {
                coreErrors.append("\(id) send #\(sequence): \(error)")
                return 0
            }
            histories[id]?.sent.append(SentRecord(senderSequence: sequence, payloadDigest: payloadDigest(payload)))
            slots[slot].nextSenderSequence += 1
            slots[slot].backlog -= 1
        }
        return count
    }

    /// Carries out the effects of one poll. Sends before an `installView` go to the old view's
    /// members, later ones to the new view's. Returns whether anything opened the window.
    private func carryOut(_ slot: Int, oldView: View, ledOldView: Bool) -> Bool {
        var progressed = false
        var currentView = oldView
        let id = slots[slot].id
        for effect in effects {
            switch effect {
            case .sendData(let batch):
                for member in currentView.members where member != id {
                    guard let to = slotOfMember[member] else { continue }
                    dataInFlight += 1
                    transmit(.data(batch), from: slot, to: to, toID: member)
                }
            case .sendRow(let row):
                for member in currentView.members where member != id {
                    guard let to = slotOfMember[member] else { continue }
                    transmit(.row(row), from: slot, to: to, toID: member)
                }
            case .deliver(let delivery):
                progressed = true
                let record = Self.record(of: delivery)
                slots[slot].app.apply(record)
                histories[id]?.delivered.append(record)
            case .wedged:
                slots[slot].wedgedAt = now
                slots[slot].everWedged = true
                slots[slot].sentWhenWedged = sentRecords(slot).count
            case .installView(let view, _):
                progressed = true
                lastInstallAt = now
                histories[id]?.installs.append(
                    ViewRecord(viewID: view.id.rawValue, members: view.members, stateDigest: slots[slot].app.digest))
                slots[slot].wedgedAt = nil
                slots[slot].minority = false
                if ledOldView {
                    for (rank, member) in view.members.enumerated() where !currentView.members.contains(member) {
                        guard let to = slotOfMember[member] else { continue }
                        let skip = slots[slot].core!.resentAlreadyDelivered
                        sendControl(.welcome(view, rank: rank, slots[slot].app, skip: skip), from: slot, to: to, toID: member)
                    }
                }
                currentView = view
                replayFuture(slot)
            case .removed:
                slots[slot].status = .removed
                histories[id]?.removed = true
                slots[slot].backlog = 0
                return progressed
            case .minority:
                slots[slot].minority = true
            case .armTimer(let at):
                let time = max(at.nanoseconds, now)
                slots[slot].timerAt = time
                if let queued = slots[slot].timerQueuedAt, queued <= time { break }
                queueTimer(slot, at: time)
            }
        }
        return progressed
    }

    /// Whether the connection from the incarnation in `from` to the one in `to` is down. A
    /// connection that loses anything stays broken for good (TCP does not skip bytes): only new
    /// incarnations connect afresh after a heal.
    private func isDown(_ from: Int, _ to: Int) -> Bool {
        let connection = [slots[from].id.rawValue, slots[to].id.rawValue]
        if linkFailed[from][to] {
            failedConnections.insert(connection)
            return true
        }
        return failedConnections.contains(connection)
    }

    private func queueTimer(_ slot: Int, at time: UInt64) {
        slots[slot].timerQueuedAt = time
        schedule(at: time, .timer(slot))
    }

    private func linkDelay(from: Int, to: Int, data: Bool) -> UInt64 {
        let base = linkDelayBase[from][to]
        var delay = base + UInt64.random(in: 0...base, using: &random)
        if random.chance(spikeProbability) {
            delay += UInt64.random(in: 0...spikeDelayMax.nanosecondsClamped, using: &random)
        }
        // Data queues behind data (a full window on a slow link): often much later than rows.
        if data, random.chance(0.5) { delay += UInt64.random(in: 0...(7 * base), using: &random) }
        // FIFO per lane: never arrive before an earlier message on the same lane of the link.
        let lane = data ? 1 : 0
        let arrival = max(now + delay, lastArrival[from][to][lane])
        lastArrival[from][to][lane] = arrival
        return arrival
    }

    private func transmit(_ message: Message, from: Int, to: Int, toID: MemberID) {
        if isDown(from, to) {
            messagesLost += 1
            if case .data = message { dataInFlight -= 1 }
            return
        }
        let isData: Bool
        switch message {
        case .data: isData = true
        case .row: isData = false
        }
        schedule(at: linkDelay(from: from, to: to, data: isData), .arrival(to: to, toID: toID, from: from, fromID: slots[from].id, message))
    }

    private func sendControl(_ control: Control, from: Int, to: Int, toID: MemberID?) {
        if isDown(from, to) {
            messagesLost += 1
            return
        }
        schedule(at: linkDelay(from: from, to: to, data: false), .control(to: to, toID: toID, from: from, control))
    }

    private func makePayload(sender: MemberID, sequence: UInt64) -> Payload {
        let filler = Int.random(in: 0...payloadFillerBytesMax, using: &random)
        var bytes = [UInt8]()
        bytes.reserveCapacity(16 + filler)
        withUnsafeBytes(of: sender.rawValue.littleEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: sequence.littleEndian) { bytes.append(contentsOf: $0) }
        for _ in 0..<filler { bytes.append(UInt8.random(in: 0...255, using: &random)) }
        return bytes[...]
    }

    /// Reads the header the simulated applications put in every payload.
    static func record(of delivery: Delivery) -> DeliveredRecord {
        let payload = delivery.payload
        var sender: UInt64 = 0
        var sequence: UInt64 = 0
        if payload.count >= 16 {
            let start = payload.startIndex
            for k in 0..<8 {
                sender |= UInt64(payload[start + k]) << (8 * UInt64(k))
                sequence |= UInt64(payload[start + 8 + k]) << (8 * UInt64(k))
            }
        }
        // A payload whose header disagrees with the core's sender shows up as created.
        let named = MemberID(sender)
        return DeliveredRecord(
            sender: named == delivery.sender ? named : MemberID(UInt64.max), senderSequence: sequence,
            payloadDigest: payloadDigest(payload), viewID: delivery.viewID.rawValue)
    }
}

extension SimulatedGroup.Scheduled.Kind {
    /// The slot of a per-slot event.
    var slot: Int {
        switch self {
        case .burst(let slot, _), .leave(let slot), .joinRetry(let slot, _), .timer(let slot), .pause(let slot, _),
            .resume(let slot), .crash(let slot), .restart(let slot):
            return slot
        case .arrival(let to, _, _, _, _), .control(let to, _, _, _): return to
        case .failLink(let from, _): return from
        case .healLinks, .recoverStragglers: return 0
        }
    }
}
