// The durable member's log, event-loop side (Configuration.durable). What the member delivers
// goes into one entries record per poll; a ragged trim is logged before what it releases; a
// view after everything delivered before it. The records go to a GroupCommitLog, whose thread
// writes whatever has queued as one group with one fdatasync: delivery never waits on the
// disk. Progress comes back as marks: "once the first `records` records are durable, this
// member has logged everything before view `viewID` and its global sequences below `upTo`",
// which the runtime feeds to the core (`Member.persisted`), and the core's row carries on.
//
// Memory is bounded by the protocol, not here: in durable mode the window counts from the
// persistence frontier, so at most a window per sender is delivered and not yet durable.

import Foundation
import LockstepCore
import LockstepStorage

/// Figures of the durable log, for statistics and the bench.
public struct DurableLogStatistics: Sendable, Equatable, Codable {
    /// Group commits (one fdatasync each), records and record bytes written.
    public var commits = 0
    public var records = 0
    public var bytes = 0
    public var syncNanoseconds: UInt64 = 0
    /// This member's own count (the row's `persisted`: 1 + global sequences of the view durable
    /// here, 0 before the view's start is durable) and the group's persistence frontier (global
    /// sequences of the view durable on every member), both of the current view.
    public var persistedHere: UInt64 = 0
    public var persistenceFrontier: UInt64 = 0
    public init() {}
}

final class DurableLog {
    private struct Mark {
        var records: Int
        var viewID: ViewID
        var upTo: UInt64
    }

    let path: String
    let log: GroupCommitLog
    private var entries: [UInt8] = []
    private var entriesCount = 0
    private var recordsQueued = 0
    private var marks: [Mark] = []
    private var marksStart = 0
    private var lastMark: (viewID: ViewID, upTo: UInt64)?

    /// Opens the log in `path` (created if missing). A directory that already holds records is
    /// refused: restarting from a log is not built yet, and appending a second run after a first
    /// would make one log of two histories.
    init(
        path: String, settings: LogSettings, onPersisted: @escaping @Sendable () -> Void,
        onFailure: @escaping @Sendable (StorageError) -> Void
    ) throws(RuntimeError) {
        self.path = path
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw RuntimeError(.invalidSettings, "data directory \(path): cannot create it: \(error)")
        }
        let directory: PosixLogDirectory
        let recovered: RecoveredLog
        let appender: LogAppender
        do {
            directory = try PosixLogDirectory(path: path)
            recovered = try LogRecovery.recover(directory, settings: settings) { _ in }
        } catch {
            throw RuntimeError(.storageFailed, "data directory \(path): \(error)")
        }
        guard recovered.records == 0 else {
            throw RuntimeError(
                .invalidSettings,
                "data directory \(path) holds a log of \(recovered.records) records from an earlier run: "
                    + "restarting from a log is not built yet; give an empty directory")
        }
        do {
            appender = try LogAppender(directory: directory, settings: settings, recovered: recovered)
        } catch {
            throw RuntimeError(.storageFailed, "data directory \(path): \(error)")
        }
        log = GroupCommitLog(appender: appender, onPersisted: { _ in onPersisted() }, onFailure: onFailure)
    }

    /// Logs the view this member starts in, or installs (after the last view's deliveries).
    func logView(_ view: View) throws(StorageError) {
        try flushEntries()
        try append(.view, DurableRecords.view(view))
        mark(view.id, upTo: 0)
    }

    /// Logs a ragged trim, before the deliveries it releases.
    func logRaggedTrim(_ trim: [UInt64], viewID: ViewID) throws(StorageError) {
        try flushEntries()
        try append(.raggedTrim, DurableRecords.raggedTrim(trim, viewID: viewID))
    }

    /// Adds a delivery to this poll's entries record (a record is cut at `entriesBytesMax`).
    func logDelivery(_ delivery: Delivery) throws(StorageError) {
        if entriesCount == 0 {
            entries.reserveCapacity(Self.entriesBytesMax + DurableRecords.deliveryHeaderBytes + delivery.payload.count)
            DurableRecords.startEntries(delivery.viewID, into: &entries)
        }
        DurableRecords.appendDelivery(delivery, into: &entries)
        entriesCount += 1
        if entries.count >= Self.entriesBytesMax { try flushEntries() }
    }

    /// An entries record is cut once it holds this many bytes: small enough that its buffer
    /// comes from the allocator's free lists rather than a fresh mapping of zeroed pages (the
    /// log's queue holds each record until it is written, so a buffer is never reused in place).
    static let entriesBytesMax = 96 * 1_024

    /// Ends the poll: queues its entries and marks how far the view's deliveries go (`delivered`,
    /// nulls included: a poll that released only nulls advances the mark without a record).
    func endPoll(viewID: ViewID, delivered: UInt64) throws(StorageError) {
        try flushEntries()
        mark(viewID, upTo: delivered)
    }

    /// The marks that are durable now, oldest first (the runtime feeds each to the core).
    func takeDurableMarks() -> [(viewID: ViewID, upTo: UInt64)] {
        let durable = log.recordsPersisted
        var taken: [(viewID: ViewID, upTo: UInt64)] = []
        while marksStart < marks.count, marks[marksStart].records <= durable {
            taken.append((marks[marksStart].viewID, marks[marksStart].upTo))
            marksStart += 1
        }
        if marksStart > 1_024, marksStart * 2 > marks.count {
            marks.removeFirst(marksStart)
            marksStart = 0
        }
        return taken
    }

    func statistics() -> DurableLogStatistics {
        let figures = log.statistics
        var statistics = DurableLogStatistics()
        statistics.commits = figures.commits
        statistics.records = figures.records
        statistics.bytes = figures.bytes
        statistics.syncNanoseconds = figures.syncNanoseconds
        return statistics
    }

    private func flushEntries() throws(StorageError) {
        guard entriesCount > 0 else { return }
        DurableRecords.finishEntries(count: entriesCount, in: &entries)
        entriesCount = 0
        // The log's queue holds this buffer now: start the next record in a fresh one, rather
        // than have the next write copy this one out from under the queue.
        let record = entries
        entries = []
        try append(.entry, record)
    }

    private func append(_ kind: LogRecordKind, _ body: [UInt8]) throws(StorageError) {
        try log.appendBoundedByCaller(kind: kind, body: body)
        recordsQueued += 1
    }

    private func mark(_ viewID: ViewID, upTo: UInt64) {
        if let last = lastMark, last.viewID == viewID, last.upTo >= upTo { return }
        lastMark = (viewID, upTo)
        marks.append(Mark(records: recordsQueued, viewID: viewID, upTo: upTo))
    }
}
