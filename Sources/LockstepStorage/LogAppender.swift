// Appending group commits to a log, synchronously: the group-commit thread (GroupCommitLog)
// drives it on real disks, the simulator drives it on its simulated disk, with the same code.

/// Writes group commits at the tail a recovery left.
public final class LogAppender {
    public let settings: LogSettings
    private let directory: any LogDirectory
    private var segment: UInt64
    private var file: (any LogFile)?
    private var offset: Int
    /// The index the next record gets.
    public private(set) var nextIndex: UInt64
    public private(set) var lastCommit: UInt64
    /// Where the next record goes: a segment and an offset in it.
    public var tail: (segment: UInt64, offset: Int) { (segment, offset) }
    /// Set once a write or sync failed: the log is stopped at its last commit.
    public private(set) var failure: StorageError?
    private var writeBuffer: [UInt8] = []
    /// A write buffer up to this size is kept for the next group (a larger one is let go).
    static let writeBufferKeptBytesMax = 64 * 1_024 * 1_024

    /// Goes on after `recovered` (a new log when it found nothing).
    public init(directory: any LogDirectory, settings: LogSettings, recovered: RecoveredLog) throws(StorageError) {
        try settings.validate()
        self.directory = directory
        self.settings = settings
        nextIndex = recovered.nextIndex
        lastCommit = recovered.lastCommit
        if let last = recovered.segments.last {
            segment = last
            file = try directory.open(LogFormat.segmentName(last), create: false)
            offset = recovered.tailOffset
        } else {
            segment = 0
            offset = 0
            try startSegment(number: 0)
        }
    }

    deinit { file?.close() }

    /// Appends `records` and a commit record, then syncs: when it returns, they are durable.
    /// Returns the index the next record gets. After a failure nothing more is written (the log
    /// stays as its last commit left it) and every call throws that failure.
    @discardableResult
    public func commit(_ records: [(kind: LogRecordKind, body: [UInt8])]) throws(StorageError) -> UInt64 {
        if let failure { throw failure }
        do {
            return try write(records)
        } catch {
            failure = error
            throw error
        }
    }

    private func write(_ records: [(kind: LogRecordKind, body: [UInt8])]) throws(StorageError) -> UInt64 {
        // One buffer for every group, kept: a fresh one per group of megabytes costs a mapping
        // and its zeroed pages each time (seen in perf as clear_page, beside the copy itself).
        var buffer = writeBuffer
        writeBuffer = []
        defer {
            buffer.removeAll(keepingCapacity: buffer.capacity <= Self.writeBufferKeptBytesMax)
            writeBuffer = buffer
        }
        buffer.reserveCapacity(records.reduce(0) { $0 + LogFormat.recordBytes(bodyBytes: $1.body.count) } + 64)
        var index = nextIndex
        let commitBytes = LogFormat.recordBytes(bodyBytes: LogFormat.commitBodyBytes)
        for record in records {
            precondition(record.kind != .commit, "commit records are the log's own")
            guard record.body.count <= settings.recordBytesMax else {
                throw StorageError(.invalidSettings, "a record of \(record.body.count) bytes exceeds recordBytesMax")
            }
            // Room for this record and the commit that may follow it, or a new segment.
            if offset + buffer.count + LogFormat.recordBytes(bodyBytes: record.body.count) + commitBytes
                > settings.segmentBytes
            {
                try flush(&buffer)
                try startSegment(number: segment + 1, firstIndex: index)
            }
            LogFormat.appendRecord(kind: record.kind, body: record.body, to: &buffer)
            index += 1
        }
        // The loop kept room for the commit after each record; an empty group needs its own check.
        if offset + buffer.count + commitBytes > settings.segmentBytes {
            try flush(&buffer)
            try startSegment(number: segment + 1, firstIndex: index)
        }
        let number = lastCommit + 1
        LogFormat.appendRecord(kind: .commit, body: LogFormat.commitBody(number: number, nextIndex: index), to: &buffer)
        try flush(&buffer)
        try file?.sync()
        nextIndex = index
        lastCommit = number
        return index
    }

    /// Writes `buffer` at the tail of the current segment.
    private func flush(_ buffer: inout [UInt8]) throws(StorageError) {
        guard !buffer.isEmpty, let file else { return }
        try file.write(buffer, at: offset)
        offset += buffer.count
        buffer.removeAll(keepingCapacity: true)
    }

    /// Creates segment `number`, preallocated, with its header written (synced with the commit
    /// that first writes to it; its directory entry now). The segment before it is synced first:
    /// a group that spans two segments is on disk in the first before it is written to the second.
    private func startSegment(number: UInt64, firstIndex: UInt64? = nil) throws(StorageError) {
        let name = LogFormat.segmentName(number)
        let created = try directory.open(name, create: true)
        do {
            try created.allocate(length: settings.segmentBytes)
            try created.write(LogFormat.segmentHeader(number: number, firstIndex: firstIndex ?? nextIndex), at: 0)
            try directory.sync()
        } catch {
            // A segment that could not be preallocated is not left behind, half made.
            created.close()
            try? directory.remove(name)
            throw error
        }
        try file?.sync()
        file?.close()
        file = created
        segment = number
        offset = LogFormat.segmentHeaderBytes
    }
}
