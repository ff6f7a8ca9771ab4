// The runtime shell of one member: it drives the sans-IO OrderingCore on one NIO event loop,
// over links to every other member given by a Transport (TCP or RDMA), and interprets the core's
// effects. All mutable state is touched only on `eventLoop`.
//
// Batching: the core is polled once per burst of reads (channelReadComplete), once per batch
// of application sends and on timers, so one data frame carries many messages and one row
// frame covers them all. A data batch is encoded once into a ByteBuffer that every link
// writes (NIO gathers the queued buffers into one writev at flush).

import Foundation
import Logging
import LockstepCore
import LockstepWire
import NIOCore
import NIOPosix

/// A host and TCP port.
public struct PeerAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }
    /// Parses "host:port".
    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (1...65_535).contains(port), colon > text.startIndex
        else { return nil }
        self.init(host: String(text[..<colon]), port: port)
    }
    public var description: String { "\(host):\(port)" }
}

/// What a member needs to start.
public struct RuntimeSettings: Sendable {
    public var configuration: Configuration
    public var view: View
    public var memberRank: Int
    /// Listening address of every member, by rank.
    public var addresses: [PeerAddress]
    /// How long to keep dialing peers that are not up yet.
    public var connectTimeout: Duration = .seconds(20)
    /// Most application sends waiting for the window (`send` fails beyond it).
    public var sendQueueMessagesMax = 65_536
    /// How members reach each other.
    public var transport: TransportKind = .tcp
    /// Sizes and timeouts of the RDMA transport (used when `transport` is `.rdma`).
    public var rdma = RDMASettings()
    /// Payloads of at least this many bytes travel through the relay (nil: never). Every member
    /// must use the same value.
    public var relayThresholdBytes: Int? = RuntimeSettings.defaultRelayThresholdBytes
    public static let defaultRelayThresholdBytes = 1_024 * 1_024
    /// The relay cuts payloads into blocks of this many bytes, forwarded as each one arrives.
    public var relayBlockBytes = 64 * 1_024
    /// A joiner dials every member (they do not know its address); members of the first view
    /// dial the lower ranks.
    public var dialsEveryone = false

    public init(configuration: Configuration, view: View, memberRank: Int, addresses: [PeerAddress]) {
        self.configuration = configuration
        self.view = view
        self.memberRank = memberRank
        self.addresses = addresses
    }

    /// A joiner's settings, from the leader's welcome.
    public init(configuration: Configuration, joining welcome: Welcome) {
        self.init(configuration: configuration, view: welcome.view, memberRank: welcome.memberRank, addresses: welcome.addresses)
        dialsEveryone = true
    }
}

/// Supplies messages to send, pulled on the member's event loop whenever the window has room
/// (the benchmark's workload uses this: no hop between threads per message).
/// Implementations are used only on the member's event loop (hence `@unchecked Sendable` is fine there).
public protocol MessageSource: AnyObject, Sendable {
    /// Appends at most `limit` payloads, of at most `bytesLimit` bytes together, to `payloads`
    /// (the window's room in messages and in bytes).
    func nextPayloads(limit: Int, bytesLimit: Int, into payloads: inout [Payload])
}

/// Why a runtime could not start or a send was refused.
public struct RuntimeError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A member's window and queues at one moment: the window (room left in messages, own payload
/// bytes in flight), application sends waiting for it, frames of the next view held, batches
/// waiting for relayed payloads, payloads being assembled, relay blocks waiting for a link,
/// bytes written to links and not yet handed to the network, links up, members done. Codable:
/// `lockstep node` reports it as `queues` in its JSON lines.
public struct Occupancy: Sendable, Codable, Equatable, CustomStringConvertible {
    public var windowMessagesFree = 0
    public var windowBytesInFlight = 0
    public var sendQueueMessages = 0
    public var futureFramesHeld = 0
    public var futureBytesHeld = 0
    public var relayBatchesWaiting = 0
    public var relayAssemblies = 0
    public var relayAssemblyBytes = 0
    public var relayBlocksBacklogged = 0
    public var outboundBytesQueued = 0
    public var linksUp = 0
    public var membersDone = 0
    public init() {}

    public var description: String {
        "window \(windowMessagesFree) messages free, \(windowBytesInFlight) bytes in flight; send queue \(sendQueueMessages); "
            + "next-view frames held \(futureFramesHeld) (\(futureBytesHeld) bytes); relay: \(relayBatchesWaiting) batches "
            + "waiting, \(relayAssemblies) payloads assembling (\(relayAssemblyBytes) bytes), \(relayBlocksBacklogged) blocks "
            + "backlogged; outbound queued \(outboundBytesQueued) bytes; links up \(linksUp); members done \(membersDone)"
    }
}

/// Counters of the runtime (read them on the event loop, or through `statistics()`).
public struct RuntimeStatistics: Sendable {
    public var core = CoreStatistics()
    public var framesSent: UInt64 = 0
    public var bytesSent: UInt64 = 0
    public var rowsCoalesced: UInt64 = 0
    public var linksClosedWithError: UInt64 = 0
    /// Relay blocks this member cut from its own messages, and blocks it passed on.
    public var blocksSent: UInt64 = 0
    public var blocksForwarded: UInt64 = 0
    public var relayedMessagesAssembled: UInt64 = 0
    /// Times the application's delivery stream filled up and the member stopped reading.
    public var readPauses: UInt64 = 0
    /// When this member wedged (NIODeadline uptime, nanoseconds), and whom it suspected then.
    public var wedgedAtUptimeNanoseconds: UInt64?
    public var suspectedRanks: [Int] = []
    /// The view this member is in, and when it installed it (NIODeadline uptime nanoseconds;
    /// nil for the first view).
    public var viewID: UInt64 = 0
    public var viewInstalledAtUptimeNanoseconds: UInt64?
    /// This member learned it was removed, or found itself in a minority.
    public var removed = false
    public var minority = false
    /// Messages of a view not installed yet, held until it is; stale ones dropped.
    public var futureMessagesHeld: UInt64 = 0
    public var staleMessagesDropped: UInt64 = 0
    /// The window and every queue, now (filled in by `statistics()`).
    public var occupancy = Occupancy()
    /// The longest time between two rows from the same peer (nanoseconds): the heartbeat
    /// interval plus the longest a row waited on its way (docs/WIRE.md, "Lanes").
    public var rowGapMaxNanoseconds: UInt64 = 0

