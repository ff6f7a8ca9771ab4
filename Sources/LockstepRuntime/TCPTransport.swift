// The TCP transport on SwiftNIO: one listening port per member, two connections per member pair
// (rank r dials every lower rank, which accepts): a control lane for rows, heartbeats and
// membership frames and a data lane for data and relay blocks, so control never waits behind
// data (docs/WIRE.md, "Lanes"). A hello naming its lane is the first frame of every dialed
// connection; frames are split by FrameDecoder.

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
    /// Accepted links with one lane attached, waiting for the other, by slot.
    private var halfAccepted: [Int: TCPLink] = [:]

    /// Reads of up to 1 MiB (NIO's default stops at 64 KiB): large frames then arrive in a few
    /// reads instead of many, each of which the frame decoder appends to its buffer.
    static let receiveAllocator = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 2_048, maximum: 1 << 20)
    /// Outbound bytes above which a lane's channel reports itself unwritable (rows coalesce on the
    /// control lane). NIO's default, 64 KiB, is kept for the control lane; the data lane's queue
    /// is bounded by the window, not by this.
    static let writeBufferWaterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 32 * 1_024, high: 64 * 1_024)

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
            .childChannelOption(ChannelOptions.writeBufferWaterMark, value: Self.writeBufferWaterMark)
            .childChannelInitializer { channel in
                // Until its hello says which member and lane it is, a connection is a link of its
                // own (a joiner's control exchange never sends one).
                self.installHandlers(on: channel, link: TCPLink(single: channel), lane: nil, peerRank: nil)
            }
        do {
            serverChannel = try await bootstrap.bind(host: address.host, port: address.port).get()
        } catch {
            throw RuntimeError("cannot listen on \(address): \(error)")
        }
        logger.info("listening on \(address)")
    }

    private func installHandlers(on channel: Channel, link: TCPLink, lane: Lane?, peerRank: Int?) -> EventLoopFuture<Void> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(limits: self.limits)))
            try channel.pipeline.syncOperations.addHandler(
                LinkHandler(transport: self, link: link, lane: lane, peerRank: peerRank))
        }
    }

    /// Peers may start in any order, so a refused connection is retried until `connectTimeout`.
    /// Each pair has two connections (lanes): control first, then data (docs/WIRE.md, "Lanes").
    private func dialPeers(on eventLoop: EventLoop) async throws {
        let deadline = ContinuousClock.now + settings.connectTimeout
        // A joiner dials everyone (the members are up and do not know its address); otherwise
        // rank r dials the lower ranks.
        let ranks = settings.dialsEveryone ? Array(settings.view.members.indices.filter { $0 != settings.memberRank }) : Array(0..<settings.memberRank)
        for rank in ranks {
            while true {
                let link = try await eventLoop.submit { TCPLink() }.get()
                for lane in [Lane.control, .data] {
                    let channel = try await dial(rank: rank, lane: lane, link: link, deadline: deadline, on: eventLoop)
                    if lane == .control, settings.dialsEveryone {
                        // Tell the member where this joiner listens (for the welcomes it may send later).
                        let own = settings.addresses[settings.memberRank]
                        let address = ControlMessage(
                            kind: .address, id: settings.view.members[settings.memberRank].rawValue, host: own.host, port: own.port)
                        try? await channel.writeAndFlush(address.encoded()).get()
                    }
                }
                // A lane that closed while the other was being dialed took the link down: dial
                // the pair again (until connectTimeout) rather than report a dead link as up.
                let up = try await eventLoop.submit { () -> Bool in
                    guard !link.isDown else { return false }
                    self.delegate?.linkUp(link, peerRank: rank)
                    return true
                }.get()
                if up { break }
                try await eventLoop.submit { link.close() }.get()
                if ContinuousClock.now > deadline {
                    throw RuntimeError("cannot connect to member rank \(rank) at \(settings.addresses[rank]): the connection closed while dialing")
                }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    /// Connects one lane to the member at `rank` and sends its hello; retried until `deadline`.
    private func dial(rank: Int, lane: Lane, link: TCPLink, deadline: ContinuousClock.Instant, on eventLoop: EventLoop)
        async throws -> Channel
    {
        let address = settings.addresses[rank]
        while true {
            let bootstrap = ClientBootstrap(group: eventLoop)
                .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                .channelOption(ChannelOptions.recvAllocator, value: Self.receiveAllocator)
                .channelOption(ChannelOptions.writeBufferWaterMark, value: Self.writeBufferWaterMark)
                .channelInitializer { channel in self.installHandlers(on: channel, link: link, lane: lane, peerRank: rank) }
            var connected: Channel?
            do {
                let channel = try await bootstrap.connect(host: address.host, port: address.port).get()
                connected = channel
                let hello = Hello(
                    member: settings.view.members[settings.memberRank], viewID: settings.view.id,
                    memberRank: settings.memberRank, senderCount: settings.view.senderCount, lane: lane)
                var buffer = channel.allocator.buffer(capacity: Wire.encodedHelloBytes)
                buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: Wire.encodedHelloBytes) {
                    Wire.encode(hello, into: $0)
                }
                try await channel.writeAndFlush(buffer).get()
                try await eventLoop.submit { link.attach(channel, lane: lane) }.get()
                return channel
            } catch {
                // A connection whose hello could not be written is closed before the retry.
                try? await connected?.close()
                if ContinuousClock.now > deadline {
                    throw RuntimeError("cannot connect to member rank \(rank) at \(address) (\(lane) lane): \(error)")
                }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    /// An accepted connection introduced itself. Returns the link its lane joins and the peer's
    /// slot, or nil (the connection is refused and closed).
    fileprivate func accept(hello: Hello, channel: Channel, provisional: TCPLink) -> (TCPLink, Int)? {
        guard let slot = delegate?.admit(hello) else {
            failed(provisional, reason: "unexpected hello \(hello) for \(settings.view)")
            return nil
        }
        logger.info("member \(hello.member) connected (slot \(slot), \(hello.lane) lane)")
        if hello.lane == .all {
            delegate?.linkUp(provisional, peerRank: slot)
            return (provisional, slot)
        }
        // The other lane of a half-accepted link joins it; a lane that link already has starts
        // a new link (the peer reconnected).
        if let half = halfAccepted[slot], !half.has(hello.lane) {
            halfAccepted[slot] = nil
            half.attach(channel, lane: hello.lane)
            return (half, slot)
        }
        let link = TCPLink()
        link.attach(channel, lane: hello.lane)
        halfAccepted[slot] = link
        // The link is up at its first lane: what is written to the other waits in the link
        // until it connects, which a healthy peer does at once.
        delegate?.linkUp(link, peerRank: slot)
        // A link whose second lane has not connected within connectTimeout of its first is
        // failed: the dialer opens both at once (and retries a refused connect for as long),
        // frames written meanwhile wait in the link.
        let attachTimeout = TimeAmount.nanoseconds(Int64(settings.connectTimeout.nanosecondsClamped))
        channel.eventLoop.scheduleTask(in: attachTimeout) {
            guard self.halfAccepted[slot] === link else { return }
            self.halfAccepted[slot] = nil
            self.failed(link, reason: "member \(hello.member) opened its \(hello.lane) lane but not the other within \(self.settings.connectTimeout)")
        }
        return (link, slot)
    }

    fileprivate func failed(_ link: TCPLink, reason: String) {
        delegate?.linkFailed(link, reason: reason)
        link.close()
    }

    /// One of the link's connections closed: the link is down (once), and its other lane closed.
    fileprivate func laneClosed(_ link: TCPLink, peerRank: Int?) {
        guard link.markDown() else { return }
        link.close()
        if let peerRank, halfAccepted[peerRank] === link { halfAccepted[peerRank] = nil }
        delegate?.linkDown(link, peerRank: peerRank)
    }

    fileprivate var delegateForHandlers: TransportDelegate? { delegate }
}

/// The connections to one peer as a transport link: a control lane (rows, hellos, control
/// frames) and a data lane (data batches, relay blocks), so that a heartbeat never waits behind
/// the megabytes of data queued to the same peer. `write` routes each frame by the type in its
/// header. A link made of one connection (`single`: before a hello, or a peer that sent lane
/// `all`) sends everything on it. Used on the event loop only.
final class TCPLink: TransportLink, @unchecked Sendable {
    private var control: Channel?
    private var data: Channel?
    private var single: Channel?
    /// Frames written to a lane not connected yet (between a peer's two connections).
    private var waiting: [(Lane, ByteBuffer)] = []
    private var isClosed = false
    private(set) var isDown = false
    /// Reading paused by back-pressure: applies to a data lane that connects later, too.
    private var readingPaused = false

    init() {}
    init(single channel: Channel) { self.single = channel }

    func has(_ lane: Lane) -> Bool { lane == .control ? control != nil : data != nil }

    func attach(_ channel: Channel, lane: Lane) {
        guard !isClosed else {
            channel.close(promise: nil)
            return
        }
        switch lane {
        case .control: control = channel
        case .data: data = channel
        case .all: single = channel
        }
        if readingPaused, lane != .control { applyReading(false, to: channel) }
        let stillWaiting = waiting.filter { !has($0.0) }
        for (waitingLane, frame) in waiting where has(waitingLane) { channel.write(frame, promise: nil) }
        waiting = stillWaiting
        channel.flush()
    }

    /// Marks the link down; true the first time.
    func markDown() -> Bool {
        defer { isDown = true }
        return !isDown
    }

    private func channel(for lane: Lane) -> Channel? {
        if let single { return single }
        return lane == .control ? control : data
    }

    /// Bytes in NIO's outbound buffers of every lane, and frames waiting for a lane to connect.
    var queuedBytes: Int {
        let buffered = [single, control, data].reduce(0) { total, channel in
            total + ((try? channel?.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0)
        }
        return buffered + waiting.reduce(0) { $0 + $1.1.readableBytes }
    }

    /// The control lane's writability: rows coalesce while it is full.
    var isWritable: Bool { (single ?? control)?.isWritable ?? true }

    func write(_ frame: ByteBuffer) {
        guard !isClosed else { return }
        let type = frame.getInteger(at: frame.readerIndex + Wire.headerTypeOffset, as: UInt8.self).flatMap(Wire.FrameType.init)
        let lane = type.map(Lane.of) ?? .data
        if let channel = channel(for: lane) {
            channel.write(frame, promise: nil)
        } else {
            waiting.append((lane, frame))
        }
    }

    func flush() {
        single?.flush()
        control?.flush()
        data?.flush()
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        waiting = []
        for channel in [single, control, data] { channel?.close(promise: nil) }
    }

    /// Back-pressure stops the data lane only: rows and heartbeats are still read, so a member
    /// whose application is slow is not taken for a dead one.
    func setReading(_ enabled: Bool) {
        readingPaused = !enabled
        guard let channel = single ?? data else { return }
        applyReading(enabled, to: channel)
    }

    private func applyReading(_ enabled: Bool, to channel: Channel) {
        channel.setOption(ChannelOptions.autoRead, value: enabled).whenSuccess {
            if enabled { channel.read() }
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
        if bytes.count >= Wire.headerBytes, bytes[Wire.headerTypeOffset] == Wire.FrameType.block.rawValue {
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
        guard bytes.count >= Wire.headerBytes, bytes[Wire.headerTypeOffset] == Wire.FrameType.block.rawValue else { return nil }
        // The header alone: checks magic, version and the length limit (nil: body to come).
        _ = try Wire.decode(UnsafeRawBufferPointer(rebasing: bytes[0..<Wire.headerBytes]), limits: limits)
        let length = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: Wire.headerLengthOffset, as: UInt32.self))
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

/// Hands the frames of one connection (one lane of a link) to the runtime. Until the peer's
/// hello arrives (on accepted connections) the connection has no rank and is a link of its own.
final class LinkHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ReceivedFrame
    private let transport: TCPTransport
    private(set) var link: TCPLink
    private var lane: Lane?
    /// Set at once for links this member dialed; from the hello for accepted ones.
    private var peerRank: Int?

    init(transport: TCPTransport, link: TCPLink, lane: Lane?, peerRank: Int?) {
        self.transport = transport
        self.link = link
        self.lane = lane
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
            guard let (memberLink, slot) = transport.accept(hello: hello, channel: context.channel, provisional: link) else { return }
            link = memberLink
            lane = hello.lane
            peerRank = slot
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
        // Only the control lane's writability matters to the runtime (rows coalesce on it).
        guard lane != .data, let rank = peerRank, context.channel.isWritable else { return }
        transport.delegateForHandlers?.linkWritable(peerRank: rank)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        transport.failed(link, reason: "\(error)")
    }

    func channelInactive(context: ChannelHandlerContext) {
        transport.laneClosed(link, peerRank: peerRank)
    }
}
