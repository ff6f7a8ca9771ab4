// The member shell, sans IO: one member across views. `OrderingCore` is one member in one view;
// what happens around a view change is the same for every shell that drives it (the runtime over
// TCP or RDMA, the simulator), so it lives here, once:
//
// - Traffic by view. A frame of the current view goes to the core; one of a later view (its
//   sender installed that view first) is held, bounded, until this member installs it, and its
//   sender counts as heard; one of an earlier view comes from a straggler that missed the install,
//   which is answered, once per straggler and view, with this member's last row of that view.
// - Audiences. What the core emits before `installView` belongs to the old view and goes to the
//   old view's members; what follows goes to the new view's. Every send effect names its view.
// - Welcomes. The member a joiner asked (and whose connection it waits on) welcomes it when a
//   view with the joiner is installed; and any member of a view the joiner belongs to welcomes
//   it when it asks, so a joiner whose join was committed by a leader that then failed is not
//   left out. A welcome carries everything the joiner needs besides the application's snapshot
//   and the addresses: the view, its rank, and (unordered mode) how many of each sender's first
//   messages the snapshot already holds.
// - One name for a peer: `MemberID`. Ranks are looked up in the current view here, and nowhere
//   in a shell.
//
// What stays in a shell is IO: links, encodings, the relay's blocks, the application.

/// A frame a shell may have to hold for a view this member has not installed yet. The core's
/// `Message` is one; a runtime adds frames of its own (the relay's blocks).
public protocol HeldTraffic: Sendable {
    /// The view the frame belongs to.
    var viewID: ViewID { get }
    /// What the frame is counted as against the hold's byte bound.
    var heldBytes: Int { get }
    /// The core message, if the frame is one (else the shell processes it when it is replayed).
    var message: Message? { get }
    init(_ message: Message)
}

extension Message: HeldTraffic {
    public var heldBytes: Int {
        switch self {
        case .row: return TrafficHold<Message>.rowBytesEstimate
        case .data(let batch):
            return batch.entries.reduce(TrafficHold<Message>.batchBytesEstimate) { total, entry in
                switch entry {
                case .message(let payload): return total + TrafficHold<Message>.entryBytesEstimate + payload.count
                case .nulls: return total + TrafficHold<Message>.entryBytesEstimate
                }
            }
        }
    }

    public var message: Message? { self }

    public init(_ message: Message) { self = message }
}

/// Where a frame goes, by its view (`Member.route`).
public enum Route: Sendable, Equatable {
    /// The current view: the sender's rank in it.
    case current(rank: Int)
    /// A later view: the shell holds the frame (`Member.hold`).
    case later
    /// An earlier view, or a sender that is not in the current view: dropped (a straggler is
    /// answered by the member shell).
    case dropped
}

/// Where a joiner starts: what a welcome carries besides the snapshot and the addresses.
public struct JoinerStart: Sendable, Equatable {
    public var view: View
    public var memberRank: Int
    /// Unordered mode: per sender rank of `view`, how many of the sender's first messages in the
    /// view the welcoming member's state (the joiner's snapshot) already holds. Empty in ordered
    /// mode (nothing of a view with the joiner is delivered before the joiner holds it).
    public var skip: [UInt64]

    public init(view: View, memberRank: Int, skip: [UInt64]) {
        self.view = view
        self.memberRank = memberRank
        self.skip = skip
    }
}

/// What the shell must do, with the audience of every send resolved.
public enum MemberEffect: Sendable, Equatable {
    /// Send the batch to every member of `to` but this one, per-link FIFO.
    case sendData(DataBatch, to: View)
    /// Send the row to every member of `to` but this one. Latest wins: an unsent older row of
    /// the same view may be replaced, but never a row with an install by one of a later view.
    case sendRow(Row, to: View)
    /// Send the row to one member: a straggler still in a view this member left.
    case sendRowTo(Row, member: MemberID)
    case deliver(Delivery)
    case armTimer(at: Timestamp)
    /// This member wedged in its view, suspecting these members.
    case wedged(suspected: [MemberID])
    /// `view` is installed; everything emitted before belongs to `previous`. Frames held for
    /// `view` are now to be replayed (`takeHeldTraffic`).
    case installed(View, memberRank: Int, previous: View)
    /// Welcome `joiner` into `start.view` with this member's application state as its snapshot.
    case welcome(MemberID, JoinerStart)
    case removed(reason: String)
    case minority(reachable: Int, of: Int)
    /// Durable mode: log this ragged trim of `view` before the deliveries that follow it (what
    /// the trim releases), then the install.
    case raggedTrim([UInt64], view: ViewID)
    /// More is held for later views than the bound: stop reading from this member until the
    /// next install (it is ahead, not wrong: nothing it sent is dropped).
    case pauseReading(MemberID)
    /// Read from this member again.
    case resumeReading(MemberID)
}

