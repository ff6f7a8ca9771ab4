// What a durable member writes, sans IO: the runtime (a GroupCommitLog thread on a real disk)
// and the simulator (a LogAppender on the simulated disk, its syncs scheduled by the seed) both
// drive this one type, so the rules below are the same in both:
//
// - What the member delivers in one poll goes into entries records (cut at `entriesBytesMax`).
// - A ragged trim is logged before the deliveries it releases; a view after everything the
//   member delivered before it (and first of all, the view the member starts in).
// - Progress is kept as marks: "once the first `records` records are durable, this member has
//   logged everything before view `viewID` and its global sequences below `upTo`", which the
//   shell feeds to the core (`Member.persisted`) once the log says that many records are durable.
//
// Memory is bounded by the protocol, not here: in durable mode the window counts from the
// persistence frontier, so at most a window per sender is delivered and not yet durable.

import LockstepCore

/// The durable member's records and progress marks, sans IO.
public struct DurableJournal: Sendable {
    private struct Mark: Sendable {
        var records: Int
        var viewID: ViewID
        var upTo: UInt64
    }

    /// An entries record is cut once it holds this many bytes: small enough that its buffer
    /// comes from the allocator's free lists rather than a fresh mapping of zeroed pages (a
    /// queued record keeps its buffer until it is written, so buffers are never reused in place).
    public static let entriesBytesMax = 96 * 1_024

    private var entries: [UInt8] = []
    private var entriesCount = 0
    private var pending: [(kind: LogRecordKind, body: [UInt8])] = []
    /// Records handed out by `takeRecords` (and pending) since the journal started.
    public private(set) var recordsQueued = 0
    private var marks: [Mark] = []
    private var marksStart = 0
    private var lastMark: (viewID: ViewID, upTo: UInt64)?

    public init() {}

    /// The view this member starts in, or installs (after the last view's deliveries).
    public mutating func logView(_ view: View) {
        flushEntries()
        queue(.view, DurableRecords.view(view))
        mark(view.id, upTo: 0)
    }

    /// A ragged trim, before the deliveries it releases.
    public mutating func logRaggedTrim(_ trim: [UInt64], viewID: ViewID) {
        flushEntries()
        queue(.raggedTrim, DurableRecords.raggedTrim(trim, viewID: viewID))
    }

    /// A delivery, into this poll's entries record. A record that this delivery would take past
    /// `entriesBytesMax` is queued first: a record holds at most `entriesBytesMax`, or one
    /// delivery and its headers (`recordBytes(messageBytesMax:)`).
    public mutating func logDelivery(_ delivery: Delivery) {
        if entriesCount > 0,
            entries.count + DurableRecords.deliveryHeaderBytes + delivery.payload.count > Self.entriesBytesMax
        {
            flushEntries()
        }
        if entriesCount == 0 {
            entries.reserveCapacity(Self.entriesBytesMax + DurableRecords.deliveryHeaderBytes + delivery.payload.count)
            DurableRecords.startEntries(delivery.viewID, into: &entries)
        }
        DurableRecords.appendDelivery(delivery, into: &entries)
        entriesCount += 1
    }

    /// The largest record the journal writes when no message exceeds `messageBytesMax`.
    public static func recordBytes(messageBytesMax: Int) -> Int {
        max(entriesBytesMax, DurableRecords.entriesHeaderBytes + DurableRecords.deliveryHeaderBytes + messageBytesMax)
    }

    /// The end of a poll: its entries are queued, and the mark says how far the view's
    /// deliveries go (`delivered`, nulls included: a poll that released only nulls moves the
    /// mark without a record).
    public mutating func endPoll(viewID: ViewID, delivered: UInt64) {
        flushEntries()
        mark(viewID, upTo: delivered)
    }

    /// Records wait for the log, or marks for the member: a sync has work.
    public var hasWork: Bool { !pending.isEmpty || marksStart < marks.count }

    /// Whether a mark not taken yet is durable once `durableRecords` records are.
    public func hasMarks(durableBy durableRecords: Int) -> Bool {
        marksStart < marks.count && marks[marksStart].records <= durableRecords
    }

    /// The records queued since the last call, in order, for the log.
    public mutating func takeRecords() -> [(kind: LogRecordKind, body: [UInt8])] {
        let taken = pending
        pending = []
        return taken
    }

    /// The marks that are durable once the first `durableRecords` records are, oldest first.
    public mutating func takeDurableMarks(durableRecords: Int) -> [(viewID: ViewID, upTo: UInt64)] {
        var taken: [(viewID: ViewID, upTo: UInt64)] = []
        while marksStart < marks.count, marks[marksStart].records <= durableRecords {
            taken.append((marks[marksStart].viewID, marks[marksStart].upTo))
            marksStart += 1
        }
        if marksStart > 1_024, marksStart * 2 > marks.count {
            marks.removeFirst(marksStart)
            marksStart = 0
        }
        return taken
    }

    private mutating func flushEntries() {
        guard entriesCount > 0 else { return }
        DurableRecords.finishEntries(count: entriesCount, in: &entries)
        entriesCount = 0
        // The log's queue holds this buffer now: the next record starts in a fresh one, rather
        // than have its first write copy this one out from under the queue.
        let record = entries
        entries = []
        queue(.entry, record)
    }

    private mutating func queue(_ kind: LogRecordKind, _ body: [UInt8]) {
        pending.append((kind, body))
        recordsQueued += 1
    }

    private mutating func mark(_ viewID: ViewID, upTo: UInt64) {
        if let last = lastMark, last.viewID == viewID, last.upTo >= upTo { return }
        lastMark = (viewID, upTo)
        marks.append(Mark(records: recordsQueued, viewID: viewID, upTo: upTo))
    }
}