    /// Holds a suspicion in its current view (it wedged after the last install).
    public var isWedgedNow: Bool {
        guard let wedged = wedgedAtUptimeNanoseconds else { return false }
        guard let installed = viewInstalledAtUptimeNanoseconds else { return true }
        return wedged > installed
    }
}

public final class MemberRuntime: TransportDelegate, @unchecked Sendable {
    public let eventLoop: EventLoop
    public let settings: RuntimeSettings
    private let logger: Logger
    private let limits: WireLimits
    private var core: OrderingCore
    private var links: [TransportLink?]
    private let transport: Transport
    /// Latest row not yet written to a link that was not writable (latest wins).
    private var pendingRows: [ByteBuffer?]
    private var effects: [Effect] = []
    private var pulled: [Payload] = []
    /// Payloads the source gave beyond what the window admitted, sent first once it has room.
    private var pulledBack = CircularBuffer<Payload>()
    private var sendQueue = CircularBuffer<(Payload, EventLoopPromise<Void>)>()
    private weak var source: MessageSource?
    private var onDeliver: (Delivery) -> Void
    private var onViewInstalled: (@Sendable (View) -> Void)?
    private var timer: Scheduled<Void>?
    private var timerAt: Timestamp?
    private var isReady = false
    /// False while the application's delivery stream is full: links are not read.
    private var deliveriesWanted = true
    private var isClosed = false
    private let readyPromise: EventLoopPromise<Void>
    private var stats = RuntimeStatistics()
    // The relay (see `sendThroughRelay`): per origin slot, data batches waiting for relayed
    // payloads (kept in arrival order, so per-sender FIFO holds), payloads being assembled from
    // blocks, and blocks waiting for a link to the next member.
    private var waitingBatches: [CircularBuffer<(DataBatch, [RelayedEntry])>]
    private var assemblies: [[UInt64: Assembly]]
    private var forwardBacklog: [ByteBuffer] = []
    // Views. Links are kept by *slot*: a member's rank in the first view (what the transport
    // identified at connect time). Ranks change with every view; these map between the two.
    private var slotOfRank: [Int]
    private var rankOfSlot: [Int?]
    /// Traffic of a view not installed yet, by slot, in arrival order (bounded in frames and bytes).
    private var future: [(Int, HeldFrame)] = []
    private var futureMessagesMax: Int
    private var futureBytes = 0
    private var futureBytesMax: Int
    private var replayPending = false
    // Joins. Slots grow as joiners connect: `slotMembers[slot]` is who it is, `slotAddresses`
    // where it listens (for welcomes). Joiners this member accepted as leader wait on their join
    // connection for the welcome; what is sent to a member of the view whose link is not up yet
    // (a joiner that has not connected) is held for it, bounded.
    private var slotMembers: [MemberID]
    private var slotAddresses: [PeerAddress?]
    private var joinerLinks: [MemberID: (TransportLink, PeerAddress)] = [:]
    private var acceptedAddresses: [MemberID: PeerAddress] = [:]
    private var answeredStragglers: Set<[UInt64]> = []
    private var heldForJoiners: [MemberID: [ByteBuffer]] = [:]
    private var effectView: View
    private var ledBeforePoll = false
    private var snapshotProvider: (@Sendable () -> [UInt8])?
    // Finishing together (`finish`): the members that said they are done, this member's own
    // word, and who waits for everyone's. Once a peer is done (or this member closes), its link
    // going down is expected: logged at info level, not suspected.
    /// A poll is queued to run after this event-loop iteration's reads (`readsComplete`).
    private var pollAfterReads = false
    private var membersDone: Set<MemberID> = []
    /// When the last row from each slot arrived (uptime nanoseconds; 0 none yet).
    private var lastRowArrival: [UInt64] = []
    private var saidDone = false
    private var allDone: EventLoopPromise<Void>?

    /// A frame of a view this member has not installed yet, kept until it does.
    private enum HeldFrame {
        case message(Message)
        case relayed(DataBatch, [RelayedEntry])
        /// A relay block: the whole frame, its payload bytes starting at the offset.
        case block(Block, ByteBuffer, Int)

        var bytes: Int {
            switch self {
            case .message(.data(let batch)):
                return batch.entries.reduce(64) { total, entry in
                    if case .message(let payload) = entry { return total + 5 + payload.count }
                    return total + 9
                }
            case .message(.row): return 256
            case .relayed(let batch, _): return 64 + 16 * batch.entries.count
            case .block(_, let buffer, _): return buffer.readableBytes
            }
        }
    }

    private struct Assembly {
        var bytes: [UInt8]
        var filled: Int
        var isComplete: Bool { filled == bytes.count }
    }

    /// Starts a member: listens, dials the lower-ranked members, and returns once a link to
    /// every other member is up. `onDeliver` runs on the member's event loop.
    public static func start(
        settings: RuntimeSettings, eventLoop: EventLoop, logger: Logger, onDeliver: @escaping (Delivery) -> Void
    ) async throws -> MemberRuntime {
        guard settings.addresses.count == settings.view.memberCount else {
            throw RuntimeError("\(settings.addresses.count) addresses for \(settings.view.memberCount) members")
        }
        let core: OrderingCore
        do {
            core = try OrderingCore(configuration: settings.configuration, view: settings.view, memberRank: settings.memberRank)
        } catch {
            throw RuntimeError("\(error)")
        }
        let runtime = MemberRuntime(settings: settings, core: core, eventLoop: eventLoop, logger: logger, onDeliver: onDeliver)
        do {
            try await runtime.transport.start(eventLoop: eventLoop, delegate: runtime)
        } catch {
            // Nobody will wait for readiness now: settle it (an unsettled promise is a leak), and
            // let the transport let go of what it opened.
            runtime.readyPromise.fail(error)
            await runtime.transport.close()
            throw error
        }
        let deadline = NIODeadline.now() + .nanoseconds(Int64(settings.connectTimeout.nanosecondsClamped))
        let timeout = eventLoop.scheduleTask(deadline: deadline) {
            runtime.readyPromise.fail(RuntimeError("not every member connected within \(settings.connectTimeout)"))
        }
        eventLoop.execute { runtime.checkReady() }
        try await runtime.readyPromise.futureResult.get()
        timeout.cancel()
        return runtime
    }

