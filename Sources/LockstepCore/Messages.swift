// What members exchange: data batches (a sender's consecutive messages, nulls as counts) and
// rows (a member's monotonic counters). Both carry the view id. How they are framed on a
// wire is the transport's business; the core sees only these values.

/// A message body. A slice, so a transport can hand the core many messages cut from one
/// received buffer without an allocation per message.
public typealias Payload = ArraySlice<UInt8>

/// One entry in a data batch.
public enum BatchEntry: Sendable, Equatable {
    /// An application message.
    case message(Payload)
    /// `count` consecutive null messages: they hold places in the total order so an idle sender
    /// never stalls it, and are never delivered.
    case nulls(UInt64)

    /// How many message indices this entry occupies.
    @inline(__always)
    public var indexCount: UInt64 {
        switch self {
        case .message: return 1
        case .nulls(let count): return count
        }
    }
}

/// Consecutive messages of one sender, starting at `firstIndex`.
public struct DataBatch: Sendable, Equatable {
    public var viewID: ViewID
    /// The sender rank (position among the view's senders) of the sender.
    public var senderRank: Int
    /// The sender's index of the first entry.
    public var firstIndex: UInt64
    public var entries: [BatchEntry]

    public init(viewID: ViewID, senderRank: Int, firstIndex: UInt64, entries: [BatchEntry]) {
        self.viewID = viewID
        self.senderRank = senderRank
        self.firstIndex = firstIndex
        self.entries = entries
    }

    /// The index one past the last entry.
    public var endIndex: UInt64 { entries.reduce(firstIndex) { $0 + $1.indexCount } }
}

/// A member's counters, as a snapshot. Every counter only grows within a view, so rows can be
/// coalesced (latest wins), re-sent and applied idempotently (the receiver keeps the maximum).
///
/// Counters are counts, not highest indices: `received[s] == 5` means messages `0..<5` of sender
/// `s` are held; this avoids a "-1" for "nothing yet" in unsigned arithmetic.
public struct Row: Sendable, Equatable {
    public var viewID: ViewID
    /// Per sender rank: how many of that sender's messages (nulls included) are held, contiguously.
    public var received: [UInt64]
    /// The length of the prefix of the global order held locally: `min over s of received[s]*S + s`.
    public var seq: UInt64
    /// Ordered mode: how many global sequence numbers have been delivered (nulls included).
    /// Unordered mode: how many messages have been delivered, all senders together.
    public var delivered: UInt64
    /// The members this member suspects, as a bitmap by member rank (64 ranks a word). Like the
    /// counters it only grows within a view: a suspicion is never withdrawn.
    public var suspected: [UInt64]

    /// Membership (docs/MEMBERSHIP.md). The leader's proposal, or, in any other member's row,
    /// the proposal it acknowledged (a copy, so a later leader finds it in any survivor's row).
    public var proposal: ViewChange = .none
    /// The change the leader committed, or the copy a member took of it; `number` is the
    /// proposal under which it was committed. Comes with `trim`.
    public var commit: ViewChange = .none
    /// The ragged trim of `commit`: per sender rank, how many of its messages (nulls included)
    /// are delivered in this view. Empty while nothing is committed.
    public var trim: [UInt64] = []
    /// Leader only: the number of the commit it has installed (every survivor holds the trim).
    public var installNumber: UInt64 = 0
    /// Durable mode: 0 while this member's log does not yet hold the start of this view (for a
    /// member of the last view: everything it delivered there; a joiner's log starts here, its
    /// snapshot is not logged); then 1 + how many global sequences of this view (nulls included)
    /// are durably logged here. Counting the start as one lets a command delivered in an earlier
    /// view learn which members that had it have it on disk
    /// (`OrderingCore.membersWithViewStartPersisted`). Always 0 in in-memory mode.
    public var persisted: UInt64 = 0

    public init(viewID: ViewID, received: [UInt64], seq: UInt64, delivered: UInt64, suspected: [UInt64] = []) {
        self.viewID = viewID
        self.received = received
        self.seq = seq
        self.delivered = delivered
        self.suspected = suspected
    }

    /// Bitmap words for `memberCount` members.
    public static func suspicionWords(memberCount: Int) -> Int { (memberCount + 63) / 64 }

    public func isSuspected(_ rank: Int) -> Bool {
        let word = rank / 64
        return word < suspected.count && suspected[word] & (1 << UInt64(rank % 64)) != 0
    }
}

/// A membership change: members removed (a bitmap by member rank in the current view) and
/// members joining (appended, in this order, to the next view). `number` orders proposals:
/// `round << 16 | leaderRank`, so two leaders never issue the same number.
public struct ViewChange: Sendable, Equatable {
    public var number: UInt64
    public var removed: [UInt64]
    public var joiners: [MemberID]

    public init(number: UInt64, removed: [UInt64], joiners: [MemberID]) {
        self.number = number
        self.removed = removed
        self.joiners = joiners
    }

    /// No change: number 0.
    public static let none = ViewChange(number: 0, removed: [], joiners: [])

    public func isRemoved(_ rank: Int) -> Bool {
        let word = rank / 64
        return word < removed.count && removed[word] & (1 << UInt64(rank % 64)) != 0
    }
}

/// Anything a member sends to another member.
public enum Message: Sendable, Equatable {
    case data(DataBatch)
    case row(Row)

    public var viewID: ViewID {
        switch self {
        case .data(let batch): return batch.viewID
        case .row(let row): return row.viewID
        }
    }
}
