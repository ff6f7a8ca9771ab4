// The delivery log: what a `lockstep node` member delivered, in order, one fixed-size record per
// delivery, written while it runs and read by `lockstep bench` and `chaos` to feed the checker.
// This file is its only writer and its only reader. Senders are `MemberID`s everywhere outside
// this file; inside a record a sender is its origin (member id - 1) in two bytes.

import Foundation
import LockstepCore

/// One delivery as a member's log records it.
public struct DeliveryLogRecord: Sendable, Equatable {
    public var sender: MemberID
    /// The sender's own count of its messages, from 0.
    public var senderSequence: UInt64
    /// The view the message was delivered in (at least 1).
    public var viewID: UInt64

    public init(sender: MemberID, senderSequence: UInt64, viewID: UInt64) {
        self.sender = sender
        self.senderSequence = senderSequence
        self.viewID = viewID
    }

    /// The record as the checker reads it. A log carries no payload digest (the member checked
    /// each payload's content when it delivered it), so every digest is 0, as is every sent one.
    public var delivered: DeliveredRecord {
        DeliveredRecord(sender: sender, senderSequence: senderSequence, payloadDigest: 0, viewID: viewID)
    }
}

/// A delivery log that cannot be written or read, with what is wrong and where.
public enum DeliveryLogError: Error, Equatable, CustomStringConvertible {
    /// There is no log at the path (the member never started, or the path is wrong).
    case missing(path: String)
    case cannotCreate(path: String)
    case writeFailed(path: String, reason: String)
    /// The log ends inside a record: `byteCount` is not a multiple of the record size.
    case truncated(path: String, byteCount: Int)
    /// The record at `position` names view 0, which no member installs.
    case noView(path: String, position: Int)

    public var description: String {
        switch self {
        case .missing(let path): return "no delivery log at \(path)"
        case .cannotCreate(let path): return "cannot create the delivery log \(path)"
        case .writeFailed(let path, let reason): return "cannot write the delivery log \(path): \(reason)"
        case .truncated(let path, let byteCount):
            return "the delivery log \(path) ends inside a record: \(byteCount) bytes is not a multiple of "
                + "\(DeliveryLog.recordBytes)"
        case .noView(let path, let position):
            return "the delivery log \(path) is malformed: record \(position) names view 0"
        }
    }
}

/// The log's format: per delivery, the sender's origin (member id - 1, u16), the sender sequence
/// (u64) and the view id (u64), little endian, 18 bytes.
public enum DeliveryLog {
    public static let recordBytes = 18
    private static let sequenceOffset = 2
    private static let viewOffset = 10

    /// The most senders a log can name: origins are two bytes.
    public static let originsMax = Int(UInt16.max) + 1

    /// A sender's origin: its member id - 1 (member ids start at 1). Workloads index per-sender
    /// tables by it.
    public static func origin(of sender: MemberID) -> Int {
        precondition(sender.rawValue >= 1, "member ids start at 1, got \(sender)")
        return Int(sender.rawValue - 1)
    }

    /// The sender of an origin.
    public static func sender(ofOrigin origin: Int) -> MemberID {
        precondition(origin >= 0, "an origin is a member id - 1, got \(origin)")
        return MemberID(UInt64(origin) + 1)
    }

    /// Appends one record's bytes.
    public static func encode(_ record: DeliveryLogRecord, into bytes: inout [UInt8]) {
        let origin = origin(of: record.sender)
        precondition(origin < originsMax, "\(record.sender) does not fit a delivery log's two-byte origin")
        precondition(record.viewID >= 1, "a delivery happens in a view (ids from 1), got view \(record.viewID)")
        withUnsafeBytes(of: UInt16(origin).littleEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: record.senderSequence.littleEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: record.viewID.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// What to do with a log that ends inside a record.
    public enum Tail: Sendable {
        /// It is an error: a member that stopped cleanly wrote whole records.
        case whole
        /// Drop the partial record: a member killed while writing may leave one.
        case mayBeTorn
    }

    /// Decodes a whole log; `path` only names it in errors.
    public static func decode(
        _ data: Data, path: String, tail: Tail = .whole
    ) throws(DeliveryLogError) -> [DeliveryLogRecord] {
        let remainder = data.count % recordBytes
        if remainder != 0 && tail == .whole { throw .truncated(path: path, byteCount: data.count) }
        let count = data.count / recordBytes
        var records: [DeliveryLogRecord] = []
        records.reserveCapacity(count)
        var badPosition: Int?
        data.withUnsafeBytes { raw in
            for position in 0..<count {
                let offset = position * recordBytes
                let origin = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
                let sequence = UInt64(
                    littleEndian: raw.loadUnaligned(fromByteOffset: offset + sequenceOffset, as: UInt64.self))
                let view = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset + viewOffset, as: UInt64.self))
                guard view >= 1 else {
                    badPosition = position
                    return
                }
                records.append(
                    DeliveryLogRecord(sender: sender(ofOrigin: Int(origin)), senderSequence: sequence, viewID: view))
            }
        }
        if let badPosition { throw .noView(path: path, position: badPosition) }
        precondition(records.count == count, "decoded \(records.count) of \(count) records of \(path)")
        return records
    }

    /// Reads the log at `path`.
    public static func read(path: String, tail: Tail = .whole) throws(DeliveryLogError) -> [DeliveryLogRecord] {
        guard let data = FileManager.default.contents(atPath: path) else { throw .missing(path: path) }
        return try decode(data, path: path, tail: tail)
    }
}

/// Writes a member's delivery log, buffered: `append` is on the delivery path, so it never
/// blocks on more than one write of `bufferBytesMax` and never throws; the first write failure
/// is kept and thrown by `close`.
///
///     let log = try DeliveryLogWriter(path: "member-0.log")
///     log.append(DeliveryLogRecord(sender: MemberID(1), senderSequence: 0, viewID: 1))
///     try log.close()
public final class DeliveryLogWriter {
    /// Bytes buffered before a write.
    public static let bufferBytesMax = 1 << 20

    public let path: String
    private let file: FileHandle
    private var buffer: [UInt8] = []
    private var failure: DeliveryLogError?
    private var closed = false

    /// Creates (or empties) the log at `path`.
    public init(path: String) throws(DeliveryLogError) {
        guard FileManager.default.createFile(atPath: path, contents: nil),
            let file = FileHandle(forWritingAtPath: path)
        else { throw .cannotCreate(path: path) }
        self.path = path
        self.file = file
        buffer.reserveCapacity(Self.bufferBytesMax + DeliveryLog.recordBytes)
    }

    public func append(_ record: DeliveryLogRecord) {
        precondition(!closed, "a record appended to the closed delivery log \(path)")
        DeliveryLog.encode(record, into: &buffer)
        if buffer.count >= Self.bufferBytesMax { flush() }
    }

    /// Writes what is buffered (a failure is kept for `close`, and later records are dropped).
    public func flush() {
        guard !buffer.isEmpty, failure == nil else { return }
        do {
            try file.write(contentsOf: buffer)
        } catch {
            failure = .writeFailed(path: path, reason: "\(error)")
        }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Writes the rest and closes the file; throws the first failure, if any.
    public func close() throws(DeliveryLogError) {
        guard !closed else { return }
        flush()
        closed = true
        do {
            try file.close()
        } catch {
            if failure == nil { failure = .writeFailed(path: path, reason: "\(error)") }
        }
        if let failure { throw failure }
    }
}
