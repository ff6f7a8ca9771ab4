// Frames out of a byte stream, for every transport: TCP hands its socket's bytes here, RDMA the
// chunks of its data ring. The wire format itself (LockstepWire) is pure; this is where its
// frames meet NIO's buffers.

import LockstepCore
import LockstepWire
import NIOCore

enum FrameReader {
    /// The next whole frame of a byte stream (nil: its bytes have not all arrived).
    static func nextFrame(
        from buffer: inout ByteBuffer, allocator: ByteBufferAllocator, limits: WireLimits
    ) throws
        -> ReceivedFrame?
    {
        let next = try buffer.withUnsafeReadableBytes { try nextFrame(in: $0, allocator: allocator, limits: limits) }
        guard let (frame, used) = next else { return nil }
        buffer.moveReaderIndex(forwardBy: used)
        return frame
    }

    /// The first whole frame in `bytes` and how many bytes it took (nil: not all there yet).
    static func nextFrame(
        in bytes: UnsafeRawBufferPointer, allocator: ByteBufferAllocator, limits: WireLimits
    ) throws
        -> (ReceivedFrame, Int)?
    {
        // A relay block is not decoded into a copy: its header is checked and the frame's bytes
        // are handed on as they are (copied once, out of the stream's buffer, to be forwarded
        // and assembled).
        if Wire.peekHeader(bytes)?.type == .block {
            guard let (block, bytesAt, frameBytes) = try blockFrame(in: bytes, limits: limits) else { return nil }
            var raw = allocator.buffer(capacity: frameBytes)
            raw.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[0..<frameBytes]))
            return (ReceivedFrame(frame: .block(block), raw: raw, blockBytesAt: bytesAt), frameBytes)
        }
        guard let (frame, used) = try Wire.decode(bytes, limits: limits) else { return nil }
        return (ReceivedFrame(frame: frame), used)
    }

    /// A whole relay block frame at the start of `bytes`: its header, where its payload bytes
    /// start, and its length (nil: not a block, or not all there yet). Checked, not copied.
    static func blockFrame(
        in bytes: UnsafeRawBufferPointer, limits: WireLimits
    ) throws
        -> (Block, bytesAt: Int, frameBytes: Int)?
    {
        guard let header = Wire.peekHeader(bytes), header.type == .block else { return nil }
        // The header alone: checks magic, version and the length limit (nil: body to come).
        _ = try Wire.decode(UnsafeRawBufferPointer(rebasing: bytes[0..<Wire.headerBytes]), limits: limits)
        guard bytes.count >= header.frameBytes else { return nil }
        let frame = UnsafeRawBufferPointer(rebasing: bytes[0..<header.frameBytes])
        let decoded = try Wire.decodeBlockHeader(frame, limits: limits)
        return (decoded.block, decoded.bytesAt, header.frameBytes)
    }
}

extension ByteBuffer {
    /// The header of the frame at the reader index, if its header bytes are all there.
    var frameHeader: Wire.HeaderPeek? {
        withUnsafeReadableBytes { Wire.peekHeader($0) }
    }
}
