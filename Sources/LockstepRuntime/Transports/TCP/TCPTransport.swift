// The TCP transport on SwiftNIO: one listening port per member, two connections per member pair
// (rank r of the first view dials every lower rank, which accepts): a control lane for rows,
// heartbeats and membership frames and a data lane for data and relay blocks, so control never
// waits behind data (docs/WIRE.md, "Lanes"). A hello naming its lane is the first frame of every
// dialed connection (Handshake.swift); frames are split by FrameDecoder.

import LockstepCore
import LockstepWire
import Logging
import NIOCore
import NIOPosix

final class TCPTransport: Transport, @unchecked Sendable {
    private let settings: RuntimeSettings
    private let limits: WireLimits
    private let logger: Logger
    private weak var delegate: TransportDelegate?
    private var serverChannel: Channel?
    /// Accepted links with one lane attached, waiting for the other, by member (event loop only).
    private var halfAccepted: [MemberID: TCPLink] = [:]

    /// Reads of up to 1 MiB (NIO's default stops at 64 KiB): large frames then arrive in a few
    /// reads instead of many, each of which the frame decoder appends to its buffer.
    static let readBytesMax = 1 << 20
    static let receiveAllocator = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 2_048, maximum: readBytesMax)
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
        self.delegate = delegate
        try await listen(on: eventLoop)
        try await dialPeers(on: eventLoop)
    }

    func close() async {
        // Closing a listener that already closed fails; nothing is left to release then.
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
                self.installHandlers(on: channel, link: TCPLink(single: channel), lane: nil, member: nil)
            }
        do {
            serverChannel = try await bootstrap.bind(host: address.host, port: address.port).get()
        } catch {
            throw RuntimeError(.listenFailed, "cannot listen on \(address): \(error)")
        }
        logger.info("listening on \(address)")
    }

    private func installHandlers(
        on channel: Channel, link: TCPLink, lane: Lane?, member: MemberID?
    )
        -> EventLoopFuture<Void>
    {
        channel.eventLoop.makeCompletedFuture {
            let handler = TCPConnectionHandler(transport: self, link: link, lane: lane, member: member)
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(limits: self.limits)))
            try channel.pipeline.syncOperations.addHandler(handler)
        }
    }

    /// Peers may start in any order, so a refused connection is retried until `connectTimeout`.
    /// Each pair has two connections (lanes): control first, then data (docs/WIRE.md, "Lanes").
    private func dialPeers(on eventLoop: EventLoop) async throws {
        let schedule = DialSchedule(timeout: settings.connectTimeout)
        // A joiner dials everyone (the members are up and do not know its address); otherwise
        // rank r dials the lower ranks.
        let ranks = settings.view.members.indices.filter {
            settings.dialsEveryone ? $0 != settings.memberRank : $0 < settings.memberRank
        }
        // Every pair at once: a member is ready (and heartbeats) only once all its links are up,
        // and peers that were ready sooner start timing its silence; dialing one pair after the
        // other made that gap the sum of the dials.
        try await withThrowingTaskGroup(of: Void.self) { pairs in
            for rank in ranks {
                pairs.addTask {
                    while try await !self.dialPair(rank: rank, schedule: schedule, on: eventLoop) {
                        let reason = "the connection closed while dialing"
                        try await Task.sleep(
                            until: schedule.nextAttempt(to: self.settings.describePeer(rank: rank), after: reason))
                    }
                }
            }
            try await pairs.waitForAll()
        }
    }

    /// Dials both lanes to the member at `rank`; false if a lane closed while the other was being
    /// dialed (the link is down: dial the pair again rather than report a dead link as up).
    private func dialPair(rank: Int, schedule: DialSchedule, on eventLoop: EventLoop) async throws -> Bool {
        let member = settings.view.members[rank]
        let link = try await eventLoop.submit { TCPLink() }.get()
        for lane in [Lane.control, .data] {
            let channel = try await dial(rank: rank, lane: lane, link: link, schedule: schedule, on: eventLoop)
            if lane == .control, settings.dialsEveryone { await sendOwnAddress(on: channel) }
        }
        let up = try await eventLoop.submit { () -> Bool in
            guard !link.isDown else { return false }
            self.delegate?.linkUp(link, member: member)
            return true
        }.get()
        if !up { try await eventLoop.submit { link.close() }.get() }
        return up
    }

    /// A joiner tells each member where it listens (for the welcomes it may send later). A write
    /// that fails means the lane closed: the pair is then dialed again (`dialPair`).
    private func sendOwnAddress(on channel: Channel) async {
        let own = settings.addresses[settings.memberRank]
        let address = ControlMessage(
            kind: .address, id: settings.view.members[settings.memberRank].rawValue, host: own.host, port: own.port)
        do {
            try await channel.writeAndFlush(address.encoded()).get()
        } catch {
            logger.info(
                "telling \(channel.remoteAddress.map { "\($0)" } ?? "a member") this joiner's address failed: \(error)")
        }
    }

    /// Connects one lane to the member at `rank` and sends its hello; retried until the deadline.
    private func dial(
        rank: Int, lane: Lane, link: TCPLink, schedule: DialSchedule, on eventLoop: EventLoop
    )
        async throws -> Channel
    {
        let address = settings.addresses[rank]
        let member = settings.view.members[rank]
        while true {
            let bootstrap = ClientBootstrap(group: eventLoop)
                .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                .channelOption(ChannelOptions.recvAllocator, value: Self.receiveAllocator)
                .channelOption(ChannelOptions.writeBufferWaterMark, value: Self.writeBufferWaterMark)
                .channelInitializer { channel in
                    self.installHandlers(on: channel, link: link, lane: lane, member: member)
                }
            var connected: Channel?
            do {
                let channel = try await bootstrap.connect(host: address.host, port: address.port).get()
                connected = channel
                try await channel.writeAndFlush(Hello(from: settings, lane: lane).encoded(allocator: channel.allocator))
                    .get()
                try await eventLoop.submit { link.attach(channel, lane: lane) }.get()
                return channel
            } catch {
                // A connection whose hello could not be written is closed before the retry (it
                // may have closed already: nothing more to release then).
                try? await connected?.close()
                try await Task.sleep(
                    until: schedule.nextAttempt(
                        to: "\(settings.describePeer(rank: rank)) (\(lane) lane)", after: "\(error)"))
            }
        }
    }

    /// An accepted connection introduced itself. Returns the link its lane joins, or nil (the
    /// connection is refused and closed).
    func accept(hello: Hello, channel: Channel, provisional: TCPLink) -> TCPLink? {
        guard let delegate, delegate.admit(hello) else {
            failed(provisional, reason: "unexpected hello \(hello) for \(settings.view)")
            return nil
        }
        let member = hello.member
        logger.info("member \(member) connected (\(hello.lane) lane)")
        if hello.lane == .all {
            delegate.linkUp(provisional, member: member)
            return provisional
        }
        // The other lane of a half-accepted link joins it; a lane that link already has starts
        // a new link (the peer reconnected).
        if let half = halfAccepted[member], !half.has(hello.lane) {
            halfAccepted[member] = nil
            half.attach(channel, lane: hello.lane)
            return half
        }
        let link = TCPLink()
        link.attach(channel, lane: hello.lane)
        halfAccepted[member] = link
        // The link is up at its first lane: what is written to the other waits in the link
        // until it connects, which a healthy peer does at once.
        delegate.linkUp(link, member: member)
        failIfSecondLaneLate(link, of: hello, on: channel.eventLoop)
        return link
    }

    /// A link whose second lane has not connected within connectTimeout of its first is failed:
    /// the dialer opens both at once (and retries a refused connect for as long); frames written
    /// meanwhile wait in the link.
    private func failIfSecondLaneLate(_ link: TCPLink, of hello: Hello, on eventLoop: EventLoop) {
        let attachTimeout = TimeAmount.nanoseconds(Int64(settings.connectTimeout.nanosecondsClamped))
        eventLoop.scheduleTask(in: attachTimeout) {
            guard self.halfAccepted[hello.member] === link else { return }
            self.halfAccepted[hello.member] = nil
            self.failed(
                link,
                reason: "member \(hello.member) opened its \(hello.lane) lane but not the other "
                    + "within \(self.settings.connectTimeout)")
        }
    }

    func failed(_ link: TCPLink, reason: String) {
        guard let delegate else { return link.close() }
        delegate.failAndClose(link, reason: reason)
    }

    /// One of the link's connections closed: the link is down (once), and its other lane closed.
    func laneClosed(_ link: TCPLink, member: MemberID?) {
        guard link.markDown() else { return }
        link.close()
        if let member, halfAccepted[member] === link { halfAccepted[member] = nil }
        delegate?.linkDown(link, member: member)
    }

    var delegateForHandlers: TransportDelegate? { delegate }
}
