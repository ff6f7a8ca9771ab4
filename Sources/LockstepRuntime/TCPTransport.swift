// The TCP transport on SwiftNIO: one listening port per member, one connection per member pair
// (rank r dials every lower rank, which accepts), a hello as the first frame of every dialed
// connection, and frames split by FrameDecoder.

import Logging
import LockstepCore
import LockstepWire
import NIOCore
import NIOPosix

final class TCPTransport: Transport, @unchecked Sendable {
    private let settings: RuntimeSettings
    private let limits: WireLimits
    private let logger: Logger
    // Set in start; used on the event loop.
    private var eventLoop: EventLoop?
    private weak var delegate: TransportDelegate?
    private var serverChannel: Channel?
    private var dialed: [TCPLink] = []

    /// Reads of up to 1 MiB (NIO's default stops at 64 KiB): large frames then arrive in a few
    /// reads instead of many, each of which the frame decoder appends to its buffer.
    static let receiveAllocator = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 2_048, maximum: 1 << 20)

    init(settings: RuntimeSettings, limits: WireLimits, logger: Logger) {
        self.settings = settings
        self.limits = limits
        self.logger = logger
    }

    func start(eventLoop: EventLoop, delegate: TransportDelegate) async throws {
        self.eventLoop = eventLoop
        self.delegate = delegate
        try await listen(on: eventLoop)
        try await dialPeers(on: eventLoop)
    }

    func close() async {
        try? await serverChannel?.close()
    }

    private func listen(on eventLoop: EventLoop) async throws {
        let address = settings.addresses[settings.memberRank]
        let bootstrap = ServerBootstrap(group: eventLoop, childGroup: eventLoop)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(ChannelOptions.recvAllocator, value: Self.receiveAllocator)
            .childChannelInitializer { channel in self.installHandlers(on: channel, peerRank: nil) }
        do {
            serverChannel = try await bootstrap.bind(host: address.host, port: address.port).get()
        } catch {
            throw RuntimeError("cannot listen on \(address): \(error)")
        }
        logger.info("listening on \(address)")
    }

    private func installHandlers(on channel: Channel, peerRank: Int?) -> EventLoopFuture<Void> {
        channel.eventLoop.makeCompletedFuture {
            let link = TCPLink(channel: channel)
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(limits: self.limits)))
            try channel.pipeline.syncOperations.addHandler(LinkHandler(transport: self, link: link, peerRank: peerRank))
        }
    }

    /// Peers may start in any order, so a refused connection is retried until `connectTimeout`.
    private func dialPeers(on eventLoop: EventLoop) async throws {
        let deadline = ContinuousClock.now + settings.connectTimeout
        // A joiner dials everyone (the members are up and do not know its address); otherwise
        // rank r dials the lower ranks.
        let ranks = settings.dialsEveryone ? Array(settings.view.members.indices.filter { $0 != settings.memberRank }) : Array(0..<settings.memberRank)
        for rank in ranks {
            let address = settings.addresses[rank]
            while true {
                let bootstrap = ClientBootstrap(group: eventLoop)
                    .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                    .channelOption(ChannelOptions.recvAllocator, value: Self.receiveAllocator)
                    .channelInitializer { channel in self.installHandlers(on: channel, peerRank: rank) }
                do {
                    let channel = try await bootstrap.connect(host: address.host, port: address.port).get()
                    let hello = Hello(
                        member: settings.view.members[settings.memberRank], viewID: settings.view.id,
                        memberRank: settings.memberRank, senderCount: settings.view.senderCount)
                    var buffer = channel.allocator.buffer(capacity: Wire.encodedHelloBytes)
                    buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: Wire.encodedHelloBytes) {
                        Wire.encode(hello, into: $0)
                    }
                    try await channel.writeAndFlush(buffer).get()
                    if settings.dialsEveryone {
                        // Tell the member where this joiner listens (for the welcomes it may send later).
                        let own = settings.addresses[settings.memberRank]
                        let address = ControlMessage(
                            kind: .address, id: settings.view.members[settings.memberRank].rawValue, host: own.host, port: own.port)
                        try await channel.writeAndFlush(address.encoded()).get()
                    }
                    try await eventLoop.submit {
                        let handler = try channel.pipeline.syncOperations.handler(type: LinkHandler.self)
                        self.delegate?.linkUp(handler.link, peerRank: rank)
                    }.get()
                    break
                } catch {
                    if ContinuousClock.now > deadline {
                        throw RuntimeError("cannot connect to member rank \(rank) at \(address): \(error)")
                    }
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
        }
    }

    /// An accepted connection introduced itself. Returns its rank, or nil (the link is refused).
    fileprivate func accept(hello: Hello, link: TCPLink) -> Int? {
        guard let slot = delegate?.admit(hello) else {
            failed(link, reason: "unexpected hello \(hello) for \(settings.view)")
            return nil
        }
        logger.info("member \(hello.member) connected (slot \(slot))")
        delegate?.linkUp(link, peerRank: slot)
        return slot
    }

    fileprivate func failed(_ link: TCPLink, reason: String) {
        delegate?.linkFailed(link, reason: reason)
        link.close()
    }

    fileprivate var delegateForHandlers: TransportDelegate? { delegate }
}