    private init(
        settings: RuntimeSettings, core: OrderingCore, eventLoop: EventLoop, logger: Logger,
        onDeliver: @escaping (Delivery) -> Void
    ) {
        self.settings = settings
        self.core = core
        self.eventLoop = eventLoop
        self.logger = logger
        self.onDeliver = onDeliver
        self.limits = WireLimits(configuration: settings.configuration)
        self.transport = settings.transport.make(settings: settings, limits: limits, logger: logger)
        self.links = Array(repeating: nil, count: settings.view.memberCount)
        self.pendingRows = Array(repeating: nil, count: settings.view.memberCount)
        self.waitingBatches = Array(repeating: CircularBuffer(), count: settings.view.memberCount)
        self.assemblies = Array(repeating: [:], count: settings.view.memberCount)
        self.readyPromise = eventLoop.makePromise(of: Void.self)
        self.slotOfRank = Array(settings.view.members.indices)
        self.rankOfSlot = Array(settings.view.members.indices)
        self.slotMembers = settings.view.members
        self.slotAddresses = settings.addresses
        self.effectView = settings.view
        self.futureMessagesMax = 4 * settings.configuration.windowMessagesMax * settings.view.memberCount + 1_024
        // What peers can send ahead of an install: their windows (data re-sent in the next view)
        // and the relay's blocks of them, with room for rows.
        self.futureBytesMax = 2 * max(settings.configuration.windowBytesMax, settings.configuration.messageBytesMax)
            * settings.view.memberCount + 16 * 1_024 * 1_024
        effects.reserveCapacity(4_096)
    }

    // MARK: - Application API

    /// Sends `payload` to the group; returns once the window has admitted it (so a caller that
    /// awaits each send is paced by the window).
    public func send(_ payload: Payload) async throws {
        let promise = eventLoop.makePromise(of: Void.self)
        eventLoop.execute {
            guard !self.isClosed else { return promise.fail(RuntimeError("the member is closed")) }
            guard self.sendQueue.count < self.settings.sendQueueMessagesMax else {
                return promise.fail(RuntimeError("send queue full (\(self.settings.sendQueueMessagesMax) messages)"))
            }
            self.sendQueue.append((payload, promise))
            self.poll()
        }
        try await promise.futureResult.get()
    }

    /// Calls `observer` on the event loop whenever this member installs a view (after the
    /// deliveries of the view it leaves, before any of the new one).
    public func setViewObserver(_ observer: @escaping @Sendable (View) -> Void) {
        eventLoop.execute { self.onViewInstalled = observer }
    }

    /// Supplies the application state a joiner starts from (called on the event loop when this
    /// member, as leader, welcomes a joiner: after the deliveries of the view that ends).
    public func setSnapshotProvider(_ provider: @escaping @Sendable () -> [UInt8]) {
        eventLoop.execute { self.snapshotProvider = provider }
    }

    /// Makes `source` the supplier of messages; it is pulled on the event loop from now on.
    public func setSource(_ source: MessageSource) {
        eventLoop.execute {
            self.source = source
            self.poll()
        }
    }

    /// Asks the runtime to pull from its source again (after the source was empty).
    public func wake() {
        eventLoop.execute { self.poll() }
    }

    /// Pauses or resumes reading from every link (back-pressure from a slow consumer).
    func setDeliveriesWanted(_ wanted: Bool) {
        eventLoop.execute {
            guard self.deliveriesWanted != wanted else { return }
            self.deliveriesWanted = wanted
            if !wanted { self.stats.readPauses += 1 }
            for link in self.links { link?.setReading(wanted) }
        }
    }

    public func statistics() async throws -> RuntimeStatistics {
        try await eventLoop.submit {
            var stats = self.stats
            stats.core = self.core.statistics
            stats.viewID = self.core.view.id.rawValue
            stats.occupancy.windowMessagesFree = self.core.sendCapacity
            stats.occupancy.windowBytesInFlight = self.core.windowBytesInFlight
            stats.occupancy.sendQueueMessages = self.sendQueue.count
            stats.occupancy.futureFramesHeld = self.future.count
            stats.occupancy.futureBytesHeld = self.futureBytes
            stats.occupancy.relayBatchesWaiting = self.waitingBatches.reduce(0) { $0 + $1.count }
            stats.occupancy.relayAssemblies = self.assemblies.reduce(0) { $0 + $1.count }
            stats.occupancy.relayAssemblyBytes = self.assemblies.reduce(0) { total, byIndex in
                byIndex.values.reduce(total) { $0 + $1.bytes.count }
            }
            stats.occupancy.relayBlocksBacklogged = self.forwardBacklog.count
            stats.occupancy.linksUp = self.slotOfRank.filter { $0 >= 0 && $0 != self.settings.memberRank && self.links[$0] != nil }.count
            stats.occupancy.membersDone = self.membersDone.count
            stats.occupancy.outboundBytesQueued = self.links.reduce(0) { $0 + ($1?.queuedBytes ?? 0) }
            return stats
        }.get()
    }

    /// Counts of RDMA operations and the device (nil on TCP). Any thread.
    public var rdmaStatistics: RDMAStatistics? { (transport as? RDMATransport)?.statistics }

    /// How many messages the window admits now (on the event loop).
    public var sendCapacityOnLoop: Int {
        eventLoop.preconditionInEventLoop()
        return core.sendCapacity
    }

