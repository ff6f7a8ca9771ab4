// Group commit off the caller's thread: appends queue up (bounded) while one thread writes
// everything queued as one group, syncs once, and says how far the log is durable. The event
// loop that delivers never waits on the disk; it learns of progress through `onPersisted`.

import Foundation
import Synchronization

/// Figures of a group-commit log.
public struct GroupCommitStatistics: Sendable, Equatable {
    public var commits = 0
    public var records = 0
    public var bytes = 0
    /// Time spent in write + fdatasync, summed.
    public var syncNanoseconds: UInt64 = 0
}

/// A log written by a thread of its own, one fdatasync per group of whatever was queued.
public final class GroupCommitLog: Sendable {
    private struct State {
        var queued: [(kind: LogRecordKind, body: [UInt8])] = []
        var queuedBytes = 0
        var closing = false
        var failure: StorageError?
        var persisted: UInt64
        var statistics = GroupCommitStatistics()
        /// The writer sleeps on `wakeUp` (set and cleared under this lock): only then does an
        /// append signal it. Signalling on every append cost a futex call per poll while the
        /// writer was busy anyway.
        var writerWaiting = false
    }

    private let state: Mutex<State>
    private let wakeUp = NSCondition()
    private let settings: LogSettings
    private let finished = Mutex<Bool>(false)

    /// Starts the writing thread on `appender`. `onPersisted(next)` is called on that thread
    /// after each sync: every record below index `next` is durable. `onFailure` once, when the
    /// log stops on an error (a full disk, an IO error): nothing after the last commit counts.
    public init(
        appender: sending LogAppender,
        onPersisted: @escaping @Sendable (UInt64) -> Void,
        onFailure: @escaping @Sendable (StorageError) -> Void
    ) {
        settings = appender.settings
        state = Mutex(State(persisted: appender.nextIndex))
        let box = AppenderBox(appender)
        let thread = Thread { [self] in
            self.writeLoop(box.appender, onPersisted: onPersisted, onFailure: onFailure)
        }
        thread.name = "lockstep-log"
        thread.start()
    }

    /// Queues a record and returns at once: `backPressure` when more than `pendingBytesMax`
    /// already waits for the disk, `stopped` after `close` or a failure.
    public func append(kind: LogRecordKind, body: [UInt8]) throws(StorageError) {
        try enqueue(kind: kind, body: body, bounded: true)
    }

    /// Queues a record whatever waits for the disk already: for a caller that bounds what it
    /// queues itself (the durable runtime: its window counts from the persistence frontier, so
    /// at most a window per sender waits). Throws `stopped` after `close` or a failure.
    public func appendBoundedByCaller(kind: LogRecordKind, body: [UInt8]) throws(StorageError) {
        try enqueue(kind: kind, body: body, bounded: false)
    }

    private func enqueue(kind: LogRecordKind, body: [UInt8], bounded: Bool) throws(StorageError) {
        let writerWaits = try state.withLock { state throws(StorageError) -> Bool in
            if let failure = state.failure { throw failure }
            if state.closing { throw StorageError(.stopped, "the log is closed") }
            // Refused here, alone: in the writer's batch it would stop the log for everyone.
            guard body.count <= settings.recordBytesMax else {
                let limit = settings.recordBytesMax
                throw StorageError(.invalidSettings, "a record of \(body.count) bytes exceeds recordBytesMax \(limit)")
            }
            guard !bounded || state.queuedBytes + body.count <= settings.pendingBytesMax || state.queued.isEmpty else {
                throw StorageError(.backPressure, "\(state.queuedBytes) bytes wait for the disk")
            }
            state.queued.append((kind, body))
            state.queuedBytes += body.count
            return state.writerWaiting
        }
        guard writerWaits else { return }
        wakeUp.lock()
        wakeUp.signal()
        wakeUp.unlock()
    }

    /// Queues a record unless `pendingBytesMax` already waits for the disk: false then (try
    /// again once `persisted` moves). Throws `stopped` after `close` or a failure.
    public func offer(kind: LogRecordKind, body: [UInt8]) throws(StorageError) -> Bool {
        do {
            try append(kind: kind, body: body)
            return true
        } catch  where error.code == .backPressure {
            return false
        }
    }

    /// Every record below this index is durable.
    public var persisted: UInt64 { state.withLock { $0.persisted } }
    /// How many of the records queued through this log are durable (commit records not counted;
    /// read it in `onPersisted` to map progress onto what was queued, in order).
    public var recordsPersisted: Int { state.withLock { $0.statistics.records } }
    public var statistics: GroupCommitStatistics { state.withLock { $0.statistics } }
    public var failure: StorageError? { state.withLock { $0.failure } }

    /// Writes what is queued, stops the thread, and waits for it (at most `timeout`).
    public func close(timeout: Duration = .seconds(30)) throws(StorageError) {
        state.withLock { $0.closing = true }
        wakeUp.lock()
        wakeUp.broadcast()
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        let deadline = Date().addingTimeInterval(seconds)
        while !finished.withLock({ $0 }) {
            if !wakeUp.wait(until: deadline) { break }
        }
        wakeUp.unlock()
        guard finished.withLock({ $0 }) else {
            throw StorageError(.io, "the log's last sync did not end within \(timeout)")
        }
        if let failure = state.withLock({ $0.failure }) { throw failure }
    }

    private func writeLoop(
        _ appender: LogAppender, onPersisted: @Sendable (UInt64) -> Void, onFailure: @Sendable (StorageError) -> Void
    ) {
        while true {
            wakeUp.lock()
            var batch: [(kind: LogRecordKind, body: [UInt8])] = []
            var closing = false
            while true {
                (batch, closing) = state.withLock { state in
                    let taken = state.queued
                    state.queued = []
                    state.queuedBytes = 0
                    // Checked and set together with the queue: an append after this sees it and
                    // signals, and its signal waits for this thread's wait (it holds wakeUp).
                    state.writerWaiting = taken.isEmpty && !state.closing
                    return (taken, state.closing)
                }
                if !batch.isEmpty || closing { break }
                wakeUp.wait()
            }
            wakeUp.unlock()
            if !batch.isEmpty, !commit(batch, appender, onPersisted: onPersisted, onFailure: onFailure) { break }
            if closing, state.withLock({ $0.queued.isEmpty }) { break }
        }
        finished.withLock { $0 = true }
        wakeUp.lock()
        wakeUp.broadcast()
        wakeUp.unlock()
    }

    /// One group: false when the log stopped.
    private func commit(
        _ batch: [(kind: LogRecordKind, body: [UInt8])], _ appender: LogAppender,
        onPersisted: @Sendable (UInt64) -> Void, onFailure: @Sendable (StorageError) -> Void
    ) -> Bool {
        let started = DispatchTime.now().uptimeNanoseconds
        do {
            let next = try appender.commit(batch)
            let elapsed = DispatchTime.now().uptimeNanoseconds - started
            state.withLock { state in
                state.persisted = next
                state.statistics.commits += 1
                state.statistics.records += batch.count
                state.statistics.bytes += batch.reduce(0) { $0 + $1.body.count }
                state.statistics.syncNanoseconds += elapsed
            }
            onPersisted(next)
            return true
        } catch {
            state.withLock { $0.failure = error }
            onFailure(error)
            return false
        }
    }
}

/// Hands the appender to the writing thread, which alone uses it from then on.
private final class AppenderBox: @unchecked Sendable {
    let appender: LogAppender
    init(_ appender: LogAppender) { self.appender = appender }
}
