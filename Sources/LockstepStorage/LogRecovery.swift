// Recovery: which records of a log can be trusted after a crash, and what to cut.
//
// The writer starts a group's writes only after the previous group's fdatasync returned, so
// every group but the last one written is fully on disk. A record that fails its checksum is
// therefore either in the last group (torn by the crash: that group was never acknowledged, and
// it is cut) or in an earlier one (damage to data already durable: refused, never used). The
// two are told apart by the commit records after the damage: the torn group's own commit can
// only be the next number after the last trusted one; a commit numbered beyond it proves that a
// group was written after the damaged one was durable. (Damage to the last group itself cannot
// be told from a torn write: it is cut, and durable mode takes it from a peer again.)

/// What recovery found, and where the next record goes.
public struct RecoveredLog: Sendable, Equatable {
    /// The index the next record gets (every record below it is trusted and was visited).
    public var nextIndex: UInt64 = 0
    /// The number of the last trusted commit (0: none yet).
    public var lastCommit: UInt64 = 0
    /// Records visited (commit records not counted).
    public var records = 0
    /// Bytes of segment files read.
    public var bytesRead = 0
    /// Bytes cut from the tail: a torn or uncommitted last group.
    public var truncatedBytes = 0
    /// The segments kept, in order; the last one takes the next record at `tailOffset`.
    public var segments: [UInt64] = []
    public var tailOffset = LogFormat.segmentHeaderBytes
    /// What was cut, and why, for the operator's log.
    public var notes: [String] = []

    /// A log with nothing in it (a new one).
    public init() {}
}

public enum LogRecovery {
    /// Reads the log in `directory`, hands every trusted record to `visit` in order, cuts an
    /// untrusted tail, and says where appending goes on. A damaged record under a later commit
    /// throws `corrupt`, naming the segment and the offset.
    public static func recover(
        _ directory: any LogDirectory, settings: LogSettings, visit: (LogRecord) -> Void
    ) throws(StorageError) -> RecoveredLog {
        try settings.validate()
        return try withoutActuallyEscaping(visit) { visit throws(StorageError) in
            try recover(directory, settings: settings, scan: Scan(settings: settings, visit: visit))
        }
    }

    private static func recover(
        _ directory: any LogDirectory, settings: LogSettings, scan: consuming Scan
    ) throws(StorageError) -> RecoveredLog {
        let numbers = try directory.fileNames().compactMap(LogFormat.segmentNumber).sorted()
        var scan = scan
        for (position, number) in numbers.enumerated() {
            let file = try directory.open(LogFormat.segmentName(number), create: false)
            defer { file.close() }
            let bytes = try file.read(at: 0, count: try file.length())
            scan.found.bytesRead += bytes.count
            guard try scan.segment(number, bytes: bytes, isLast: position == numbers.count - 1) else {
                // Damage: everything after it is cut, if the commits after it allow (else thrown).
                var laterCommits = scan.commitsAfterDamage
                for later in numbers[(position + 1)...] {
                    let file = try directory.open(LogFormat.segmentName(later), create: false)
                    defer { file.close() }
                    laterCommits += Scan.commitRecords(in: try file.read(at: 0, count: try file.length()), from: 0)
                }
                try scan.refuseUnlessTorn(laterCommits: laterCommits)
                break
            }
        }
        try cut(directory, after: &scan, settings: settings, numbers: numbers)
        return scan.found
    }

    /// Cuts what follows the last trusted commit: the rest of its segment is zeroed again
    /// (truncated and preallocated), later segments are removed.
    private static func cut(
        _ directory: any LogDirectory, after scan: inout Scan, settings: LogSettings, numbers: [UInt64]
    ) throws(StorageError) {
        let keep = scan.trusted
        // Later segments go first, durably: a removed segment that came back after a crash, next
        // to a kept one already cut shorter, would no longer follow it and would read as damage.
        var removed = false
        for number in numbers where keep.map({ number > $0.segment }) ?? true {
            scan.found.notes.append("segment \(number) followed the last trusted commit: removed")
            try directory.remove(LogFormat.segmentName(number))
            removed = true
        }
        if removed { try directory.sync() }
        if let keep, keep.dataEnd > keep.offset {
            scan.found.truncatedBytes += keep.dataEnd - keep.offset
            let file = try directory.open(LogFormat.segmentName(keep.segment), create: false)
            defer { file.close() }
            try file.truncate(length: keep.offset)
            try file.allocate(length: settings.segmentBytes)
            try file.sync()
        }
        scan.found.segments = numbers.filter { number in keep.map { number <= $0.segment } ?? false }
        scan.found.tailOffset = keep?.offset ?? LogFormat.segmentHeaderBytes
    }
}

/// The state of one recovery pass.
struct Scan {
    let settings: LogSettings
    let visit: (LogRecord) -> Void
    var found = RecoveredLog()
    /// Records of the group not yet closed by a commit.
    var pending: [LogRecord] = []
    /// The index the next record parsed gets.
    var index: UInt64?
    /// Where the last trusted commit ends, and where the data of that segment ended.
    var trusted: (segment: UInt64, offset: Int, dataEnd: Int)?
    var damage: (segment: UInt64, offset: Int, reason: String)?
    /// The numbers of the commit records found after the damage.
    var commitsAfterDamage: [UInt64] = []

