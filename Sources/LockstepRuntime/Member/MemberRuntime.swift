// The runtime shell of one member: it drives the sans-IO OrderingCore on one NIO event loop,
// over links to every other member given by a Transport (TCP or RDMA), and interprets the core's
// effects. All mutable state is touched only on `eventLoop`. Peers are named by `MemberID`
// (who) everywhere here; a rank (a position in a view) is looked up in the core's view at the
// moment a frame is handed to the shell.core.
//
// The rooms: this file holds the state, start and the application API; MemberRuntime+Links
// (what the transport reports), +Control (joins and `done`), +Views (traffic of other views,
// installs), +Relay (the relay's IO; its rules are Relay.swift) and +Core (polling the core and
// carrying out its effects).
//
// Batching: the core is polled once per burst of reads (channelReadComplete), once per batch
// of application sends and on timers, so one data frame carries many messages and one row
// frame covers them all. A data batch is encoded once into a ByteBuffer that every link
// writes (NIO gathers the queued buffers into one writev at flush).

import LockstepCore
import LockstepStorage
import LockstepWire
import Logging
import NIOCore
import NIOPosix

/// Supplies messages to send, pulled on the member's event loop whenever the window has room
/// (the benchmark's workload uses this: no hop between threads per message). Implementations
/// are used only on the member's event loop (hence `@unchecked Sendable` is fine there).
public protocol MessageSource: AnyObject, Sendable {
    /// Appends at most `limit` payloads, of at most `bytesLimit` bytes together, to `payloads`
    /// (the window's room in messages and in bytes).
    func nextPayloads(limit: Int, bytesLimit: Int, into payloads: inout [Payload])
}

public final class MemberRuntime: @unchecked Sendable {
    public let eventLoop: EventLoop
    public let settings: RuntimeSettings
    /// This member.
    let me: MemberID
    let logger: Logger
    let limits: WireLimits
    /// The member shell: the core across views, and the rules around a view change.
    var shell: Member<HeldFrame>
    let transport: Transport
    /// The link to each peer that is up.
    var links: [MemberID: TransportLink] = [:]
    /// Every member a link was ever admitted for or dialed: the first view's and joiners'.
    var knownMembers: Set<MemberID>
    /// Where members listen (the first view's; a joiner's from its join request or its `address` frame):
    /// for welcomes and redirects.
    var addresses: [MemberID: PeerAddress] = [:]
    /// Latest row not yet written to a link that was not writable (latest wins).
    var pendingRows: [MemberID: ByteBuffer] = [:]
    var effects: [MemberEffect] = []
    var pulled: [Payload] = []
    /// Payloads the source gave beyond what the window admitted, sent first once it has room.
    var pulledBack = CircularBuffer<Payload>()
    var sendQueue = CircularBuffer<(Payload, EventLoopPromise<Void>)>()
    weak var source: MessageSource?
    var onDeliver: (Delivery) -> Void
    var onViewInstalled: (@Sendable (View) -> Void)?
    var timer: Scheduled<Void>?
    var timerAt: Timestamp?
    var isReady = false
    /// False while the application's delivery stream is full: links are not read.
    var deliveriesWanted = true
    /// Members the shell told this runtime not to read from (`MemberEffect.pauseReading`).
    var readingPaused: Set<MemberID> = []
    var isClosed = false
    let readyPromise: EventLoopPromise<Void>
    var stats = RuntimeStatistics()
    /// Durable mode: this member's log (Durable/DurableLog.swift); nil in memory.
    var durable: DurableLog?
    /// The log failed, and the member is leaving (said once).
    var storageFailure: StorageError?
    /// Durable mode: told of every change of the persistence frontier, on the event loop.
    var onPersistenceFrontier: ((PersistenceProgress) -> Void)?
    var reportedPersistence: PersistenceProgress?
    var relay: Relay
    // Joins. Joiners that asked this member wait on their join connection for the welcome
    // (their address is in `addresses` from the request on); what is sent to a member of the view
    // that has not connected yet (a joiner) is held for it, bounded (`JoinerHold`).
    var joinerLinks: [MemberID: TransportLink] = [:]
    var heldForJoiners: [MemberID: JoinerHold] = [:]
    var snapshotProvider: (@Sendable () -> SnapshotProducer?)?
    /// Snapshot transfers under way, by the joiner's connection (cancelled when it goes down).
    var snapshotWriters: [ObjectIdentifier: SnapshotWriter] = [:]
    var onEvent: (@Sendable (RuntimeEvent) -> Void)?
    /// Why sends are refused now (closed, removed, in a minority); nil while they are taken.
    var queueRefusal: RuntimeError?
    /// `leave` waits for this member to learn it was removed.
    var leftPromise: EventLoopPromise<Void>?
    /// A poll is queued to run after this event-loop iteration's reads (`readsComplete`).
    var pollAfterReads = false
    /// Made once: a closure per burst of reads would be an allocation on the message path.
    lazy var pollAfterReadsTask: @Sendable () -> Void = { [unowned self] in
        self.pollAfterReads = false
        self.poll()
    }
    // Finishing together (`finish`): the members that said they are done, this member's own
    // word, and who waits for everyone's. Once a peer is done (or this member closes), its link
    // going down is expected: logged at info level, not suspected.
    var membersDone: Set<MemberID> = []
    var saidDone = false
    var allDone: EventLoopPromise<Void>?
    /// When the last row from each peer arrived (uptime nanoseconds).
    var lastRowArrival: [MemberID: UInt64] = [:]
    /// Until then, a peer whose link is up but that has sent no row yet is taken to be starting,
    /// not failed (see `hearPeersStillStarting`): `connectTimeout` after this member started.
    let startupDeadline: NIODeadline

