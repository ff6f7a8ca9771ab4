// What the durable runtime writes in its log (LockstepStorage carries the records, checks them
// and finds the last complete group commit; these are the bodies). Integers little endian.
//
// - view (kind 0x02): u64 view id | u32 member count M | u32 sender count S | M x u64 member id |
//   S x u32 sender member rank. Written when the member starts in a view and at every install,
//   after everything the member delivered in the view before it.
// - entries (kind 0x01, `LogRecordKind.entry`), one per poll that delivered: u64 view id |
//   u32 count, then per delivery u64 global sequence | u32 sender rank | u64 sender's index |
//   u64 sender id | u32 payload bytes | payload. In delivery order: a log is a prefix of the member's deliveries.
// - ragged trim (kind 0x03): u64 view id | u32 S | S x u64, per sender rank how many of its
//   messages are delivered in the view. Written before the deliveries the trim releases.

import LockstepCore

/// Encoding and decoding of the durable runtime's log records.
public enum DurableRecords {
    /// Bytes of an entries record before its deliveries, and of each delivery before its payload.
    public static let entriesHeaderBytes = 12
    public static let deliveryHeaderBytes = 32

    public static func view(_ view: View) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16 + 8 * view.memberCount + 4 * view.senderCount)
        put(view.id.rawValue, into: &bytes)
        put(UInt32(view.memberCount), into: &bytes)
        put(UInt32(view.senderCount), into: &bytes)
        for member in view.members { put(member.rawValue, into: &bytes) }
        for rank in view.senderMemberRanks { put(UInt32(rank), into: &bytes) }
        return bytes
    }

    public static func raggedTrim(_ trim: [UInt64], viewID: ViewID) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(12 + 8 * trim.count)
        put(viewID.rawValue, into: &bytes)
        put(UInt32(trim.count), into: &bytes)
        for count in trim { put(count, into: &bytes) }
        return bytes
    }

    /// Starts an entries record of `viewID` in `bytes` (the count is patched by `finishEntries`).
    static func startEntries(_ viewID: ViewID, into bytes: inout [UInt8]) {
        bytes.removeAll(keepingCapacity: true)
        put(viewID.rawValue, into: &bytes)
        put(UInt32(0), into: &bytes)
    }

    static func appendDelivery(_ delivery: Delivery, into bytes: inout [UInt8]) {
        put(delivery.globalSequence ?? 0, into: &bytes)
        put(UInt32(delivery.senderRank), into: &bytes)
        put(delivery.index, into: &bytes)
        put(delivery.sender.rawValue, into: &bytes)
        put(UInt32(delivery.payload.count), into: &bytes)
        bytes.append(contentsOf: delivery.payload)
    }

    static func finishEntries(count: Int, in bytes: inout [UInt8]) {
        let wide = UInt32(count)
        for byte in 0..<4 { bytes[8 + byte] = UInt8(truncatingIfNeeded: wide >> (8 * UInt32(byte))) }
    }

    /// A record read back, decoded; `nil` for a kind this layer does not write.
    public enum Decoded: Sendable, Equatable {
        case view(View)
        case entries(viewID: ViewID, [Delivery])
        case raggedTrim(viewID: ViewID, [UInt64])
    }

    /// Decodes a record this layer wrote; a body that does not parse is `corrupt` (its checksum
    /// held, so the writer was wrong: never used).
    public static func decode(_ record: LogRecord) throws(StorageError) -> Decoded? {
        var reader = Reader(bytes: record.body, index: record.index)
        switch record.kind {
        case .view:
            let id = ViewID(try reader.u64())
            let members = Int(try reader.u32())
            let senders = Int(try reader.u32())
            guard members <= 1 << 16, senders <= members else { throw reader.bad("a view of \(members) members") }
            var ids: [MemberID] = []
            for _ in 0..<members { ids.append(MemberID(try reader.u64())) }
            var senderIDs: [MemberID] = []
            for _ in 0..<senders {
                let rank = Int(try reader.u32())
                guard ids.indices.contains(rank) else { throw reader.bad("sender rank \(rank) of \(members)") }
                senderIDs.append(ids[rank])
            }
            try reader.end()
            do {
                return .view(try View(id: id, members: ids, senders: senderIDs))
            } catch {
                throw reader.bad("\(error)")
            }
        case .entry:
            let viewID = ViewID(try reader.u64())
            let count = Int(try reader.u32())
            var deliveries: [Delivery] = []
            deliveries.reserveCapacity(min(count, record.body.count / deliveryHeaderBytes))
            for _ in 0..<count {
                let sequence = try reader.u64()
                let senderRank = Int(try reader.u32())
                let index = try reader.u64()
                let sender = MemberID(try reader.u64())
                let payload = try reader.bytes(Int(try reader.u32()))
                deliveries.append(
                    Delivery(
                        viewID: viewID, sender: sender, senderRank: senderRank, index: index,
                        globalSequence: sequence, payload: payload))
            }
            try reader.end()
            return .entries(viewID: viewID, deliveries)
        case .raggedTrim:
            let viewID = ViewID(try reader.u64())
            let senders = Int(try reader.u32())
            guard senders <= 1 << 16 else { throw reader.bad("a trim of \(senders) senders") }
            var trim: [UInt64] = []
            for _ in 0..<senders { trim.append(try reader.u64()) }
            try reader.end()
            return .raggedTrim(viewID: viewID, trim)
        default:
            return nil
        }
    }

    @inline(__always)
    static func put<Integer: FixedWidthInteger>(_ value: Integer, into bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    private struct Reader {
        let bytes: [UInt8]
        let index: UInt64
        var offset = 0

        init(bytes: [UInt8], index: UInt64) {
            self.bytes = bytes
            self.index = index
        }

        func bad(_ what: String) -> StorageError {
            StorageError(.corrupt, "log record \(index): \(what) at byte \(offset) of \(bytes.count)")
        }

        mutating func u64() throws(StorageError) -> UInt64 { try integer(UInt64.self) }
        mutating func u32() throws(StorageError) -> UInt32 { try integer(UInt32.self) }

        private mutating func integer<Integer: FixedWidthInteger>(_: Integer.Type) throws(StorageError) -> Integer {
            let size = MemoryLayout<Integer>.size
            guard bytes.count - offset >= size else { throw bad("the record ends inside a field") }
            var value: Integer = 0
            for byte in 0..<size { value |= Integer(bytes[offset + byte]) << (8 * byte) }
            offset += size
            return value
        }

        mutating func bytes(_ count: Int) throws(StorageError) -> Payload {
            guard count >= 0, bytes.count - offset >= count else { throw bad("a payload of \(count) bytes") }
            defer { offset += count }
            return bytes[offset..<(offset + count)]
        }

        func end() throws(StorageError) {
            guard offset == bytes.count else { throw bad("\(bytes.count - offset) bytes after the last field") }
        }
    }
}
