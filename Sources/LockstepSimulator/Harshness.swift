// How harshly the simulator treats the members: the ways a runtime's shell and network differ
// from one event at a time on perfect links. `gentle` is the old simulator (a poll after every
// event, failures seen only by timeouts, every row delivered, one clock); `runtimeLike` is what
// the TCP and RDMA runtimes do to the same code, and what `simulate --faults` runs by default.

import LockstepCore

public struct Harshness: Sendable, Equatable {
    /// After an event, the member polls not at once but within `batchWindow`, after whatever
    /// else reaches it meanwhile (a read burst over TCP, a batch of RDMA completions).
    public var batchedPollProbability = 0.0
    public var batchWindow: Duration = .microseconds(300)
    /// A crashed process's connections reset: each live peer learns it from its link (a
    /// failure notification) with this probability, after the link's delay; else by timeout.
    public var crashNoticeProbability = 0.0
    /// A row replaces the row still on its way before it on the same link (latest wins).
    public var rowCoalescingProbability = 0.0
    /// Each process's clock runs at a rate within 1 ± this, from an offset of up to a second.
    public var clockRateSkewMax = 0.0
    /// A timer fires late (a busy event loop, a descheduled thread) by up to `lateTimerMax`.
    public var lateTimerProbability = 0.0
    public var lateTimerMax: Duration = .milliseconds(150)
    /// Durable mode: a group commit (write + fdatasync) takes up to this long, drawn per sync
    /// (a loaded disk: the log falls behind delivery by up to this).
    public var syncDelayMax: Duration = .microseconds(200)

    public init() {}

    public static let gentle = Harshness()

    public static let runtimeLike: Harshness = {
        var harsh = Harshness()
        harsh.batchedPollProbability = 0.5
        harsh.crashNoticeProbability = 0.7
        harsh.rowCoalescingProbability = 0.3
        harsh.clockRateSkewMax = 0.02
        harsh.lateTimerProbability = 0.02
        harsh.syncDelayMax = .milliseconds(20)
        return harsh
    }()
}

extension SimulatedGroup {
    /// Draws each process's clock (rate and offset) from the seed, for `harshness`.
    func drawClocks() {
        for process in processes.indices {
            guard harshness.clockRateSkewMax > 0 else {
                processes[process].clockRate = 1
                processes[process].clockOffset = 0
                continue
            }
            let skew = harshness.clockRateSkewMax
            processes[process].clockRate = 1 + Double.random(in: -skew...skew, using: &random)
            processes[process].clockOffset = Int64.random(in: 0...1_000_000_000, using: &random)
        }
    }

    /// A crash resets the process's connections: live peers may learn it from their links.
    func noticeCrash(of process: Int, id: MemberID) {
        guard harshness.crashNoticeProbability > 0 else { return }
        for peer in processes.indices where peer != process && processes[peer].member != nil {
            guard random.chance(harshness.crashNoticeProbability) else { continue }
            let at = network.arrivalTime(from: process, to: peer, lane: .control, now: now, using: &random)
            scheduler.schedule(at: at, .linkDown(peer, peer: id))
        }
    }

    /// A connection reset: both ends are told (and suspect each other: a reset costs both).
    func noticeReset(from: Int, to: Int) {
        let fromID = processes[from].id
        let toID = processes[to].id
        scheduler.schedule(at: now + network.baseDelay(from: from, to: to), .linkDown(from, peer: toID))
        scheduler.schedule(at: now + network.baseDelay(from: to, to: from), .linkDown(to, peer: fromID))
    }
}
