// The on-disk format of a member's log.
//
// A log is a directory of segments, `segment-<number, 16 hex digits>.log`, each preallocated to
// `segmentBytes` (zeros past the data). A segment starts with a 32-byte header:
//
//     magic "LKSTLOG1" | u64 segment number | u64 index of its first record | u32 0 | u32 CRC32C
//
// and holds records, never split across segments:
//
//     u32 body length | u32 CRC32C of kind and body | u8 kind | body
//
// (integers little endian). A group commit is the records appended since the last one followed
// by a commit record (kind 0xC0; body: u64 commit number, u64 records before this commit record
// and after it, that is the index the next record gets), then one fdatasync. Recovery keeps
// exactly the records covered by the last commit it can trust (LogRecovery).

/// What a record holds. The storage layer reads kinds 0xC0 and up itself; the rest belong to the
/// layer above (entries delivered, views, ragged trims, checkpoints).
public struct LogRecordKind: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let entry = LogRecordKind(rawValue: 0x01)
    public static let view = LogRecordKind(rawValue: 0x02)
    public static let raggedTrim = LogRecordKind(rawValue: 0x03)
    public static let checkpoint = LogRecordKind(rawValue: 0x04)
    /// Ends a group commit (the storage layer's own).
    public static let commit = LogRecordKind(rawValue: 0xC0)
}

/// A record as the layer above sees it: its index in the log, its kind and its body.
public struct LogRecord: Sendable, Equatable {
    public var index: UInt64
    public var kind: LogRecordKind
    public var body: [UInt8]

    public init(index: UInt64, kind: LogRecordKind, body: [UInt8]) {
        self.index = index
        self.kind = kind
        self.body = body
    }
}

enum LogFormat {
    static let magic: [UInt8] = Array("LKSTLOG1".utf8)
    static let segmentHeaderBytes = 32
    static let recordHeaderBytes = 9
    static let commitBodyBytes = 16

    static func segmentName(_ number: UInt64) -> String {
        let hex = String(number, radix: 16)
        return "segment-" + String(repeating: "0", count: max(0, 16 - hex.count)) + hex + ".log"
    }

    /// The segment number in `name`, if it names a segment.
    static func segmentNumber(_ name: String) -> UInt64? {
        guard name.hasPrefix("segment-"), name.hasSuffix(".log"), name.count == 8 + 16 + 4 else { return nil }
        return UInt64(name.dropFirst(8).prefix(16), radix: 16)
    }

    static func segmentHeader(number: UInt64, firstIndex: UInt64) -> [UInt8] {
        var bytes = magic
        append(number, to: &bytes)
        append(firstIndex, to: &bytes)
        append(UInt32(0), to: &bytes)
        append(CRC32C.checksum(bytes), to: &bytes)
        return bytes
    }

    /// The header's segment number and first index, or nil when it is not a valid header.
    static func readSegmentHeader(_ bytes: ArraySlice<UInt8>) -> (number: UInt64, firstIndex: UInt64)? {
        guard bytes.count >= segmentHeaderBytes else { return nil }
        let start = bytes.startIndex
        guard bytes[start..<start + 8].elementsEqual(magic) else { return nil }
        let crc = UInt32(truncatingIfNeeded: integer(bytes, at: start + 28, width: 4))
        guard CRC32C.checksum(bytes[start..<start + 28]) == crc else { return nil }
        return (integer(bytes, at: start + 8, width: 8), integer(bytes, at: start + 16, width: 8))
    }

    static func recordBytes(bodyBytes: Int) -> Int { recordHeaderBytes + bodyBytes }

    static func appendRecord(kind: LogRecordKind, body: [UInt8], to bytes: inout [UInt8]) {
        append(UInt32(body.count), to: &bytes)
        var crc = CRC32C.checksum(byte: kind.rawValue)
        crc = body.withUnsafeBytes { CRC32C.checksum($0, extending: crc) }
        append(crc, to: &bytes)
        bytes.append(kind.rawValue)
        bytes.append(contentsOf: body)
    }

    static func commitBody(number: UInt64, nextIndex: UInt64) -> [UInt8] {
        var body: [UInt8] = []
        append(number, to: &body)
        append(nextIndex, to: &body)
        return body
    }

    static func append<Integer: FixedWidthInteger>(_ value: Integer, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    static func integer(_ bytes: ArraySlice<UInt8>, at offset: Int, width: Int) -> UInt64 {
        var value: UInt64 = 0
        for shift in 0..<width { value |= UInt64(bytes[offset + shift]) << (8 * UInt64(shift)) }
        return value
    }
}

/// What parsing a segment found at one offset.
enum ParsedRecord {
    /// A record whose checksum holds, and the offset after it.
    case record(kind: LogRecordKind, body: ArraySlice<UInt8>, end: Int)
    /// Zeros where a record header would start: the end of the segment's data.
    case end
    /// Bytes that are no valid record (a torn write, a bit flip, garbage).
    case damaged(String)
}

extension LogFormat {
    /// The record at `offset` of a segment's bytes, checked; no record is longer than
    /// `recordBytesMax`.
    static func parse(_ bytes: [UInt8], at offset: Int, recordBytesMax: Int) -> ParsedRecord {
        guard offset + recordHeaderBytes <= bytes.count else {
            return bytes[offset...].allSatisfy { $0 == 0 } ? .end : .damaged("a record header cut by the segment's end")
        }
        let slice = bytes[...]
        let length = Int(integer(slice, at: offset, width: 4))
        let crc = UInt32(truncatingIfNeeded: integer(slice, at: offset + 4, width: 4))
        let kind = bytes[offset + 8]
        if length == 0, crc == 0, kind == 0 { return .end }
        guard length <= recordBytesMax else { return .damaged("a record length of \(length) bytes") }
        let bodyStart = offset + recordHeaderBytes
        guard bodyStart + length <= bytes.count else { return .damaged("a record running past the segment's end") }
        let body = bytes[bodyStart..<bodyStart + length]
        var actual = CRC32C.checksum(byte: kind)
        actual = body.withUnsafeBytes { CRC32C.checksum($0, extending: actual) }
        guard actual == crc else { return .damaged("a record whose checksum fails") }
        return .record(kind: LogRecordKind(rawValue: kind), body: body, end: bodyStart + length)
    }
}
