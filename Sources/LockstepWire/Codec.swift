// Encoding and decoding of frames. The encoder writes into memory the caller provides (a NIO
// ByteBuffer's writable bytes, or an array), so a batch is encoded once, with one copy of each
// payload, and the same bytes go to every peer. The decoder copies a data frame's body once
// into an array and hands out payloads as slices of it: one allocation per frame, none per
// message.

import LockstepCore

extension Wire {
    // MARK: - Sizes

    /// Bytes `message` takes on the wire, header included. Payloads of at least
    /// `relayingFrom` bytes are left out (they travel as blocks through the relay).
    public static func encodedBytes(_ message: Message, relayingFrom threshold: Int = .max) -> Int {
        encodedBytes(message) { _, payload in payload.count >= threshold }
    }

    static func encodedBytes(_ message: Message, relayed: (Int, Payload) -> Bool) -> Int {
        switch message {
        case .data(let batch):
            var bytes = headerBytes + dataFixedBytes
            for (position, entry) in batch.entries.enumerated() {
                switch entry {
                case .message(let payload) where relayed(position, payload): bytes += messageEntryFixedBytes
                case .message(let payload): bytes += messageEntryFixedBytes + payload.count
                case .nulls: bytes += nullsEntryBytes
                }
            }
            return bytes
        case .row(let row):
            return headerBytes + rowFixedBytes + 8 * row.received.count + 8 * row.suspected.count
                + membershipBytes(row)
        }
    }

    public static let encodedHelloBytes = headerBytes + helloBytes

    // MARK: - Encoding

    /// Writes `message` at the start of `buffer`, which must hold `encodedBytes(message,
    /// relayingFrom:)`. Payloads of at least `threshold` bytes are written as relayed entries
    /// (kind 2: their length only). Returns the bytes written.
    @discardableResult
    public static func encode(
        _ message: Message, relayingFrom threshold: Int = .max, into buffer: UnsafeMutableRawBufferPointer
    ) -> Int {
        encode(message, relayed: { _, payload in payload.count >= threshold }, into: buffer)
    }

    static func encode(
        _ message: Message, relayed: (Int, Payload) -> Bool, into buffer: UnsafeMutableRawBufferPointer
    ) -> Int {
        let total = encodedBytes(message, relayed: relayed)
        precondition(buffer.count >= total, "buffer of \(buffer.count) bytes for a \(total)-byte frame")
        var writer = RawWriter(buffer)
        switch message {
        case .data(let batch):
            writer.header(.data, bodyBytes: total - headerBytes)
            writer.u64(batch.viewID.rawValue)
            writer.u32(UInt32(truncatingIfNeeded: batch.senderRank))
            writer.u32(UInt32(truncatingIfNeeded: batch.entries.count))
            writer.u64(batch.firstIndex)
            for (position, entry) in batch.entries.enumerated() {
                switch entry {
                case .message(let payload) where relayed(position, payload):
                    writer.u8(2)
                    writer.u32(UInt32(truncatingIfNeeded: payload.count))
                case .message(let payload):
                    writer.u8(0)
                    writer.u32(UInt32(truncatingIfNeeded: payload.count))
                    writer.bytes(payload)
                case .nulls(let count):
                    writer.u8(1)
                    writer.u64(count)
                }
            }
        case .row(let row):
            writer.header(.row, bodyBytes: total - headerBytes)
            writer.u64(row.viewID.rawValue)
            writer.u64(row.seq)
            writer.u64(row.delivered)
            writer.u32(UInt32(truncatingIfNeeded: row.received.count))
            writer.u32(UInt32(truncatingIfNeeded: row.suspected.count))
            for received in row.received { writer.u64(received) }
            for word in row.suspected { writer.u64(word) }
            writer.u64(row.installNumber)
            writer.u64(row.persisted)
            // Two calls, not a loop over [proposal, commit]: an array literal would allocate per row.
            writer.viewChange(row.proposal)
            writer.viewChange(row.commit)
            writer.u32(UInt32(truncatingIfNeeded: row.trim.count))
            writer.u32(0)
            for count in row.trim { writer.u64(count) }
        }
        precondition(writer.offset == total, "encoded \(writer.offset) bytes, expected \(total)")
        return total
    }

    @discardableResult
    public static func encode(_ hello: Hello, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        precondition(buffer.count >= encodedHelloBytes, "buffer too small for a hello")
        var writer = RawWriter(buffer)
        writer.header(.hello, bodyBytes: helloBytes)
        writer.u64(hello.member.rawValue)
        writer.u64(hello.viewID.rawValue)
        writer.u32(UInt32(truncatingIfNeeded: hello.memberRank))
        writer.u32(UInt32(truncatingIfNeeded: hello.senderCount))
        writer.u32(hello.lane.rawValue)
        return writer.offset
    }

