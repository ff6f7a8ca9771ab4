// The poller thread: it owns every verbs object and runs the loop (commands from the event loop,
// rdma_cm events, completions, the send pump, credit returns, timeouts).

import CLockstepVerbs
import Foundation
import LockstepCore
import LockstepWire
import Logging
import NIOCore
import Synchronization

/// A dial to the member at `rank` in flight (or waiting to be tried again), and who waits for it.
struct RDMADial {
    var rank: Int
    var schedule: DialSchedule
    var waiter: CheckedContinuation<Void, Error>
    /// When this attempt started (`dials`) or when to start the next one (`redials`).
    var at: ContinuousClock.Instant
}

final class RDMAPoller: @unchecked Sendable {
    enum Command {
        case flush(UInt32)
        case close(UInt32)
        case release(UInt32)
        case dial(RDMADial)
    }

    let settings: RuntimeSettings
    let rdma: RDMASettings
    let limits: WireLimits
    let logger: Logger
    let eventLoop: EventLoop
    weak var delegate: TransportDelegate?
    let fabric: OpaquePointer
    let layout: lsv_layout
    let allocator = ByteBufferAllocator()
    let highWater: Int

    // Shared with the event loop.
    let commands = Mutex<[Command]>([])
    let sleeping = Atomic<Bool>(false)
    let running = Atomic<Bool>(true)
    let wakeFD: Int32
    let stats = Mutex(RDMAStatistics())
    let finished = DispatchSemaphore(value: 0)
    /// Event loop only: set by `stop` before the poller frees memory; arrivals are ignored after.
    var stoppedOnLoop = false

    // Poller thread only.
    var connections: [UInt32: RDMAConnection] = [:]
    /// Disconnected connections whose memory the event loop may still read, until it releases them.
    var graveyard: [UInt32: OpaquePointer] = [:]
    /// Dials in progress, by connection: a connect request nobody answers (a peer exiting, a lost
    /// request) is given up after `dialAttemptTimeout` and retried.
    var dials: [UInt32: RDMADial] = [:]
    /// Dials waiting for their next attempt.
    var redials: [RDMADial] = []
    var events: [RDMALinkEvent] = []
    var local = RDMAStatistics()
    var completions = [lsv_completion](repeating: lsv_completion(), count: RDMAPoller.completionsPerPoll)
    var lastTimeoutCheck = ContinuousClock.now

    // Limits of the loop.
    /// One connect request's answer is waited for this long before the dial is tried again.
    static let dialAttemptTimeout = Duration.seconds(5)
    /// Completions taken from the queue per call, and calls per round at most (then other work).
    static let completionsPerPoll = 32
    static let completionPollsPerRound = 16
    /// How often the loop looks for stalled links and dials, and publishes its statistics.
    static let timeoutCheckInterval = Duration.milliseconds(10)
    /// How long the loop sleeps on the completion channel: briefly when it waits for credit or
    /// a redial (credit comes by one-sided write, with no event), else until woken.
    static let sleepMillisecondsShort: Int32 = 1
    static let sleepMillisecondsLong: Int32 = 100
    /// Room for a text the C shell writes (an error, a device name).
    static let errorTextBytes = 512
    static let deviceNameBytes = 128

    // Tags in the low byte of a send's work request id (receives carry 0).
    static let tagData: UInt64 = 1
    static let tagRow: UInt64 = 2
    static let tagCredit: UInt64 = 3
    static let rowFlag: UInt32 = 1 << 31

    init(
        settings: RuntimeSettings, limits: WireLimits, logger: Logger, eventLoop: EventLoop, delegate: TransportDelegate
    )
        throws(RuntimeError)
    {
        self.settings = settings
        self.rdma = settings.rdma
        self.limits = limits
        self.logger = logger
        self.eventLoop = eventLoop
        self.delegate = delegate
        self.highWater = settings.rdma.queuedBytesHighWater
        let sizes = lsv_sizes(
            ring_bytes: UInt32(rdma.ringBytes), row_slot_bytes: UInt32(rdma.rowSlotBytes),
            row_slots: UInt32(rdma.rowSlots))
        var error = [CChar](repeating: 0, count: Self.errorTextBytes)
        guard let fabric = lsv_fabric_open(sizes, &error, error.count) else {
            throw RuntimeError(.transportUnavailable, "--transport rdma: \(cText(error))")
        }
        let address = settings.addresses[settings.memberRank]
        if lsv_listen(fabric, address.host, Int32(address.port), &error, error.count) != 0 {
            lsv_fabric_close(fabric)
            throw RuntimeError(.listenFailed, "cannot listen for RDMA connections on \(address): \(cText(error))")
        }
        self.fabric = fabric
        self.layout = lsv_fabric_layout(fabric)
        self.wakeFD = lsv_wake_create()
        local.device = String(cString: lsv_fabric_device(fabric))
        stats.withLock { $0.device = local.device }
        logger.info("listening for RDMA connections on \(address) (device \(local.device))")
    }

