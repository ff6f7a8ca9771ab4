// A group of members running the real `OrderingCore`, over simulated links, on a virtual
// clock. Nothing here reads a real clock or an unseeded random source: one seed fixes the run.
//
// Links are reliable and FIFO (the transport contract), each with its own random delay; a
// paused member (a stopped process, a long GC) handles nothing until it resumes, and then
// handles what arrived meanwhile in arrival order. The group is the stage both for random
// simulation (`Simulation`) and for scripted scenario tests.

import HeapModule
import LockstepCore

/// A simulated group: N members, their applications, and the links between them.
public final class SimulatedGroup {
    public let view: View
    public let configuration: Configuration
    /// Virtual time, in nanoseconds.
    public private(set) var now: UInt64 = 0
    public private(set) var eventsProcessed: UInt64 = 0
    /// Core errors: on honest simulated links every one of them is a bug.
    public private(set) var coreErrors: [String] = []

    private var members: [Member]
    private var queue = Heap<Scheduled>()
    private var order: UInt64 = 0
    private var random: DeterministicRandom
    /// linkDelayBase[from][to], nanoseconds.
    private var linkDelayBase: [[UInt64]]
    private var lastArrival: [[UInt64]]
    /// linkFailed[from][to]: the link has failed; what was in flight on it and everything later is lost.
    private var linkFailed: [[Bool]]
    /// Messages lost to crashes and failed links.
    public private(set) var messagesLost: UInt64 = 0
    private var effects: [Effect] = []
    private var dataInFlight = 0
    private var scheduledWorkPending = 0
    /// Largest random payload filler, in bytes (payloads also carry a 16-byte header).
    public var payloadFillerBytesMax = 48
    /// Probability that a message on a link is held up by an extra delay of up to `spikeDelayMax`.
    public var spikeProbability = 0.01
    public var spikeDelayMax: Duration = .milliseconds(5)

    /// A class so that reading a member's core through the array does not copy the core.
    final class Member {
        let id: MemberID
        var core: OrderingCore
        var backlog = 0
        var nextSenderSequence: UInt64 = 0
        var pausedUntil: UInt64? = nil
        var deferred: [Scheduled.Kind] = []
        /// When the core wants its next tick.
        var timerAt: UInt64? = nil
        /// The time of this member's one timer entry in the queue, if any. Re-arming to a later
        /// time leaves it in place (it re-arms itself when it fires early), so the queue holds
        /// one timer per member instead of one per poll.
        var timerQueuedAt: UInt64? = nil
        var sent: [SentRecord] = []
        var delivered: [DeliveredRecord] = []
        /// A crashed member handles nothing, ever again (a restarted process would be a new member).
        var crashed = false
        /// When the member wedged, and how many messages its application had submitted then.
        var wedgedAt: UInt64? = nil
        var sentWhenWedged = 0
        init(id: MemberID, core: OrderingCore) {
            self.id = id
            self.core = core
        }
    }

    struct Scheduled: Comparable {
        enum Kind {
            case arrival(to: Int, from: Int, Message)
            case timer(Int)
            case burst(Int, count: Int)
            case pause(Int, until: UInt64)
            case resume(Int)
            case crash(Int)
            case failLink(from: Int, to: Int)
        }
        var time: UInt64
        var order: UInt64
        var kind: Kind
        static func < (a: Scheduled, b: Scheduled) -> Bool { (a.time, a.order) < (b.time, b.order) }
        static func == (a: Scheduled, b: Scheduled) -> Bool { (a.time, a.order) == (b.time, b.order) }
    }

    /// Creates a group whose members are `m1 ... mN` in rank order.
    /// - Parameters:
    ///   - senderRanks: member ranks that send; `nil` for all.
    ///   - linkDelay: the range each link's base delay is drawn from (each message adds up to its
    ///     link's base again as jitter).
    public init(
        memberCount: Int, senderRanks: [Int]? = nil, configuration: Configuration, seed: UInt64,
        linkDelay: ClosedRange<Duration> = .microseconds(5) ... .milliseconds(2)
    ) throws(CoreSetupError) {
        let ids = (1...max(memberCount, 1)).map { MemberID(UInt64($0)) }
        let senders = senderRanks.map { ranks in ranks.map { ids[$0] } }
        let view: View
        do { view = try View(id: ViewID(1), members: ids, senders: senders) } catch { throw .view(error) }
        self.view = view
        self.configuration = configuration
        var members: [Member] = []
        for rank in ids.indices {
            members.append(
                Member(id: ids[rank], core: try OrderingCore(configuration: configuration, view: view, memberRank: rank)))
        }
        self.members = members
        var random = DeterministicRandom(seed: seed)
        let low = linkDelay.lowerBound.nanosecondsClamped
        let high = max(low, linkDelay.upperBound.nanosecondsClamped)
        linkDelayBase = ids.map { _ in ids.map { _ in UInt64.random(in: low...high, using: &random) } }
        lastArrival = ids.map { _ in ids.map { _ in 0 } }
        linkFailed = ids.map { _ in ids.map { _ in false } }
        self.random = random
    }

