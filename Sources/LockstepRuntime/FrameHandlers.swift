// NIO channel handlers of the TCP transport: bytes to frames (through LockstepWire) and frames
// to the member's runtime. A malformed frame or a core protocol violation closes only the
// link it came on, with a logged reason.

import LockstepCore
import LockstepWire
import NIOCore

/// Splits the byte stream into frames. Refuses a bad header before its body arrives.
struct FrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = DecodedFrame
    let limits: WireLimits

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        // A relay block is not decoded into a copy: its header is checked and the frame's bytes
        // are handed on as they are (copied once, out of NIO's buffer, to be forwarded and assembled).
        if buffer.readableBytes >= Wire.headerBytes,
            buffer.getInteger(at: buffer.readerIndex + 5, as: UInt8.self) == Wire.FrameType.block.rawValue,
            let length = buffer.getInteger(at: buffer.readerIndex + 8, endianness: .little, as: UInt32.self)
        {
            // The header alone: checks magic, version and the length limit (nil: body to come).
            _ = try buffer.withUnsafeReadableBytes { raw in
                try Wire.decode(UnsafeRawBufferPointer(rebasing: raw[0..<Wire.headerBytes]), limits: limits)
            }
            let frameBytes = Wire.headerBytes + Int(length)
            guard var slice = buffer.readSlice(length: frameBytes) else { return .needMoreData }
            // Copied out of the cumulation buffer, so holding it does not make NIO copy that.
            var raw = context.channel.allocator.buffer(capacity: frameBytes)
            raw.writeBuffer(&slice)
            let header = try raw.withUnsafeReadableBytes { bytes in try Wire.decodeBlockHeader(bytes, limits: limits) }
            context.fireChannelRead(
                wrapInboundOut(DecodedFrame(frame: .block(header.block), raw: raw, blockBytesAt: header.bytesAt)))
            return .continue
        }
        let decoded = try buffer.withUnsafeReadableBytes { raw in try Wire.decode(raw, limits: limits) }
        guard let (frame, bytes) = decoded else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: bytes)
        context.fireChannelRead(wrapInboundOut(DecodedFrame(frame: frame, raw: nil, blockBytesAt: 0)))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws
        -> DecodingState
    {
        while try decode(context: context, buffer: &buffer) == .continue {}
        if buffer.readableBytes > 0 {
            throw WireError(.truncatedBody, "connection ended inside a frame (\(buffer.readableBytes) bytes left)")
        }
        return .needMoreData
    }
}

/// A frame, and for a relay block the frame's bytes as received.
struct DecodedFrame {
    var frame: Frame
    /// A relay block's whole frame (its bytes start at `blockBytesAt`).
    var raw: ByteBuffer?
    var blockBytesAt: Int
}

/// Hands frames of one link to the runtime. Until the peer's hello arrives (on accepted
/// connections) the link has no rank.
final class LinkHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = DecodedFrame
    private let runtime: MemberRuntime
    /// Set at once for links this member dialed; from the hello for accepted ones.
    private var peerRank: Int?

    init(runtime: MemberRuntime, peerRank: Int?) {
        self.runtime = runtime
        self.peerRank = peerRank
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let decoded = unwrapInboundIn(data)
        if case .hello = decoded.frame {} else if peerRank == nil {
            runtime.closeLink(context.channel, reason: "a frame before the hello")
            return
        }
        switch decoded.frame {
        case .hello(let hello):
            guard peerRank == nil else {
                runtime.closeLink(context.channel, reason: "a second hello on a live link")
                return
            }
            guard let rank = runtime.accept(hello: hello, channel: context.channel) else { return }
            peerRank = rank
        case .message(let message):
            guard let rank = peerRank else { return }
            runtime.received(message, from: rank, channel: context.channel)
        case .relayedData(let batch, let relayed):
            guard let rank = peerRank else { return }
            runtime.receivedRelayedData(batch, relayed: relayed, from: rank, channel: context.channel)
        case .block(let block):
            guard let rank = peerRank, let raw = decoded.raw else { return }
            runtime.receivedBlock(block, raw: raw, bytesAt: decoded.blockBytesAt, from: rank, channel: context.channel)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        runtime.pollAfterReads()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if let rank = peerRank, context.channel.isWritable { runtime.linkWritable(rank) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        runtime.closeLink(context.channel, reason: "\(error)")
    }

    func channelInactive(context: ChannelHandlerContext) {
        runtime.linkClosed(context.channel, rank: peerRank)
    }
}
