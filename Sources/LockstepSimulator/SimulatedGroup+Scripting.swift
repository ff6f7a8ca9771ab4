// The scripting API: what a test or a fault schedule asks of the group, by process index and
// virtual time. Every call only schedules an event; `run(for:)` and `runUntilQuiet` play them.

import LockstepCore

extension SimulatedGroup {
    /// The application in `process` asks to send `count` messages at virtual time `at` (default:
    /// now). They wait in the application's backlog while the window is full or the member is
    /// between views; a restart loses the backlog (the application died with the process).
    public func send(from process: Int, count: Int, at time: Duration? = nil) {
        scheduleScripted(at: when(time), .burst(process, count: count))
    }

    /// The `process` handles nothing from `start` for `duration` (a stopped process).
    public func pause(_ process: Int, at start: Duration? = nil, for duration: Duration) {
        let begin = when(start)
        scheduleScripted(at: begin, .pause(process, until: begin + duration.nanosecondsClamped))
    }

    /// The `process` crashes: it stops for good, and what is on its way to it is lost.
    public func crash(_ process: Int, at time: Duration? = nil) {
        scheduleScripted(at: when(time), .crash(process))
    }

    /// The `process` starts again (after a crash, a removal, or for the first time for a spare
    /// process) as a new incarnation, and joins the group through a random live member.
    public func restart(_ process: Int, at time: Duration? = nil) {
        scheduleScripted(at: when(time), .restart(process))
    }

    /// A spare process starts and joins.
    public func join(_ process: Int, at time: Duration? = nil) { restart(process, at: time) }

    /// The member in `process` leaves gracefully.
    public func leave(_ process: Int, at time: Duration? = nil) {
        scheduleScripted(at: when(time), .leave(process))
    }

    /// The link from process `from` to process `to` fails (one way): what is in flight on it and
    /// everything sent later is lost, until `healLinks`.
    /// With `reset`, the connection resets and both ends are told at once (a TCP reset), so each
    /// suspects the other: a reset costs both ends.
    public func failLink(from: Int, to: Int, at time: Duration? = nil, reset: Bool = false) {
        scheduleScripted(at: when(time), .failLink(from: from, to: to, reset: reset))
    }

    /// The link from `from` to `to` works again (for new connections: the incarnations whose
    /// connection failed stay apart).
    public func healLink(from: Int, to: Int, at time: Duration? = nil) {
        scheduleScripted(at: when(time), .healLink(from: from, to: to))
    }

    /// A cut between two sets: every link between a process in `a` and one in `b` fails both
    /// ways (a partition when the sets cover the group; a non-transitive cut when a third set
    /// still reaches both).
    public func cut(_ a: Set<Int>, from b: Set<Int>, at time: Duration? = nil) {
        for x in a {
            for y in b where x != y {
                failLink(from: x, to: y, at: time)
                failLink(from: y, to: x, at: time)
            }
        }
    }

    /// A symmetric partition: every link between the processes in `side` and the others fails,
    /// both ways.
    public func partition(_ side: Set<Int>, at time: Duration? = nil) {
        for a in side {
            for b in processes.indices where !side.contains(b) {
                failLink(from: a, to: b, at: time)
                failLink(from: b, to: a, at: time)
            }
        }
    }

    /// An operator's sweep: every process that crashed, was removed, or is stuck wedged (a
    /// minority after a partition) is restarted as a new incarnation. With `wedgedOnly`, only the
    /// stuck wedged ones: a test that killed a member wants it to stay dead (LocalGroup's heal).
    public func recoverStragglers(at time: Duration? = nil, wedgedOnly: Bool = false) {
        scheduleScripted(at: when(time), .recoverStragglers(wedgedOnly: wedgedOnly))
    }

    /// Every failed link works again (new connections; what was lost stays lost).
    public func healLinks(at time: Duration? = nil) {
        scheduleScripted(at: when(time), .healLinks)
    }

    /// Sets the base delay of the link from process `from` to process `to`.
    public func setLinkDelay(from: Int, to: Int, _ delay: Duration) {
        network.setDelay(from: from, to: to, delay)
    }

    /// Probability that a message on a link is held up by an extra delay of up to `spikeDelayMax`.
    public var spikeProbability: Double {
        get { network.spikeProbability }
        set { network.spikeProbability = newValue }
    }

    public var spikeDelayMax: Duration {
        get { network.spikeDelayMax }
        set { network.spikeDelayMax = newValue }
    }

    /// A scripted event keeps the run from being quiet until it has happened.
    private func scheduleScripted(at time: UInt64, _ event: SimulatedEvent) {
        scheduledWorkPending += 1
        scheduler.schedule(at: time, event)
    }

    /// A scripted time, or now; never in the past.
    private func when(_ time: Duration?) -> UInt64 { max(time.map { $0.nanosecondsClamped } ?? now, now) }
}
