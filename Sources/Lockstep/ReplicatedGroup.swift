// A replicated group of the user's state machine over the runtime (MemberRuntime). The state,
// the callers waiting for answers and the phase live on the member's event loop, where the
// runtime delivers: an entry is applied the moment it is delivered, so a snapshot taken at a
// welcome is exactly the state the joiner starts from. What the entries are and how they are
// applied is Replica.swift, shared with LocalGroup.

import CoreMetrics
import LockstepCore
import LockstepRuntime
import LockstepWire
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// What a `submit` returns once the command is applied on this member.
public struct Submitted<Response: Sendable>: Sendable {
    /// The machine's response (from this member's apply; every member computed the same).
    public var response: Response
    /// The command's place in the group's history (`EntryInfo.position`).
    public var position: UInt64
    public var entry: EntryInfo

    package init(response: Response, entry: EntryInfo) {
        self.response = response
        position = entry.position
        self.entry = entry
    }
}

/// Whose state a read sees.
public enum ReadConsistency: Sendable, Hashable {
    /// Includes every command whose `submit` returned anywhere before this read began: the read is
    /// a marker through the total order. A member in a minority fails it (`GroupError.minority`).
    case linearizable
    /// This member's state now: quick, but it may miss commands others have applied already.
    case local
}

/// What happens to this member's membership.
public enum GroupEvent: Sendable, Hashable {
    /// A view was installed (after the last entry of the view before).
    case installed(GroupView)
    /// The view is wedged while these members are suspected; a view change follows.
    case wedged(suspected: [MemberID])
    /// This member reaches only `reachable` of its view's `of` members: nothing happens here until
    /// the partition heals or the others remove it.
    case minority(reachable: Int, of: Int)
    /// A joiner's state arrived and was restored; it applies entries from here.
    case restored(position: UInt64)
    /// This member is out of the group (left, or removed by the others).
    case removed(reason: String)
    /// Durable mode: this member's log stopped (a full disk, an IO error); it leaves the group.
    case storageFailed(reason: String)
}

/// How far a `submit` waits.
public enum Durability: Sendable, Hashable {
    /// Until this member has applied the command (every member applies it at the same position).
    case applied
    /// Durable mode: besides, until every member of the view has the command on disk (the global
    /// persistence frontier passed it), so it survives the loss of every process.
    case persisted
}

/// Figures of one member.
public struct GroupStatistics: Sendable {
    /// The position of the last command applied here.
    public var position: UInt64 = 0
    public var commandsApplied: UInt64 = 0
    public var commandsRefused: UInt64 = 0
    public var readsServed: UInt64 = 0
    /// Calls waiting for their answer now.
    public var waiting = 0
    public var viewID: ViewID? = nil
    /// The runtime's figures (windows, frames, view changes).
    public var runtime: RuntimeStatistics? = nil
}

/// A member of a group that keeps `Machine` the same everywhere. Run it (`run()`, or as a
/// swift-service-lifecycle `Service`), then `submit`, `enqueue`, `state`.
public final class ReplicatedGroup<Machine: ReplicatedStateMachine>: Service, @unchecked Sendable {
    public let configuration: GroupConfiguration
    /// Membership events, for one reader (the oldest are dropped beyond `eventsQueuedMax`).
    public let events: AsyncStream<GroupEvent>
    /// Every entry applied here, in order, for one reader (back-pressured: see `AppliedEntries`).
    public let applied: AppliedEntries<Machine>

    let eventLoop: EventLoop
    private let loopGroup: MultiThreadedEventLoopGroup
    private let logger: Logger
    /// The view and rank, for the logger's metadata provider.
    private let place = LogPlace()
    private let eventsContinuation: AsyncStream<GroupEvent>.Continuation
    private let nextRequest = Atomic<UInt64>(1)
    private let submitLatency: CoreMetrics.Timer?
    /// Settled once the runtime is up (or could not start): calls made before wait for it.
    private let startedPromise: EventLoopPromise<MemberRuntime>
    /// The runtime once started (any thread): the fast path of `started()`.
    private let runningRuntime = Mutex<MemberRuntime?>(nil)
    /// Settled when this member is out of the group: `run` returns (or throws) then.
    private let endedPromise: EventLoopPromise<Void>

