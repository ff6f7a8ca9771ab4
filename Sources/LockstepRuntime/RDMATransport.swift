// The RDMA transport: the transport contract (Transport.swift) over RC queue pairs set up with
// rdma_cm, through the thin C shell CLockstepVerbs (libibverbs and librdmacm loaded at run time).
// docs/RDMA.md describes the link protocol; in short, per connection and direction:
//
// - a data ring of `ringBytes` in the receiver's registered memory. The sender copies the
//   frames it is given (a byte stream, as on TCP) into its own registered staging ring at the
//   same offset and pushes them with RDMA WRITE_WITH_IMM (immediate = chunk length). Chunks never
//   cross the ring's end; frames may span chunks (the receiver cumulates, as on TCP);
// - `rowSlots` row slots: a row frame (the counter row, Derecho's SST) is written one-sided into
//   the next slot with WRITE_WITH_IMM (immediate = 1 << 31 | length). Rows and data share one
//   queue pair, so the receiver sees them in the order they were written (FIFO, as on TCP);
// - receiver credits: the receiver writes how far it has consumed (ring bytes, immediates) into
//   the sender's credit word with a plain RDMA WRITE (no receive consumed, no completion at the
//   sender: the sender reads its own memory). A sender never has more than `ringBytes` bytes or
//   `rowSlots` immediates unconsumed, so a write never lands on unread bytes and never finds the
//   receive queue empty (which would be "receiver not ready").
//
// One poller thread per member owns every verbs object: it takes frames the event loop queued,
// posts writes, polls the one completion queue, runs rdma_cm's events, and hands received frames
// to the event loop in one hop per round. Adaptive polling: it spins for `spinMicroseconds`
// after the last work, then arms the completion queue and sleeps on the completion channel (and
// rdma_cm's channel and a wake-up eventfd), so three members on two cores do not starve each other.
// A peer that stops answering may give no completion at all (rxe gives none for minutes): a
// link with a write outstanding, or waiting for credit, for `peerTimeout` is failed.

import CLockstepVerbs
import Foundation
import Logging
import LockstepCore
import LockstepWire
import NIOCore
import Synchronization

