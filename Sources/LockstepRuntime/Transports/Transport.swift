// The transport contract: how members reach each other, chosen at run time. A transport gives
// the runtime one link per peer and hands it whole frames (docs/WIRE.md); the runtime never
// sees sockets. Ordering: each link is FIFO and reliable until it fails; a failed link is
// reported and closed, never silently repaired. TCP (TCPTransport) and RDMA (RDMATransport)
// implement it.

import LockstepCore
import LockstepWire
import Logging
import NIOCore

/// One member's link to one peer, as a transport provides it. Used on the member's event loop.
protocol TransportLink: AnyObject, Sendable {
    /// False while the link's outbound queue is above its high-water mark (rows then coalesce).
    var isWritable: Bool { get }
    /// Bytes written to the link and not yet handed to the network (the statistics count them;
    /// the window bounds them).
    var queuedBytes: Int { get }
    /// Queues an encoded frame; it goes out at the next `flush`, in order.
    func write(_ frame: ByteBuffer)
    func flush()
    func close()
    /// Stops (false) or resumes (true) reading from the peer: how a slow application pushes
    /// back, through the transport, onto the senders' windows.
    func setReading(_ enabled: Bool)
}

/// A frame as a transport hands it over.
struct ReceivedFrame: @unchecked Sendable {
    var frame: Frame
    /// For a relay block: the whole frame as received (forwarded unchanged); its bytes start at
    /// `blockBytesAt`.
    var raw: ByteBuffer?
    /// For a relay block, instead of `raw`: the whole frame in the transport's own memory (the
    /// RDMA ring), lent for the duration of the `received` call only (hence `@unchecked
    /// Sendable`: it never leaves the event loop). The runtime copies what it keeps.
    var lent: UnsafeRawBufferPointer?
    var blockBytesAt: Int

    init(frame: Frame, raw: ByteBuffer? = nil, blockBytesAt: Int = 0) {
        self.frame = frame
        self.raw = raw
        self.blockBytesAt = blockBytesAt
    }

    init(block: Block, lent: UnsafeRawBufferPointer, blockBytesAt: Int) {
        self.frame = .block(block)
        self.lent = lent
        self.blockBytesAt = blockBytesAt
    }
}

/// What the runtime learns from its transport. Called on the member's event loop. Peers are
/// named by `MemberID` from here on: the transport learns it from the hello (accepted links) or
/// knows it from the view it dials (dialed links); ranks are the runtime's business.
protocol TransportDelegate: AnyObject, Sendable {
    /// An accepted connection introduced itself: whether the runtime takes it (false: refused).
    func admit(_ hello: Hello) -> Bool
    /// A link to `member` is up (its identity checked by the transport).
    func linkUp(_ link: TransportLink, member: MemberID)
    /// A control frame (joins, `done`), on an identified link or (`member` nil) a fresh connection.
    func control(_ body: [UInt8], link: TransportLink, member: MemberID?)
    func received(_ frame: ReceivedFrame, from member: MemberID, link: TransportLink)
    /// A burst of reads ended: a good moment to poll the core.
    func readsComplete()
    func linkWritable(member: MemberID)
    /// The link broke the protocol or failed (`reason` says how); the transport closes it.
    func linkFailed(_ link: TransportLink, reason: String)
    /// The link is closed (`member` nil if it never identified itself).
    func linkDown(_ link: TransportLink, member: MemberID?)
}

/// How members reach each other.
protocol Transport: AnyObject, Sendable {
    /// Starts listening and connecting; links are reported to `delegate` on `eventLoop`.
    func start(eventLoop: EventLoop, delegate: TransportDelegate) async throws
    func close() async
}

/// The transports, by the name `--transport` takes.
public enum TransportKind: String, Sendable, CaseIterable {
    case tcp
    case rdma

    func make(settings: RuntimeSettings, limits: WireLimits, logger: Logger) -> Transport {
        switch self {
        case .tcp: return TCPTransport(settings: settings, limits: limits, logger: logger)
        case .rdma: return RDMATransport(settings: settings, limits: limits, logger: logger)
        }
    }

    /// The transport for a `--transport` value: "tcp", "rdma" (an error if there is no RDMA
    /// device, saying what is missing) or "auto" (RDMA when a device is present, else TCP).
    public static func choose(_ name: String) -> Result<TransportKind, RuntimeError> {
        switch name {
        case "tcp": return .success(.tcp)
        case "rdma":
            switch probeRDMADevice() {
            case .success: return .success(.rdma)
            case .failure(let error):
                return .failure(RuntimeError(.transportUnavailable, "--transport rdma: \(error.description)"))
            }
        case "auto":
            if case .success = probeRDMADevice() { return .success(.rdma) }
            return .success(.tcp)
        default:
            return .failure(RuntimeError(.invalidSettings, "--transport \(name): expected tcp, rdma or auto"))
        }
    }
}