    // On the event loop only.
    private var replica: Replica<Machine>?
    /// A joiner's deliveries while its snapshot is restored, and their bytes.
    private var held: [HeldItem] = []
    private var heldBytes = 0
    private var runtime: MemberRuntime?
    private var waiting: [UInt64: Waiting] = [:]
    /// Submits that wait for `.persisted`: which requests, and (once applied) in delivery order.
    private var persistenceWanted: Set<UInt64> = []
    private var persistingOrder: [UInt64] = []
    private var persistence: PersistenceProgress?
    /// The members of the last few views installed here, by view (a `.persisted` submit waits on
    /// the members of the view it was delivered in; a joiner applies held entries of a view it
    /// may have left behind by then).
    private var recentViewMembers: [ViewID: Set<MemberID>] = [:]
    private static var recentViewsKept: Int { 16 }

    private struct Persisting {
        var submitted: Submitted<Machine.Response>
        var viewID: ViewID
        var sequence: UInt64
        /// The members of the view it was delivered in.
        var members: Set<MemberID>
    }
    private var phase = Phase.notStarted
    private var view: GroupView?
    private var stats = GroupStatistics()
    private var readingPausedForApplied = false
    private var readingPausedForRestore = false

    /// What a joiner holds while it restores: deliveries and the views between them.
    private enum HeldItem {
        case delivery(Delivery)
        case view(GroupView)
    }

    private enum Phase: Equatable {
        case notStarted, running, minority, leaving
        case ended(GroupError)
    }

    private enum Waiting {
        case submit(EventLoopPromise<Submitted<Machine.Response>>, Scheduled<Void>)
        case read(EventLoopPromise<Machine>, Scheduled<Void>)
        /// Applied here, waiting for the persistence frontier to pass its global sequence.
        case persisting(EventLoopPromise<Submitted<Machine.Response>>, Scheduled<Void>, Persisting)

        func fail(_ error: GroupError) {
            switch self {
            case .submit(let promise, let timer), .persisting(let promise, let timer, _):
                timer.cancel()
                promise.fail(error)
            case .read(let promise, let timer):
                timer.cancel()
                promise.fail(error)
            }
        }
    }

    /// A member of a group. Nothing starts before `run`.
    public init(configuration: GroupConfiguration, initialState: Machine, logger: Logger? = nil) throws(GroupError) {
        try configuration.validate()
        self.configuration = configuration
        loopGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        eventLoop = loopGroup.next()
        let place = self.place
        var logger = logger ?? Logger(label: "lockstep")
        logger[metadataKey: "member"] = "\(configuration.me)"
        let where_ = Logger.MetadataProvider { place.metadata.withLock { $0 } }
        logger.handler.metadataProvider = logger.metadataProvider.map { .multiplex([$0, where_]) } ?? where_
        self.logger = logger
        (events, eventsContinuation) = AsyncStream.makeStream(
            of: GroupEvent.self, bufferingPolicy: .bufferingNewest(configuration.eventsQueuedMax))
        applied = AppliedEntries(resumeBelow: configuration.appliedQueuedEntriesMax / 2)
        submitLatency = configuration.metricsFactory.map {
            CoreMetrics.Timer(
                label: "lockstep_submit_latency", dimensions: [("member", "\(configuration.me.rawValue)")], factory: $0)
        }
        startedPromise = eventLoop.makePromise(of: MemberRuntime.self)
        endedPromise = eventLoop.makePromise(of: Void.self)
        if case .bootstrap = configuration.start { replica = Replica(machine: initialState) }
        applied.resume = { [weak self] in self?.resumeAfterApplied() }
    }

    deinit {
        // Settle what nobody will (a promise left pending is reported by NIO as a leak).
        startedPromise.fail(GroupError(.closed, "the group was released"))
        endedPromise.succeed(())
        loopGroup.shutdownGracefully { _ in }
    }

    // MARK: - Running

