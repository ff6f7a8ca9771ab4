// What a running member counts: the runtime's counters and occupancy, and the RDMA transport's
// operations. Read through `MemberRuntime.statistics()` and `rdmaStatistics`.

import LockstepCore

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
        "window \(windowMessagesFree) messages free, \(windowBytesInFlight) bytes in flight; "
            + "send queue \(sendQueueMessages); next-view frames held \(futureFramesHeld) (\(futureBytesHeld) bytes); "
            + "relay: \(relayBatchesWaiting) batches waiting, \(relayAssemblies) payloads assembling "
            + "(\(relayAssemblyBytes) bytes), \(relayBlocksBacklogged) blocks backlogged; "
            + "outbound queued \(outboundBytesQueued) bytes; links up \(linksUp); members done \(membersDone)"
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
    /// Snapshot transfers to joiners this member started.
    public var snapshotsStarted: UInt64 = 0
    /// Payload bytes delivered to the application.
    public var bytesDelivered: UInt64 = 0
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
    /// Messages the source gave that the core refused (wedged, removed, or too large).
    public var sourceMessagesRefused: UInt64 = 0
    /// The window and every queue, now (filled in by `statistics()`).
    public var occupancy = Occupancy()
    /// The longest time between two rows from the same peer (nanoseconds): the heartbeat
    /// interval plus the longest a row waited on its way (docs/WIRE.md, "Lanes").
    public var rowGapMaxNanoseconds: UInt64 = 0
    /// Durable mode: the log's figures and the persistence frontier (nil in memory).
    public var durable: DurableLogStatistics?

    /// Holds a suspicion in its current view (it wedged after the last install).
    public var isWedgedNow: Bool {
        guard let wedged = wedgedAtUptimeNanoseconds else { return false }
        guard let installed = viewInstalledAtUptimeNanoseconds else { return true }
        return wedged > installed
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