    init(settings: LogSettings, visit: @escaping (LogRecord) -> Void) {
        self.settings = settings
        self.visit = visit
    }

    /// Parses one segment; false when it found damage (recorded in `damage`).
    mutating func segment(_ number: UInt64, bytes: [UInt8], isLast: Bool) throws(StorageError) -> Bool {
        guard let header = LogFormat.readSegmentHeader(bytes[...]), header.number == number else {
            // A segment created but whose header never reached the disk is empty, not damaged.
            if isLast, bytes.allSatisfy({ $0 == 0 }) {
                found.notes.append("segment \(number) was created but never written: removed")
                return true
            }
            damage = (number, 0, "a damaged segment header")
            commitsAfterDamage = Self.commitRecords(in: bytes, from: 0)
            return false
        }
        if let index, index != header.firstIndex {
            damage = (number, 0, "a segment starting at record \(header.firstIndex), not \(index)")
            commitsAfterDamage = Self.commitRecords(in: bytes, from: LogFormat.segmentHeaderBytes)
            return false
        }
        index = header.firstIndex
        if trusted == nil { found.nextIndex = header.firstIndex }
        if trusted == nil { trusted = (number, LogFormat.segmentHeaderBytes, LogFormat.segmentHeaderBytes) }
        var offset = LogFormat.segmentHeaderBytes
        while true {
            switch LogFormat.parse(bytes, at: offset, recordBytesMax: settings.recordBytesMax) {
            case .end:
                if trusted?.segment == number { trusted?.dataEnd = offset }
                return true
            case .damaged(let reason):
                damage = (number, offset, reason)
                commitsAfterDamage = Self.commitRecords(in: bytes, from: offset + 1)
                if trusted?.segment == number { trusted?.dataEnd = bytes.count }
                return false
            case .record(let kind, let body, let end):
                if kind == .commit {
                    guard closeGroup(body: body, segment: number, end: end) else {
                        damage = (number, offset, "a commit record that does not follow the one before")
                        commitsAfterDamage = Self.commitRecords(in: bytes, from: offset + 1)
                        return false
                    }
                } else {
                    pending.append(LogRecord(index: index ?? 0, kind: kind, body: Array(body)))
                    index = (index ?? 0) + 1
                }
                offset = end
                if trusted?.segment == number { trusted?.dataEnd = offset }
            }
        }
    }

    /// A commit record: checks it closes exactly the pending group, then hands the group over.
    private mutating func closeGroup(body: ArraySlice<UInt8>, segment: UInt64, end: Int) -> Bool {
        guard body.count == LogFormat.commitBodyBytes else { return false }
        let number = LogFormat.integer(body, at: body.startIndex, width: 8)
        let nextIndex = LogFormat.integer(body, at: body.startIndex + 8, width: 8)
        guard nextIndex == index, found.lastCommit == 0 || number == found.lastCommit + 1 else { return false }
        for record in pending { visit(record) }
        found.records += pending.count
        pending.removeAll(keepingCapacity: true)
        found.lastCommit = number
        found.nextIndex = nextIndex
        trusted = (segment, end, end)
        return true
    }

    /// Damage was found: throws unless it can only be the torn last group.
    mutating func refuseUnlessTorn(laterCommits: [UInt64]) throws(StorageError) {
        guard let damage else { return }
        let beyond = laterCommits.filter { $0 != found.lastCommit + 1 }
        guard beyond.isEmpty, laterCommits.count <= 1 else {
            throw StorageError(
                .corrupt,
                "segment \(damage.segment) at byte \(damage.offset): \(damage.reason), under later commits "
                    + "\(laterCommits.prefix(4)); the log is not used past record \(found.nextIndex) "
                    + "(repair it from a peer)")
        }
        found.notes.append(
            "segment \(damage.segment) at byte \(damage.offset): \(damage.reason); the last group was torn and is cut")
    }

    /// The numbers of the well-formed commit records `bytes` holds from `start` on, at any offset
    /// (after damage the record boundaries are lost).
    static func commitRecords(in bytes: [UInt8], from start: Int) -> [UInt64] {
        let recordBytes = LogFormat.recordHeaderBytes + LogFormat.commitBodyBytes
        guard bytes.count >= recordBytes else { return [] }
        var numbers: [UInt64] = []
        var offset = max(start, 0)
        while offset + recordBytes <= bytes.count {
            if bytes[offset + 8] == LogRecordKind.commit.rawValue, bytes[offset] == UInt8(LogFormat.commitBodyBytes),
                bytes[offset + 1] == 0, bytes[offset + 2] == 0, bytes[offset + 3] == 0,
                case .record(_, let body, _) = LogFormat.parse(
                    bytes, at: offset, recordBytesMax: LogFormat.commitBodyBytes)
            {
                numbers.append(LogFormat.integer(body, at: body.startIndex, width: 8))
            }
            offset += 1
        }
        return numbers
    }
}