    /// Starts this member (connects, or joins and restores the state), then runs until it is out
    /// of the group. Graceful shutdown (ServiceGroup) leaves the group, so the others do not wait
    /// out the failure timeout; `run` then returns. Throws when the member could not start or the
    /// others removed it.
    public func run() async throws {
        let first = try await eventLoop.submit { () -> Bool in
            guard self.phase == .notStarted else { return false }
            self.phase = .running
            return true
        }.get()
        guard first else { throw GroupError(.closed, "run() was called twice, or after close() or leave()") }
        do {
            let runtime = try await startRuntime()
            let closedMeanwhile = try await eventLoop.submit { () -> Bool in
                self.runtime = runtime
                self.runningRuntime.withLock { $0 = runtime }
                self.startedPromise.succeed(runtime)
                // `close()` or `leave()` during the start found no runtime to stop: stop it now.
                if case .ended = self.phase { return true }
                return false
            }.get()
            if closedMeanwhile { await runtime.close() }
        } catch {
            let failure = (error as? GroupError) ?? GroupError(.startFailed, "\(error)")
            eventLoop.execute {
                self.startedPromise.fail(failure)
                self.end(failure)
            }
            throw failure
        }
        try await withGracefulShutdownHandler {
            try await endedPromise.futureResult.get()
        } onGracefulShutdown: {
            Task { try? await self.leave() }
        }
        let outcome = try await eventLoop.submit { self.phase }.get()
        // Left or closed on purpose: a normal end. Removed, a failed join or restore: an error.
        if case .ended(let error) = outcome, error.code != .closed { throw error }
    }

    /// The runtime's settings for this group, whichever way the view was learned.
    private func adjusted(_ base: RuntimeSettings) -> RuntimeSettings {
        var settings = base
        settings.connectTimeout = configuration.connectTimeout
        settings.sendQueueMessagesMax = configuration.sendQueueMessagesMax
        settings.transport = configuration.transport
        settings.metricsFactory = configuration.metricsFactory
        settings.dataDirectory = configuration.dataDirectory
        settings.logSegmentBytes = configuration.logSegmentBytes
        return settings
    }

    private func startRuntime() async throws -> MemberRuntime {
        let settings: RuntimeSettings
        var snapshot: SnapshotReceiver?
        switch configuration.start {
        case .bootstrap(let members, let me):
            let view: View
            do {
                view = try View(id: ViewID(1), members: members.map(\.id))
            } catch {
                throw GroupError.invalid("start", "\(error)")
            }
            // validate() checked that the list names this member.
            guard let memberRank = members.firstIndex(where: { $0.id == me }) else {
                throw GroupError.invalid("start", "does not list this member (\(me))")
            }
            settings = adjusted(
                RuntimeSettings(
                    configuration: configuration.protocolConfiguration, view: view, memberRank: memberRank,
                    addresses: members.map(\.address)))
        case .join(let contacts, let listen, let me):
            let limits = WireLimits(configuration: configuration.protocolConfiguration)
            let welcome: Welcome
            do {
                welcome = try await MemberRuntime.requestJoin(
                    member: me, listen: listen, contacts: contacts, limits: limits, eventLoop: eventLoop,
                    timeout: configuration.joinTimeout,
                    attemptTimeout: Swift.max(
                        .milliseconds(100), configuration.protocolConfiguration.failureTimeout / 2))
            } catch let error as RuntimeError {
                throw GroupError(error)
            }
            settings = adjusted(RuntimeSettings(configuration: configuration.protocolConfiguration, joining: welcome))
            snapshot = welcome.snapshot
        }
        try await eventLoop.submit {
            let first = GroupView(settings.view, memberRank: settings.memberRank)
            self.view = first
            self.noteViewMembers(first)
            self.setLoggerView()
        }.get()
        let runtime: MemberRuntime
        do {
            runtime = try await MemberRuntime.start(settings: settings, eventLoop: eventLoop, logger: logger) {
                [unowned self] delivery in self.delivered(delivery)
            }
        } catch {
            snapshot?.close()
            throw (error as? RuntimeError).map(GroupError.init) ?? GroupError(.startFailed, "\(error)")
        }
        runtime.setEventObserver { [weak self] event in self?.runtimeEvent(event) }
        if configuration.protocolConfiguration.durable {
            runtime.setPersistenceObserver { [weak self] progress in self?.persistenceMoved(progress) }
        }
        runtime.setSnapshotProvider { [unowned self] in self.snapshotProducer() }
        if let snapshot { restore(from: snapshot, runtime: runtime) }
        return runtime
    }

