// What a member needs to start: addresses, limits, the transport and its sizes. Every limit is
// named with its unit and checked before anything is opened (`validate`).

import CoreMetrics
import LockstepCore

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
    /// A joiner's welcome, unordered mode: how many of each sender's first messages in the view
    /// its snapshot already holds (`JoinerStart.skip`).
    public var joinerSkip: [UInt64] = []
    /// Where the member's metrics go (nil: none). The library never touches the global
    /// MetricsSystem: the embedding program passes its factory.
    public var metricsFactory: (any MetricsFactory)? = nil
    /// Durable mode (`configuration.durable`): the directory of this member's log, created if
    /// missing; it must hold no log yet (restarting from one is not built yet).
    public var dataDirectory: String? = nil
    /// Durable mode: bytes of each log segment, preallocated when it is started (at least what
    /// one record of the largest message needs).
    public var logSegmentBytes = 64 * 1_024 * 1_024

    public init(configuration: Configuration, view: View, memberRank: Int, addresses: [PeerAddress]) {
        self.configuration = configuration
        self.view = view
        self.memberRank = memberRank
        self.addresses = addresses
    }

    /// A joiner's settings, from the leader's welcome.
    public init(configuration: Configuration, joining welcome: Welcome) {
        self.init(
            configuration: configuration, view: welcome.view, memberRank: welcome.memberRank,
            addresses: welcome.addresses)
        dialsEveryone = true
        joinerSkip = welcome.skip
    }
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
            throw RuntimeError(
                .invalidSettings, "rdma ringBytes \(ringBytes): must be a multiple of 4096 between 64 KiB and 1 GiB")
        }
        guard rowSlots >= 8, rowSlots <= 1_024 else {
            throw RuntimeError(.invalidSettings, "rdma rowSlots \(rowSlots): must be 8...1024")
        }
        guard rowSlotBytes >= 256, rowSlotBytes <= 1 << 20 else {
            throw RuntimeError(.invalidSettings, "rdma rowSlotBytes \(rowSlotBytes): must be 256...1048576")
        }
        guard chunkBytesMax >= 4_096, chunkBytesMax <= ringBytes / 2 else {
            throw RuntimeError(.invalidSettings, "rdma chunkBytesMax \(chunkBytesMax): must be 4096...ringBytes/2")
        }
    }
}