    // MARK: - Scripting

    /// The application of the member at `rank` asks to send `count` messages at virtual time
    /// `at` (default: now). They wait in the application's backlog while the window is full.
    public func send(from rank: Int, count: Int, at time: Duration? = nil) {
        let when = time.map { $0.nanosecondsClamped } ?? now
        scheduledWorkPending += 1
        schedule(at: when, .burst(rank, count: count))
    }

    /// The member at `rank` handles nothing from `start` for `duration` (a stopped process).
    public func pause(_ rank: Int, at start: Duration? = nil, for duration: Duration) {
        let begin = max(start.map { $0.nanosecondsClamped } ?? now, now)
        scheduledWorkPending += 1
        schedule(at: begin, .pause(rank, until: begin + duration.nanosecondsClamped))
    }

    /// The member at `rank` crashes at `at` (default: now): it stops for good, and what is on
    /// its way to it is lost.
    public func crash(_ rank: Int, at time: Duration? = nil) {
        scheduledWorkPending += 1
        schedule(at: max(time.map { $0.nanosecondsClamped } ?? now, now), .crash(rank))
    }

    /// The link from `from` to `to` fails at `at` (one way): what is in flight on it and
    /// everything sent later is lost.
    public func failLink(from: Int, to: Int, at time: Duration? = nil) {
        scheduledWorkPending += 1
        schedule(at: max(time.map { $0.nanosecondsClamped } ?? now, now), .failLink(from: from, to: to))
    }

    /// A symmetric partition at `at`: every link between `side` and the other members fails,
    /// both ways. (Links do not come back: in the transport contract a failed link stays failed
    /// until membership replaces it.)
    public func partition(_ side: Set<Int>, at time: Duration? = nil) {
        for a in side {
            for b in members.indices where !side.contains(b) {
                failLink(from: a, to: b, at: time)
                failLink(from: b, to: a, at: time)
            }
        }
    }

    /// When the member at `rank` wedged (virtual nanoseconds), if it did.
    public func wedgedAt(_ rank: Int) -> UInt64? { members[rank].wedgedAt }

    /// Messages the member's application submitted after it wedged (must stay 0).
    public func sentAfterWedging(_ rank: Int) -> Int {
        members[rank].wedgedAt == nil ? 0 : members[rank].sent.count - members[rank].sentWhenWedged
    }

    /// Ranks of the members that crashed.
    public var crashedRanks: [Int] { members.indices.filter { members[$0].crashed } }

    /// Sets the base delay of the link from `from` to `to`.
    public func setLinkDelay(from: Int, to: Int, _ delay: Duration) {
        linkDelayBase[from][to] = delay.nanosecondsClamped
    }

    /// Runs the group for `duration` of virtual time.
    public func run(for duration: Duration) {
        let end = now + duration.nanosecondsClamped
        while let next = queue.min, next.time <= end {
            processNext()
        }
        now = max(now, end)
    }

    /// Runs until there is no application work, no data in flight and no paused member, and
    /// that has lasted `settle` (long enough for the last rows to spread). Returns false if
    /// `limit` of virtual time passed first.
    public func runUntilQuiet(settle: Duration = .milliseconds(200), limit: Duration = .seconds(600)) -> Bool {
        let settleNanoseconds = settle.nanosecondsClamped
        let deadline = now + limit.nanosecondsClamped
        var quietSince: UInt64? = isBusy ? nil : now
        while let next = queue.min {
            if let since = quietSince, next.time >= since + settleNanoseconds {
                now = since + settleNanoseconds
                return true
            }
            if next.time > deadline { return false }
            processNext()
            if isBusy { quietSince = nil } else if quietSince == nil { quietSince = now }
        }
        return quietSince != nil
    }