    /// A joiner restores its state while its runtime runs (the group keeps delivering); what is
    /// delivered meanwhile waits in `held`, then is applied in order.
    private func restore(from snapshot: SnapshotReceiver, runtime: MemberRuntime) {
        Task {
            let started = ContinuousClock.now
            do {
                let restored = try await Replica<Machine>.restore(from: ReceiverSource(snapshot))
                snapshot.close()
                let elapsed = ContinuousClock.now - started
                eventLoop.execute {
                    self.logger.info("restored the state at position \(restored.position) in \(elapsed)")
                    self.replica = restored
                    self.eventsContinuation.yield(.restored(position: restored.position))
                    let held = self.held
                    self.held = []
                    self.heldBytes = 0
                    for item in held {
                        switch item {
                        case .delivery(let delivery): self.apply(delivery)
                        case .view(let view): self.replica?.machine.viewInstalled(view)
                        }
                    }
                    if self.readingPausedForRestore {
                        self.readingPausedForRestore = false
                        self.updateReading()
                    }
                }
            } catch {
                snapshot.close()
                let failure = GroupError(.joinFailed, "the snapshot could not be restored: \(error)")
                eventLoop.execute {
                    self.logger.error("\(failure)")
                    self.end(failure)
                }
                await runtime.close()
            }
        }
    }

    // MARK: - Calls