    /// Effects buffer capacity reserved at start (a poll's effects fit without growing).
    static let effectsCapacity = 4_096

    /// Starts a member: listens, dials the lower-ranked members, and returns once a link to
    /// every other member is up. `onDeliver` runs on the member's event loop.
    public static func start(
        settings: RuntimeSettings, eventLoop: EventLoop, logger: Logger, onDeliver: @escaping (Delivery) -> Void
    ) async throws -> MemberRuntime {
        guard settings.addresses.count == settings.view.memberCount else {
            let counts = "\(settings.addresses.count) addresses for \(settings.view.memberCount) members"
            throw RuntimeError(.invalidSettings, "addresses: \(counts)")
        }
        let shell: Member<HeldFrame>
        do {
            shell = try Member(
                configuration: settings.configuration,
                joining: JoinerStart(view: settings.view, memberRank: settings.memberRank, skip: settings.joinerSkip))
        } catch {
            throw RuntimeError(.invalidSettings, "\(error)")
        }
        let runtime = MemberRuntime(
            settings: settings, shell: shell, eventLoop: eventLoop, logger: logger, onDeliver: onDeliver)
        do {
            try runtime.openDurableLog()
        } catch {
            runtime.readyPromise.fail(error)  // nobody waits on it: settle it (an unsettled promise is a leak)
            throw error
        }
        do {
            try await runtime.transport.start(eventLoop: eventLoop, delegate: runtime)
        } catch {
            // Nobody will wait for readiness now: settle it (an unsettled promise is a leak), and
            // let the transport let go of what it opened.
            runtime.readyPromise.fail(error)
            await runtime.transport.close()
            runtime.closeDurableLog()
            throw error
        }
        do {
            try await runtime.waitUntilReady()
        } catch {
            // Not every member came: let go of the listener and the links that did come.
            await runtime.close()
            throw error
        }
        runtime.startMetrics()
        return runtime
    }

    private init(
        settings: RuntimeSettings, shell: Member<HeldFrame>, eventLoop: EventLoop, logger: Logger,
        onDeliver: @escaping (Delivery) -> Void
    ) {
        self.settings = settings
        self.me = settings.view.members[settings.memberRank]
        self.shell = shell
        self.eventLoop = eventLoop
        self.logger = logger
        self.onDeliver = onDeliver
        self.limits = WireLimits(configuration: settings.configuration)
        self.transport = settings.transport.make(settings: settings, limits: limits, logger: logger)
        self.knownMembers = Set(settings.view.members)
        self.addresses = Dictionary(uniqueKeysWithValues: zip(settings.view.members, settings.addresses))
        self.readyPromise = eventLoop.makePromise(of: Void.self)
        self.relay = Relay(settings: settings)
        self.startupDeadline = NIODeadline.now() + .nanoseconds(Int64(settings.connectTimeout.nanosecondsClamped))
        effects.reserveCapacity(Self.effectsCapacity)
    }