    // MARK: - Observation

    public var memberCount: Int { members.count }
    public func core(_ rank: Int) -> OrderingCore { members[rank].core }
    public func memberID(_ rank: Int) -> MemberID { members[rank].id }
    public func deliveries(_ rank: Int) -> [DeliveredRecord] { members[rank].delivered }
    public func sentRecords(_ rank: Int) -> [SentRecord] { members[rank].sent }
    /// Messages the application of `rank` still holds back because the window is full.
    public func backlog(_ rank: Int) -> Int { members[rank].backlog }

    /// A checker over everything sent and delivered so far.
    public var checker: DeliveryChecker {
        var sent: [MemberID: [SentRecord]] = [:]
        var delivered: [MemberID: [DeliveredRecord]] = [:]
        for member in members {
            sent[member.id] = member.sent
            delivered[member.id] = member.delivered
        }
        return DeliveryChecker(sent: sent, delivered: delivered)
    }

    private var isBusy: Bool {
        dataInFlight > 0 || scheduledWorkPending > 0
            || members.contains { !$0.crashed && ($0.backlog > 0 || $0.pausedUntil != nil) }
    }

    // MARK: - Engine

    private func schedule(at time: UInt64, _ kind: Scheduled.Kind) {
        order += 1
        queue.insert(Scheduled(time: time, order: order, kind: kind))
    }

    private func processNext() {
        guard let event = queue.popMin() else { return }
        precondition(event.time >= now, "virtual time went back from \(now) to \(event.time)")
        now = event.time
        eventsProcessed += 1
        switch event.kind {
        case .arrival(let to, let from, let message):
            if case .data = message { dataInFlight -= 1 }
            if members[to].crashed || linkFailed[from][to] {
                messagesLost += 1
            } else if members[to].pausedUntil != nil {
                members[to].deferred.append(event.kind)
            } else {
                handle(event.kind)
            }
        case .timer(let rank):
            guard !members[rank].crashed, members[rank].timerQueuedAt == event.time else { return }  // superseded by an earlier one
            members[rank].timerQueuedAt = nil
            guard let wanted = members[rank].timerAt else { return }
            if wanted > now {
                queueTimer(rank, at: wanted)
                return
            }
            members[rank].timerAt = nil
            if members[rank].pausedUntil != nil {
                members[rank].deferred.append(event.kind)
            } else {
                handle(event.kind)
            }
        case .pause(let rank, let until):
            scheduledWorkPending -= 1
            guard !members[rank].crashed else { return }
            // The member defers everything until `until`; overlapping pauses merge.
            members[rank].pausedUntil = max(members[rank].pausedUntil ?? 0, until)
            schedule(at: until, .resume(rank))
        case .burst(let rank, _):
            scheduledWorkPending -= 1
            if members[rank].crashed {
                return
            } else if members[rank].pausedUntil != nil {
                members[rank].deferred.append(event.kind)
            } else {
                handle(event.kind)
            }
        case .crash(let rank):
            scheduledWorkPending -= 1
            members[rank].crashed = true
            members[rank].pausedUntil = nil
            members[rank].deferred = []
            members[rank].backlog = 0  // its application is gone too
        case .failLink(let from, let to):
            scheduledWorkPending -= 1
            linkFailed[from][to] = true
        case .resume(let rank):
            guard !members[rank].crashed, let until = members[rank].pausedUntil, until <= now else { return }  // extended
            members[rank].pausedUntil = nil
            let deferred = members[rank].deferred
            members[rank].deferred = []
            for kind in deferred { handle(kind) }
        }
    }

    /// The member handles one event now, then its application and effects run.
    private func handle(_ kind: Scheduled.Kind) {
        switch kind {
        case .arrival(let to, let from, let message):
            feed(to, .received(message, fromMemberRank: from))
            pump(to)
        case .timer(let rank):
            feed(rank, .tick(Timestamp(nanoseconds: now)))
            pump(rank)
        case .burst(let rank, let count):
            members[rank].backlog += count
            pump(rank)
        case .pause, .resume, .crash, .failLink:
            preconditionFailure("pauses and faults are never deferred")
        }
    }

    private func feed(_ rank: Int, _ event: Event) {
        do {
            try members[rank].core.handle(event)
        } catch {
            coreErrors.append("\(members[rank].id) at \(now)ns: \(error)")
        }
    }