    /// Submits a command and waits until this member has applied it: then every member applies it
    /// at the same position, and it survives any failure a majority of the view survives. With
    /// `waitFor: .persisted` (durable mode) it also waits until every member of the view has it
    /// on disk.
    public func submit(
        _ command: Machine.Command, waitFor durability: Durability = .applied
    ) async throws(GroupError) -> Submitted<Machine.Response> {
        if durability == .persisted && !configuration.protocolConfiguration.durable {
            throw GroupError(.invalidConfiguration, "waitFor: .persisted needs durable mode", field: "dataDirectory")
        }
        let request = nextRequest.wrappingAdd(1, ordering: .relaxed).oldValue
        let payload = try encode(command, request: request)
        let runtime = try await started()
        let promise = eventLoop.makePromise(of: Submitted<Machine.Response>.self)
        let submitted = ContinuousClock.now
        eventLoop.execute {
            if let error = self.refusal() { return promise.fail(error) }
            self.waiting[request] = .submit(promise, self.timeout(request, "submit"))
            if durability == .persisted { self.persistenceWanted.insert(request) }
            self.send(payload, request: request, runtime: runtime)
        }
        let answer = try await result(promise.futureResult)
        if let submitLatency {
            let elapsed = ContinuousClock.now - submitted
            submitLatency.recordNanoseconds(
                Int64(elapsed.components.seconds) * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        }
        return answer
    }

    /// Hands an entry to the runtime (on the event loop); if the window never takes it, the
    /// caller waiting for `request` is told why.
    private func send(_ payload: [UInt8], request: UInt64, runtime: MemberRuntime) {
        let admitted = eventLoop.makePromise(of: Void.self)
        admitted.futureResult.whenFailure { error in
            let failure = (error as? RuntimeError).map(GroupError.init) ?? GroupError(.closed, "\(error)")
            self.waiting.removeValue(forKey: request)?.fail(failure)
        }
        runtime.sendOnLoop(payload[...], admitted: admitted)
    }

    /// Sends a command without waiting for its response: returns once the window has admitted it
    /// (streaming writes are paced by the group; `sendQueueFull` when too many wait).
    public func enqueue(_ command: Machine.Command) async throws(GroupError) {
        let payload = try encode(command, request: 0)
        let runtime = try await started()
        // One hop to the loop: the refusal check and the hand-over to the window together.
        let admitted = eventLoop.makePromise(of: Void.self)
        eventLoop.execute {
            if let error = self.refusal() { return admitted.fail(error) }
            runtime.sendOnLoop(payload[...], admitted: admitted)
        }
        do {
            try await admitted.futureResult.get()
        } catch let error as GroupError {
            throw error
        } catch {
            throw (error as? RuntimeError).map(GroupError.init) ?? GroupError(.closed, "\(error)")
        }
    }

    /// The state, as `consistency` says.
    public func state(_ consistency: ReadConsistency = .linearizable) async throws(GroupError) -> Machine {
        let runtime = try await started()
        switch consistency {
        case .local:
            let local: Machine?? = try await onLoop { () -> Machine?? in
                if let error = self.refusal(allowingMinority: true) { throw error }
                return self.replica?.machine
            }
            guard let machine = local ?? nil else { throw GroupError(.closed, "the state is not restored yet") }
            return machine
        case .linearizable:
            let request = nextRequest.wrappingAdd(1, ordering: .relaxed).oldValue
            let promise = eventLoop.makePromise(of: Machine.self)
            eventLoop.execute {
                if let error = self.refusal() { return promise.fail(error) }
                self.waiting[request] = .read(promise, self.timeout(request, "linearizable read"))
                self.send(Replica<Machine>.readMarker(request: request), request: request, runtime: runtime)
            }
            return try await result(promise.futureResult)
        }
    }

    /// The view this member is in now (nil before `run` has started it).
    public func currentView() async -> GroupView? {
        try? await eventLoop.submit { self.view }.get()
    }

    public func statistics() async throws(GroupError) -> GroupStatistics {
        var figures = try await onLoop { () -> GroupStatistics in
            var stats = self.stats
            stats.position = self.replica?.position ?? 0
            stats.waiting = self.waiting.count
            stats.viewID = self.view?.id
            return stats
        }
        if let runtime = runningRuntime.withLock({ $0 }) {
            figures.runtime = try? await runtime.statistics()
        }
        return figures
    }

    /// Leaves the group: the others remove this member at once (no failure timeout to wait out).
    /// Calls still waiting fail with `closed`; `run` returns.
    public func leave() async throws(GroupError) {
        let notStarted = try await onLoop { () -> Bool in
            guard self.phase == .notStarted else { return false }
            self.end(GroupError(.closed, "the group was left before it started"))
            return true
        }
        if notStarted { return }
        let runtime: MemberRuntime
        do {
            runtime = try await started()
        } catch {
            // Could not start: nothing to leave.
            eventLoop.execute { self.end(GroupError(.closed, "the group was left before it started")) }
            return
        }
        let leaving = try await onLoop { () -> Bool in
            switch self.phase {
            case .ended, .leaving: return false
            default:
                self.phase = .leaving
                return true
            }
        }
        guard leaving else { return }
        let removed = await runtime.leave(timeout: configuration.leaveTimeout)
        if !removed {
            logger.warning("left without hearing the group remove this member in \(configuration.leaveTimeout)")
        }
        eventLoop.execute { self.end(GroupError(.closed, "this member left the group")) }
    }

    /// Stops this member without leaving (the others suspect it after the failure timeout, as
    /// after a crash): for stopping a whole group at once, where nobody would be left to remove
    /// the leavers. Calls still waiting fail with `closed`; `run` returns.
    public func close() async {
        let runtime = try? await eventLoop.submit { () -> MemberRuntime? in
            self.end(GroupError(.closed, "this member was closed"))
            return self.runtime
        }.get()
        await runtime?.close()
    }

    // MARK: - On the event loop

    private func delivered(_ delivery: Delivery) {
        guard replica != nil else {
            held.append(.delivery(delivery))
            heldBytes += delivery.payload.count
            if heldBytes > configuration.joinerHeldBytesMax && !readingPausedForRestore {
                readingPausedForRestore = true
                updateReading()
            }
            return
        }
        apply(delivery)
    }

    private func apply(_ delivery: Delivery) {
        guard var current = replica else { preconditionFailure("applied before the state was restored") }
        // Take the replica out so applying does not copy the machine (unique reference).
        replica = nil
        let outcome = current.apply(delivery)
        replica = current
        let mine = delivery.sender == configuration.me
        switch outcome {
        case .command(let request, _, let entry, let response):
            stats.commandsApplied += 1
            if mine, request != 0, case .submit(let promise, let timer) = waiting.removeValue(forKey: request) {
                let submitted = Submitted(response: response, entry: entry)
                if persistenceWanted.remove(request) != nil, let sequence = delivery.globalSequence {
                    let persisting = Persisting(
                        submitted: submitted, viewID: delivery.viewID, sequence: sequence,
                        members: membersOfView(delivery.viewID))
                    waiting[request] = .persisting(promise, timer, persisting)
                    persistingOrder.append(request)
                    if let persistence { persistenceMoved(persistence) }
                } else {
                    timer.cancel()
                    promise.succeed(submitted)
                }
            }
            if applied.isActive, applied.push(AppliedEntry(entry: entry, response: response)) {
                if !readingPausedForApplied {
                    readingPausedForApplied = true
                    updateReading()
                }
            }
        case .read(let request, _):
            if mine, case .read(let promise, let timer) = waiting.removeValue(forKey: request) {
                timer.cancel()
                stats.readsServed += 1
                promise.succeed(current.machine)
            }
        case .refused(let request, _, let reason):
            stats.commandsRefused += 1
            logger.warning("a command from \(delivery.sender) was refused on every member: \(reason)")
            if mine, case .submit(let promise, let timer) = waiting.removeValue(forKey: request) {
                persistenceWanted.remove(request)
                timer.cancel()
                promise.fail(GroupError(.commandRefused, reason))
            }
        case .malformed(let sender, let reason):
            stats.commandsRefused += 1
            logger.error("skipped a message from \(sender): \(reason)")
        }
    }

    private func runtimeEvent(_ event: RuntimeEvent) {
        switch event {
        case .installed(let installed, let memberRank):
            let groupView = GroupView(installed, memberRank: memberRank)
            view = groupView
            noteViewMembers(groupView)
            setLoggerView()
            if phase == .minority { phase = .running }
            // A joiner restoring its state runs the hook later, between the same entries.
            if replica != nil {
                replica?.machine.viewInstalled(groupView)
            } else {
                held.append(.view(groupView))
            }
            eventsContinuation.yield(.installed(groupView))
        case .wedged(let suspected):
            eventsContinuation.yield(.wedged(suspected: suspected))
        case .minority(let reachable, let of):
            if phase == .running { phase = .minority }
            failWaiting(GroupError(.minority, "this member reaches \(reachable) of \(of) members of its view"))
            eventsContinuation.yield(.minority(reachable: reachable, of: of))
        case .removed(let reason):
            eventsContinuation.yield(.removed(reason: reason))
            end(phase == .leaving ? GroupError(.closed, "this member left the group") : GroupError(.removed, reason))
        case .storageFailed(let reason):
            eventsContinuation.yield(.storageFailed(reason: reason))
            failWaiting(GroupError(.storageFailed, reason))
        }
    }

    /// The snapshot for a joiner: a copy of the replica now (after the view's last entry),
    /// written by a task of its own.
    private func snapshotProducer() -> SnapshotProducer? {
        // A joiner asked before its own state arrived: nil refuses the join (the joiner asks on).
        guard let copy = replica else { return nil }
        return { writer in try await Replica.writeSnapshot(of: copy, to: WriterSink(writer)) }
    }

    /// Why a call cannot go now, if it cannot.
    private func refusal(allowingMinority: Bool = false) -> GroupError? {
        switch phase {
        case .notStarted, .running: return nil
        case .minority:
            return allowingMinority ? nil : GroupError(.minority, "this member is in a minority of its view")
        case .leaving: return GroupError(.closed, "this member is leaving the group")
        case .ended(let error): return error
        }
    }

    private func timeout(_ request: UInt64, _ what: String) -> Scheduled<Void> {
        let limit = configuration.operationTimeout
        return eventLoop.scheduleTask(in: .nanoseconds(Int64(limit.nanosecondsClamped))) {
            self.persistenceWanted.remove(request)
            self.waiting.removeValue(forKey: request)?.fail(
                GroupError(.timedOut, "no answer to a \(what) in \(limit) (it may still be applied)"))
        }
    }

    private func noteViewMembers(_ view: GroupView) {
        recentViewMembers[view.id] = Set(view.members)
        if recentViewMembers.count > Self.recentViewsKept, let oldest = recentViewMembers.keys.min() {
            recentViewMembers[oldest] = nil
        }
    }

    /// The members of `viewID`, as installed here; for a view forgotten already, every member of
    /// the view now (a wait on at least as many as its true members still here).
    private func membersOfView(_ viewID: ViewID) -> Set<MemberID> {
        recentViewMembers[viewID] ?? Set(view?.members ?? [])
    }

    /// The persistence frontier moved: submits waiting for `.persisted` that it passed return.
    /// They are in delivery order, so the first one it has not passed ends the walk. A command of
    /// an earlier view is durable once every member of its view that is still in this one has
    /// logged this view's start (a joiner of a later view holds it in its snapshot only, which is
    /// not logged; a member that left has left).
    private func persistenceMoved(_ progress: PersistenceProgress) {
        persistence = progress
        var done = 0
        for request in persistingOrder {
            guard case .persisting(let promise, let timer, let entry) = waiting[request] else {
                done += 1  // timed out or failed already
                continue
            }
            let passed =
                entry.viewID == progress.viewID
                ? entry.sequence < progress.frontier
                : entry.viewID.rawValue < progress.viewID.rawValue
                    && entry.members.subtracting(progress.startPersisted).isDisjoint(with: progress.members)
            guard passed else { break }
            waiting[request] = nil
            timer.cancel()
            promise.succeed(entry.submitted)
            done += 1
        }
        persistingOrder.removeFirst(done)
    }

    private func failWaiting(_ error: GroupError) {
        persistingOrder = []
        persistenceWanted = []
        let all = waiting
        waiting = [:]
        for call in all.values { call.fail(error) }
    }

    /// This member is out of the group: every call waiting fails, `run` returns.
    private func end(_ error: GroupError) {
        if case .ended = phase { return }
        phase = .ended(error)
        // Calls waiting for a start that will not come now (a no-op once started).
        startedPromise.fail(error)
        failWaiting(error)
        applied.finish()
        eventsContinuation.finish()
        endedPromise.succeed(())
        if let runtime { Task { await runtime.close() } }
    }

    private func updateReading() {
        runtime?.setDeliveriesWanted(!readingPausedForApplied && !readingPausedForRestore)
    }

    private func resumeAfterApplied() {
        eventLoop.execute {
            guard self.readingPausedForApplied else { return }
            self.readingPausedForApplied = false
            self.updateReading()
        }
    }

    /// Every line logged by this member (the runtime's too) carries the view and rank it is in.
    private func setLoggerView() {
        guard let view else { return }
        place.metadata.withLock { $0 = ["view": "\(view.id)", "rank": "\(view.memberRank)"] }
    }

    // MARK: - Helpers

    private func encode(_ command: Machine.Command, request: UInt64) throws(GroupError) -> [UInt8] {
        try Replica<Machine>.entry(
            command, request: request, messageBytesMax: configuration.protocolConfiguration.messageBytesMax)
    }

    /// The runtime, once `run` has started it (waits at most `operationTimeout`).
    func started() async throws(GroupError) -> MemberRuntime {
        // Every call asks: once started, no promise or timer for it.
        if let runtime = runningRuntime.withLock({ $0 }) { return runtime }
        let limit = configuration.operationTimeout
        let first = eventLoop.makePromise(of: MemberRuntime?.self)
        startedPromise.futureResult.whenComplete { result in first.completeWith(result.map { Optional($0) }) }
        let timer = eventLoop.scheduleTask(in: .nanoseconds(Int64(limit.nanosecondsClamped))) { first.succeed(nil) }
        defer { timer.cancel() }
        do {
            guard let runtime = try await first.futureResult.get() else {
                throw GroupError(.timedOut, "the group did not start within \(limit) (is run() called?)")
            }
            return runtime
        } catch let error as GroupError {
            throw error
        } catch {
            throw GroupError(.closed, "\(error)")
        }
    }

    private func result<T: Sendable>(_ future: EventLoopFuture<T>) async throws(GroupError) -> T {
        do {
            return try await future.get()
        } catch let error as GroupError {
            throw error
        } catch {
            throw GroupError(.closed, "\(error)")
        }
    }

    private func onLoop<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws(GroupError) -> T {
        do {
            return try await eventLoop.submit(body).get()
        } catch let error as GroupError {
            throw error
        } catch {
            throw GroupError(.closed, "the member's event loop is gone: \(error)")
        }
    }
}

/// One applied entry, as `applied` gives it.
public struct AppliedEntry<Machine: ReplicatedStateMachine>: Sendable {
    public var entry: EntryInfo
    public var response: Machine.Response
}

/// Every entry applied on this member, in order, for one reader. Nothing is dropped: past
/// `appliedQueuedEntriesMax` queued, the member stops reading its links until the reader has
/// taken half (back-pressure onto the senders' windows). Entries flow only once it is iterated.
public final class AppliedEntries<Machine: ReplicatedStateMachine>: AsyncSequence, Sendable {
    public typealias Element = AppliedEntry<Machine>
    private let stream: AsyncStream<Element>
    private let continuation: AsyncStream<Element>.Continuation
    private let queued = Atomic<Int>(0)
    private let active = Atomic<Bool>(false)
    private let resumeBelow: Int
    nonisolated(unsafe) var resume: @Sendable () -> Void = {}