/// A C string in a buffer, as text.
func cText(_ chars: [CChar]) -> String {
    String(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Sizes and timeouts of the RDMA transport. Every member must use the same sizes (checked when
/// connecting).
public struct RDMASettings: Sendable {
    /// Each direction's data ring, per peer (registered memory: twice this per peer, plus rows).
    public var ringBytes = 4 * 1_024 * 1_024
    /// One row slot; rows larger than this travel in the data ring.
    public var rowSlotBytes = 4_096
    /// Row slots per peer, which is also the most writes with immediate unconsumed by a peer.
    public var rowSlots = 64
    /// The longest a chunk of the data ring may be (a quarter of the ring by default).
    public var chunkBytesMax = 1_024 * 1_024
    /// A link with a write outstanding (or waiting for credit) this long is failed.
    public var peerTimeout: Duration = .seconds(2)
    /// How long the poller spins after its last work before it sleeps on the completion channel.
    public var spinMicroseconds = 20
    /// Bytes queued on a link above which it reports not writable (rows then coalesce).
    public var queuedBytesHighWater = 8 * 1_024 * 1_024

    public init() {}

    public func validate() throws {
        guard ringBytes >= 64 * 1_024, ringBytes <= 1 << 30, ringBytes % 4_096 == 0 else {
            throw RuntimeError("rdma ringBytes \(ringBytes): must be a multiple of 4096 between 64 KiB and 1 GiB")
        }
        guard rowSlots >= 8, rowSlots <= 1_024 else { throw RuntimeError("rdma rowSlots \(rowSlots): must be 8...1024") }
        guard rowSlotBytes >= 256, rowSlotBytes <= 1 << 20 else {
            throw RuntimeError("rdma rowSlotBytes \(rowSlotBytes): must be 256...1048576")
        }
        guard chunkBytesMax >= 4_096, chunkBytesMax <= ringBytes / 2 else {
            throw RuntimeError("rdma chunkBytesMax \(chunkBytesMax): must be 4096...ringBytes/2")
        }
    }
}

/// Counts of RDMA operations, to show the RDMA path was really taken (tests assert them).
public struct RDMAStatistics: Sendable, Codable, Equatable {
    public var device = ""
    /// Completed writes with immediate: data chunks and rows.
    public var dataWrites: UInt64 = 0
    public var rowWrites: UInt64 = 0
    /// Completed plain writes: credit returns.
    public var creditWrites: UInt64 = 0
    /// Writes with immediate received from peers.
    public var receives: UInt64 = 0
    public var bytesWritten: UInt64 = 0
    /// Rounds in which the poller slept on the completion channel.
    public var sleeps: UInt64 = 0
    public var errorCompletions: UInt64 = 0
    public init() {}
}

/// Loads libibverbs and librdmacm and names the first RDMA device, or says what is missing.
public func probeRDMADevice() -> Result<String, RuntimeError> {
    var device = [CChar](repeating: 0, count: 128)
    var error = [CChar](repeating: 0, count: 512)
    if lsv_probe(&device, device.count, &error, error.count) == 0 {
        return .success(cText(device))
    }
    return .failure(RuntimeError(cText(error)))
}

final class RDMATransport: Transport, @unchecked Sendable {
    private let settings: RuntimeSettings
    private let limits: WireLimits
    private let logger: Logger
    private var poller: RDMAPoller?

    init(settings: RuntimeSettings, limits: WireLimits, logger: Logger) {
        self.settings = settings
        self.limits = limits
        self.logger = logger
    }

    func start(eventLoop: EventLoop, delegate: TransportDelegate) async throws {
        try settings.rdma.validate()
        guard !settings.dialsEveryone else {
            throw RuntimeError("joining a running group is not supported over RDMA yet: use --transport tcp")
        }
        let poller = try RDMAPoller(settings: settings, limits: limits, logger: logger, eventLoop: eventLoop, delegate: delegate)
        self.poller = poller
        poller.start()
        // Rank r dials every lower rank, as on TCP; refused dials are retried until connectTimeout.
        for rank in 0..<settings.memberRank {
            try await poller.dial(rank: rank, deadline: ContinuousClock.now + settings.connectTimeout)
        }
    }

    func close() async {
        await poller?.stop()
    }

    var statistics: RDMAStatistics? { poller?.statistics }
}

/// One connection as a transport link. Its methods run on the member's event loop; the bytes
/// it is given go to the poller through a locked queue.
final class RDMALink: TransportLink, @unchecked Sendable {
    let connectionID: UInt32
    fileprivate unowned let poller: RDMAPoller
    /// Frames written and not yet flushed (event loop only), and flushed ones the poller takes.
    private var unflushed: [ByteBuffer] = []
    fileprivate let outbound = Mutex<[ByteBuffer]>([])
    /// Bytes written and not yet copied into registered memory (event loop adds, poller subtracts).
    fileprivate let queuedByteCount = Atomic<Int>(0)
    /// Bytes written and not yet copied into registered memory.
    var queuedBytes: Int { queuedByteCount.load(ordering: .relaxed) }
    fileprivate let reportWritable = Atomic<Bool>(false)
    // Event loop only: the peer's rank once known (at once for dialed links, from the hello for
    // accepted ones), and whether the link was closed.
    fileprivate var peerRank: Int?
    fileprivate var isClosed = false
    // Receiving, on the event loop: frames are decoded straight from registered memory (a frame
    // cut by a chunk's end is copied aside until its rest arrives); what was consumed is
    // published for the poller, which returns it to the peer as credit. While reading is paused
    // chunks wait here undecoded, credit stays unreturned, and the peer's window closes.
    fileprivate var memory: UnsafeMutableRawPointer?
    fileprivate var cumulation = ByteBuffer()
    fileprivate var reading = true
    fileprivate var waiting: [Arrival] = []
    fileprivate let consumedBytes = Atomic<UInt64>(0)
    fileprivate let consumedImmediates = Atomic<UInt64>(0)

    init(connectionID: UInt32, poller: RDMAPoller, peerRank: Int?) {
        self.connectionID = connectionID
        self.poller = poller
        self.peerRank = peerRank
    }

    var isWritable: Bool {
        if queuedByteCount.load(ordering: .relaxed) < poller.highWater { return true }
        reportWritable.store(true, ordering: .relaxed)
        return false
    }

    func write(_ frame: ByteBuffer) {
        guard !isClosed else { return }
        queuedByteCount.add(frame.readableBytes, ordering: .relaxed)
        unflushed.append(frame)
    }

    func flush() {
        guard !unflushed.isEmpty, !isClosed else { return }
        // One flush command covers every frame queued before the poller takes them: submit only
        // when the queue was empty (otherwise a command is pending and will take these too).
        let wasEmpty = outbound.withLock { queue in
            let wasEmpty = queue.isEmpty
            queue.append(contentsOf: unflushed)
            return wasEmpty
        }
        unflushed.removeAll(keepingCapacity: true)
        if wasEmpty { poller.submit(.flush(connectionID)) }
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        unflushed.removeAll()
        poller.submit(.close(connectionID))
    }

    func setReading(_ enabled: Bool) {
        reading = enabled
        if enabled { poller.resume(self) }
    }
}

/// What arrived on a connection, where it lies in the receiver's registered memory.
fileprivate enum Arrival {
    case chunk(offset: Int, length: Int)
    case row(offset: Int, length: Int)
}

/// What the poller owns of one connection (poller thread only).
private final class Connection {
    let conn: OpaquePointer
    let id: UInt32
    /// Registered memory, allocated by the shell once the route is known (dialed) or at once
    /// (accepted): asked for each time (a peer may write before this side sees "established").
    var memory: UnsafeMutableRawPointer { UnsafeMutableRawPointer(lsv_conn_memory(conn)) }
    let link: RDMALink
    /// For dialed connections: the rank dialed and who waits for the outcome.
    var dialedRank: Int?
    var established = false
    var failed = false
    // Sending.
    var pending = CircularBuffer<ByteBuffer>()
    /// Row frames waiting for a row slot: posted before any pending data (strict priority).
    var pendingRows = CircularBuffer<ByteBuffer>()
    /// The hello is first in `pending` and not posted yet: rows wait for it (a peer refuses any
    /// frame before the hello).
    var helloPending = false
    var sendHead: UInt64 = 0
    var immediatesSent: UInt64 = 0
    var rowsSent: UInt64 = 0
    var writesOutstanding = 0
    /// The first pending buffer was partly copied (its rest must follow as data).
    var midFrame = false
    var peerConsumedBytes: UInt64 = 0
    var peerConsumedImmediates: UInt64 = 0
    /// Since when a write has been outstanding (or the link has waited for credit) without progress.
    var stalledSince: ContinuousClock.Instant?
    // Receiving: where the next chunk and row lie; what was returned as credit; arrivals before
    // this side saw "established" (they follow the link's up).
    var receiveHead: UInt64 = 0
    var rowsReceived: UInt64 = 0
    var returnedBytes: UInt64 = 0
    var returnedImmediates: UInt64 = 0
    var early: [Arrival] = []

    init(conn: OpaquePointer, link: RDMALink) {
        self.conn = conn
        self.id = lsv_conn_id(conn)
        self.link = link
    }
}

/// Everything the poller tells the event loop in one round.
private enum LinkEvent {
    case up(RDMALink, rank: Int)
    case arrived(RDMALink, Arrival)
    case failed(RDMALink, String)
    case down(RDMALink)
    case writable(RDMALink)
}

final class RDMAPoller: @unchecked Sendable {
    enum Command {
        case flush(UInt32)
        case close(UInt32)
        case release(UInt32)
        case dial(rank: Int, deadline: ContinuousClock.Instant, CheckedContinuation<Void, Error>)
    }

    private let settings: RuntimeSettings
    private let rdma: RDMASettings
    private let limits: WireLimits
    private let logger: Logger
    private let eventLoop: EventLoop
    private weak var delegate: TransportDelegate?
    private let fabric: OpaquePointer
    private let layout: lsv_layout
    private let allocator = ByteBufferAllocator()
    let highWater: Int

    // Shared with the event loop.
    private let commands = Mutex<[Command]>([])
    private let sleeping = Atomic<Bool>(false)
    private let running = Atomic<Bool>(true)
    private let wakeFD: Int32
    private let stats = Mutex(RDMAStatistics())
    private let finished = DispatchSemaphore(value: 0)
    /// Event loop only: set by `stop` before the poller frees memory; arrivals are ignored after.
    private var stoppedOnLoop = false

    // Poller thread only.
    private var connections: [UInt32: Connection] = [:]
    /// Disconnected connections whose memory the event loop may still read, until it releases them.
    private var graveyard: [UInt32: OpaquePointer] = [:]
    /// Dials in progress, with when each attempt started: a connect request nobody answers (a
    /// peer exiting, a lost request) is given up after `dialAttemptTimeout` and retried.
    private var dials: [UInt32: (rank: Int, deadline: ContinuousClock.Instant, CheckedContinuation<Void, Error>, started: ContinuousClock.Instant)] = [:]
    private let dialAttemptTimeout = Duration.seconds(5)
    private var redials: [(at: ContinuousClock.Instant, rank: Int, deadline: ContinuousClock.Instant, CheckedContinuation<Void, Error>)] = []
    private var events: [LinkEvent] = []
    private var local = RDMAStatistics()
    private var completions = [lsv_completion](repeating: lsv_completion(), count: 32)
    private var lastTimeoutCheck = ContinuousClock.now

    // Tags in the low byte of a send's work request id (receives carry 0).
    private static let tagData: UInt64 = 1
    private static let tagRow: UInt64 = 2
    private static let tagCredit: UInt64 = 3
    private static let rowFlag: UInt32 = 1 << 31

    init(settings: RuntimeSettings, limits: WireLimits, logger: Logger, eventLoop: EventLoop, delegate: TransportDelegate) throws {
        self.settings = settings
        self.rdma = settings.rdma
        self.limits = limits
        self.logger = logger
        self.eventLoop = eventLoop
        self.delegate = delegate
        self.highWater = settings.rdma.queuedBytesHighWater
        let sizes = lsv_sizes(
            ring_bytes: UInt32(rdma.ringBytes), row_slot_bytes: UInt32(rdma.rowSlotBytes), row_slots: UInt32(rdma.rowSlots))
        var error = [CChar](repeating: 0, count: 512)
        guard let fabric = lsv_fabric_open(sizes, &error, error.count) else {
            throw RuntimeError("--transport rdma: \(cText(error))")
        }
        let address = settings.addresses[settings.memberRank]
        if lsv_listen(fabric, address.host, Int32(address.port), &error, error.count) != 0 {
            lsv_fabric_close(fabric)
            throw RuntimeError("cannot listen for RDMA connections on \(address): \(cText(error))")
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
        try? await eventLoop.submit { self.stoppedOnLoop = true }.get()
        guard running.exchange(false, ordering: .sequentiallyConsistent) else { return }
        wake()
        await withCheckedContinuation { continuation in
            Thread {
                self.finished.wait()
                continuation.resume()
            }.start()
        }
    }

    func dial(rank: Int, deadline: ContinuousClock.Instant) async throws {
        try await withCheckedThrowingContinuation { continuation in
            submit(.dial(rank: rank, deadline: deadline, continuation))
        }
    }

    func submit(_ command: Command) {
        commands.withLock { $0.append(command) }
        if sleeping.load(ordering: .sequentiallyConsistent) { wake() }
    }

    private func wake() {
        lsv_wake_signal(wakeFD)
    }

    // MARK: - The loop

    private func run() {
        var lastWork = ContinuousClock.now
        let spin = Duration.microseconds(rdma.spinMicroseconds)
        while running.load(ordering: .sequentiallyConsistent) {
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
            let now = ContinuousClock.now
            if worked {
                lastWork = now
                continue
            }
            if now - lastWork < spin { continue }
            // Sleep: arm, then look once more (a completion may have come in between).
            sleeping.store(true, ordering: .sequentiallyConsistent)
            lsv_arm(fabric)
            let hasCommands = commands.withLock { !$0.isEmpty }
            if !hasCommands && !pollCompletions() {
                // Credit arrives by one-sided write, with no event: look again soon when waiting for it.
                let timeout: Int32 = waitingForCredit || !redials.isEmpty ? 1 : 100
                local.sleeps += 1
                lsv_block(fabric, wakeFD, timeout)
                lsv_wake_drain(wakeFD)
            }
            sleeping.store(false, ordering: .sequentiallyConsistent)
            publishStatistics()
        }
        // The event loop no longer reads registered memory (`stoppedOnLoop`): free all.
        for connection in connections.values { lsv_conn_close(connection.conn) }
        connections.removeAll()
        for conn in graveyard.values { lsv_conn_free(conn) }
        graveyard.removeAll()
        for (_, dial) in dials { dial.2.resume(throwing: RuntimeError("the member closed while dialing")) }
        dials.removeAll()
        for dial in redials { dial.3.resume(throwing: RuntimeError("the member closed while dialing")) }
        redials.removeAll()
        lsv_fabric_close(fabric)
        lsv_wake_close(wakeFD)
        finished.signal()
    }

    private func publishStatistics() {
        let snapshot = local
        stats.withLock { $0 = snapshot }
    }

    private func runCommands() -> Bool {
        var taken: [Command] = []
        commands.withLock { swap(&taken, &$0) }
        for command in taken {
            switch command {
            case .flush(let id):
                guard let connection = connections[id] else {
                    // Closed or failed: what it held is dropped, like a closed socket's buffer.
                    continue
                }
                var frames: [ByteBuffer] = []
                connection.link.outbound.withLock { swap(&frames, &$0) }
                // Rows jump the queue: they go one-sided into their own slots, not into the data
                // ring, so they wait behind no data that is not yet posted (docs/WIRE.md, "Lanes").
                for frame in frames {
                    if isWholeRow(frame) { connection.pendingRows.append(frame) } else { connection.pending.append(frame) }
                }
            case .close(let id):
                guard let connection = connections.removeValue(forKey: id) else { continue }
                bury(connection)
                events.append(.down(connection.link))
            case .release(let id):
                if let conn = graveyard.removeValue(forKey: id) { lsv_conn_free(conn) }
            case .dial(let rank, let deadline, let continuation):
                startDial(rank: rank, deadline: deadline, continuation)
            }
        }
        let now = ContinuousClock.now
        while let index = redials.firstIndex(where: { $0.at <= now }) {
            let dial = redials.remove(at: index)
            startDial(rank: dial.rank, deadline: dial.deadline, dial.3)
        }
        return !taken.isEmpty
    }

    private func startDial(rank: Int, deadline: ContinuousClock.Instant, _ continuation: CheckedContinuation<Void, Error>) {
        let address = settings.addresses[rank]
        var error = [CChar](repeating: 0, count: 512)
        guard let conn = lsv_connect(fabric, address.host, Int32(address.port), &error, error.count) else {
            continuation.resume(throwing: RuntimeError("cannot dial member rank \(rank) at \(address) over RDMA: \(cText(error))"))
            return
        }
        let link = RDMALink(connectionID: lsv_conn_id(conn), poller: self, peerRank: rank)
        let connection = Connection(conn: conn, link: link)
        connection.dialedRank = rank
        connections[connection.id] = connection
        dials[connection.id] = (rank, deadline, continuation, .now)
    }

    /// A dial failed (`reason`): retried in 50 ms, or given up past its deadline.
    private func dialFailed(_ id: UInt32, conn: OpaquePointer, reason: String) {
        connections.removeValue(forKey: id)
        lsv_conn_close(conn)
        guard let dial = dials.removeValue(forKey: id) else { return }
        if ContinuousClock.now > dial.deadline {
            let address = settings.addresses[dial.rank]
            dial.2.resume(throwing: RuntimeError("cannot connect to member rank \(dial.rank) at \(address) over RDMA: \(reason)"))
        } else {
            redials.append((ContinuousClock.now + .milliseconds(50), dial.rank, dial.deadline, dial.2))
        }
    }

    // MARK: - rdma_cm

    private func runConnectionManager() -> Bool {
        var worked = false
        var result = lsv_cm_result()
        while lsv_cm_poll(fabric, &result) == 0, result.kind != LSV_CM_NONE {
            worked = true
            let reason = withUnsafeBytes(of: result.reason) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            logger.debug("rdma_cm: kind \(result.kind) connection \(result.conn.map { lsv_conn_id($0) } ?? 0) \(reason)")
            switch Int(result.kind) {
            case LSV_CM_ESTABLISHED:
                guard let conn = result.conn else { continue }
                let id = lsv_conn_id(conn)
                guard let connection = connections[id] else { continue }
                connection.established = true
                if connection.dialedRank != nil { connection.link.memory = connection.memory }
                if let dial = dials.removeValue(forKey: id) {
                    sendHello(on: connection)
                    events.append(.up(connection.link, rank: dial.rank))
                    dial.2.resume()
                }
                for arrival in connection.early { events.append(.arrived(connection.link, arrival)) }
                connection.early.removeAll()
            case LSV_CM_INCOMING:
                // Accepted: the peer may write at once; its hello (its first frame) says who it is.
                guard let conn = result.conn else { continue }
                let link = RDMALink(connectionID: lsv_conn_id(conn), poller: self, peerRank: nil)
                let connection = Connection(conn: conn, link: link)
                link.memory = connection.memory
                connections[connection.id] = connection
            case LSV_CM_FAILED:
                guard let conn = result.conn else { continue }
                dialFailed(lsv_conn_id(conn), conn: conn, reason: reason)
            case LSV_CM_DISCONNECTED:
                guard let conn = result.conn, let connection = connections.removeValue(forKey: lsv_conn_id(conn)) else { continue }
                bury(connection)
                events.append(.down(connection.link))
            case LSV_CM_REFUSED:
                logger.warning("refused an RDMA connection: \(reason)")
            default:
                break
            }
        }
        return worked
    }

    private func sendHello(on connection: Connection) {
        let hello = Hello(
            member: settings.view.members[settings.memberRank], viewID: settings.view.id,
            memberRank: settings.memberRank, senderCount: settings.view.senderCount)
        var buffer = allocator.buffer(capacity: Wire.encodedHelloBytes)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: Wire.encodedHelloBytes) { Wire.encode(hello, into: $0) }
        connection.pending.prepend(buffer)
        connection.helloPending = true
    }

    // MARK: - Sending

    /// Reads the peer's credit word: (bytes, immediates) consumed, with a check word, since the
    /// peer may be writing it while it is read.
    private func readCredit(_ connection: Connection) {
        let word = connection.memory + Int(layout.credit_recv)
        let bytes = word.loadUnaligned(as: UInt64.self)
        let immediates = (word + 8).loadUnaligned(as: UInt64.self)
        let check = (word + 16).loadUnaligned(as: UInt64.self)
        guard check == Self.creditCheck(bytes, immediates), bytes <= connection.sendHead,
            immediates <= connection.immediatesSent
        else { return }
        if bytes > connection.peerConsumedBytes || immediates > connection.peerConsumedImmediates {
            connection.stalledSince = nil
        }
        connection.peerConsumedBytes = max(connection.peerConsumedBytes, bytes)
        connection.peerConsumedImmediates = max(connection.peerConsumedImmediates, immediates)
    }

    private static func creditCheck(_ bytes: UInt64, _ immediates: UInt64) -> UInt64 {
        (bytes &* 0x9E37_79B9_7F4A_7C15) ^ immediates ^ 0x4C53_524D_4352_4544
    }

    /// A buffer that is exactly one row frame, small enough for a row slot.
    private func isWholeRow(_ frame: ByteBuffer) -> Bool {
        guard frame.readableBytes <= rdma.rowSlotBytes, frame.readableBytes >= Wire.headerBytes,
            frame.getInteger(at: frame.readerIndex + Wire.headerTypeOffset, as: UInt8.self) == Wire.FrameType.row.rawValue,
            let length = frame.getInteger(at: frame.readerIndex + Wire.headerLengthOffset, endianness: .little, as: UInt32.self)
        else { return false }
        return Int(length) + Wire.headerBytes == frame.readableBytes
    }

    /// Moves queued frames into registered memory and posts them, as far as credit allows.
    /// Returns whether it posted anything and whether it waits for credit.
    private func pump(_ connection: Connection) -> (Bool, Bool) {
        guard !connection.pending.isEmpty || !connection.pendingRows.isEmpty else { return (false, false) }
        readCredit(connection)
        var posted = false
        let ring = UInt64(rdma.ringBytes)
        let sendQueueMax = 2 * rdma.rowSlots
        var copiedBytes = 0
        defer { if copiedBytes > 0 { released(connection, bytes: copiedBytes) } }
        // Rows first: one-sided into the next row slot each, ahead of any data not yet posted.
        while !connection.helloPending, let first = connection.pendingRows.first {
            guard connection.writesOutstanding < sendQueueMax,
                connection.immediatesSent - connection.peerConsumedImmediates < UInt64(rdma.rowSlots)
            else { return blocked(connection, posted) }
            let slot = Int(connection.rowsSent % UInt64(rdma.rowSlots))
            let offset = Int(layout.row_send) + slot * rdma.rowSlotBytes
            let length = first.readableBytes
            first.withUnsafeReadableBytes { (connection.memory + offset).copyMemory(from: $0.baseAddress!, byteCount: length) }
            let remote = Int(layout.row_recv) + slot * rdma.rowSlotBytes
            guard post(connection, local: offset, remote: remote, length: length, imm: Self.rowFlag | UInt32(length), tag: Self.tagRow)
            else { return (posted, false) }
            connection.rowsSent += 1
            connection.pendingRows.removeFirst()
            copiedBytes += length
            posted = true
        }
        while !connection.pending.isEmpty {
            guard connection.writesOutstanding < sendQueueMax,
                connection.immediatesSent - connection.peerConsumedImmediates < UInt64(rdma.rowSlots)
            else { return blocked(connection, posted) }
            // Data (rows never queue here: they wait in `pendingRows`): frames into one chunk of
            // the ring (never across its end).
            let free = ring - (connection.sendHead - connection.peerConsumedBytes)
            let offset = connection.sendHead % ring
            let room = Int(min(free, ring - offset, UInt64(rdma.chunkBytesMax)))
            guard room > 0 else { return blocked(connection, posted) }
            var length = 0
            let base = connection.memory + Int(layout.send_ring) + Int(offset)
            while length < room, var next = connection.pending.first {
                let take = min(room - length, next.readableBytes)
                next.withUnsafeReadableBytes { (base + length).copyMemory(from: $0.baseAddress!, byteCount: take) }
                next.moveReaderIndex(forwardBy: take)
                length += take
                if next.readableBytes == 0 {
                    connection.pending.removeFirst()
                    connection.midFrame = false
                } else {
                    connection.pending[connection.pending.startIndex] = next
                    connection.midFrame = true
                }
            }
            copiedBytes += length
            guard post(connection, local: Int(layout.send_ring) + Int(offset), remote: Int(layout.recv_ring) + Int(offset),
                length: length, imm: UInt32(length), tag: Self.tagData)
            else { return (posted, false) }
            connection.sendHead += UInt64(length)
            connection.helloPending = false
            posted = true
        }
        return (posted, false)
    }

    private func blocked(_ connection: Connection, _ posted: Bool) -> (Bool, Bool) {
        if connection.stalledSince == nil { connection.stalledSince = .now }
        return (posted, true)
    }

    private func released(_ connection: Connection, bytes: Int) {
        // `reportWritable` says the event loop found the link unwritable: tell it once the queue
        // is below half the high-water mark (however many steps it took to get there).
        let after = connection.link.queuedByteCount.subtract(bytes, ordering: .relaxed).newValue
        if after < highWater / 2, connection.link.reportWritable.load(ordering: .relaxed),
            connection.link.reportWritable.exchange(false, ordering: .relaxed)
        {
            events.append(.writable(connection.link))
        }
    }

    private func post(_ connection: Connection, local: Int, remote: Int, length: Int, imm: UInt32, tag: UInt64) -> Bool {
        let withImmediate: Int32 = tag == Self.tagCredit ? 0 : 1
        let rc = lsv_post_write(connection.conn, UInt64(local), UInt64(remote), UInt32(length), withImmediate, imm,
            UInt64(connection.id) << 8 | tag)
        guard rc == 0 else {
            fail(connection, "posting an RDMA write failed: \(String(cString: strerror(rc)))")
            return false
        }
        connection.writesOutstanding += 1
        if withImmediate == 1 { connection.immediatesSent += 1 }
        if connection.stalledSince == nil { connection.stalledSince = .now }
        return true
    }

    // MARK: - Completions

    private func pollCompletions() -> Bool {
        var worked = false
        for _ in 0..<16 {
            let count = Int(completions.withUnsafeMutableBufferPointer { lsv_poll(fabric, $0.baseAddress, 32) })
            guard count > 0 else { break }
            worked = true
            for index in 0..<count { handle(completions[index]) }
            if count < 32 { break }
        }
        return worked
    }

    private func handle(_ completion: lsv_completion) {
        let id = UInt32(truncatingIfNeeded: completion.wr_id >> 8)
        logger.trace("completion: connection \(id) op \(completion.op) status \(completion.status) imm \(completion.imm) tag \(completion.wr_id & 0xff)")
        // A connection closed meanwhile: its late completions (flushes) are of no interest.
        guard let connection = connections[id], !connection.failed else { return }
        let tag = completion.wr_id & 0xff
        guard completion.status == 0 else {
            local.errorCompletions += 1
            let what = completion.op == LSV_OP_RECV ? "a receive" : tag == Self.tagCredit ? "a credit write" : "an RDMA write"
            fail(connection, "\(what) failed: \(String(cString: lsv_status_string(completion.status)))")
            return
        }
        if completion.op == LSV_OP_SEND {
            connection.writesOutstanding -= 1
            connection.stalledSince = connection.writesOutstanding > 0 ? .now : nil
            switch tag {
            case Self.tagData:
                local.dataWrites += 1
                local.bytesWritten += UInt64(completion.byte_len)
            case Self.tagRow: local.rowWrites += 1
            default: local.creditWrites += 1
            }
            return
        }
        local.receives += 1
        guard lsv_post_recv(connection.conn, UInt64(connection.id) << 8) == 0 else {
            fail(connection, "posting a receive failed")
            return
        }
        let length = Int(completion.imm & ~Self.rowFlag)
        let arrival: Arrival
        if completion.imm & Self.rowFlag != 0 {
            guard length <= rdma.rowSlotBytes else { return fail(connection, "a row of \(length) bytes, beyond the slot") }
            let slot = Int(connection.rowsReceived % UInt64(rdma.rowSlots))
            connection.rowsReceived += 1
            arrival = .row(offset: Int(layout.row_recv) + slot * rdma.rowSlotBytes, length: length)
        } else {
            let offset = Int(connection.receiveHead % UInt64(rdma.ringBytes))
            guard length > 0, offset + length <= rdma.ringBytes else {
                return fail(connection, "a data chunk of \(length) bytes at \(offset) does not fit the ring")
            }
            connection.receiveHead += UInt64(length)
            arrival = .chunk(offset: Int(layout.recv_ring) + offset, length: length)
        }
        if connection.established {
            events.append(.arrived(connection.link, arrival))
        } else {
            connection.early.append(arrival)
        }
    }

    /// Tells peers how far this member consumed, once a good part of the ring or the slots is
    /// free again (never while reading is paused: that is the back-pressure).
    private func returnCredits() {
        for connection in connections.values where connection.established && !connection.failed {
            let consumedBytes = connection.link.consumedBytes.load(ordering: .acquiring)
            let consumedImmediates = connection.link.consumedImmediates.load(ordering: .acquiring)
            let bytes = consumedBytes - connection.returnedBytes
            let immediates = consumedImmediates - connection.returnedImmediates
            guard bytes >= UInt64(rdma.ringBytes / 8) || immediates >= UInt64(rdma.rowSlots / 8) else { continue }
            let word = connection.memory + Int(layout.credit_send)
            word.storeBytes(of: consumedBytes, as: UInt64.self)
            (word + 8).storeBytes(of: consumedImmediates, as: UInt64.self)
            (word + 16).storeBytes(of: Self.creditCheck(consumedBytes, consumedImmediates), as: UInt64.self)
            if post(connection, local: Int(layout.credit_send), remote: Int(layout.credit_recv), length: 24, imm: 0, tag: Self.tagCredit) {
                connection.returnedBytes = consumedBytes
                connection.returnedImmediates = consumedImmediates
            }
        }
    }

    private func checkTimeouts() {
        let now = ContinuousClock.now
        guard now - lastTimeoutCheck > .milliseconds(10) else { return }
        lastTimeoutCheck = now
        publishStatistics()
        for (id, dial) in dials where now - dial.started > dialAttemptTimeout {
            guard let connection = connections[id] else { continue }
            dialFailed(id, conn: connection.conn, reason: "no answer to the connect request within \(dialAttemptTimeout)")
        }
        for connection in connections.values where connection.established && !connection.failed {
            if let since = connection.stalledSince, now - since > rdma.peerTimeout {
                fail(connection, "the peer stopped answering: no completion or credit for \(rdma.peerTimeout)")
            }
        }
    }

    private func fail(_ connection: Connection, _ reason: String) {
        guard !connection.failed else { return }
        connection.failed = true
        connections.removeValue(forKey: connection.id)
        bury(connection)
        events.append(.failed(connection.link, reason))
    }

    /// Disconnects now; frees the memory once the event loop is done with it (.release).
    private func bury(_ connection: Connection) {
        lsv_conn_disconnect(connection.conn)
        graveyard[connection.id] = connection.conn
    }

    // MARK: - To the event loop

    private func deliverEvents() {
        guard !events.isEmpty else { return }
        let batch = events
        events.removeAll(keepingCapacity: true)
        eventLoop.execute { [self] in
            guard let delegate else { return }
            for event in batch { route(event, delegate) }
            delegate.readsComplete()
        }
    }

    /// Runs on the event loop: the same rules as the TCP transport's link handler.
    private func route(_ event: LinkEvent, _ delegate: TransportDelegate) {
        switch event {
        case .up(let link, let rank):
            guard !link.isClosed else { return }
            delegate.linkUp(link, peerRank: rank)
        case .arrived(let link, let arrival):
            guard !link.isClosed, !stoppedOnLoop else { return }
            if link.reading && link.waiting.isEmpty {
                consume(arrival, on: link, delegate)
            } else {
                link.waiting.append(arrival)
            }
        case .failed(let link, let reason):
            if !link.isClosed { delegate.linkFailed(link, reason: reason) }
            link.isClosed = true
            release(link)
            delegate.linkDown(link, peerRank: link.peerRank)
        case .down(let link):
            link.isClosed = true
            release(link)
            delegate.linkDown(link, peerRank: link.peerRank)
        case .writable(let link):
            if let rank = link.peerRank, !link.isClosed { delegate.linkWritable(peerRank: rank) }
        }
    }

    private func release(_ link: RDMALink) {
        link.memory = nil
        link.waiting.removeAll()
        submit(.release(link.connectionID))
    }

    /// Decodes what arrived (event loop), hands the frames on, and publishes what was consumed.
    private func consume(_ arrival: Arrival, on link: RDMALink, _ delegate: TransportDelegate) {
        guard let memory = link.memory else { return }
        do {
            switch arrival {
            case .row(let offset, let length):
                let bytes = UnsafeRawBufferPointer(start: memory + offset, count: length)
                guard let (frame, used) = try Wire.decode(bytes, limits: limits), used == length else {
                    return refuse(link, "a row slot that does not hold one whole frame", delegate)
                }
                deliver(ReceivedFrame(frame: frame), on: link, delegate)
            case .chunk(let offset, let length):
                let chunk = UnsafeRawBufferPointer(start: memory + offset, count: length)
                if link.cumulation.readableBytes == 0 {
                    var used = 0
                    while used < length, !link.isClosed {
                        let rest = UnsafeRawBufferPointer(rebasing: chunk[used...])
                        // A relay block is lent to the runtime in place (no copy unless it forwards it).
                        if let (block, bytesAt, bytes) = try FrameDecoder.blockFrame(in: rest, limits: limits) {
                            used += bytes
                            deliver(ReceivedFrame(block: block, lent: UnsafeRawBufferPointer(rebasing: rest[0..<bytes]), blockBytesAt: bytesAt), on: link, delegate)
                            continue
                        }
                        guard let (frame, bytes) = try FrameDecoder.nextFrame(in: rest, allocator: allocator, limits: limits) else { break }
                        used += bytes
                        deliver(frame, on: link, delegate)
                    }
                    if used < length { link.cumulation.writeBytes(UnsafeRawBufferPointer(rebasing: chunk[used...])) }
                } else {
                    link.cumulation.writeBytes(chunk)
                    while !link.isClosed,
                        let frame = try FrameDecoder.nextFrame(from: &link.cumulation, allocator: allocator, limits: limits)
                    {
                        deliver(frame, on: link, delegate)
                    }
                    link.cumulation.discardReadBytes()
                }
                link.consumedBytes.add(UInt64(length), ordering: .releasing)
            }
            link.consumedImmediates.add(1, ordering: .releasing)
        } catch {
            refuse(link, "\(error)", delegate)
        }
    }

    /// Resumes reading a link (event loop): what waited is decoded now.
    fileprivate func resume(_ link: RDMALink) {
        guard let delegate, !stoppedOnLoop else { return }
        while link.reading, !link.isClosed, !link.waiting.isEmpty {
            consume(link.waiting.removeFirst(), on: link, delegate)
        }
        delegate.readsComplete()
    }

    /// The same rules as the TCP transport's link handler.
    private func deliver(_ received: ReceivedFrame, on link: RDMALink, _ delegate: TransportDelegate) {
        if case .control(let body) = received.frame {
            delegate.control(body, link: link, peerRank: link.peerRank)
            return
        }
        if case .hello(let hello) = received.frame {
            guard link.peerRank == nil else { return refuse(link, "a second hello on a live link", delegate) }
            guard let slot = delegate.admit(hello) else {
                return refuse(link, "unexpected hello \(hello) for \(settings.view)", delegate)
            }
            logger.info("member \(hello.member) connected over RDMA (slot \(slot))")
            link.peerRank = slot
            delegate.linkUp(link, peerRank: slot)
            return
        }
        guard let rank = link.peerRank else { return refuse(link, "a frame before the hello", delegate) }
        delegate.received(received, from: rank, link: link)
    }

    private func refuse(_ link: RDMALink, _ reason: String, _ delegate: TransportDelegate) {
        delegate.linkFailed(link, reason: reason)
        link.close()
    }
}