    var statistics: RDMAStatistics { stats.withLock { $0 } }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "lockstep-rdma"
        thread.start()
    }

    /// Stops the poller and frees every connection's memory. First the event loop is told (and
    /// waited for), so no decoding of registered memory is under way or starts afterwards.
    func stop() async {
        do {
            try await eventLoop.submit { self.stoppedOnLoop = true }.get()
        } catch {
            // The event loop is shut down already: nothing runs on it to read registered memory.
        }
        guard running.exchange(false, ordering: .sequentiallyConsistent) else { return }
        wake()
        await withCheckedContinuation { continuation in
            Thread {
                self.finished.wait()
                continuation.resume()
            }.start()
        }
    }

    /// Connects to the member at `rank`; refused attempts are retried until `connectTimeout`.
    func dial(rank: Int) async throws {
        let schedule = DialSchedule(timeout: settings.connectTimeout)
        try await withCheckedThrowingContinuation { continuation in
            submit(.dial(RDMADial(rank: rank, schedule: schedule, waiter: continuation, at: .now)))
        }
    }

    func submit(_ command: Command) {
        commands.withLock { $0.append(command) }
        if sleeping.load(ordering: .sequentiallyConsistent) { wake() }
    }

    func wake() {
        lsv_wake_signal(wakeFD)
    }

    // MARK: - The loop

    func run() {
        var lastWork = ContinuousClock.now
        let spin = Duration.microseconds(rdma.spinMicroseconds)
        while running.load(ordering: .sequentiallyConsistent) {
            let (worked, waitingForCredit) = runRound()
            let now = ContinuousClock.now
            if worked {
                lastWork = now
                continue
            }
            if now - lastWork < spin { continue }
            sleep(waitingForCredit: waitingForCredit)
        }
        freeEverything()
        finished.signal()
    }

    /// One round of work: commands, rdma_cm, completions, sends, credits, events, timeouts.
    /// Returns whether anything was done and whether some link waits for credit.
    private func runRound() -> (worked: Bool, waitingForCredit: Bool) {
        var worked = runCommands()
        worked = runConnectionManager() || worked
        worked = pollCompletions() || worked
        var waitingForCredit = false
        for connection in connections.values where connection.established && !connection.failed {
            let (sent, blocked) = pump(connection)
            worked = sent || worked
            waitingForCredit = waitingForCredit || blocked
        }
        returnCredits()
        deliverEvents()
        checkTimeouts()
        return (worked, waitingForCredit)
    }

    /// Sleep: arm, then look once more (a completion may have come in between).
    private func sleep(waitingForCredit: Bool) {
        sleeping.store(true, ordering: .sequentiallyConsistent)
        lsv_arm(fabric)
        let hasCommands = commands.withLock { !$0.isEmpty }
        if !hasCommands && !pollCompletions() {
            let waitsSoon = waitingForCredit || !redials.isEmpty
            let timeout = waitsSoon ? Self.sleepMillisecondsShort : Self.sleepMillisecondsLong
            local.sleeps += 1
            lsv_block(fabric, wakeFD, timeout)
            lsv_wake_drain(wakeFD)
        }
        sleeping.store(false, ordering: .sequentiallyConsistent)
        publishStatistics()
    }

    /// The event loop no longer reads registered memory (`stoppedOnLoop`): free all.
    private func freeEverything() {
        for connection in connections.values { lsv_conn_close(connection.conn) }
        connections.removeAll()
        for conn in graveyard.values { lsv_conn_free(conn) }
        graveyard.removeAll()
        let closed = RuntimeError(.closed, "the member closed while dialing")
        for dial in dials.values { dial.waiter.resume(throwing: closed) }
        dials.removeAll()
        for dial in redials { dial.waiter.resume(throwing: closed) }
        redials.removeAll()
        lsv_fabric_close(fabric)
        lsv_wake_close(wakeFD)
    }

    func publishStatistics() {
        let snapshot = local
        stats.withLock { $0 = snapshot }
    }

    func runCommands() -> Bool {
        var taken: [Command] = []
        commands.withLock { swap(&taken, &$0) }
        for command in taken {
            switch command {
            case .flush(let id):
                // Closed or failed: what it held is dropped, like a closed socket's buffer.
                guard let connection = connections[id] else { continue }
                takeOutbound(of: connection)
            case .close(let id):
                guard let connection = connections.removeValue(forKey: id) else { continue }
                bury(connection)
                events.append(.down(connection.link))
            case .release(let id):
                if let conn = graveyard.removeValue(forKey: id) { lsv_conn_free(conn) }
            case .dial(let dial):
                startDial(dial)
            }
        }
        let now = ContinuousClock.now
        while let index = redials.firstIndex(where: { $0.at <= now }) {
            startDial(redials.remove(at: index))
        }
        return !taken.isEmpty
    }

    /// Takes what the event loop flushed. Rows jump the queue: they go one-sided into their own
    /// slots, not into the data ring, so they wait behind no data that is not yet posted
    /// (docs/WIRE.md, "Lanes").
    private func takeOutbound(of connection: RDMAConnection) {
        var frames: [ByteBuffer] = []
        connection.link.outbound.withLock { swap(&frames, &$0) }
        for frame in frames {
            if isWholeRow(frame) {
                connection.pendingRows.append(frame)
            } else {
                connection.pending.append(frame)
            }
        }
    }
}