/// A TCP connection as a transport link.
final class TCPLink: TransportLink, @unchecked Sendable {
    let channel: Channel
    init(channel: Channel) { self.channel = channel }
    var isWritable: Bool { channel.isWritable }
    func write(_ frame: ByteBuffer) { channel.write(frame, promise: nil) }
    func flush() { channel.flush() }
    func close() { channel.close(promise: nil) }
    func setReading(_ enabled: Bool) {
        channel.setOption(ChannelOptions.autoRead, value: enabled).whenSuccess {
            if enabled { self.channel.read() }
        }
    }
}

/// Splits the byte stream into frames. Refuses a bad header before its body arrives.
struct FrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ReceivedFrame
    let limits: WireLimits

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try Self.nextFrame(from: &buffer, allocator: context.channel.allocator, limits: limits) else {
            return .needMoreData
        }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    /// The next whole frame of a byte stream (nil: its bytes have not all arrived). Shared by
    /// the TCP and RDMA transports, which both carry a stream of frames.
    static func nextFrame(from buffer: inout ByteBuffer, allocator: ByteBufferAllocator, limits: WireLimits) throws
        -> ReceivedFrame?
    {
        guard let (frame, used) = try buffer.withUnsafeReadableBytes({ try nextFrame(in: $0, allocator: allocator, limits: limits) })
        else { return nil }
        buffer.moveReaderIndex(forwardBy: used)
        return frame
    }

    /// The first whole frame in `bytes` and how many bytes it took (nil: not all there yet).
    static func nextFrame(in bytes: UnsafeRawBufferPointer, allocator: ByteBufferAllocator, limits: WireLimits) throws
        -> (ReceivedFrame, Int)?
    {
        // A relay block is not decoded into a copy: its header is checked and the frame's bytes
        // are handed on as they are (copied once, out of the stream's buffer, to be forwarded and assembled).
        if bytes.count >= Wire.headerBytes, bytes[5] == Wire.FrameType.block.rawValue {
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
    static func blockFrame(in bytes: UnsafeRawBufferPointer, limits: WireLimits) throws -> (Block, bytesAt: Int, frameBytes: Int)? {
        guard bytes.count >= Wire.headerBytes, bytes[5] == Wire.FrameType.block.rawValue else { return nil }
        // The header alone: checks magic, version and the length limit (nil: body to come).
        _ = try Wire.decode(UnsafeRawBufferPointer(rebasing: bytes[0..<Wire.headerBytes]), limits: limits)
        let length = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        let frameBytes = Wire.headerBytes + Int(length)
        guard bytes.count >= frameBytes else { return nil }
        let header = try Wire.decodeBlockHeader(UnsafeRawBufferPointer(rebasing: bytes[0..<frameBytes]), limits: limits)
        return (header.block, header.bytesAt, frameBytes)
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

/// Hands the frames of one connection to the runtime. Until the peer's hello arrives (on
/// accepted connections) the link has no rank.
final class LinkHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ReceivedFrame
    private let transport: TCPTransport
    let link: TCPLink
    /// Set at once for links this member dialed; from the hello for accepted ones.
    private var peerRank: Int?

    init(transport: TCPTransport, link: TCPLink, peerRank: Int?) {
        self.transport = transport
        self.link = link
        self.peerRank = peerRank
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let received = unwrapInboundIn(data)
        if case .control(let body) = received.frame {
            transport.delegateForHandlers?.control(body, link: link, peerRank: peerRank)
            return
        }
        if case .hello(let hello) = received.frame {
            guard peerRank == nil else {
                transport.failed(link, reason: "a second hello on a live link")
                return
            }
            peerRank = transport.accept(hello: hello, link: link)
            return
        }
        guard let rank = peerRank else {
            transport.failed(link, reason: "a frame before the hello")
            return
        }
        transport.delegateForHandlers?.received(received, from: rank, link: link)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        transport.delegateForHandlers?.readsComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if let rank = peerRank, context.channel.isWritable { transport.delegateForHandlers?.linkWritable(peerRank: rank) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        transport.failed(link, reason: "\(error)")
    }

    func channelInactive(context: ChannelHandlerContext) {
        transport.delegateForHandlers?.linkDown(link, peerRank: peerRank)
    }
}
