// NIO channel handlers of the TCP transport: bytes to frames (through LockstepWire) and frames
// to the member's runtime. A malformed frame or a core protocol violation closes only the
// link it came on, with a logged reason.

import LockstepCore
import LockstepWire
import NIOCore

/// Splits the byte stream into frames. Refuses a bad header before its body arrives.
struct FrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = Frame
    let limits: WireLimits

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let decoded = try buffer.withUnsafeReadableBytes { raw in try Wire.decode(raw, limits: limits) }
        guard let (frame, bytes) = decoded else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: bytes)
        context.fireChannelRead(wrapInboundOut(frame))
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

/// Hands frames of one link to the runtime. Until the peer's hello arrives (on accepted
/// connections) the link has no rank.
final class LinkHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = Frame
    private let runtime: MemberRuntime
    /// Set at once for links this member dialed; from the hello for accepted ones.
    private var peerRank: Int?

    init(runtime: MemberRuntime, peerRank: Int?) {
        self.runtime = runtime
        self.peerRank = peerRank
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame {
        case .hello(let hello):
            guard peerRank == nil else {
                runtime.closeLink(context.channel, reason: "a second hello on a live link")
                return
            }
            guard let rank = runtime.accept(hello: hello, channel: context.channel) else { return }
            peerRank = rank
        case .message(let message):
            guard let rank = peerRank else {
                runtime.closeLink(context.channel, reason: "a message before the hello")
                return
            }
            runtime.received(message, from: rank, channel: context.channel)
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