    public static func encodedBytes(_ block: Block) -> Int { headerBytes + blockFixedBytes + block.bytes.count }

    @discardableResult
    public static func encode(_ block: Block, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        let total = encodedBytes(block)
        precondition(buffer.count >= total, "buffer of \(buffer.count) bytes for a \(total)-byte block")
        var writer = RawWriter(buffer)
        writer.header(.block, bodyBytes: total - headerBytes)
        writer.u64(block.viewID.rawValue)
        writer.u32(UInt32(truncatingIfNeeded: block.originMemberRank))
        writer.u64(block.index)
        writer.u32(UInt32(truncatingIfNeeded: block.totalBytes))
        writer.u32(UInt32(truncatingIfNeeded: block.offset))
        writer.bytes(block.bytes)
        return writer.offset
    }

    /// Convenience for tests and tools: the frame as a new array.
    public static func encode(_ frame: Frame) -> [UInt8] {
        switch frame {
        case .hello(let hello):
            return [UInt8](unsafeUninitializedCapacity: encodedHelloBytes) { buffer, count in
                count = encode(hello, into: UnsafeMutableRawBufferPointer(buffer))
            }
        case .message(let message):
            return [UInt8](unsafeUninitializedCapacity: encodedBytes(message)) { buffer, count in
                count = encode(message, into: UnsafeMutableRawBufferPointer(buffer))
            }
        case .relayedData(let batch, let relayed):
            // The relayed entries' lengths come from `relayed`, not from the empty placeholders.
            var entries = batch.entries
            for entry in relayed { entries[entry.position] = .message(Array(repeating: 0, count: entry.bytes)[...]) }
            let full = Message.data(
                DataBatch(
                    viewID: batch.viewID, senderRank: batch.senderRank, firstIndex: batch.firstIndex, entries: entries))
            let positions = Set(relayed.map(\.position))
            let isRelayed = { (position: Int, _: Payload) in positions.contains(position) }
            return [UInt8](unsafeUninitializedCapacity: encodedBytes(full, relayed: isRelayed)) { buffer, count in
                count = encode(full, relayed: isRelayed, into: UnsafeMutableRawBufferPointer(buffer))
            }
        case .block(let block):
            return [UInt8](unsafeUninitializedCapacity: encodedBytes(block)) { buffer, count in
                count = encode(block, into: UnsafeMutableRawBufferPointer(buffer))
            }
        case .control(let body):
            return [UInt8](unsafeUninitializedCapacity: headerBytes + body.count) { buffer, count in
                var writer = RawWriter(UnsafeMutableRawBufferPointer(buffer))
                writer.header(.control, bodyBytes: body.count)
                writer.bytes(body[...])
                count = writer.offset
            }
        }
    }

    // MARK: - Decoding

    /// Decodes the frame at the start of `bytes`. Returns `nil` when more bytes are needed, or
    /// the frame and how many bytes it took. Throws as soon as the bytes cannot be a valid frame
    /// (a bad header is refused before its body arrives).
    public static func decode(
        _ bytes: UnsafeRawBufferPointer, limits: WireLimits
    ) throws(WireError) -> (
        frame: Frame, bytes: Int
    )? {
        guard bytes.count >= headerBytes else { return nil }
        var header = RawReader(bytes)
        let magicValue = header.u32()
        guard magicValue == magic else {
            throw WireError(
                .badMagic, "magic 0x\(String(magicValue, radix: 16)), expected 0x\(String(magic, radix: 16))")
        }
        let versionValue = header.u8()
        guard versionValue == version else {
            throw WireError(.badVersion, "version \(versionValue), this build speaks \(version)")
        }
        let typeValue = header.u8()
        guard let type = FrameType(rawValue: typeValue) else {
            throw WireError(.unknownFrameType, "frame type \(typeValue)")
        }
        let reserved = header.u16()
        guard reserved == 0 else { throw WireError(.badReservedField, "reserved field \(reserved)") }
        let bodyBytes = Int(header.u32())
        guard bodyBytes <= limits.frameBytesMax else {
            throw WireError(.frameTooLarge, "body of \(bodyBytes) bytes > frameBytesMax \(limits.frameBytesMax)")
        }
        guard bytes.count >= headerBytes + bodyBytes else { return nil }
        let body = UnsafeRawBufferPointer(rebasing: bytes[headerBytes..<(headerBytes + bodyBytes)])
        let frame: Frame
        switch type {
        case .hello: frame = .hello(try decodeHello(body))
        case .data:
            let (batch, relayed) = try decodeData(body, limits: limits)
            frame = relayed.isEmpty ? .message(.data(batch)) : .relayedData(batch, relayed: relayed)
        case .row: frame = .message(.row(try decodeRow(body, limits: limits)))
        case .block: frame = .block(try decodeBlock(body, limits: limits))
        case .control:
            guard body.count <= controlBytesMax else {
                throw WireError(.frameTooLarge, "control frame of \(body.count) bytes")
            }
            frame = .control([UInt8](body))
        }
        return (frame, headerBytes + bodyBytes)
    }

