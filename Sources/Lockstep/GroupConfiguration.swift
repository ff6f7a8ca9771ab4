// How a ReplicatedGroup starts and the limits it runs with. Every field is checked by
// `validate()` (called by `ReplicatedGroup.init`), which names the field it refuses; the DocC
// configuration reference lists the same fields (a test keeps the two in step).

import CoreMetrics
import LockstepCore
import LockstepRuntime

public struct GroupConfiguration: Sendable {
    /// A member of the first view.
    public struct Member: Sendable, Hashable {
        public var id: MemberID
        /// Where it listens.
        public var address: PeerAddress
        public init(id: MemberID, address: PeerAddress) {
            self.id = id
            self.address = address
        }
    }

    /// How this member comes in.
    public enum Start: Sendable, Hashable {
        /// Every member of the first view starts with the same list; `me` is this one.
        case bootstrap(members: [Member], me: MemberID)
        /// Join a running group through any of `contacts`, listening at `listen`, as `me` (a new
        /// id: a restarted process is a new incarnation).
        case join(contacts: [PeerAddress], listen: PeerAddress, me: MemberID)
    }

    public var start: Start
    /// The protocol's limits and timeouts (window, failure timeout, heartbeat...): the same on
    /// every member. Delivery must be `.ordered` (a state machine needs one order).
    public var protocolConfiguration = Configuration()
    /// How members reach each other.
    public var transport: TransportKind = .tcp
    /// How long the first view's members have to connect to each other.
    public var connectTimeout: Duration = .seconds(20)
    /// How long a join may take, every contact tried in turn.
    public var joinTimeout: Duration = .seconds(30)
    /// How long `submit` and `state(.linearizable)` wait for their answer before `timedOut`.
    public var operationTimeout: Duration = .seconds(30)
    /// How long `leave` waits for the group to remove this member.
    public var leaveTimeout: Duration = .seconds(10)
    /// Most commands waiting for the window (`sendQueueFull` beyond it).
    public var sendQueueMessagesMax = 65_536
    /// Applied entries queued for a slow reader of `applied` before the member stops reading its
    /// links (back-pressure onto the senders' windows).
    public var appliedQueuedEntriesMax = 65_536
    /// Bytes of deliveries a joiner holds while its snapshot is restored before it stops reading.
    public var joinerHeldBytesMax = 256 * 1_024 * 1_024
    /// Entries queued for a slow reader of `events` (the oldest are dropped beyond it: events
    /// are a view of what happens, `currentView()` is the truth).
    public var eventsQueuedMax = 1_024
    /// Where the member's metrics go (nil: none): delivered messages and bytes, window occupancy,
    /// stability frontier lag, view changes, suspicions, submit latency. Pass your program's
    /// factory (a PrometheusMetricsFactory, say); the library never bootstraps MetricsSystem.
    public var metricsFactory: (any MetricsFactory)? = nil
    /// Durable mode (`protocolConfiguration.durable`, on every member): the directory of this
    /// member's log. Every command applied here is logged, and `submit(_:waitFor: .persisted)`
    /// returns once every member of the view has it on disk. The directory must hold no log yet:
    /// restarting from one is not built yet.
    public var dataDirectory: String? = nil
    /// Durable mode: bytes of each log segment, preallocated when it starts (raised to what one
    /// record of the largest message needs).
    public var logSegmentBytes = 64 * 1_024 * 1_024

    public init(start: Start) { self.start = start }

    /// A member of the first view.
    public static func bootstrap(members: [Member], me: MemberID) -> GroupConfiguration {
        GroupConfiguration(start: .bootstrap(members: members, me: me))
    }

    /// A joiner, with a fresh random id unless one is given.
    public static func join(
        contacts: [PeerAddress], listen: PeerAddress, me: MemberID = MemberID(UInt64.random(in: 1...(1 << 62)))
    ) -> GroupConfiguration {
        GroupConfiguration(start: .join(contacts: contacts, listen: listen, me: me))
    }

    /// This member's id.
    public var me: MemberID {
        switch start {
        case .bootstrap(_, let me), .join(_, _, let me): return me
        }
    }

    /// The field names `validate` may name (the configuration reference lists them all).
    public static let fieldNames = [
        "start", "protocolConfiguration", "transport", "connectTimeout", "joinTimeout", "operationTimeout",
        "leaveTimeout", "sendQueueMessagesMax", "appliedQueuedEntriesMax", "joinerHeldBytesMax", "eventsQueuedMax",
        "metricsFactory", "dataDirectory", "logSegmentBytes",
    ]

    public func validate() throws(GroupError) {
        switch start {
        case .bootstrap(let members, let me):
            guard !members.isEmpty else { throw .invalid("start", "lists no members") }
            guard members.contains(where: { $0.id == me }) else {
                throw .invalid("start", "does not list this member (\(me))")
            }
            guard Set(members.map(\.id)).count == members.count else { throw .invalid("start", "lists an id twice") }
            guard Set(members.map(\.address)).count == members.count else {
                throw .invalid("start", "lists an address twice")
            }
            guard members.count <= protocolConfiguration.membersMax else {
                throw .invalid(
                    "start", "lists \(members.count) members, beyond membersMax \(protocolConfiguration.membersMax)")
            }
        case .join(let contacts, _, let me):
            guard !contacts.isEmpty, contacts.count <= MemberRuntime.joinContactsMax else {
                throw .invalid("start", "needs 1...\(MemberRuntime.joinContactsMax) contacts, got \(contacts.count)")
            }
            guard me.rawValue != 0 else { throw .invalid("start", "joins with member id 0") }
        }
        do {
            try protocolConfiguration.validate()
        } catch {
            throw .invalid("protocolConfiguration", "\(error.field) \(error.reason)")
        }
        if protocolConfiguration.durable != (dataDirectory != nil) {
            throw .invalid(
                "dataDirectory",
                protocolConfiguration.durable
                    ? "is needed in durable mode (protocolConfiguration.durable)"
                    : "is set but protocolConfiguration.durable is off")
        }
        if let dataDirectory, dataDirectory.isEmpty { throw .invalid("dataDirectory", "is empty") }
        guard logSegmentBytes >= 64 * 1_024, logSegmentBytes <= 1 << 40 else {
            throw .invalid("logSegmentBytes", "must be in 64 KiB...1 TiB, got \(logSegmentBytes)")
        }
        guard protocolConfiguration.deliveryMode == .ordered else {
            throw .invalid("protocolConfiguration", "deliveryMode must be ordered for a state machine")
        }
        for (field, value) in [
            ("connectTimeout", connectTimeout), ("joinTimeout", joinTimeout), ("operationTimeout", operationTimeout),
            ("leaveTimeout", leaveTimeout),
        ] where value <= .zero {
            throw .invalid(field, "must be above zero, got \(value)")
        }
        for (field, value) in [
            ("sendQueueMessagesMax", sendQueueMessagesMax), ("appliedQueuedEntriesMax", appliedQueuedEntriesMax),
            ("joinerHeldBytesMax", joinerHeldBytesMax), ("eventsQueuedMax", eventsQueuedMax),
        ] where value < 1 {
            throw .invalid(field, "must be at least 1, got \(value)")
        }
    }
}
