// The NIO handlers of one TCP connection: the frame decoder, and the handler that passes each
// frame through the handshake (Handshake.swift) to the runtime.

import LockstepCore
import LockstepWire
import NIOCore

/// Splits the byte stream into frames (FrameReader). Refuses a bad header before its body arrives.
struct FrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ReceivedFrame
    let limits: WireLimits

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let allocator = context.channel.allocator
        guard let frame = try FrameReader.nextFrame(from: &buffer, allocator: allocator, limits: limits) else {
            return .needMoreData
        }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    mutating func decodeLast(
        context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
    ) throws
        -> DecodingState
    {
        while try decode(context: context, buffer: &buffer) == .continue {}
        if buffer.readableBytes > 0 {
            throw WireError(.truncatedBody, "connection ended inside a frame (\(buffer.readableBytes) bytes left)")
        }
        return .needMoreData
    }
}

/// Hands the frames of one connection (one lane of a link) to the runtime. Until the peer's
/// hello arrives (on accepted connections) the connection is nobody's and a link of its own.
final class TCPConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ReceivedFrame
    private let transport: TCPTransport
    private var link: TCPLink
    private var lane: Lane?
    private var gate: HandshakeGate

    init(transport: TCPTransport, link: TCPLink, lane: Lane?, member: MemberID?) {
        self.transport = transport
        self.link = link
        self.lane = lane
        self.gate = HandshakeGate(member: member)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let received = unwrapInboundIn(data)
        switch gate.step(for: received.frame) {
        case .control(let body):
            transport.delegateForHandlers?.control(body, link: link, member: gate.member)
        case .hello(let hello):
            guard let memberLink = transport.accept(hello: hello, channel: context.channel, provisional: link) else {
                return
            }
            gate.admitted(hello)
            link = memberLink
            lane = hello.lane
        case .frame(let member):
            transport.delegateForHandlers?.received(received, from: member, link: link)
        case .refuse(let reason):
            transport.failed(link, reason: reason)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        transport.delegateForHandlers?.readsComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // Only the control lane's writability matters to the runtime (rows coalesce on it).
        guard lane != .data, let member = gate.member, context.channel.isWritable else { return }
        transport.delegateForHandlers?.linkWritable(member: member)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        transport.failed(link, reason: "\(error)")
    }

    func channelInactive(context: ChannelHandlerContext) {
        transport.laneClosed(link, member: gate.member)
    }
}