    /// `decode` over an array (for tests, tools and the fuzzer).
    public static func decode(_ bytes: [UInt8], limits: WireLimits) throws(WireError) -> (frame: Frame, bytes: Int)? {
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(WireError) -> (frame: Frame, bytes: Int)? in try decode(raw, limits: limits) }
        }
        return try result.get()
    }

    private static func decodeHello(_ body: UnsafeRawBufferPointer) throws(WireError) -> Hello {
        guard body.count == helloBytes else {
            throw WireError(.truncatedBody, "hello of \(body.count) bytes, expected \(helloBytes)")
        }
        var reader = RawReader(body)
        let member = MemberID(reader.u64())
        let viewID = ViewID(reader.u64())
        let memberRank = Int(reader.u32())
        let senderCount = Int(reader.u32())
        let laneValue = reader.u32()
        guard let lane = Lane(rawValue: laneValue) else {
            throw WireError(.valueOutOfRange, "hello for lane \(laneValue)")
        }
        return Hello(member: member, viewID: viewID, memberRank: memberRank, senderCount: senderCount, lane: lane)
    }

    private static func decodeRow(_ body: UnsafeRawBufferPointer, limits: WireLimits) throws(WireError) -> Row {
        guard body.count >= rowFixedBytes else { throw WireError(.truncatedBody, "row of \(body.count) bytes") }
        var reader = RawReader(body)
        let viewID = ViewID(reader.u64())
        let seq = reader.u64()
        let delivered = reader.u64()
        let senders = Int(reader.u32())
        let words = Int(reader.u32())
        guard senders <= limits.sendersMax else {
            throw WireError(.tooManySenders, "\(senders) senders > \(limits.sendersMax)")
        }
        guard words <= Row.suspicionWords(memberCount: limits.sendersMax) else {
            throw WireError(.tooManySenders, "\(words) suspicion words for at most \(limits.sendersMax) members")
        }
        let counters = rowFixedBytes + 8 * senders + 8 * words + 16
        guard body.count >= counters else {
            throw WireError(.truncatedBody, "row of \(body.count) bytes, expected at least \(counters)")
        }
        var received: [UInt64] = []
        received.reserveCapacity(senders)
        for _ in 0..<senders { received.append(reader.u64()) }
        var suspected: [UInt64] = []
        suspected.reserveCapacity(words)
        for _ in 0..<words { suspected.append(reader.u64()) }
        var row = Row(viewID: viewID, received: received, seq: seq, delivered: delivered, suspected: suspected)
        row.installNumber = reader.u64()
        row.persisted = reader.u64()
        row.proposal = try decodeViewChange(&reader, limits: limits)
        row.commit = try decodeViewChange(&reader, limits: limits)
        guard reader.remaining >= 8 else { throw WireError(.truncatedBody, "row ends before its trim") }
        let trimCount = Int(reader.u32())
        guard reader.u32() == 0 else { throw WireError(.badReservedField, "row trim reserved field") }
        guard trimCount <= limits.sendersMax else { throw WireError(.tooManySenders, "trim of \(trimCount) senders") }
        guard reader.remaining == 8 * trimCount else {
            throw WireError(
                reader.remaining < 8 * trimCount ? .truncatedBody : .trailingBytes,
                "row trim of \(trimCount) senders in \(reader.remaining) bytes")
        }
        row.trim.reserveCapacity(trimCount)
        for _ in 0..<trimCount { row.trim.append(reader.u64()) }
        return row
    }

    /// Proposal and commit: number, removed bitmap, joiners.
    private static func decodeViewChange(_ reader: inout RawReader, limits: WireLimits) throws(WireError) -> ViewChange
    {
        guard reader.remaining >= 16 else { throw WireError(.truncatedBody, "row ends inside a view change") }
        let number = reader.u64()
        let words = Int(reader.u32())
        let joiners = Int(reader.u32())
        guard words <= Row.suspicionWords(memberCount: limits.sendersMax), joiners <= limits.sendersMax else {
            throw WireError(.tooManySenders, "view change of \(words) removed words and \(joiners) joiners")
        }
        guard reader.remaining >= 8 * (words + joiners) else {
            throw WireError(.truncatedBody, "row ends inside a view change")
        }
        var change = ViewChange(number: number, removed: [], joiners: [])
        for _ in 0..<words { change.removed.append(reader.u64()) }
        for _ in 0..<joiners { change.joiners.append(MemberID(reader.u64())) }
        return change
    }

    /// The membership section of a row: install number, persisted, proposal, commit, trim.
    static func membershipBytes(_ row: Row) -> Int {
        16 + 16 + 8 * (row.proposal.removed.count + row.proposal.joiners.count) + 16
            + 8 * (row.commit.removed.count + row.commit.joiners.count) + 8 + 8 * row.trim.count
    }

    /// A block's header fields, checked, without copying its bytes (the runtime copies them
    /// straight into the payload being assembled). `bytes` holds the offset of the block's bytes
    /// in the frame and their count.
    public static func decodeBlockHeader(
        _ frame: UnsafeRawBufferPointer, limits: WireLimits
    ) throws(WireError) -> (
        block: Block, bytesAt: Int, byteCount: Int
    ) {
        let body = UnsafeRawBufferPointer(rebasing: frame[headerBytes...])
        let (block, count) = try checkBlock(body, limits: limits)
        return (block, headerBytes + blockFixedBytes, count)
    }

    private static func checkBlock(_ body: UnsafeRawBufferPointer, limits: WireLimits) throws(WireError) -> (Block, Int)
    {
        guard body.count >= blockFixedBytes else { throw WireError(.truncatedBody, "block of \(body.count) bytes") }
        var reader = RawReader(body)
        let viewID = ViewID(reader.u64())
        let origin = Int(reader.u32())
        let index = reader.u64()
        let total = Int(reader.u32())
        let offset = Int(reader.u32())
        let count = reader.remaining
        guard origin < limits.sendersMax else { throw WireError(.badBlock, "origin member rank \(origin)") }
        guard total <= limits.messageBytesMax else {
            throw WireError(.messageTooLarge, "relayed message of \(total) bytes > \(limits.messageBytesMax)")
        }
        guard count > 0, offset <= total, count <= total - offset else {
            throw WireError(.badBlock, "block of \(count) bytes at \(offset) of a \(total)-byte message")
        }
        return (
            Block(viewID: viewID, originMemberRank: origin, index: index, totalBytes: total, offset: offset, bytes: []),
            count
        )
    }

    private static func decodeBlock(_ body: UnsafeRawBufferPointer, limits: WireLimits) throws(WireError) -> Block {
        var (block, _) = try checkBlock(body, limits: limits)
        block.bytes = [UInt8](UnsafeRawBufferPointer(rebasing: body[blockFixedBytes...]))[...]
        return block
    }

    private static func decodeData(
        _ body: UnsafeRawBufferPointer, limits: WireLimits
    ) throws(WireError) -> (
        DataBatch, [RelayedEntry]
    ) {
        guard body.count >= dataFixedBytes else { throw WireError(.truncatedBody, "data frame of \(body.count) bytes") }
        // One copy of the body; every payload is a slice of it.
        let storage = [UInt8](body)
        // withUnsafeBytes rethrows untyped errors, so the typed error travels in a Result.
        let result = storage.withUnsafeBytes { raw in
            Result { () throws(WireError) -> (DataBatch, [RelayedEntry]) in
                try decodeEntries(raw, storage: storage, limits: limits)
            }
        }
        return try result.get()
    }

    private static func decodeEntries(
        _ raw: UnsafeRawBufferPointer, storage: [UInt8], limits: WireLimits
    ) throws(WireError)
        -> (DataBatch, [RelayedEntry])
    {
        do {
            var reader = RawReader(raw)
            let viewID = ViewID(reader.u64())
            let senderRank = Int(reader.u32())
            let count = Int(reader.u32())
            let firstIndex = reader.u64()
            guard count <= limits.entriesMax else {
                throw WireError(.tooManyEntries, "\(count) entries > \(limits.entriesMax)")
            }
            var entries: [BatchEntry] = []
            var relayed: [RelayedEntry] = []
            var index = firstIndex
            entries.reserveCapacity(count)
            for k in 0..<count {
                guard reader.remaining >= 1 else { throw WireError(.truncatedBody, "entry \(k) of \(count) missing") }
                switch reader.u8() {
                case 0:
                    guard reader.remaining >= 4 else { throw WireError(.truncatedBody, "entry \(k): no length") }
                    let length = Int(reader.u32())
                    guard length <= limits.messageBytesMax else {
                        throw WireError(.messageTooLarge, "entry \(k): \(length) bytes > \(limits.messageBytesMax)")
                    }
                    guard reader.remaining >= length else {
                        throw WireError(.truncatedBody, "entry \(k): \(length) bytes, \(reader.remaining) left")
                    }
                    entries.append(.message(storage[reader.offset..<(reader.offset + length)]))
                    reader.skip(length)
                    index &+= 1
                case 1:
                    guard reader.remaining >= 8 else { throw WireError(.truncatedBody, "entry \(k): no null count") }
                    let nulls = reader.u64()
                    entries.append(.nulls(nulls))
                    index &+= nulls
                case 2:
                    guard reader.remaining >= 4 else { throw WireError(.truncatedBody, "entry \(k): no length") }
                    let length = Int(reader.u32())
                    guard length <= limits.messageBytesMax else {
                        throw WireError(
                            .messageTooLarge, "entry \(k): relayed \(length) bytes > \(limits.messageBytesMax)")
                    }
                    relayed.append(RelayedEntry(position: k, index: index, bytes: length))
                    entries.append(.message(storage[0..<0]))
                    index &+= 1
                case let kind:
                    throw WireError(.unknownEntryKind, "entry \(k): kind \(kind)")
                }
            }
            guard reader.remaining == 0 else {
                throw WireError(.trailingBytes, "\(reader.remaining) bytes after \(count) entries")
            }
            return (
                DataBatch(viewID: viewID, senderRank: senderRank, firstIndex: firstIndex, entries: entries), relayed
            )
        }
    }
}

