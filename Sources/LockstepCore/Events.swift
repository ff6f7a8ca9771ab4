// The core's interface: events in, effects out. A shell (the simulator, a transport runtime,
// a benchmark) feeds events with `handle(_:)` and, whenever it has fed a batch of them, calls
// `poll(into:)` to collect what to do. Polling once per batch of events is what batches the
// output: one data batch carries every message submitted since the last poll, and one row
// update covers every counter change since the last poll.

/// Something that happened to a member.
public enum Event: Sendable, Equatable {
    /// A message arrived from the member at `fromMemberRank` over its (FIFO, reliable) link.
    case received(Message, fromMemberRank: Int)
    /// The application asks to send `payload`. Rejected with `.windowFull` when the window is
    /// full (see `OrderingCore.sendCapacity`); the shell then waits for a later poll.
    case sendRequested(Payload)
    /// The current time; the shell sends one at least when an armed timer fires.
    case tick(Timestamp)
    /// The link to the member at `memberRank` failed: suspect it at once.
    case linkFailed(memberRank: Int)
    /// The member at `memberRank` sent something the shell holds for a later view (it installed
    /// the next view first): it is alive, whatever else it is doing.
    case heard(fromMemberRank: Int)
    /// Durable mode: this member's log holds, durably, everything before view `viewID` and the
    /// global sequences below `upTo` of it (what it delivered: never more). Ignored for a view
    /// other than the current one; counts only grow.
    case persisted(upTo: UInt64, viewID: ViewID)
}

/// Something the shell must do.
public enum Effect: Sendable, Equatable {
    /// Send this batch to every other member of the view, keeping per-link FIFO order.
    case sendData(DataBatch)
    /// Send this row to every other member. Rows are latest-wins: a shell may drop an unsent
    /// older row of the same member when a newer one is queued.
    case sendRow(Row)
    /// Hand this message to the application.
    case deliver(Delivery)
    /// Call `handle(.tick(now))` no later than this time. A later `armTimer` replaces it.
    case armTimer(at: Timestamp)
    /// This member has wedged: it saw these member ranks suspected and sends no new message in
    /// this view. Emitted once per view; the view change follows.
    case wedged(suspectedRanks: [Int])
    /// The next view is installed. Everything emitted before this effect belongs to the old view
    /// (its last deliveries, up to the ragged trim, and the leader's last row, which the shell
    /// still sends to every member of the old view); everything after it to `view`, where this
    /// member now has rank `memberRank`. Members of `view` not in the old one are joiners: the
    /// leader's shell sends them the view and a state snapshot.
    case installView(View, memberRank: Int)
    /// Durable mode: the ragged trim of the view change under way (per sender rank, how many of
    /// its messages are delivered in this view), emitted before the deliveries it releases, so
    /// the shell logs it first.
    case raggedTrim([UInt64])
    /// This member was removed from the group (it failed, was suspected, or left). It delivers
    /// and sends nothing more; a process that wants back joins as a new incarnation.
    case removed(reason: String)
    /// This member can reach only `reachable` members of the `of` in its view: not a majority,
    /// so it must not form a view. It stays wedged (emitted once per view).
    case minority(reachable: Int, of: Int)
}

/// The leader's answer to a join request.
public enum JoinAnswer: Sendable, Equatable {
    /// The joiner will be in the next view; the leader's shell sends it the view and a snapshot.
    case accepted
    /// Ask the leader instead.
    case redirect(leader: MemberID)
    case refused(reason: String)
}

/// A message handed to the application.
public struct Delivery: Sendable, Equatable {
    public var viewID: ViewID
    /// The sender's identity.
    public var sender: MemberID
    /// The sender's rank among the view's senders.
    public var senderRank: Int
    /// The sender's index of this message in this view (nulls take indices too).
    public var index: UInt64
    /// The position in the view's total order; `nil` in unordered mode.
    public var globalSequence: UInt64?
    public var payload: Payload

    public init(
        viewID: ViewID, sender: MemberID, senderRank: Int, index: UInt64, globalSequence: UInt64?, payload: Payload
    ) {
        self.viewID = viewID
        self.sender = sender
        self.senderRank = senderRank
        self.index = index
        self.globalSequence = globalSequence
        self.payload = payload
    }
}

/// Why the core refused an event. None of these is fatal to the member: the shell logs it, and
/// for a protocol violation closes the offending link.
public struct CoreError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        // Refusals of the local application's send.
        case windowFull
        case notASender
        case messageTooLarge
        case wedged
        // Violations by a peer: the link that carried the message should be closed.
        case unknownMember
        case viewFromTheFuture
        case senderMismatch
        case gap
        case windowOverrun
        case emptyNullRun
        case malformedRow
    }

    public var code: Code
    public var detail: String

    public init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    /// True when a peer broke the protocol (as opposed to a refused local send).
    public var isProtocolViolation: Bool {
        switch code {
        case .windowFull, .notASender, .messageTooLarge, .wedged: return false
        case .unknownMember, .viewFromTheFuture, .senderMismatch, .gap, .windowOverrun, .emptyNullRun, .malformedRow:
            return true
        }
    }

    public var description: String { "\(code.rawValue): \(detail)" }
}

/// Counters for observability and tests.
public struct CoreStatistics: Sendable, Equatable {
    public init() {}
    public var messagesSubmitted: UInt64 = 0
    public var nullsCreated: UInt64 = 0
    public var dataBatchesSent: UInt64 = 0
    public var rowsSent: UInt64 = 0
    public var messagesDelivered: UInt64 = 0
    public var rowsApplied: UInt64 = 0
    public var staleViewMessagesIgnored: UInt64 = 0
    /// Members this member suspected itself (by timeout or link failure).
    public var suspicionsRaised: UInt64 = 0
    /// Ticks that came more than failureTimeout / 2 after the previous one: this member was
    /// stalled, and did not count the time against its peers.
    public var localStalls: UInt64 = 0
    /// Membership: proposals this member made as leader, commits it made, views it installed,
    /// own messages it re-sent in a new view (they were beyond the ragged trim), and rows it
    /// ignored because their sender was suspected.
    public var proposalsMade: UInt64 = 0
    public var commitsMade: UInt64 = 0
    public var viewsInstalled: UInt64 = 0
    public var messagesResent: UInt64 = 0
    public var rowsFromSuspectsIgnored: UInt64 = 0
}