/// Counters of the member shell.
public struct MemberStatistics: Sendable, Equatable {
    public init() {}
    public var framesHeld: UInt64 = 0
    /// Held rows replaced by a later row of the same member and view.
    public var heldRowsCoalesced: UInt64 = 0
    public var framesReplayed: UInt64 = 0
    public var staleFramesDropped: UInt64 = 0
    public var stragglersAnswered: UInt64 = 0
    public var readingPauses: UInt64 = 0
    public var welcomesSent: UInt64 = 0
}

/// The hold for traffic of later views: frames in arrival order, rows coalesced (the newest row
/// of each member and view replaces the one held, in place), bounded in frames and bytes.
public struct TrafficHold<Frame: HeldTraffic>: Sendable {
    // Estimates of what a held frame's decoded structures take besides its payload bytes.
    public static var rowBytesEstimate: Int { 256 }
    public static var batchBytesEstimate: Int { 64 }
    public static var entryBytesEstimate: Int { 16 }

    /// Past either bound the shell stops reading from the sender. What an honest member can
    /// send ahead of this member's install is bounded: its data (and the relay's blocks of
    /// others' data) by the windows of the next view, which need this member's acknowledgements
    /// to move, and its rows by coalescing. So the bounds hold each member of the view's window
    /// twice over, and a member that passes them is only paused, never dropped.
    public private(set) var framesMax = 0
    public private(set) var bytesMax = 0
    public private(set) var bytes = 0
    private var frames: [(member: MemberID, frame: Frame)] = []
    /// Where the held row of (member, view) is in `frames`.
    private var rowAt: [RowKey: Int] = [:]

    private struct RowKey: Hashable {
        var member: MemberID
        var viewID: ViewID
    }

    public init(configuration: Configuration, memberCount: Int) {
        setBounds(configuration: configuration, memberCount: memberCount)
    }

    /// The bounds for a view of `memberCount` members.
    public mutating func setBounds(configuration: Configuration, memberCount: Int) {
        let members = max(memberCount, 1)
        framesMax = 2 * configuration.windowMessagesMax * members + 4 * members
        bytesMax = 2 * (configuration.windowBytesMax + configuration.messageBytesMax) * members
    }

    public var count: Int { frames.count }
    public var isEmpty: Bool { frames.isEmpty }
    public var isFull: Bool { frames.count >= framesMax || bytes >= bytesMax }

    /// Holds `frame`; returns true if the hold was coalesced into a held row.
    @discardableResult
    public mutating func hold(_ frame: Frame, from member: MemberID) -> Bool {
        if case .row = frame.message {
            let key = RowKey(member: member, viewID: frame.viewID)
            if let at = rowAt[key] {
                frames[at].frame = frame
                return true
            }
            rowAt[key] = frames.count
        }
        frames.append((member, frame))
        bytes += frame.heldBytes
        return false
    }

    /// The frames of `view`, in arrival order; frames of later views stay, earlier ones go.
    public mutating func take(for view: ViewID) -> [(member: MemberID, frame: Frame)] {
        var taken: [(member: MemberID, frame: Frame)] = []
        var kept: [(member: MemberID, frame: Frame)] = []
        for entry in frames {
            if entry.frame.viewID == view {
                taken.append(entry)
            } else if entry.frame.viewID > view {
                kept.append(entry)
            }
        }
        frames = []
        rowAt = [:]
        bytes = 0
        for entry in kept { hold(entry.frame, from: entry.member) }
        return taken
    }
}

/// One member across views: the core, and every rule around a view change (see the top).
public struct Member<Frame: HeldTraffic>: Sendable {
    /// The core of the current view.
    public private(set) var core: OrderingCore
    public let id: MemberID
    public private(set) var statistics = MemberStatistics()
    private var hold: TrafficHold<Frame>
    private var paused: Set<MemberID> = []
    /// Effects of events handled since the last poll (answers to stragglers, pauses).
    private var outbox: [MemberEffect] = []
    private var coreEffects: [Effect] = []
    /// (member, view) pairs answered with this member's last row of that view.
    private var answered: Set<Straggler> = []
    /// Joiners that asked this member and wait on it for their welcome.
    private var joinersWaiting: Set<MemberID> = []
    private var replayDue = false
    /// The members of the view before the current one (empty in the first view).
    private var previousMembers: Set<MemberID> = []