    /// Waits until a link to every other member of the first view is up, for `connectTimeout`.
    private func waitUntilReady() async throws {
        let deadline = NIODeadline.now() + .nanoseconds(Int64(settings.connectTimeout.nanosecondsClamped))
        let timeout = eventLoop.scheduleTask(deadline: deadline) {
            let missing = self.settings.view.members.filter { $0 != self.me && self.links[$0] == nil }
            let reason = "not every member connected within \(self.settings.connectTimeout) (missing: \(missing))"
            self.readyPromise.fail(RuntimeError(.connectFailed, reason))
        }
        eventLoop.execute { self.checkReady() }
        try await readyPromise.futureResult.get()
        timeout.cancel()
    }

    // MARK: - Application API

    /// Sends `payload` to the group; returns once the window has admitted it (so a caller that
    /// awaits each send is paced by the window).
    public func send(_ payload: Payload) async throws {
        let promise = eventLoop.makePromise(of: Void.self)
        eventLoop.execute { self.sendOnLoop(payload, admitted: promise) }
        try await promise.futureResult.get()
    }

    /// `send` from the event loop: `admitted` succeeds once the window has taken the payload, or
    /// fails (closed, queue full, and for payloads still queued: removed or in a minority, when
    /// they can no longer go in the view).
    package func sendOnLoop(_ payload: Payload, admitted promise: EventLoopPromise<Void>) {
        eventLoop.preconditionInEventLoop()
        if let refusal = queueRefusal { return promise.fail(refusal) }
        let most = settings.sendQueueMessagesMax
        guard sendQueue.count < most else {
            return promise.fail(RuntimeError(.sendQueueFull, "send queue full (\(most) messages)"))
        }
        sendQueue.append((payload, promise))
        poll()
    }

    /// Fails every send still waiting for the window: they were not admitted, so they are not
    /// delivered anywhere (the caller may try again elsewhere).
    func failQueuedSends(_ error: RuntimeError) {
        while let (_, promise) = sendQueue.popFirst() { promise.fail(error) }
    }

    /// Calls `observer` on the event loop whenever this member installs a view (after the
    /// deliveries of the view it leaves, before any of the new one).
    public func setViewObserver(_ observer: @escaping @Sendable (View) -> Void) {
        eventLoop.execute { self.onViewInstalled = observer }
    }

    /// Supplies the application state a joiner starts from: `provider` is called on the event
    /// loop when this member welcomes a joiner (after the deliveries of the view that ends), and
    /// the producer it returns runs in a task of its own, streaming the state (Snapshots.swift).
    /// A provider that returns nil cannot welcome now (its own state has not arrived): the join
    /// is refused, and the joiner asks again.
    public func setSnapshotProvider(_ provider: @escaping @Sendable () -> SnapshotProducer?) {
        eventLoop.execute { self.snapshotProvider = provider }
    }

    /// A snapshot made on the event loop as one array (small application states).
    public func setSnapshotProvider(bytes provider: @escaping @Sendable () -> [UInt8]) {
        setSnapshotProvider {
            let bytes = provider()
            return { writer in try await writer.write(bytes) }
        }
    }