/// Little-endian writes into raw memory; the caller has checked the size.
struct RawWriter {
    let base: UnsafeMutableRawBufferPointer
    var offset = 0
    init(_ base: UnsafeMutableRawBufferPointer) { self.base = base }

    mutating func header(_ type: Wire.FrameType, bodyBytes: Int) {
        u32(Wire.magic)
        u8(Wire.version)
        u8(type.rawValue)
        u16(0)
        u32(UInt32(truncatingIfNeeded: bodyBytes))
    }
    mutating func viewChange(_ change: ViewChange) {
        u64(change.number)
        u32(UInt32(truncatingIfNeeded: change.removed.count))
        u32(UInt32(truncatingIfNeeded: change.joiners.count))
        for word in change.removed { u64(word) }
        for joiner in change.joiners { u64(joiner.rawValue) }
    }
    mutating func u8(_ value: UInt8) { put(value) }
    mutating func u16(_ value: UInt16) { put(value.littleEndian) }
    mutating func u32(_ value: UInt32) { put(value.littleEndian) }
    mutating func u64(_ value: UInt64) { put(value.littleEndian) }
    private mutating func put<T: FixedWidthInteger>(_ value: T) {
        base.storeBytes(of: value, toByteOffset: offset, as: T.self)
        offset += MemoryLayout<T>.size
    }
    mutating func bytes(_ payload: Payload) {
        precondition(
            offset + payload.count <= base.count, "writing \(payload.count) bytes at \(offset) of \(base.count)")
        payload.withUnsafeBytes { source in
            UnsafeMutableRawBufferPointer(rebasing: base[offset..<(offset + source.count)]).copyMemory(from: source)
        }
        offset += payload.count
    }
}

/// Little-endian reads from raw memory; callers check `remaining` first.
struct RawReader {
    let base: UnsafeRawBufferPointer
    var offset = 0
    init(_ base: UnsafeRawBufferPointer) { self.base = base }
    var remaining: Int { base.count - offset }
    mutating func skip(_ count: Int) { offset += count }
    mutating func u8() -> UInt8 { take() }
    mutating func u16() -> UInt16 { UInt16(littleEndian: take()) }
    mutating func u32() -> UInt32 { UInt32(littleEndian: take()) }
    mutating func u64() -> UInt64 { UInt64(littleEndian: take()) }
    private mutating func take<T: FixedWidthInteger>() -> T {
        precondition(remaining >= MemoryLayout<T>.size, "read past the end at \(offset) of \(base.count)")
        let value = base.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += MemoryLayout<T>.size
        return value
    }
}
