// Durable mode in the runtime: the log is opened at start and fed from the effects of every
// poll (deliveries, ragged trims, installs: DurableLog); its thread's progress comes back to the
// event loop and into the core, whose row carries `persisted` to the others. A log that fails
// (a full disk, an IO error) makes the member leave: the group goes on without it, and its log
// ends at its last commit, never torn.

import LockstepCore
import LockstepStorage

/// Where persistence stands in this member's view (durable mode), as this member sees the rows.
public struct PersistenceProgress: Sendable, Equatable {
    public var viewID: ViewID
    /// The view's members.
    public var members: Set<MemberID>
    /// Global sequences of the view below this are durably logged by every member of the view.
    public var frontier: UInt64
    /// The members of the view whose logs hold its start: for one that was in an earlier
    /// view, everything it delivered there (a joiner's log starts at its join view).
    public var startPersisted: Set<MemberID>

    public init(viewID: ViewID, members: Set<MemberID>, frontier: UInt64, startPersisted: Set<MemberID>) {
        self.viewID = viewID
        self.members = members
        self.frontier = frontier
        self.startPersisted = startPersisted
    }
}

extension MemberRuntime {
    /// Durable mode: opens the log and logs the view this member starts in.
    func openDurableLog() throws {
        guard settings.configuration.durable else {
            guard settings.dataDirectory == nil else {
                throw RuntimeError(.invalidSettings, "dataDirectory is set but configuration.durable is off")
            }
            return
        }
        guard let path = settings.dataDirectory else {
            throw RuntimeError(.invalidSettings, "durable mode needs a dataDirectory")
        }
        let loop = eventLoop
        let log = try DurableLog(
            path: path, settings: Self.logSettings(settings),
            // Strong: the log's thread holds these only until it ends, at close.
            onPersisted: { loop.execute { self.logProgressed() } },
            onFailure: { error in loop.execute { self.storageFailed(error) } })
        durable = log
        do {
            try log.logView(settings.view)
        } catch {
            closeDurableLog()
            throw RuntimeError(.storageFailed, "data directory \(path): \(error)")
        }
    }

    /// The log's limits for these settings: a record holds one delivery of the largest message
    /// (or `entriesBytesMax` of smaller ones), and a segment at least one such record.
    static func logSettings(_ settings: RuntimeSettings) -> LogSettings {
        var log = LogSettings()
        log.recordBytesMax = DurableJournal.recordBytes(messageBytesMax: settings.configuration.messageBytesMax)
        log.segmentBytes = max(settings.logSegmentBytes, log.recordBytesMax + 64 * 1_024)
        log.pendingBytesMax = max(log.pendingBytesMax, log.recordBytesMax)
        return log
    }

    /// Sets the observer of the persistence frontier (durable mode), called on the event loop
    /// whenever it moves.
    public func setPersistenceObserver(_ observer: @escaping @Sendable (PersistenceProgress) -> Void) {
        eventLoop.execute {
            self.onPersistenceFrontier = observer
            self.reportPersistence()
        }
    }

    /// Runs one append to the log; a failure makes the member leave (once).
    func logging(_ append: (DurableLog) throws -> Void) {
        guard let durable, storageFailure == nil else { return }
        do {
            try append(durable)
        } catch {
            storageFailed(error as? StorageError ?? StorageError(.io, "\(error)"))
        }
    }

    /// The end of a poll: its deliveries go to the log as one record, and the frontier is told.
    func endDurablePoll() {
        guard durable != nil else { return }
        let core = shell.core
        logging { try $0.endPoll(viewID: core.view.id, delivered: core.ownRow.delivered) }
        reportPersistence()
        // A poll that delivered only nulls adds a mark without a record: it may be durable
        // already, and no commit would come to say so.
        if let durable, durable.hasDurableMarks { eventLoop.execute { self.logProgressed() } }
    }

    /// The log's thread made records durable: the core learns how far, and its row says so.
    func logProgressed() {
        guard let durable, !isClosed else { return }
        let marks = durable.takeDurableMarks()
        guard !marks.isEmpty else { return }
        for mark in marks { shell.persisted(upTo: mark.upTo, viewID: mark.viewID) }
        if isReady {
            poll()
        } else {
            reportPersistence()
        }
    }

    private func reportPersistence() {
        guard let observer = onPersistenceFrontier else { return }
        let core = shell.core
        let progress = PersistenceProgress(
            viewID: core.view.id, members: Set(core.view.members), frontier: core.persistenceFrontier,
            startPersisted: Set(core.membersWithViewStartPersisted))
        guard progress != reportedPersistence else { return }
        reportedPersistence = progress
        observer(progress)
    }

    /// The log stopped: nothing after its last commit counts. The member says why and leaves, so
    /// the group's window (which counts from the persistence frontier) does not wait on it.
    func storageFailed(_ error: StorageError) {
        guard storageFailure == nil, !isClosed else { return }
        storageFailure = error
        let reason = "the log in \(durable?.path ?? "?") stopped: \(error)"
        logger.error("\(reason); leaving the group")
        queueRefusal = RuntimeError(.storageFailed, reason)
        failQueuedSends(RuntimeError(.storageFailed, "\(reason) before the window took this message"))
        onEvent?(.storageFailed(reason: reason))
        eventLoop.execute {
            self.shell.leave()
            self.poll()
        }
    }

    /// Writes what is queued and stops the log's thread (at most 30 s: the disk's last sync).
    func closeDurableLog() {
        guard let durable else { return }
        do {
            try durable.log.close()
        } catch  where error.code != .stopped {
            logger.error("closing the log in \(durable.path): \(error)")
        } catch {
            // Stopped earlier, and said so then.
        }
    }
}