    /// Ends this member together with the rest of the view, quietly: says it is done (a control
    /// frame to every member, after everything it sent), waits until every member of the current
    /// view has said so too, or `timeout` passes, then closes. A peer that is done and closes is
    /// not a failure: nobody suspects it or logs an error. Returns the members not heard to be
    /// done (empty when everyone was).
    public func finish(timeout: Duration) async -> [MemberID] {
        let waited: EventLoopFuture<Void> = eventLoop.flatSubmit {
            let promise = self.eventLoop.makePromise(of: Void.self)
            self.allDone = promise
            self.saidDone = true
            self.logger.info("done: telling the other members at \(NIODeadline.now().uptimeNanoseconds / 1_000_000) ms")
            self.membersDone.insert(self.settings.view.members[self.settings.memberRank])
            let done = ControlMessage(kind: .done, id: self.settings.view.members[self.settings.memberRank].rawValue).encoded()
            self.forEachPeerLink { _, link in
                link.write(done)
                link.flush()
            }
            self.checkAllDone()
            return promise.futureResult
        }
        let timer = eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.nanosecondsClamped))) {
            self.allDone?.succeed(())
            self.allDone = nil
        }
        try? await waited.get()
        timer.cancel()
        let missing = (try? await eventLoop.submit { self.core.view.members.filter { !self.membersDone.contains($0) } }.get()) ?? []
        await close()
        return missing
    }

    private func checkAllDone() {
        guard saidDone, let promise = allDone, core.view.members.allSatisfy(membersDone.contains) else { return }
        allDone = nil
        promise.succeed(())
    }

    /// A link to this member going down is expected: it said it is done, or this member closes.
    private func isExpectedDown(slot: Int?) -> Bool {
        if isClosed { return true }
        guard let slot, slotMembers.indices.contains(slot) else { return false }
        return membersDone.contains(slotMembers[slot])
    }

    public func close() async {
        try? await eventLoop.submit {
            self.isClosed = true
            self.timer?.cancel()
            for link in self.links { link?.close() }
        }.get()
        await transport.close()
    }

    // MARK: - Links

    public func linkUp(_ link: TransportLink, peerRank: Int) {
        eventLoop.preconditionInEventLoop()
        if let old = links[peerRank], old !== link {
            closeLink(old, reason: "replaced by a new connection from member rank \(peerRank)")
        }
        links[peerRank] = link
        if !deliveriesWanted { link.setReading(false) }
        if let held = heldForJoiners.removeValue(forKey: slotMembers[peerRank]) {
            for buffer in held { link.write(buffer) }
            link.flush()
        }
        checkReady()
    }

    public func admit(_ hello: Hello) -> Int? {
        eventLoop.preconditionInEventLoop()
        if let slot = slotMembers.firstIndex(of: hello.member) {
            return slot == settings.memberRank ? nil : slot
        }
        // A joiner: a member of this view that had not connected, or of a view not installed yet.
        guard hello.viewID > core.view.id || (hello.viewID == core.view.id && core.view.rank(of: hello.member) != nil) else {
            return nil
        }
        let slot = slotMembers.count
        slotMembers.append(hello.member)
        slotAddresses.append(nil)
        links.append(nil)
        pendingRows.append(nil)
        waitingBatches.append(CircularBuffer())
        assemblies.append([:])
        rankOfSlot.append(nil)
        if let rank = core.view.rank(of: hello.member) {
            rankOfSlot[slot] = rank
            slotOfRank[rank] = slot
        }
        return slot
    }

    public func control(_ body: [UInt8], link: TransportLink, peerRank slot: Int?) {
        guard let message = ControlMessage.decode(body) else {
            closeLink(link, reason: "a malformed control frame")
            return
        }
        switch message.kind {
        case .address:
            if let slot, let host = message.host, let port = message.port, message.id == slotMembers[slot].rawValue {
                slotAddresses[slot] = PeerAddress(host: host, port: port)
            }
        case .join:
            guard let id = message.id, let host = message.host, let port = message.port else {
                closeLink(link, reason: "a join without id or address")
                return
            }
            let joiner = MemberID(id)
            switch core.requestJoin(joiner) {
            case .accepted:
                joinerLinks[joiner] = (link, PeerAddress(host: host, port: port))
                acceptedAddresses[joiner] = PeerAddress(host: host, port: port)
                logger.warning("accepted a join from \(joiner) at \(host):\(port)")
                poll()
            case .redirect(let leader):
                if let leaderSlot = slotMembers.firstIndex(of: leader), let address = slotAddresses[leaderSlot] {
                    link.write(ControlMessage(kind: .redirect, host: address.host, port: address.port).encoded())
                } else {
                    link.write(ControlMessage(kind: .refused, reason: "the leader's address is unknown here").encoded())
                }
                link.flush()
            case .refused(let reason):
                link.write(ControlMessage(kind: .refused, reason: reason).encoded())
                link.flush()
            }
        case .done:
            guard let slot, message.id == slotMembers[slot].rawValue else {
                closeLink(link, reason: "a done frame from an unidentified link or for another member")
                return
            }
            membersDone.insert(slotMembers[slot])
            logger.info("member \(slotMembers[slot]) is done (heard at \(NIODeadline.now().uptimeNanoseconds / 1_000_000) ms)")
            checkAllDone()
        case .redirect, .refused, .welcome:
            closeLink(link, reason: "unexpected control frame \(message.kind) from a peer")
        }
    }

    /// As the leader that installed `view`: send each joiner the view, the addresses and a snapshot.
    private func welcomeJoiners(of view: View, previous: View) {
        for (rank, member) in view.members.enumerated() where !previous.members.contains(member) {
            guard let (link, _) = joinerLinks.removeValue(forKey: member) else { continue }
            var members: [ControlMessage.Member] = []
            for (memberRank, id) in view.members.enumerated() {
                let address = slotMembers.firstIndex(of: id).flatMap { slotAddresses[$0] } ?? joinerLinks[id]?.1
                    ?? (id == member ? joinerAddress(member) : nil)
                guard let address else {
                    logger.error("cannot welcome \(member): no address for \(id)")
                    link.close()
                    return
                }
                members.append(.init(id: id.rawValue, host: address.host, port: address.port, sends: view.senderRank(ofMemberRank: memberRank) != nil))
            }
            let snapshot = snapshotProvider?() ?? []
            link.write(ControlMessage(kind: .welcome, viewID: view.id.rawValue, members: members, rank: rank, snapshot: Data(snapshot)).encoded())
            link.flush()
        }
    }

    private func joinerAddress(_ member: MemberID) -> PeerAddress? { acceptedAddresses[member] }

    public func received(_ frame: ReceivedFrame, from rank: Int, link: TransportLink) {
        switch frame.frame {
        case .hello:
            break  // the transport's business
        case .message(let message):
            received(message, from: rank, link: link)
        case .relayedData(let batch, let relayed):
            receivedRelayedData(batch, relayed: relayed, from: rank, link: link)
        case .block(let block):
            if let raw = frame.raw {
                raw.withUnsafeReadableBytes { bytes in
                    receivedBlock(block, frameBytes: bytes, raw: raw, bytesAt: frame.blockBytesAt, from: rank, link: link)
                }
            } else if let lent = frame.lent {
                receivedBlock(block, frameBytes: lent, raw: nil, bytesAt: frame.blockBytesAt, from: rank, link: link)
            }
        case .control(let body):
            control(body, link: link, peerRank: rank)
        }
    }

    /// One poll for every connection that had reads in this event-loop iteration: NIO reports
    /// the end of reads per channel, and with two lanes per peer a poll each would double the
    /// rows written (a system call each); the deferred poll runs right after the loop's reads.
    public func readsComplete() {
        guard !pollAfterReads else { return }
        pollAfterReads = true
        eventLoop.execute(pollAfterReadsTask)
    }

    /// Made once: a closure per burst of reads would be an allocation on the message path.
    private lazy var pollAfterReadsTask: @Sendable () -> Void = { [unowned self] in
        self.pollAfterReads = false
        self.poll()
    }

    public func linkFailed(_ link: TransportLink, reason: String) {
        if isExpectedDown(slot: links.firstIndex { $0 === link }) {
            logger.info("closing the link of a member that is done: \(reason)")
            return
        }
        stats.linksClosedWithError += 1
        logger.error("closing link: \(reason)")
    }

    private func checkReady() {
        guard !isReady else { return }
        for rank in links.indices where rank != settings.memberRank && links[rank] == nil { return }
        isReady = true
        readyPromise.succeed(())
        for block in forwardBacklog { relayToSuccessor(block, in: core.view) }
        forwardBacklog = []
        poll()
    }

    func received(_ message: Message, from slot: Int, link: TransportLink) {
        let viewID = message.viewID
        if case .row = message { noteRowArrival(from: slot) }
        if viewID != core.view.id {
            if viewID > core.view.id {
                // A peer installed the next view first: hold its traffic until this member does.
                guard hold(.message(message), from: slot, viewID: viewID, link: link) else { return }
                // Its sender is alive even if this member is slow to install the view.
                if let rank = rankOfSlot[slot] { try? core.handle(.heard(fromMemberRank: rank)) }
            } else {
                stats.staleMessagesDropped += 1
                // The sender is still in a view this member has left: it missed the install.
                // This member's last row of that view carries it (once per straggler and view).
                if let last = core.lastRowOfPreviousView, last.viewID == viewID,
                    answeredStragglers.insert([UInt64(slot), viewID.rawValue]).inserted
                {
                    link.write(encode(.row(last)))
                    link.flush()
                }
            }
            return
        }
        guard let rank = rankOfSlot[slot] else {
            stats.staleMessagesDropped += 1
            return
        }
        if case .data(let batch) = message, !waitingBatches[slot].isEmpty {
            // Behind a batch that waits for relayed payloads: keep the sender's order.
            waitingBatches[slot].append((batch, []))
            return
        }
        do {
            try core.handle(.received(message, fromMemberRank: rank))
        } catch {
            closeLink(link, reason: "member rank \(rank) broke the protocol: \(error)")
        }
    }

    /// The longest gap between two rows from one peer: what the failure detector sees. Rows come
    /// at least every heartbeat interval, so the gap beyond that is how long a row waited.
    private func noteRowArrival(from slot: Int) {
        let now = NIODeadline.now().uptimeNanoseconds
        if lastRowArrival.count <= slot { lastRowArrival += Array(repeating: 0, count: slot + 1 - lastRowArrival.count) }
        if lastRowArrival[slot] != 0 { stats.rowGapMaxNanoseconds = max(stats.rowGapMaxNanoseconds, now - lastRowArrival[slot]) }
        lastRowArrival[slot] = now
    }

    /// Holds a frame of a view not installed yet; false if that would pass the bound (the link
    /// is then closed: a peer this far ahead is not one this member can catch up with).
    private func hold(_ frame: HeldFrame, from slot: Int, viewID: ViewID, link: TransportLink) -> Bool {
        let bytes = frame.bytes
        guard future.count < futureMessagesMax, futureBytes + bytes <= futureBytesMax else {
            closeLink(link, reason: "member slot \(slot) sent more than \(futureMessagesMax) frames or \(futureBytesMax) bytes of \(viewID) ahead of this member's \(core.view.id)")
            return false
        }
        future.append((slot, frame))
        futureBytes += bytes
        stats.futureMessagesHeld += 1
        return true
    }

    /// Links of the other members of the view the effects being carried out belong to. Not
    /// `core.view`: after a poll that installs a view the core is already in the next one, while
    /// the effects before `installView` (the leader's install row above all) belong to the old
    /// one and must reach all of its members. `slotOfRank` changes at `installView`.
    private func forEachPeerLink(holding buffer: ByteBuffer? = nil, _ body: (Int, TransportLink) -> Void) {
        for (rank, slot) in slotOfRank.enumerated() where slot != settings.memberRank {
            if slot >= 0, let link = links[slot] {
                body(slot, link)
            } else if slot < 0, let buffer {
                holdForJoiner(effectView.members[rank], buffer)
            }
        }
    }

    /// A joiner that has not connected yet: keep what it must receive, bounded (sent at its linkUp).
    private func holdForJoiner(_ member: MemberID, _ buffer: ByteBuffer) {
        if heldForJoiners[member, default: []].count < futureMessagesMax {
            heldForJoiners[member, default: []].append(buffer)
        }
    }

    /// The next view is installed: re-map ranks to slots, forget the relay's state, and replay
    /// what peers sent in this view before this member installed it.
    private func installed(_ view: View) {
        let previous = effectView
        effectView = view
        slotOfRank = view.members.map { member in slotMembers.firstIndex(of: member) ?? -1 }
        heldForJoiners = heldForJoiners.filter { view.members.contains($0.key) }
        if ledBeforePoll { welcomeJoiners(of: view, previous: previous) }
        rankOfSlot = Array(repeating: nil, count: links.count)
        for (rank, slot) in slotOfRank.enumerated() where slot >= 0 { rankOfSlot[slot] = rank }

        for slot in waitingBatches.indices {
            waitingBatches[slot].removeAll()
            assemblies[slot].removeAll()
        }
        forwardBacklog.removeAll()
        futureBytes = 0
        stats.viewInstalledAtUptimeNanoseconds = NIODeadline.now().uptimeNanoseconds
        stats.wedgedAtUptimeNanoseconds = stats.wedgedAtUptimeNanoseconds ?? stats.viewInstalledAtUptimeNanoseconds
        logger.warning("installed \(view) at rank \(core.memberRank)")
        onViewInstalled?(view)
        replayPending = !future.isEmpty
    }

    private func replayFuture() {
        replayPending = false
        let held = future
        future = []
        futureBytes = 0
        for (slot, frame) in held {
            guard let link = links[slot] else { continue }
            switch frame {
            case .message(let message):
                received(message, from: slot, link: link)
            case .relayed(let batch, let relayed):
                receivedRelayedData(batch, relayed: relayed, from: slot, link: link)
            case .block(let block, let buffer, let bytesAt):
                buffer.withUnsafeReadableBytes { bytes in
                    receivedBlock(block, frameBytes: bytes, raw: buffer, bytesAt: bytesAt, from: slot, link: link)
                }
            }
        }
    }

    // MARK: - The relay
    //
    // Large payloads do not go from their sender to every member: the data batch (with each
    // large payload replaced by its length) goes to everyone, as the order needs, while the
    // payload's bytes go in blocks along a chain of the current view's ranks, sender rank
    // r -> r+1 -> r+2 ... (mod N), each member passing a block on as soon as it has it. The
    // sender's link and CPU then carry each byte once instead of N-1 times, and the copies spread
    // over the group (Derecho's RDMC does the same with a binomial pipeline). A receiver holds a
    // batch until its relayed payloads are complete, then hands it to the core; later batches of
    // the same sender wait behind it, so per-sender FIFO holds. The core is unchanged: it sees
    // whole batches.
    //
    // When: a member's egress carries (N-1) x its stream without the relay, and about S streams
    // with it (it forwards every sender's blocks). So the relay is used in a view with S < N-1
    // senders, where it lowers the busiest egress, and not when (nearly) everyone sends, where
    // both carry the same bytes and the relay only adds a hop and a copy (measured:
    // bench-results/README.md). Every member decides from the view alone, so all agree.

    /// Whether payloads of at least the threshold travel through the relay in `view`.
    private func relayThreshold(in view: View) -> Int? {
        guard let threshold = settings.relayThresholdBytes, view.memberCount > 2, view.senderCount < view.memberCount - 1
        else { return nil }
        return threshold
    }

    /// Sends a relay block to the next member of the chain in `view`; if that member has not
    /// connected yet (a joiner), keeps it for it like everything else it must receive (bounded).
    private func relayToSuccessor(_ buffer: ByteBuffer, in view: View) {
        guard let rank = view.rank(of: settings.view.members[settings.memberRank]) else { return }
        let next = (rank + 1) % view.memberCount
        let slot = slotOfRank[next]
        if slot >= 0, let link = links[slot] {
            link.write(buffer)
        } else {
            holdForJoiner(view.members[next], buffer)
        }
    }

    /// Sends a batch with large payloads: the batch to everyone, the payloads to the next member.
    private func sendThroughRelay(_ batch: DataBatch, threshold: Int) {
        let direct = encode(.data(batch), relayingFrom: threshold)
        forEachPeerLink(holding: direct) { _, link in
            link.write(direct)
            stats.framesSent += 1
            stats.bytesSent += UInt64(direct.readableBytes)
        }
        guard let ownRank = effectView.rank(of: settings.view.members[settings.memberRank]) else { return }
        var index = batch.firstIndex
        for entry in batch.entries {
            defer { index += entry.indexCount }
            guard case .message(let payload) = entry, payload.count >= threshold else { continue }
            var offset = 0
            while offset < payload.count {
                let end = min(offset + settings.relayBlockBytes, payload.count)
                let startIndex = payload.startIndex
                let block = Block(
                    viewID: batch.viewID, originMemberRank: ownRank, index: index, totalBytes: payload.count, offset: offset,
                    bytes: payload[(startIndex + offset)..<(startIndex + end)])
                let size = Wire.encodedBytes(block)
                var buffer = ByteBufferAllocator().buffer(capacity: size)
                buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { Wire.encode(block, into: $0) }
                relayToSuccessor(buffer, in: effectView)
                stats.blocksSent += 1
                stats.bytesSent += UInt64(size)
                offset = end
            }
        }
    }

    func receivedRelayedData(_ batch: DataBatch, relayed: [RelayedEntry], from slot: Int, link: TransportLink) {
        if batch.viewID != core.view.id {
            if batch.viewID > core.view.id {
                _ = hold(.relayed(batch, relayed), from: slot, viewID: batch.viewID, link: link)
            } else {
                stats.staleMessagesDropped += 1
            }
            return
        }
        guard rankOfSlot[slot] != nil else {
            stats.staleMessagesDropped += 1
            return
        }
        waitingBatches[slot].append((batch, relayed))
        releaseWaitingBatches(ofSlot: slot)
    }

    /// A relay block: `frameBytes` is the whole frame, `raw` the same bytes as a buffer when the
    /// transport has one (else a buffer is made only if the block is forwarded or held).
    func receivedBlock(
        _ block: Block, frameBytes: UnsafeRawBufferPointer, raw: ByteBuffer?, bytesAt: Int, from slot: Int, link: TransportLink
    ) {
        let view = core.view
        if block.viewID != view.id {
            if block.viewID > view.id {
                _ = hold(.block(block, raw ?? ByteBuffer(bytes: frameBytes), bytesAt), from: slot, viewID: block.viewID, link: link)
            } else {
                stats.staleMessagesDropped += 1
            }
            return
        }
        let count = view.memberCount
        let origin = block.originMemberRank
        let ownRank = core.memberRank
        let predecessor = slotOfRank[(ownRank + count - 1) % count]
        guard origin < count, origin != ownRank, view.senderRank(ofMemberRank: origin) != nil, slot == predecessor,
            relayThreshold(in: view) != nil, slotOfRank[origin] >= 0
        else {
            closeLink(link, reason: "member slot \(slot) relayed a block of member rank \(origin) out of the chain of \(view.id)")
            return
        }
        let originSlot = slotOfRank[origin]
        // Bound what a peer can make this member hold: a window's worth of messages, twice.
        let assembliesMax = 2 * settings.configuration.windowMessagesMax
        let blockBytes = frameBytes.count - bytesAt
        // Blocks of a message arrive in order along the chain, so each continues where the last
        // ended and a complete payload has no gap (its storage starts uninitialized).
        var assembly = assemblies[originSlot].removeValue(forKey: block.index)
            ?? Assembly(bytes: [UInt8](unsafeUninitializedCapacity: block.totalBytes) { $1 = block.totalBytes }, filled: 0)
        guard assembly.bytes.count == block.totalBytes, block.offset == assembly.filled,
            assembly.filled + blockBytes <= block.totalBytes, assemblies[originSlot].count < assembliesMax
        else {
            closeLink(link, reason: "member slot \(slot) relayed an inconsistent block \(block.index)@\(block.offset) of member rank \(origin)")
            return
        }
        assembly.bytes.withUnsafeMutableBytes { target in
            if let from = frameBytes.baseAddress, let to = target.baseAddress {
                (to + block.offset).copyMemory(from: from + bytesAt, byteCount: blockBytes)
            }
        }
        assembly.filled += blockBytes
        assemblies[originSlot][block.index] = assembly
        // Pass it on at once (the pipeline), unless the next member is the origin.
        if (ownRank + 1) % count != origin {
            let forwarded = raw ?? ByteBuffer(bytes: frameBytes)
            if isReady {
                relayToSuccessor(forwarded, in: view)
            } else {
                forwardBacklog.append(forwarded)
            }
            stats.blocksForwarded += 1
        }
        if assembly.isComplete { releaseWaitingBatches(ofSlot: originSlot) }
    }

    /// Hands the origin's waiting batches to the core, in order, while their payloads are complete.
    private func releaseWaitingBatches(ofSlot origin: Int) {
        while let (batch, relayed) = waitingBatches[origin].first {
            for entry in relayed where assemblies[origin][entry.index]?.isComplete != true { return }
            waitingBatches[origin].removeFirst()
            var entries = batch.entries
            for entry in relayed {
                guard let assembly = assemblies[origin].removeValue(forKey: entry.index), assembly.bytes.count == entry.bytes
                else {
                    if let link = links[origin] { closeLink(link, reason: "relayed payload \(entry.index) of member slot \(origin) has the wrong length") }
                    return
                }
                entries[entry.position] = .message(assembly.bytes[...])
                stats.relayedMessagesAssembled += 1
            }
            guard let rank = rankOfSlot[origin] else { return }
            let whole = DataBatch(viewID: batch.viewID, senderRank: batch.senderRank, firstIndex: batch.firstIndex, entries: entries)
            do {
                try core.handle(.received(.data(whole), fromMemberRank: rank))
            } catch {
                if let link = links[origin] { closeLink(link, reason: "member rank \(rank) broke the protocol: \(error)") }
            }
        }
    }

    public func linkWritable(peerRank slot: Int) {
        let rank = slot
        if let row = pendingRows[rank], let link = links[rank] {
            pendingRows[rank] = nil
            link.write(row)
            link.flush()
        }
    }

    /// Closes one link with a logged reason; the member stays up.
    func closeLink(_ link: TransportLink, reason: String) {
        linkFailed(link, reason: reason)
        link.close()
    }

    public func linkDown(_ link: TransportLink, peerRank slot: Int?) {
        guard let slot, links[slot] === link else { return }
        links[slot] = nil
        if isExpectedDown(slot: slot) {
            if !isClosed { logger.info("link to \(slotMembers[slot]), which is done, closed") }
            return
        }
        if !isClosed, let rank = rankOfSlot[slot] {
            // A failed link is a suspicion (shared through the rows): the member wedges and the
            // view change removes the peer.
            do { try core.handle(.linkFailed(memberRank: rank)) } catch { logger.error("\(error)") }
            poll()
            logger.warning("link to member rank \(rank) (\(slotMembers[slot])) is down")
        }
    }

    // MARK: - Driving the core

    private func poll() {
        guard isReady, !isClosed else { return }
        var rounds = 0
        while true {
            rounds += 1
            while core.sendCapacity > 0, let first = sendQueue.first, first.0.count <= core.sendCapacityBytes {
                let (payload, promise) = sendQueue.removeFirst()
                do {
                    try core.send(payload)
                    promise.succeed(())
                } catch {
                    promise.fail(RuntimeError("\(error)"))
                }
            }
            // Unknown until asked: a source that was not asked (no room) may have more.
            var sourceDrained = source == nil
            // Pulled earlier and not admitted then: these go first, in their order.
            while core.sendCapacity > 0, let payload = pulledBack.first, payload.count <= core.sendCapacityBytes {
                pulledBack.removeFirst()
                do {
                    try core.send(payload)
                } catch {
                    logger.error("source message refused: \(error)")
                }
            }
            let capacity = core.sendCapacity
            if capacity > 0, pulledBack.isEmpty, let source {
                // An empty window admits one message of any size (sendCapacityBytes is Int.max):
                // ask for a window's worth, and only if even the first does not fit, for that one
                // alone (asking for one at a time cost small messages a fifth of their rate).
                let bytesRoom = core.sendCapacityBytes
                let empty = bytesRoom == Int.max
                let limit = capacity
                pulled.removeAll(keepingCapacity: true)
                source.nextPayloads(limit: limit, bytesLimit: empty ? settings.configuration.windowBytesMax : bytesRoom, into: &pulled)
                if empty && pulled.isEmpty { source.nextPayloads(limit: 1, bytesLimit: Int.max, into: &pulled) }
                sendPulled()
                // Fewer than asked for: the source has nothing more now, or its next message
                // does not fit the bytes left (it comes at a later poll, when the window opens).
                // Not drained only when it gave all it was asked for: then go round again.
                sourceDrained = pulled.count < limit
            }
            effects.removeAll(keepingCapacity: true)
            // Only a wedged member can install a view (and welcome joiners) in this poll.
            ledBeforePoll = core.isWedged && core.leaderRank == core.memberRank
            core.poll(into: &effects)
            carryOutEffects()
            if replayPending {
                replayFuture()
                continue
            }
            // Deliveries in this poll may have opened the window: go round again while there is
            // something to send and room for it. After a few rounds, yield to reads and come back.
            let room = core.sendCapacityBytes
            let moreToSend = (sendQueue.first.map { $0.0.count <= room } ?? false) || (pulledBack.first.map { $0.count <= room } ?? false)
                || !sourceDrained
            guard moreToSend, core.sendCapacity > 0 else { break }
            if rounds == 4 {
                eventLoop.execute { self.poll() }
                break
            }
        }
        for link in links { link?.flush() }
    }

    /// Hands the payloads pulled from the source to the core. A source that gave more than the
    /// window admits loses nothing: from the first the window refuses, they wait in `pulledBack`
    /// for room, in order.
    private func sendPulled() {
        for index in pulled.indices {
            do {
                try core.send(pulled[index])
            } catch where error.code == .windowFull {
                pulledBack.append(contentsOf: pulled[index...])
                return
            } catch {
                // Wedged, removed or too large: the source's message cannot go in this view.
                logger.error("source message refused: \(error)")
            }
        }
    }

    private func carryOutEffects() {
        for effect in effects {
            switch effect {
            case .sendData(let batch):
                if let threshold = relayThreshold(in: effectView),
                    batch.entries.contains(where: { if case .message(let p) = $0 { return p.count >= threshold } else { return false } })
                {
                    sendThroughRelay(batch, threshold: threshold)
                    continue
                }
                let buffer = encode(.data(batch))
                forEachPeerLink(holding: buffer) { _, link in
                    link.write(buffer)
                    stats.framesSent += 1
                    stats.bytesSent += UInt64(buffer.readableBytes)
                }
            case .sendRow(let row):
                let buffer = encode(.row(row))
                forEachPeerLink(holding: buffer) { slot, link in
                    if link.isWritable {
                        link.write(buffer)
                        stats.framesSent += 1
                        stats.bytesSent += UInt64(buffer.readableBytes)
                    } else {
                        // Rows are latest-wins, but an install row must not be replaced by a
                        // row of the next view: write it regardless.
                        if row.installNumber != 0 {
                            link.write(buffer)
                            return
                        }
                        if pendingRows[slot] != nil { stats.rowsCoalesced += 1 }
                        pendingRows[slot] = buffer
                    }
                }
            case .deliver(let delivery):
                onDeliver(delivery)
            case .armTimer(let at):
                armTimer(at)
            case .wedged(let ranks):
                stats.wedgedAtUptimeNanoseconds = NIODeadline.now().uptimeNanoseconds
                stats.suspectedRanks = ranks
                let silences = ranks.map { "\($0): \(core.silenceNanoseconds(ofMemberRank: $0) / 1_000_000) ms" }
                logger.warning("wedged: member ranks \(ranks) suspected (silent for \(silences.joined(separator: ", ")); \(core.statistics.localStalls) local stalls); this member sends nothing new in \(core.view.id)")
            case .installView(let view, _):
                installed(view)
            case .removed(let reason):
                stats.removed = true
                logger.error("removed from the group: \(reason)")
            case .minority(let reachable, let of):
                stats.minority = true
                logger.error(
                    "in a minority: reaches \(reachable) of \(of) members of \(core.view.id) (suspects ranks \(core.suspectedRanks), \(core.statistics.suspicionsRaised) suspicions raised here, \(core.statistics.localStalls) local stalls); not forming a view (partition safety)")
            }
        }
    }

    private func encode(_ message: Message, relayingFrom threshold: Int = .max) -> ByteBuffer {
        let size = Wire.encodedBytes(message, relayingFrom: threshold)
        var buffer = ByteBufferAllocator().buffer(capacity: size)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) {
            Wire.encode(message, relayingFrom: threshold, into: $0)
        }
        return buffer
    }

    private func armTimer(_ at: Timestamp) {
        guard timerAt != at else { return }
        timerAt = at
        timer?.cancel()
        timer = eventLoop.scheduleTask(deadline: .uptimeNanoseconds(at.nanoseconds)) {
            self.timerAt = nil
            // A member that is done and has closed may do so before this one has heard from
            // everyone: its silence is not a failure (it delivered everything; its last row came
            // before its `done`). One that is done but still connected is watched as usual.
            for member in self.membersDone {
                guard let slot = self.slotMembers.firstIndex(of: member), self.links[slot] == nil,
                    let rank = self.core.view.rank(of: member), rank != self.core.memberRank
                else { continue }
                try? self.core.handle(.heard(fromMemberRank: rank))
            }
            self.core.tick(Timestamp(nanoseconds: NIODeadline.now().uptimeNanoseconds))
            self.poll()
        }
    }
}
