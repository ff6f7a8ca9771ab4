// The one place where Lockstep's limits live. Every limit is named with its unit last and is
// checked by `validate()`, which names the offending field and says why it is rejected.

/// How deliveries are ordered.
public enum DeliveryMode: String, Sendable, CaseIterable {
    /// Every member delivers every message in the same total order (round-robin across
    /// senders), once the message is stable (held by every member).
    case ordered
    /// Each message is delivered on receipt, in per-sender FIFO order; no order across senders.
    case unordered
}

/// The limits and settings of a group. All members of a group must use the same values for
/// `deliveryMode` and `windowMessagesMax`.
public struct Configuration: Sendable, Equatable {
    /// Ordered (total order) or unordered (per-sender FIFO on receipt) delivery.
    public var deliveryMode: DeliveryMode = .ordered
    /// The window: a sender has at most this many messages (nulls included) beyond the group's
    /// delivered minimum. It bounds every receive buffer too: a member buffers at most this many
    /// undelivered messages per sender.
    public var windowMessagesMax: Int = 1_024
    /// The window in bytes, beside the message count: a sender's messages in flight (sent and not
    /// yet released by the window) carry at most this many payload bytes, so a member's memory
    /// is bounded by about senders x windowBytesMax whatever the message size (one message is
    /// always admitted into an empty window, so a larger message still goes, alone). 16 MiB: at
    /// 1 MiB it is 16 messages, at 64 KiB 256, and below 16 KiB the message count binds; it fills
    /// a 1 Gbit/s link for 130 ms (docs/PROTOCOL.md, "Window", has the measurements).
    public var windowBytesMax: Int = 16 * 1_024 * 1_024
    /// The largest payload a message may carry.
    public var messageBytesMax: Int = 16 * 1_024 * 1_024
    /// At most this many messages (a run of nulls counts as one) in one data batch.
    public var batchMessagesMax: Int = 512
    /// A data batch stops growing once its payload bytes reach this (a single larger message
    /// still travels alone).
    public var batchBytesMax: Int = 1 * 1_024 * 1_024
    /// The largest view this build accepts.
    public var membersMax: Int = 64
    /// A member re-sends its row at least this often even when nothing changed, so peers see
    /// it is alive (the heartbeat the failure detector watches: `failureTimeout`).
    public var heartbeatInterval: Duration = .milliseconds(100)
    /// A member not heard from for this long is suspected of having failed. Five heartbeat
    /// intervals: a member must miss four heartbeats in a row (a pause, a GC, a loaded machine)
    /// before it is suspected, and detection still takes well under a second. The core knows the
    /// time only from ticks (at least one per heartbeat interval), so a silent member is
    /// suspected between failureTimeout and failureTimeout + 2 heartbeat intervals after it
    /// was last heard.
    public var failureTimeout: Duration = .milliseconds(500)

    /// Run view changes (docs/MEMBERSHIP.md). Off, a member that suspects another wedges and
    /// stays wedged: what a shell that cannot switch views yet (the TCP runtime today) needs.
    public var viewChanges: Bool = true

    /// Durable mode: every member logs what it delivers and reports, in its row's `persisted`
    /// counter, how much of it is on disk (`Event.persisted`); the window then counts from the
    /// group's persistence frontier instead of its delivered minimum, so a member's log never
    /// lags the group by more than one window per sender. Ordered delivery only (a log is a
    /// prefix of one total order). The same on every member.
    public var durable: Bool = false

    public init() {}

    /// Rejects values that cannot work, naming the field and the reason.
    public func validate() throws(ConfigurationError) {
        try Self.check(windowMessagesMax, "windowMessagesMax", in: 1...(1 << 22))
        try Self.check(windowBytesMax, "windowBytesMax", in: 1_024...(1 << 40))
        try Self.check(messageBytesMax, "messageBytesMax", in: 1...(1 << 30))
        try Self.check(batchMessagesMax, "batchMessagesMax", in: 1...(1 << 16))
        try Self.check(batchBytesMax, "batchBytesMax", in: 1...(1 << 30))
        try Self.check(membersMax, "membersMax", in: 1...1_024)
        if heartbeatInterval <= .zero {
            throw ConfigurationError(field: "heartbeatInterval", reason: "must be positive, got \(heartbeatInterval)")
        }
        if heartbeatInterval > .seconds(3_600) {
            throw ConfigurationError(
                field: "heartbeatInterval", reason: "must be at most one hour, got \(heartbeatInterval)")
        }
        if failureTimeout <= heartbeatInterval * 2 {
            throw ConfigurationError(
                field: "failureTimeout",
                reason: "must be more than two heartbeat intervals (\(heartbeatInterval * 2)), got \(failureTimeout)")
        }
        if failureTimeout > .seconds(3_600) {
            throw ConfigurationError(field: "failureTimeout", reason: "must be at most one hour, got \(failureTimeout)")
        }
        if durable && deliveryMode != .ordered {
            throw ConfigurationError(
                field: "durable", reason: "needs ordered delivery (a log is a prefix of one total order)")
        }
    }

    private static func check(_ value: Int, _ field: String, in range: ClosedRange<Int>) throws(ConfigurationError) {
        guard range.contains(value) else {
            throw ConfigurationError(
                field: field, reason: "must be in \(range.lowerBound)...\(range.upperBound), got \(value)")
        }
    }
}

/// A configuration value was rejected.
public struct ConfigurationError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The name of the rejected field, as spelled in `Configuration`.
    public var field: String
    /// Why it was rejected, including the value.
    public var reason: String
    public init(field: String, reason: String) {
        self.field = field
        self.reason = reason
    }
    public var description: String { "invalid configuration: \(field) \(reason)" }
}