    private struct Straggler: Hashable {
        var member: MemberID
        var viewID: ViewID
    }

    /// A member of the first view.
    public init(configuration: Configuration, view: View, memberRank: Int) throws(CoreSetupError) {
        let core = try OrderingCore(configuration: configuration, view: view, memberRank: memberRank)
        self.init(core: core)
    }

    /// A joiner, from its welcome.
    public init(configuration: Configuration, joining start: JoinerStart) throws(CoreSetupError) {
        var core = try OrderingCore(configuration: configuration, view: start.view, memberRank: start.memberRank)
        core.skipResentMessages(start.skip)
        self.init(core: core)
    }

    private init(core: OrderingCore) {
        self.core = core
        self.id = core.view.members[core.memberRank]
        self.hold = TrafficHold(configuration: core.configuration, memberCount: core.view.memberCount)
        coreEffects.reserveCapacity(64)
    }

    public var view: View { core.view }

    /// Frames held for later views.
    public var heldFrames: Int { hold.count }
    public var heldBytes: Int { hold.bytes }

    // MARK: - Events

    /// Where a frame of `viewID` from `member` goes. A frame of a later view makes its sender
    /// heard (it is alive, whatever this member is doing); one of an earlier view from a member
    /// still there is answered with this member's last row of that view (once).
    public mutating func route(_ viewID: ViewID, from member: MemberID) -> Route {
        let rank = core.view.rank(of: member)
        if viewID == core.view.id, let rank, rank != core.memberRank { return .current(rank: rank) }
        if viewID > core.view.id {
            if let rank, rank != core.memberRank { hear(rank) }
            return .later
        }
        statistics.staleFramesDropped += 1
        if viewID < core.view.id, let last = core.lastRowOfPreviousView, last.viewID == viewID,
            answered.insert(Straggler(member: member, viewID: viewID)).inserted
        {
            statistics.stragglersAnswered += 1
            outbox.append(.sendRowTo(last, member: member))
        }
        return .dropped
    }

    /// Holds a frame `route` sent to `.later`. Past the hold's bound the shell is told to stop
    /// reading from the sender until the next install.
    public mutating func hold(_ frame: Frame, from member: MemberID) {
        if hold.hold(frame, from: member) {
            statistics.heldRowsCoalesced += 1
        } else {
            statistics.framesHeld += 1
        }
        if hold.isFull, paused.insert(member).inserted {
            statistics.readingPauses += 1
            outbox.append(.pauseReading(member))
        }
    }

    /// A core message from `member`: handed to the core, held, or dropped, by its view. Throws
    /// when the core refuses it (a protocol violation: the shell closes that member's link).
    @discardableResult
    public mutating func receive(_ message: Message, from member: MemberID) throws(CoreError) -> Route {
        let route = route(message.viewID, from: member)
        switch route {
        case .current(let rank): try core.receive(message, fromMemberRank: rank)
        case .later: hold(Frame(message), from: member)
        case .dropped: break
        }
        return route
    }

    /// The frames held for the view just installed, in arrival order, for the shell to feed again
    /// (`receive` for core messages, its own path for its own frames).
    public mutating func takeHeldTraffic() -> [(member: MemberID, frame: Frame)] {
        replayDue = false
        let frames = hold.take(for: core.view.id)
        statistics.framesReplayed += UInt64(frames.count)
        return frames
    }

    /// Whether frames held for the current view wait to be replayed (after an install).
    public var hasHeldTrafficToReplay: Bool { replayDue }

    /// The link to `member` failed: suspect it at once (if it is in the view).
    public mutating func linkFailed(_ member: MemberID) {
        guard let rank = core.view.rank(of: member), rank != core.memberRank else { return }
        core.suspect(rank)
    }

    /// `member` is alive (the shell knows it by other means: it is starting, or it is done).
    public mutating func heard(_ member: MemberID) {
        guard let rank = core.view.rank(of: member) else { return }
        hear(rank)
    }

    private mutating func hear(_ rank: Int) {
        core.lastHeard[rank] = core.now
    }

    public mutating func tick(_ time: Timestamp) { core.tick(time) }

    public mutating func send(_ payload: Payload) throws(CoreError) { try core.send(payload) }

    public mutating func leave() { core.leave() }

    /// Durable mode: the log holds everything before view `viewID` and its global sequences below
    /// `upTo` (`Event.persisted`). A report for a view already left changes nothing.
    public mutating func persisted(upTo: UInt64, viewID: ViewID) {
        // Never throws: the event is checked by precondition, and ignored for another view.
        try? core.handle(.persisted(upTo: upTo, viewID: viewID))
    }

