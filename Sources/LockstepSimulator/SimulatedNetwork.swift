// The simulated network: one link each way between every two processes, each with its own
// random base delay and two FIFO lanes. The runtime keeps rows and control frames on a
// connection of their own beside the data (docs/WIRE.md, "Lanes"), so rows may overtake data;
// the simulator does the same. Links are reliable and FIFO (the transport contract) until they
// fail: what was in flight on a failed link and everything sent later is lost.

import LockstepCore

/// The two lanes of a link.
enum Lane: Int {
    /// Rows and the join handshake.
    case control = 0
    case data = 1
}

struct SimulatedNetwork {
    /// Probability that a message on a link is held up by an extra delay of up to `spikeDelayMax`.
    var spikeProbability = 0.01
    var spikeDelayMax: Duration = .milliseconds(5)
    /// Data queues behind data (a full window on a slow link): with this probability a data
    /// message waits up to this many times its link's base delay more.
    private let dataQueueingProbability = 0.5
    private let dataQueueingBasesMax: UInt64 = 7

    /// delayBase[from][to], nanoseconds, by process.
    private var delayBase: [[UInt64]]
    /// Per link and lane: the latest arrival scheduled, for FIFO per lane.
    private var lastArrival: [[[UInt64]]]
    /// failed[from][to]: the link between these processes is down.
    private var failed: [[Bool]]
    /// Connections that failed, by incarnation (from, to): a failed connection stays failed even
    /// after the network heals (the transport contract); only new incarnations connect afresh.
    private var failedConnections: Set<[UInt64]> = []

    /// Draws every link's base delay from `delay`, row by row.
    init(processCount: Int, delay: ClosedRange<Duration>, using random: inout DeterministicRandom) {
        let low = delay.lowerBound.nanosecondsClamped
        let high = max(low, delay.upperBound.nanosecondsClamped)
        let processes = 0..<processCount
        delayBase = processes.map { _ in processes.map { _ in UInt64.random(in: low...high, using: &random) } }
        lastArrival = processes.map { _ in processes.map { _ in [0, 0] } }
        failed = processes.map { _ in processes.map { _ in false } }
    }

    /// Whether the connection from incarnation `fromID` (in process `from`) to `toID` (in `to`)
    /// is down. A connection that loses anything stays broken for good (TCP does not skip
    /// bytes): only new incarnations connect afresh after a heal.
    mutating func isDown(from: Int, to: Int, fromID: MemberID, toID: MemberID) -> Bool {
        let connection = [fromID.rawValue, toID.rawValue]
        if failed[from][to] {
            failedConnections.insert(connection)
            return true
        }
        return failedConnections.contains(connection)
    }

    /// The link from `from` to `to` fails one way, and with it the connection between the
    /// incarnations now in those processes.
    mutating func fail(from: Int, to: Int, fromID: MemberID, toID: MemberID) {
        failed[from][to] = true
        failedConnections.insert([fromID.rawValue, toID.rawValue])
    }

    /// The link from `from` to `to` works again (new connections only).
    mutating func heal(from: Int, to: Int) {
        failed[from][to] = false
    }

    /// Every link works again; connections that failed stay failed.
    mutating func healAll() {
        for from in failed.indices {
            for to in failed.indices { failed[from][to] = false }
        }
    }

    func baseDelay(from: Int, to: Int) -> UInt64 { delayBase[from][to] }

    mutating func setDelay(from: Int, to: Int, _ delay: Duration) {
        delayBase[from][to] = delay.nanosecondsClamped
    }

    /// When a message sent now on `lane` of the link from `from` to `to` arrives: the base delay,
    /// jitter of up to the base again, a rare spike, queueing behind data, and never before an
    /// earlier message on the same lane.
    mutating func arrivalTime(
        from: Int, to: Int, lane: Lane, now: UInt64, using random: inout DeterministicRandom
    ) -> UInt64 {
        let base = delayBase[from][to]
        var delay = base + UInt64.random(in: 0...base, using: &random)
        if random.chance(spikeProbability) {
            delay += UInt64.random(in: 0...spikeDelayMax.nanosecondsClamped, using: &random)
        }
        if lane == .data, random.chance(dataQueueingProbability) {
            delay += UInt64.random(in: 0...(dataQueueingBasesMax * base), using: &random)
        }
        let arrival = max(now + delay, lastArrival[from][to][lane.rawValue])
        lastArrival[from][to][lane.rawValue] = arrival
        return arrival
    }
}