    /// Lets the member's application submit what the window admits, then polls and carries out
    /// the effects; repeats while deliveries open the window for more of the backlog.
    private func pump(_ rank: Int) {
        while true {
            let submitted = submitBacklog(rank)
            effects.removeAll(keepingCapacity: true)
            members[rank].core.poll(into: &effects)
            let hadDeliveries = carryOut(rank)
            if members[rank].backlog == 0 || (submitted == 0 && !hadDeliveries) { break }
            if members[rank].core.sendCapacity == 0 { break }
        }
    }

    private func submitBacklog(_ rank: Int) -> Int {
        let count = min(members[rank].backlog, members[rank].core.sendCapacity)
        for _ in 0..<count {
            let sequence = members[rank].nextSenderSequence
            let payload = makePayload(sender: members[rank].id, sequence: sequence)
            do {
                try members[rank].core.send(payload)
            } catch {
                coreErrors.append("\(members[rank].id) send #\(sequence): \(error)")
                return 0
            }
            members[rank].sent.append(SentRecord(senderSequence: sequence, payloadDigest: payloadDigest(payload)))
            members[rank].nextSenderSequence += 1
            members[rank].backlog -= 1
        }
        return count
    }

    private func carryOut(_ rank: Int) -> Bool {
        var hadDeliveries = false
        for effect in effects {
            switch effect {
            case .sendData:
                for to in members.indices where to != rank {
                    dataInFlight += 1
                    transmit(effect, from: rank, to: to)
                }
            case .sendRow:
                for to in members.indices where to != rank { transmit(effect, from: rank, to: to) }
            case .deliver(let delivery):
                hadDeliveries = true
                members[rank].delivered.append(Self.record(of: delivery))
            case .wedged:
                members[rank].wedgedAt = now
                members[rank].sentWhenWedged = members[rank].sent.count
            case .armTimer(let at):
                let time = max(at.nanoseconds, now)
                members[rank].timerAt = time
                if let queued = members[rank].timerQueuedAt, queued <= time { break }
                queueTimer(rank, at: time)
            }
        }
        return hadDeliveries
    }

    private func queueTimer(_ rank: Int, at time: UInt64) {
        members[rank].timerQueuedAt = time
        schedule(at: time, .timer(rank))
    }

    private func transmit(_ effect: Effect, from: Int, to: Int) {
        let message: Message
        switch effect {
        case .sendData(let batch): message = .data(batch)
        case .sendRow(let row): message = .row(row)
        case .deliver, .armTimer, .wedged: preconditionFailure("only sends travel on links")
        }
        if linkFailed[from][to] {
            messagesLost += 1
            if case .sendData = effect { dataInFlight -= 1 }
            return
        }
        let base = linkDelayBase[from][to]
        var delay = base + UInt64.random(in: 0...base, using: &random)
        if random.chance(spikeProbability) {
            delay += UInt64.random(in: 0...spikeDelayMax.nanosecondsClamped, using: &random)
        }
        // FIFO: never arrive before an earlier message on the same link.
        let arrival = max(now + delay, lastArrival[from][to])
        lastArrival[from][to] = arrival
        schedule(at: arrival, .arrival(to: to, from: from, message))
    }

    private func makePayload(sender: MemberID, sequence: UInt64) -> Payload {
        let filler = Int.random(in: 0...payloadFillerBytesMax, using: &random)
        var bytes = [UInt8]()
        bytes.reserveCapacity(16 + filler)
        withUnsafeBytes(of: sender.rawValue.littleEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: sequence.littleEndian) { bytes.append(contentsOf: $0) }
        for _ in 0..<filler { bytes.append(UInt8.random(in: 0...255, using: &random)) }
        return bytes[...]
    }

    /// Reads the header the simulated applications put in every payload.
    static func record(of delivery: Delivery) -> DeliveredRecord {
        let payload = delivery.payload
        var sender: UInt64 = 0
        var sequence: UInt64 = 0
        if payload.count >= 16 {
            let start = payload.startIndex
            for k in 0..<8 {
                sender |= UInt64(payload[start + k]) << (8 * UInt64(k))
                sequence |= UInt64(payload[start + 8 + k]) << (8 * UInt64(k))
            }
        }
        // A payload whose header disagrees with the core's sender shows up as created.
        let named = MemberID(sender)
        return DeliveredRecord(
            sender: named == delivery.sender ? named : MemberID(UInt64.max), senderSequence: sequence,
            payloadDigest: payloadDigest(payload))
    }
}
