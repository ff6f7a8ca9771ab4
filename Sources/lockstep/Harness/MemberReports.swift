// What a workload member reports, as JSON lines on stdout (README "JSON lines"): `progress`
// (also `stalled`) and `final` lines, read back by bench and chaos through `ChildProcess`.

import LockstepCore
import LockstepRuntime

/// Latency percentiles, microseconds.
struct Percentiles: Codable, Sendable {
    var p50: UInt64
    var p99: UInt64
    var p999: UInt64
}

/// A member's progress line.
struct MemberProgress: Codable, Sendable {
    var event = "progress"
    var rank: Int
    var sent: UInt64
    var sendingDone: Bool
    var delivered: UInt64
    var deliveredBytes: UInt64
    /// Resident memory of the process now, MB.
    var rssMegabytes: Double
    /// This member's own messages sent and not yet delivered here.
    var inFlight: UInt64
    /// When the member wedged (CLOCK_MONOTONIC nanoseconds), and whom it suspected.
    var wedgedAtUptimeNanoseconds: UInt64?
    var suspectedRanks: [Int]
    /// The view the member is in, and when it installed it (CLOCK_MONOTONIC nanoseconds).
    var currentView: UInt64 = 1
    var viewInstalledAtUptimeNanoseconds: UInt64?
    /// This member's id; wedged (holds a suspicion in its current view), in a minority, removed;
    /// the workload complete here (sent everything, delivered every sender's last message); and
    /// its window and queues. Optional in decoding: older members do not send them.
    var member: UInt64? = nil
    var wedged: Bool? = nil
    var minority: Bool? = nil
    var removed: Bool? = nil
    var complete: Bool? = nil
    var queues: QueueOccupancy? = nil

    /// What a stall watchdog says about this member.
    func stallSentence(seconds: Double) -> String {
        var state: [String] = ["view \(currentView)"]
        if !suspectedRanks.isEmpty { state.append("suspects ranks \(suspectedRanks)") }
        if wedged == true { state.append("wedged") }
        if minority == true { state.append("in a minority (partition safety: it forms no view)") }
        if removed == true { state.append("removed") }
        let done = sendingDone ? " (done sending)" : ""
        state.append("sent \(sent)\(done), delivered \(delivered), \(inFlight) own in flight")
        if let queues { state.append(queues.description) }
        return "no delivery for \(format(seconds, 1)) s: " + state.joined(separator: ", ")
    }
}

/// A member's window and queues, as its runtime counts them (`queues` in the JSON lines).
typealias QueueOccupancy = Occupancy

/// A member's final figures. CPU and memory are the whole process's (one member per process,
/// except with --in-process).
struct MemberFinal: Codable, Sendable {
    var event = "final"
    var rank: Int
    var sent: UInt64
    var delivered: UInt64
    var deliveredBytes: UInt64
    /// Payload bytes delivered here from other members (absent in older reports).
    var deliveredBytesFromOthers: UInt64? = nil
    /// From the start of sending to the last delivery.
    var seconds: Double
    var latencyMicroseconds: Percentiles
    var cpuSeconds: Double
    var rssMegabytesMax: Double
    var corrupt: UInt64
    var fifoViolations: UInt64
    var latencySamples: UInt64
    /// Views installed, the first included (delivery logs name the view of each delivery).
    var views: [ViewSummary] = []
    /// This member's id, and for a joiner the snapshot's per-origin counts (origin = id - 1).
    var member: UInt64 = 0
    var initialCounts: [UInt64] = []
    /// RDMA operations this member's transport completed (nil on TCP).
    var rdma: RDMAStatistics?
    /// The longest gap between two rows from one peer, ms (heartbeat interval + the longest a row
    /// waited); absent in older reports.
    var rowGapMaxMilliseconds: Double? = nil
    /// Durable mode: the log's group commits, records, bytes and sync time, and the persistence
    /// frontier at the end (nil in memory).
    var durable: DurableLogStatistics? = nil
}

/// The workload's application state, as a joiner's snapshot.
struct WorkloadState: Codable {
    var expected: [UInt64]
    var digest: UInt64
}

/// A view as a member installed it, with the digest of everything it had delivered then.
struct ViewSummary: Codable, Sendable {
    var id: UInt64
    var members: [UInt64]
    var stateDigest: UInt64
}

extension ViewSummary {
    init(view: View, stateDigest: UInt64) {
        self.init(id: view.id.rawValue, members: view.members.map(\.rawValue), stateDigest: stateDigest)
    }
}

/// A removed member's line before its final one when it rejoins as a new incarnation: its id
/// now, the id it rejoins as, and the delivery log the new incarnation writes (README "JSON
/// lines"). chaos reads it to give each incarnation its own log and final report.
struct RejoiningLine: Codable, Sendable {
    var event = "rejoining"
    var member: UInt64
    var newMember: UInt64
    var log: String?
    /// The contacts it asks, host:port.
    var contacts: [String]
}
