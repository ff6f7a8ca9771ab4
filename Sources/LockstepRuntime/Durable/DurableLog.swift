// The durable member's log, event-loop side (Configuration.durable): the journal's records
// (LockstepStorage's DurableJournal: what is logged, in which order, and the progress marks,
// the same rules the simulator runs) go to a GroupCommitLog, whose thread writes whatever has
// queued as one group with one fdatasync: delivery never waits on the disk. The runtime feeds
// the marks that are durable to the core (`Member.persisted`), and the core's row carries on.

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
    let path: String
    let log: GroupCommitLog
    private var journal = DurableJournal()

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
        journal.logView(view)
        try hand()
    }

    /// Logs a ragged trim, before the deliveries it releases.
    func logRaggedTrim(_ trim: [UInt64], viewID: ViewID) throws(StorageError) {
        journal.logRaggedTrim(trim, viewID: viewID)
        try hand()
    }

    /// A delivery goes into the journal only: its records reach the log's thread at the end of
    /// the poll (or at a trim or view), not once per message.
    func logDelivery(_ delivery: Delivery) {
        journal.logDelivery(delivery)
    }

    func endPoll(viewID: ViewID, delivered: UInt64) throws(StorageError) {
        journal.endPoll(viewID: viewID, delivered: delivered)
        try hand()
    }

    /// Marks are durable now and not yet taken.
    var hasDurableMarks: Bool { journal.hasMarks(durableBy: log.recordsPersisted) }

    /// The marks that are durable now, oldest first (the runtime feeds each to the core).
    func takeDurableMarks() -> [(viewID: ViewID, upTo: UInt64)] {
        journal.takeDurableMarks(durableRecords: log.recordsPersisted)
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

    /// Hands what the journal queued to the log's thread.
    private func hand() throws(StorageError) {
        for record in journal.takeRecords() { try log.appendBoundedByCaller(kind: record.kind, body: record.body) }
    }
}
