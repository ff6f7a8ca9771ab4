// The simulator's clock and agenda: a heap of events in virtual time, ties broken by the order
// they were scheduled in (so one seed gives one run), and each process's one member timer.

import HeapModule
import LockstepCore

/// Something that happens at one virtual instant. Processes are named by index.
enum SimulatedEvent {
    /// `token` names a row on its link, so a later row can replace it (latest wins); 0 for data.
    case arrival(to: Int, toID: MemberID, from: Int, fromID: MemberID, Message, token: UInt64)
    case control(to: Int, toID: MemberID?, from: Int, SimulatedControl)
    case timer(Int)
    /// The poll after a burst of events (`Harshness.batchedPollProbability`).
    case poll(Int)
    /// The process's link to incarnation `peer` reports a failure (a reset connection).
    case linkDown(Int, peer: MemberID)
    case burst(Int, count: Int)
    case pause(Int, until: UInt64)
    case resume(Int)
    case crash(Int)
    /// `reset`: the connection resets, and both ends are told (else they learn by timeouts).
    case failLink(from: Int, to: Int, reset: Bool)
    case healLink(from: Int, to: Int)
    case healLinks
    /// `wedgedOnly`: the sweep restarts members stuck wedged only, not crashed or removed ones.
    case recoverStragglers(wedgedOnly: Bool)
    case restart(Int)
    /// The incarnation, removed while alive, joins again afresh (if it is still the one there).
    case rejoin(Int, MemberID)
    case leave(Int)
    case joinRetry(Int, MemberID)
    /// Durable mode: the incarnation's group commit completes (written and synced).
    case sync(Int, MemberID)

    /// The process a per-process event is for (0 for group-wide events).
    var process: Int {
        switch self {
        case .burst(let process, _), .leave(let process), .joinRetry(let process, _), .timer(let process),
            .pause(let process, _), .resume(let process), .crash(let process), .restart(let process),
            .poll(let process), .linkDown(let process, _), .rejoin(let process, _), .sync(let process, _):
            return process
        case .arrival(let to, _, _, _, _, _), .control(let to, _, _, _): return to
        case .failLink(let from, _, _), .healLink(let from, _): return from
        case .healLinks, .recoverStragglers: return 0
        }
    }
}

/// What the simulated shells tell each other besides the core's traffic: the join handshake.
enum SimulatedControl {
    case join(MemberID)
    case redirect(MemberID)
    /// The default application's snapshot, and the outside application's (`applicationHook`).
    case welcome(JoinerStart, AppState, [UInt8]?)
}

struct SimulatedScheduler {
    /// Virtual time, in nanoseconds. It only moves forward.
    private(set) var now: UInt64 = 0
    private var queue = Heap<Entry>()
    private var order: UInt64 = 0
    /// One member timer per process: a core asks for one wake-up at a time (`armTimer`), and the
    /// queue holds at most one timer entry per process that is still current.
    private var timers: [ProcessTimer]

    private struct ProcessTimer {
        /// When the core wants to be woken, if it does.
        var wantedAt: UInt64? = nil
        /// The time of the process's one current timer entry in the queue, if any.
        var queuedAt: UInt64? = nil
    }

    private struct Entry: Comparable {
        var time: UInt64
        var order: UInt64
        var event: SimulatedEvent
        static func < (a: Entry, b: Entry) -> Bool { (a.time, a.order) < (b.time, b.order) }
        static func == (a: Entry, b: Entry) -> Bool { (a.time, a.order) == (b.time, b.order) }
    }

    init(processCount: Int) {
        timers = Array(repeating: ProcessTimer(), count: processCount)
    }

    mutating func schedule(at time: UInt64, _ event: SimulatedEvent) {
        order += 1
        queue.insert(Entry(time: time, order: order, event: event))
    }

    /// When the next event is due, if there is one.
    var nextTime: UInt64? { queue.min?.time }

    /// Takes the next event and moves the clock to it.
    mutating func popNext() -> (time: UInt64, event: SimulatedEvent)? {
        guard let entry = queue.popMin() else { return nil }
        precondition(entry.time >= now, "virtual time went back from \(now) to \(entry.time)")
        now = entry.time
        return (entry.time, entry.event)
    }

    /// Moves the clock to `time` with nothing happening (the end of a run or of a quiet spell).
    mutating func advance(to time: UInt64) {
        now = max(now, time)
    }

    // MARK: Member timers

    /// A member's clock starts with the group: it ticks at once, then as its core asks.
    mutating func startTimer(_ process: Int) {
        queueTimer(process, at: now)
        timers[process].wantedAt = now
    }

    /// A new incarnation starts with no timer: an entry the old one left in the queue is stale.
    mutating func resetTimer(_ process: Int) {
        timers[process] = ProcessTimer()
    }

    /// The core asked to be woken at `time` (not before now). An entry already queued for no
    /// later than that stays: when it fires, it re-queues itself for the wanted time.
    mutating func armTimer(_ process: Int, at time: UInt64) {
        let time = max(time, now)
        timers[process].wantedAt = time
        if let queued = timers[process].queuedAt, queued <= time { return }
        queueTimer(process, at: time)
    }

    /// A timer entry queued for `time` fired: whether the member's tick is due now. An entry that
    /// an earlier one superseded, or that fires before the wanted time (re-queued), is not.
    mutating func timerFires(_ process: Int, queuedFor time: UInt64) -> Bool {
        guard timers[process].queuedAt == time else { return false }
        timers[process].queuedAt = nil
        guard let wanted = timers[process].wantedAt else { return false }
        if wanted > now {
            queueTimer(process, at: wanted)
            return false
        }
        timers[process].wantedAt = nil
        return true
    }

    private mutating func queueTimer(_ process: Int, at time: UInt64) {
        timers[process].queuedAt = time
        schedule(at: time, .timer(process))
    }
}
