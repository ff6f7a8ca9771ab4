// Encoding and decoding of frames. The encoder writes into memory the caller provides (a NIO
// ByteBuffer's writable bytes, or an array), so a batch is encoded once, with one copy of each
// payload, and the same bytes go to every peer. The decoder copies a data frame's body once
// into an array and hands out payloads as slices of it: one allocation per frame, none per
// message.

import LockstepCore

extension Wire {
    // MARK: - Sizes

    /// Bytes `message` takes on the wire, header included.
    public static func encodedBytes(_ message: Message) -> Int {
        switch message {
        case .data(let batch):
            var bytes = headerBytes + dataFixedBytes
            for entry in batch.entries {
                switch entry {
                case .message(let payload): bytes += messageEntryFixedBytes + payload.count
                case .nulls: bytes += nullsEntryBytes
                }
            }
            return bytes
        case .row(let row):
            return headerBytes + rowFixedBytes + 8 * row.received.count
        }
    }

    public static let encodedHelloBytes = headerBytes + helloBytes

    // MARK: - Encoding

    /// Writes `message` at the start of `buffer`, which must hold `encodedBytes(message)`.
    /// Returns the bytes written.
    @discardableResult
    public static func encode(_ message: Message, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        let total = encodedBytes(message)
        precondition(buffer.count >= total, "buffer of \(buffer.count) bytes for a \(total)-byte frame")
        var writer = RawWriter(buffer)
        switch message {
        case .data(let batch):
            writer.header(.data, bodyBytes: total - headerBytes)
            writer.u64(batch.viewID.rawValue)
            writer.u32(UInt32(truncatingIfNeeded: batch.senderRank))
            writer.u32(UInt32(truncatingIfNeeded: batch.entries.count))
            writer.u64(batch.firstIndex)
            for entry in batch.entries {
                switch entry {
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
            for received in row.received { writer.u64(received) }
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
        }
    }

    // MARK: - Decoding

    /// Decodes the frame at the start of `bytes`. Returns `nil` when more bytes are needed, or
    /// the frame and how many bytes it took. Throws as soon as the bytes cannot be a valid frame
    /// (a bad header is refused before its body arrives).
    public static func decode(_ bytes: UnsafeRawBufferPointer, limits: WireLimits) throws(WireError) -> (
        frame: Frame, bytes: Int
    )? {
        guard bytes.count >= headerBytes else { return nil }
        var header = RawReader(bytes)
        let magicValue = header.u32()
        guard magicValue == magic else {
            throw WireError(.badMagic, "magic 0x\(String(magicValue, radix: 16)), expected 0x\(String(magic, radix: 16))")
        }
        let versionValue = header.u8()
        guard versionValue == version else { throw WireError(.badVersion, "version \(versionValue), this build speaks \(version)") }
        let typeValue = header.u8()
        guard let type = FrameType(rawValue: typeValue) else { throw WireError(.unknownFrameType, "frame type \(typeValue)") }
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
        case .data: frame = .message(.data(try decodeData(body, limits: limits)))
        case .row: frame = .message(.row(try decodeRow(body, limits: limits)))
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
        guard body.count == helloBytes else { throw WireError(.truncatedBody, "hello of \(body.count) bytes, expected \(helloBytes)") }
        var reader = RawReader(body)
        return Hello(
            member: MemberID(reader.u64()), viewID: ViewID(reader.u64()), memberRank: Int(reader.u32()),
            senderCount: Int(reader.u32()))
    }

    private static func decodeRow(_ body: UnsafeRawBufferPointer, limits: WireLimits) throws(WireError) -> Row {
        guard body.count >= rowFixedBytes else { throw WireError(.truncatedBody, "row of \(body.count) bytes") }
        var reader = RawReader(body)
        let viewID = ViewID(reader.u64())
        let seq = reader.u64()
        let delivered = reader.u64()
        let senders = Int(reader.u32())
        guard senders <= limits.sendersMax else { throw WireError(.tooManySenders, "\(senders) senders > \(limits.sendersMax)") }
        let expected = rowFixedBytes + 8 * senders
        guard body.count == expected else {
            throw WireError(body.count < expected ? .truncatedBody : .trailingBytes, "row of \(body.count) bytes, expected \(expected)")
        }
        var received: [UInt64] = []
        received.reserveCapacity(senders)
        for _ in 0..<senders { received.append(reader.u64()) }
        return Row(viewID: viewID, received: received, seq: seq, delivered: delivered)
    }

    private static func decodeData(_ body: UnsafeRawBufferPointer, limits: WireLimits) throws(WireError) -> DataBatch {
        guard body.count >= dataFixedBytes else { throw WireError(.truncatedBody, "data frame of \(body.count) bytes") }
        // One copy of the body; every payload is a slice of it.
        let storage = [UInt8](body)
        // withUnsafeBytes rethrows untyped errors, so the typed error travels in a Result.
        let result = storage.withUnsafeBytes { raw in
            Result { () throws(WireError) -> DataBatch in try decodeEntries(raw, storage: storage, limits: limits) }
        }
        return try result.get()
    }

    private static func decodeEntries(_ raw: UnsafeRawBufferPointer, storage: [UInt8], limits: WireLimits) throws(WireError)
        -> DataBatch
    {
        do {
            var reader = RawReader(raw)
            let viewID = ViewID(reader.u64())
            let senderRank = Int(reader.u32())
            let count = Int(reader.u32())
            let firstIndex = reader.u64()
            guard count <= limits.entriesMax else { throw WireError(.tooManyEntries, "\(count) entries > \(limits.entriesMax)") }
            var entries: [BatchEntry] = []
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
                case 1:
                    guard reader.remaining >= 8 else { throw WireError(.truncatedBody, "entry \(k): no null count") }
                    entries.append(.nulls(reader.u64()))
                case let kind:
                    throw WireError(.unknownEntryKind, "entry \(k): kind \(kind)")
                }
            }
            guard reader.remaining == 0 else { throw WireError(.trailingBytes, "\(reader.remaining) bytes after \(count) entries") }
            return DataBatch(viewID: viewID, senderRank: senderRank, firstIndex: firstIndex, entries: entries)
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
    mutating func u8(_ value: UInt8) { put(value) }
    mutating func u16(_ value: UInt16) { put(value.littleEndian) }
    mutating func u32(_ value: UInt32) { put(value.littleEndian) }
    mutating func u64(_ value: UInt64) { put(value.littleEndian) }
    private mutating func put<T: FixedWidthInteger>(_ value: T) {
        base.storeBytes(of: value, toByteOffset: offset, as: T.self)
        offset += MemoryLayout<T>.size
    }
    mutating func bytes(_ payload: Payload) {
        payload.withUnsafeBytes { source in
            if let address = source.baseAddress, source.count > 0 {
                (base.baseAddress! + offset).copyMemory(from: address, byteCount: source.count)
            }
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