    init(resumeBelow: Int) {
        (stream, continuation) = AsyncStream.makeStream(of: Element.self)
        self.resumeBelow = Swift.max(1, resumeBelow)

    }

    var isActive: Bool { active.load(ordering: .relaxed) }

    /// Queues an entry; true when the queue is now full (pause reading).
    func push(_ element: Element) -> Bool {
        continuation.yield(element)
        return queued.wrappingAdd(1, ordering: .relaxed).newValue >= 2 * resumeBelow
    }

    func finish() { continuation.finish() }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncStream<Element>.AsyncIterator
        let reader: Reader

        public mutating func next() async -> Element? {
            guard let element = await base.next() else { return nil }
            let owner = reader.owner
            if owner.queued.wrappingSubtract(1, ordering: .relaxed).newValue == owner.resumeBelow { owner.resume() }
            return element
        }
    }

    /// Lives as long as the reader's iterator: when the reader stops (a `break`, a cancelled
    /// task), entries stop queuing and the member reads again (a stopped reader paused the
    /// member, and so the group's windows, for good).
    public final class Reader: Sendable {
        let owner: AppliedEntries
        init(_ owner: AppliedEntries) { self.owner = owner }
        deinit {
            owner.active.store(false, ordering: .relaxed)
            owner.resume()
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        active.store(true, ordering: .relaxed)
        return AsyncIterator(base: stream.makeAsyncIterator(), reader: Reader(self))
    }
}

/// The runtime's snapshot writer as a sink.
struct WriterSink: SnapshotSink {
    let writer: SnapshotWriter
    init(_ writer: SnapshotWriter) { self.writer = writer }
    func write(_ bytes: ArraySlice<UInt8>) async throws { try await writer.write(bytes) }
}

/// The runtime's snapshot receiver as a source.
struct ReceiverSource: SnapshotSource {
    let receiver: SnapshotReceiver
    init(_ receiver: SnapshotReceiver) { self.receiver = receiver }
    func next() async throws -> [UInt8]? { try await receiver.next() }
}

/// The view and rank a member is at, for its logger's metadata provider (any thread).
final class LogPlace: Sendable {
    let metadata = Mutex<Logger.Metadata>([:])
}