    /// Calls `observer` on the event loop for each view installed, wedge, minority and removal
    /// (after the view observer, for installs).
    public func setEventObserver(_ observer: @escaping @Sendable (RuntimeEvent) -> Void) {
        eventLoop.execute { self.onEvent = observer }
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
    package func setDeliveriesWanted(_ wanted: Bool) {
        eventLoop.execute {
            guard self.deliveriesWanted != wanted else { return }
            self.deliveriesWanted = wanted
            if !wanted { self.stats.readPauses += 1 }
            // A member the shell paused (far ahead) stays paused until the install resumes it.
            for (member, link) in self.links where !self.readingPaused.contains(member) { link.setReading(wanted) }
        }
    }

    public func statistics() async throws -> RuntimeStatistics {
        try await eventLoop.submit { self.statisticsOnLoop() }.get()
    }

    func statisticsOnLoop() -> RuntimeStatistics {
        var stats = self.stats
        stats.core = shell.core.statistics
        stats.viewID = shell.core.view.id.rawValue
        stats.occupancy.windowMessagesFree = shell.core.sendCapacity
        stats.occupancy.windowBytesInFlight = shell.core.windowBytesInFlight
        stats.occupancy.sendQueueMessages = sendQueue.count
        stats.occupancy.futureFramesHeld = shell.heldFrames
        stats.occupancy.futureBytesHeld = shell.heldBytes
        relay.record(into: &stats.occupancy)
        stats.occupancy.linksUp = shell.core.view.members.filter { $0 != me && links[$0] != nil }.count
        stats.occupancy.membersDone = membersDone.count
        stats.occupancy.outboundBytesQueued = links.values.reduce(0) { $0 + $1.queuedBytes }
        if let durable {
            var figures = durable.statistics()
            figures.persistedHere = shell.core.ownRow.persisted
            figures.persistenceFrontier = shell.core.persistenceFrontier
            stats.durable = figures
        }
        return stats
    }

    /// Counts of RDMA operations and the device (nil on TCP). Any thread.
    public var rdmaStatistics: RDMAStatistics? { (transport as? RDMATransport)?.statistics }

    /// How many messages the window admits now (on the event loop).
    public var sendCapacityOnLoop: Int {
        eventLoop.preconditionInEventLoop()
        return shell.core.sendCapacity
    }

    /// Ends this member together with the rest of the view, quietly: says it is done (a control
    /// frame to every member, after everything it sent), waits until every member of the current
    /// view has said so too, or `timeout` passes, then closes. A peer that is done and closes is
    /// not a failure: nobody suspects it or logs an error. Returns the members not heard to be
    /// done (empty when everyone was).
    public func finish(timeout: Duration) async -> [MemberID] {
        let waited: EventLoopFuture<Void> = eventLoop.flatSubmit { self.sayDone() }
        let timer = eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.nanosecondsClamped))) {
            self.allDone?.succeed(())
            self.allDone = nil
        }
        // Succeeds when everyone is done or at the timeout; it cannot fail.
        try? await waited.get()
        timer.cancel()
        let missing = await membersNotDone()
        await close()
        return missing
    }

    private func sayDone() -> EventLoopFuture<Void> {
        let promise = eventLoop.makePromise(of: Void.self)
        allDone = promise
        saidDone = true
        logger.info("done: telling the other members at \(NIODeadline.now().uptimeNanoseconds / 1_000_000) ms")
        membersDone.insert(me)
        let done = ControlMessage(kind: .done, id: me.rawValue).encoded()
        forEachPeerLink { _, link in
            link.write(done)
            link.flush()
        }
        checkAllDone()
        return promise.futureResult
    }

    private func membersNotDone() async -> [MemberID] {
        do {
            return try await eventLoop.submit {
                self.shell.core.view.members.filter { !self.membersDone.contains($0) }
            }.get()
        } catch {
            // The event loop is gone: nobody was heard from after that.
            return settings.view.members.filter { $0 != me }
        }
    }

    func checkAllDone() {
        guard saidDone, let promise = allDone, shell.core.view.members.allSatisfy(membersDone.contains) else { return }
        allDone = nil
        promise.succeed(())
    }

    /// A link to `member` going down is expected: it said it is done, or this member closes.
    func isExpectedDown(_ member: MemberID?) -> Bool {
        if isClosed { return true }
        guard let member else { return false }
        return membersDone.contains(member)
    }

    /// Leaves the group: this member suspects itself, so the view change removes it (its peers
    /// need not wait out the failure timeout); returns once it has learned it was removed, true,
    /// or after `timeout`, false. Then closes.
    public func leave(timeout: Duration) async -> Bool {
        let left: EventLoopFuture<Void> = eventLoop.flatSubmit {
            let promise = self.eventLoop.makePromise(of: Void.self)
            guard !self.shell.core.isRemoved else {
                promise.succeed(())
                return promise.futureResult
            }
            // A second leave waits for the same removal as the first.
            if let earlier = self.leftPromise { return earlier.futureResult }
            self.leftPromise = promise
            self.shell.leave()
            self.poll()
            return promise.futureResult
        }
        let timer = eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.nanosecondsClamped))) {
            self.leftPromise?.fail(RuntimeError(.closed, "not removed within \(timeout)"))
            self.leftPromise = nil
        }
        let removed = (try? await left.get()) != nil
        timer.cancel()
        await close()
        return removed
    }

    public func close() async {
        do {
            try await eventLoop.submit {
                self.isClosed = true
                self.queueRefusal = RuntimeError(.closed, "the member is closed")
                self.failQueuedSends(RuntimeError(.closed, "the member closed before the window took this message"))
                self.timer?.cancel()
                for link in self.links.values { link.close() }
            }.get()
        } catch {
            // The event loop is shut down already: its links went with it.
        }
        await transport.close()
        closeDurableLog()
    }
}