    /// A joiner asks this member to add it. The leader accepts (and this member welcomes the
    /// joiner once a view with it is installed); a member of a view the joiner is already in
    /// welcomes it now; others redirect or refuse.
    public mutating func requestJoin(_ joiner: MemberID) -> JoinRequestAnswer {
        if let rank = core.view.rank(of: joiner), isJoinerNotStarted(rank) {
            statistics.welcomesSent += 1
            return .welcome(JoinerStart(view: core.view, memberRank: rank, skip: core.skipForJoiner))
        }
        switch core.requestJoin(joiner) {
        case .accepted:
            joinersWaiting.insert(joiner)
            return .accepted
        case .redirect(let leader): return .redirect(leader: leader)
        case .refused(let reason): return .refused(reason: reason)
        }
    }

    /// The joiner's connection to this member is gone: it no longer waits on it.
    public mutating func joinerGone(_ joiner: MemberID) { joinersWaiting.remove(joiner) }

    /// The member at `rank` joined in the current view (it was not in the previous one) and this
    /// member holds nothing from it yet: it has not started (a started member does not ask to
    /// join), so nothing of this view is delivered anywhere without it in ordered mode, and in
    /// unordered mode the welcome says what its snapshot holds.
    private func isJoinerNotStarted(_ rank: Int) -> Bool {
        guard core.configuration.viewChanges, !core.isRemoved, rank != core.memberRank,
            !previousMembers.isEmpty, !previousMembers.contains(core.view.members[rank])
        else { return false }
        let row = core.row(ofMemberRank: rank)
        return row.seq == 0 && row.delivered == 0 && row.received.allSatisfy { $0 == 0 }
    }

    // MARK: - Effects

    /// Collects what to do after the events fed since the last poll, audiences resolved.
    public mutating func poll(into effects: inout [MemberEffect]) {
        effects.append(contentsOf: outbox)
        outbox.removeAll(keepingCapacity: true)
        var audience = core.view
        coreEffects.removeAll(keepingCapacity: true)
        core.poll(into: &coreEffects)
        for effect in coreEffects {
            switch effect {
            case .sendData(let batch): effects.append(.sendData(batch, to: audience))
            case .sendRow(let row): effects.append(.sendRow(row, to: audience))
            case .deliver(let delivery): effects.append(.deliver(delivery))
            case .armTimer(let at): effects.append(.armTimer(at: at))
            case .wedged(let ranks): effects.append(.wedged(suspected: ranks.map { audience.members[$0] }))
            case .installView(let view, let rank):
                effects.append(.installed(view, memberRank: rank, previous: audience))
                installed(view, rank: rank, previous: audience, into: &effects)
                audience = view
            case .removed(let reason): effects.append(.removed(reason: reason))
            case .minority(let reachable, let of): effects.append(.minority(reachable: reachable, of: of))
            case .raggedTrim(let trim): effects.append(.raggedTrim(trim, view: audience.id))
            }
        }
    }

    /// Convenience for tests: polls into a fresh array.
    public mutating func poll() -> [MemberEffect] {
        var effects: [MemberEffect] = []
        poll(into: &effects)
        return effects
    }

    private mutating func installed(_ view: View, rank: Int, previous: View, into effects: inout [MemberEffect]) {
        previousMembers = Set(previous.members)
        for (joinerRank, joiner) in view.members.enumerated()
        where !previousMembers.contains(joiner) && joinersWaiting.contains(joiner) {
            statistics.welcomesSent += 1
            effects.append(
                .welcome(joiner, JoinerStart(view: view, memberRank: joinerRank, skip: core.skipForJoiner)))
        }
        // A joiner not in this view waits on this member only while this member still has its
        // join to propose (the core carries the joins of a leader that stays leader).
        joinersWaiting = joinersWaiting.filter { !view.members.contains($0) && core.pendingJoiners.contains($0) }
        for member in paused.sorted() { effects.append(.resumeReading(member)) }
        paused = []
        // Answers are for stragglers of the view before the current one, which starts now: none yet.
        answered = []
        hold.setBounds(configuration: core.configuration, memberCount: view.memberCount)
        replayDue = !hold.isEmpty
    }
}
/// A member's answer to a join request (`Member.requestJoin`).
public enum JoinRequestAnswer: Sendable, Equatable {
    /// The joiner will be in a later view; this member welcomes it then.
    case accepted
    /// The joiner is in this member's view already: welcome it now.
    case welcome(JoinerStart)
    case redirect(leader: MemberID)
    case refused(reason: String)
}
