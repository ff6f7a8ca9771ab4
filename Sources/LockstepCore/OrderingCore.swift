// The ordering core of one member in one view: a value type, driven by events, that returns
// effects. It holds the member's table of rows (its own, authoritative, and a possibly stale
// copy of every other member's), a ring of received-but-unreleased messages per sender, and
// nothing else: no clock, no randomness, no IO.
//
// Protocol (see ../../docs/PROTOCOL.md for the longer story):
// - Sender rank r of S numbers its messages i = 0, 1, ...; message (r, i) has global sequence
//   i*S + r. An idle sender fills its places with nulls (sent as a count) once another sender
//   has gone past them, so the round-robin never waits on it.
// - Every member's row holds received[s] (count of contiguous messages of sender s held),
//   seq (length of the prefix of the global order held) and delivered.
// - The stability frontier is min over members of seq; ordered delivery releases everything
//   below it, in global order. Unordered delivery releases each message on receipt.
// - The window: a sender may have at most `windowMessagesMax` messages beyond the group's
//   delivered minimum (ordered) or received minimum (unordered) for its own messages.

/// The sans-IO protocol core of one member for one view.
public struct OrderingCore: Sendable {
    public let configuration: Configuration
    public let view: View
    /// This member's rank in the view.
    public let memberRank: Int
    /// This member's sender rank, if it sends in this view.
    public let senderRank: Int?

    let senderCount: Int
    let senderCountWide: UInt64
    private let windowWide: UInt64
    /// Sender rank of each member rank, or -1 for a member that does not send.
    private let senderRankOfMember: [Int]
    private let senderMembers: [MemberID]

    /// rows[memberRank]; rows[memberRank] of this member is authoritative.
    var rows: [Row]
    var rings: [SlotRing]
    /// Unordered mode: per sender, how many messages have been delivered (and released) here.
    var unorderedDelivered: [UInt64]
    /// Unordered mode, after a view change: per sender rank, how many of the sender's first
    /// messages in this view are re-sent ones this member already delivered in the last view.
    var unorderedSkip: [UInt64] = []
    /// Unordered mode: the skips this member started the view with. A joiner whose snapshot is
    /// this member's state skips the same (`skipResentMessages`).
    public internal(set) var resentAlreadyDelivered: [UInt64] = []

    /// Unordered mode, for a joiner: its snapshot came from a member that had delivered these
    /// many of each sender's re-sent messages (that member's `resentAlreadyDelivered`).
    public mutating func skipResentMessages(_ counts: [UInt64]) {
        guard configuration.deliveryMode == .unordered, counts.count == senderCount else { return }
        unorderedSkip = counts
    }

    /// Unordered mode: per sender rank, how many of the sender's first messages in this view this
    /// member's state holds (delivered here, or re-sent ones it delivered in the last view and
    /// skips): a joiner whose snapshot is this state skips as many. Empty in ordered mode.
    var skipForJoiner: [UInt64] {
        guard configuration.deliveryMode == .unordered else { return [] }
        return (0..<senderCount).map { unorderedDelivered[$0] + (unorderedSkip.isEmpty ? 0 : unorderedSkip[$0]) }
    }

    /// Own messages with index below this have been put in a data batch.
    private var transmittedCount: UInt64 = 0
    /// This member may assign indices below this (the window's upper edge), cached.
    private var sendLimit: UInt64
    /// The window in bytes: payload bytes of own messages at or above `ownBytesBase` (the
    /// window's lower edge as last seen), and each one's size by index (mask as in SlotRing;
    /// zeroed once released, so a slot later taken by a null counts nothing).
    private var ownWindowBytes = 0
    private var ownBytesBase: UInt64 = 0
    private var ownSizes: [Int]
    private let ownSizesMask: UInt64
    /// Bumped on every change of this member's row; compared with the last row sent.
    var rowVersion: UInt64 = 1
    private var sentRowVersion: UInt64 = 0
    var now: Timestamp = .zero
    private var lastRowSentAt: Timestamp = .zero
    private var armedTimerAt: Timestamp? = nil
    /// Failure detection: when each member was last heard from (any message counts). Set for
    /// everyone by the first tick, so a member is never suspected before the clock starts.
    var lastHeard: [Timestamp]
    /// Ranks of joiners of this view not heard from yet in it: a joiner is a member from the
    /// install on but starts only once welcomed (its welcome may have to come from another member
    /// when the one that accepted it failed), so its silence counts for `joinerStartTimeoutFactor`
    /// failure timeouts, not one. Suspecting it sooner could cost a view its majority, and then
    /// every member's rows suspect half the view and the isolation rule suspects them all.
    var joinersNotStarted: Set<Int> = []
    static let joinerStartTimeoutFactor: UInt64 = 4
    var clockStarted = false
    private var lastTickAt: Timestamp = .zero
    private var wedgeReported = false
    /// Set by the first suspicion or the first sign of a view change (a proposal in any row);
    /// from then on this member sends nothing new and delivers only by the ragged trim.
    var wedged = false
    /// Membership (Membership.swift): joins accepted by this member as leader, not yet proposed
    /// or not yet installed; whether this member learned it was removed, or that it is in a
    /// minority, and said so.
    var pendingJoiners: [MemberID] = []
    var removedReason: String? = nil
    var previousViewRow: Row? = nil
    var removedReported = false
    var minorityReported = false
    /// A removed member: the lowest-ranked member the installed commit that removed it kept (it
    /// leads the next view), where a joiner that asks here is sent.
    var keptAfterRemoval: MemberID? = nil
    /// Ids of members of earlier views this member installed, the latest `formerMembersMax`
    /// (Membership.swift): a join with one of them is refused.
    var formerMembers: [MemberID] = []

    public internal(set) var statistics = CoreStatistics()

    /// Creates the core of the member at `memberRank` in `view`.
    public init(configuration: Configuration, view: View, memberRank: Int) throws(CoreSetupError) {
        do { try configuration.validate() } catch { throw .configuration(error) }
        guard view.memberCount <= configuration.membersMax else {
            throw .view(ViewError(reason: "\(view.memberCount) members exceed membersMax \(configuration.membersMax)"))
        }
        guard view.members.indices.contains(memberRank) else {
            throw .view(ViewError(reason: "member rank \(memberRank) is not in \(view)"))
        }
        self.configuration = configuration
        self.view = view
        self.memberRank = memberRank
        self.senderCount = view.senderCount
        self.senderCountWide = UInt64(view.senderCount)
        self.windowWide = UInt64(configuration.windowMessagesMax)
        var senderRankOfMember = Array(repeating: -1, count: view.memberCount)
        for (senderRank, rank) in view.senderMemberRanks.enumerated() { senderRankOfMember[rank] = senderRank }
        self.senderRankOfMember = senderRankOfMember
        self.senderRank = senderRankOfMember[memberRank] >= 0 ? senderRankOfMember[memberRank] : nil
        self.senderMembers = view.senderMemberRanks.map { view.members[$0] }
        let emptyRow = Row(
            viewID: view.id, received: Array(repeating: 0, count: view.senderCount), seq: 0, delivered: 0,
            suspected: Array(repeating: 0, count: Row.suspicionWords(memberCount: view.memberCount)))
        self.lastHeard = Array(repeating: .zero, count: view.memberCount)
        self.rows = Array(repeating: emptyRow, count: view.memberCount)
        self.rings = Array(
            repeating: SlotRing(capacity: configuration.windowMessagesMax), count: view.senderCount)
        self.unorderedDelivered = Array(repeating: 0, count: view.senderCount)
        self.sendLimit = UInt64(configuration.windowMessagesMax)
        var sizes = 1
        while sizes < configuration.windowMessagesMax { sizes <<= 1 }
        self.ownSizes = view.senderRank(ofMemberRank: memberRank) == nil ? [0] : Array(repeating: 0, count: sizes)
        self.ownSizesMask = view.senderRank(ofMemberRank: memberRank) == nil ? 0 : UInt64(sizes - 1)
    }

    // MARK: - Observation

    /// How many more messages the window admits right now (0 for a member that does not send,
    /// and for a wedged member).
    public var sendCapacity: Int {
        guard let own = senderRank, !wedged, removedReason == nil else { return 0 }
        let next = rows[memberRank].received[own]
        guard sendLimit > next, admits(bytes: 1) else { return 0 }
        return Int(sendLimit - next)
    }

    /// Payload bytes the window admits right now besides its message count: a message of up to
    /// this many bytes may be sent (one message is always admitted into an empty window, however
    /// large, so a message above windowBytesMax still goes, alone).
    public var sendCapacityBytes: Int {
        ownWindowBytes == 0 ? Int.max : max(0, configuration.windowBytesMax - ownWindowBytes)
    }

    /// Payload bytes of this member's own messages in flight (sent, not yet released by the window).
    public var windowBytesInFlight: Int { ownWindowBytes }

    @inline(__always)
    private func admits(bytes: Int) -> Bool {
        ownWindowBytes == 0 || ownWindowBytes + bytes <= configuration.windowBytesMax
    }

    /// The stability frontier: every global sequence below it is held by every member.
    public var stabilityFrontier: UInt64 { minimumSeq() }

    /// Durable mode: the global persistence frontier, every global sequence of this view below it
    /// is durably logged by every member of the view (as seen in this member's copy of the rows).
    public var persistenceFrontier: UInt64 { minimumPersistedCount() }

    /// Durable mode: the members whose logs hold the start of this view, as this member sees
    /// the rows. For a member that was in an earlier view, that is everything it delivered
    /// there; a joiner's log starts at its join view (its snapshot is not logged).
    public var membersWithViewStartPersisted: [MemberID] {
        view.members.indices.filter { rows[$0].persisted > 0 }.map { view.members[$0] }
    }

    /// Ordered mode: this member holds messages it has not delivered yet (they wait for
    /// stability or for a view change).
    public var hasUndelivered: Bool {
        configuration.deliveryMode == .ordered && rows[memberRank].seq > rows[memberRank].delivered
    }

    /// A wedged member saw a suspicion and sends no new message in this view.
    public var isWedged: Bool { wedged }

    /// Member ranks this member suspects (its own suspicions and those it learned from rows).
    public var suspectedRanks: [Int] { view.members.indices.filter { rows[memberRank].isSuspected($0) } }

    /// How long the member at `rank` has not been heard from, as of the last tick (for logs).
    public func silenceNanoseconds(ofMemberRank rank: Int) -> UInt64 {
        guard lastHeard.indices.contains(rank), now > lastHeard[rank] else { return 0 }
        return now.nanoseconds - lastHeard[rank].nanoseconds
    }

    /// This member's own row (its counters).
    public var ownRow: Row { rows[memberRank] }

    /// This member's copy of the row of the member at `rank` (possibly stale).
    public func row(ofMemberRank rank: Int) -> Row { rows[rank] }

    // MARK: - Events

    /// Feeds one event. Throws when the event is refused; a refused event changes nothing.
    public mutating func handle(_ event: Event) throws(CoreError) {
        switch event {
        case .received(let message, let fromMemberRank):
            try receive(message, fromMemberRank: fromMemberRank)
        case .sendRequested(let payload):
            try send(payload)
        case .tick(let time):
            tick(time)
        case .linkFailed(let rank):
            guard view.members.indices.contains(rank), rank != memberRank else {
                throw CoreError(
                    .unknownMember, "link failure reported for member rank \(rank) in a view of \(view.memberCount)")
            }
            suspect(rank)
        case .heard(let rank):
            guard view.members.indices.contains(rank) else {
                throw CoreError(
                    .unknownMember, "sign of life from member rank \(rank) in a view of \(view.memberCount)")
            }
            lastHeard[rank] = now
        case .persisted(let upTo, let viewID):
            guard viewID == view.id, configuration.durable else { return }
            let own = rows[memberRank]
            precondition(
                upTo <= own.delivered,
                "the shell reports \(upTo) global sequences persisted in \(viewID), beyond \(own.delivered) delivered")
            guard upTo + 1 > own.persisted else { return }
            rows[memberRank].persisted = upTo + 1
            rowVersion &+= 1
            updateSendLimit()
        }
    }

    /// Suspects the member at `rank` (once; suspicions are never withdrawn within a view).
    mutating func suspect(_ rank: Int) {
        guard !rows[memberRank].isSuspected(rank) else { return }
        rows[memberRank].suspected[rank / 64] |= 1 << UInt64(rank % 64)
        rowVersion &+= 1
        wedged = true
        statistics.suspicionsRaised += 1
    }

    /// The application sends `payload`; it gets the next index at once and goes out at the
    /// next poll.
    public mutating func send(_ payload: Payload) throws(CoreError) {
        guard let own = senderRank else {
            throw CoreError(.notASender, "member rank \(memberRank) is not a sender in \(view.id)")
        }
        guard payload.count <= configuration.messageBytesMax else {
            throw CoreError(
                .messageTooLarge, "\(payload.count) bytes > messageBytesMax \(configuration.messageBytesMax)")
        }
        guard !wedged, removedReason == nil else {
            throw CoreError(
                .wedged,
                "member rank \(memberRank) is wedged (suspects \(suspectedRanks)); no new messages in \(view.id)")
        }
        let index = rows[memberRank].received[own]
        guard index < sendLimit else {
            throw CoreError(.windowFull, "index \(index) reaches the window's edge \(sendLimit)")
        }
        guard admits(bytes: payload.count) else {
            throw CoreError(
                .windowFull,
                "\(payload.count) bytes would pass windowBytesMax \(configuration.windowBytesMax) "
                    + "(\(ownWindowBytes) in flight)"
            )
        }
        enqueue(payload, sender: own, index: index)
    }

    /// Installing: a message of the previous view beyond its trim goes out again, first. The
    /// fresh window holds a window's worth (checkTrim refuses a trim further back), and the bytes
    /// were admitted by the previous view's window, so they are not checked again: a trim that
    /// lies costs a window over its bytes for a while, not a crash.
    mutating func resend(_ payload: Payload) {
        guard let own = senderRank else { preconditionFailure("member rank \(memberRank) re-sends but does not send") }
        let index = rows[memberRank].received[own]
        precondition(index < sendLimit, "re-sent message \(index) beyond the fresh window's edge \(sendLimit)")
        enqueue(payload, sender: own, index: index)
    }

    private mutating func enqueue(_ payload: Payload, sender own: Int, index: UInt64) {
        rings[own][index] = payload
        ownSizes[Int(truncatingIfNeeded: index & ownSizesMask)] = payload.count
        ownWindowBytes += payload.count
        rows[memberRank].received[own] = index + 1
        rowVersion &+= 1
        statistics.messagesSubmitted += 1
    }

    public mutating func tick(_ time: Timestamp) {
        if time > now { now = time }
        // A tick is the shell's one timer firing: it is gone, whenever it fired. Forgetting it
        // makes the next poll arm it again even when the tick came before the time asked for (a
        // skewed or rounded clock), where keeping it would leave the member with no timer at
        // all: no heartbeats, no failure detection, for good.
        armedTimerAt = nil
        let previousTick = lastTickAt
        lastTickAt = now
        // The first tick starts the clock. A tick long after the previous one means this member
        // itself was stalled (a pause, a starved thread): what peers sent meanwhile is still
        // unread, so their silence proves nothing. Start their timeouts afresh.
        let stall = configuration.failureTimeout.nanosecondsClamped / 2
        let gap = now.nanoseconds &- previousTick.nanoseconds
        if !clockStarted || gap > stall {
            if clockStarted { statistics.localStalls += 1 }
            clockStarted = true
            for rank in lastHeard.indices { lastHeard[rank] = now }
            return
        }
        // A shorter stall of this member (a tick later than the heartbeat interval asks for: a
        // starved thread, a long burst of work on its event loop) is credited too: for that long it
        // could not read what peers sent, so their silence is shortened by as much. Without it a
        // starved receiver (200 ms) and a starved sender (200 ms) add up to a false suspicion
        // that neither alone would raise.
        let expected = configuration.heartbeatInterval.nanosecondsClamped
        if gap > expected {
            let credit = gap - expected
            for rank in lastHeard.indices where lastHeard[rank] < now {
                lastHeard[rank] = Timestamp(nanoseconds: min(now.nanoseconds, lastHeard[rank].nanoseconds &+ credit))
            }
        }
        // Failure detection: silence longer than failureTimeout raises a suspicion.
        let failureTimeout = configuration.failureTimeout.nanosecondsClamped
        for rank in lastHeard.indices where rank != memberRank && !rows[memberRank].isSuspected(rank) {
            let joinerWaits = joinersNotStarted.contains(rank)
            let timeout = joinerWaits ? failureTimeout * Self.joinerStartTimeoutFactor : failureTimeout
            if now.nanoseconds &- lastHeard[rank].nanoseconds > timeout, now > lastHeard[rank] { suspect(rank) }
        }
    }

    public mutating func receive(_ message: Message, fromMemberRank from: Int) throws(CoreError) {
        guard view.members.indices.contains(from), from != memberRank else {
            throw CoreError(.unknownMember, "message from member rank \(from) in a view of \(view.memberCount)")
        }
        // Anything from a member shows it alive (the time is that of the last tick).
        lastHeard[from] = now
        if !joinersNotStarted.isEmpty { joinersNotStarted.remove(from) }
        let messageView = message.viewID
        if messageView != view.id {
            if messageView < view.id {
                // A late message of an earlier view: harmless, and expected around view changes.
                statistics.staleViewMessagesIgnored += 1
                return
            }
            throw CoreError(.viewFromTheFuture, "message of \(messageView) received in \(view.id)")
        }
        switch message {
        case .data(let batch): try receiveData(batch, from: from)
        case .row(let row): try applyRow(row, from: from)
        }
    }

    private mutating func receiveData(_ batch: DataBatch, from: Int) throws(CoreError) {
        let sender = senderRankOfMember[from]
        guard sender >= 0, sender == batch.senderRank else {
            throw CoreError(
                .senderMismatch, "member rank \(from) sent a batch of sender rank \(batch.senderRank)")
        }
        let held = rows[memberRank].received[sender]
        guard batch.firstIndex <= held else {
            throw CoreError(.gap, "sender rank \(sender) batch starts at \(batch.firstIndex), expected at most \(held)")
        }
        // Messages below `heldFrom` have been released; the window bounds what may be held above it.
        let limit = heldFrom(sender: sender) + windowWide
        let bytesMax = configuration.messageBytesMax
        let first = batch.firstIndex
        var index = first
        // One pass stores and checks; a bad entry undoes the stores (those slots were empty,
        // as every slot above `held` is), so a refused batch changes nothing.
        func refuse(_ error: CoreError) -> CoreError {
            var undo = max(first, held)
            while undo < index {
                rings[sender][undo] = nil
                undo += 1
            }
            return error
        }
        for entry in batch.entries {
            switch entry {
            case .message(let payload):
                guard payload.count <= bytesMax else {
                    throw refuse(
                        CoreError(.messageTooLarge, "sender rank \(sender) index \(index): \(payload.count) bytes"))
                }
                guard index < limit else {
                    throw refuse(
                        CoreError(.windowOverrun, "sender rank \(sender) index \(index) beyond window edge \(limit)"))
                }
                if index >= held { rings[sender][index] = payload }
                index += 1
            case .nulls(let count):
                guard count > 0 else { throw refuse(CoreError(.emptyNullRun, "sender rank \(sender) index \(index)")) }
                guard count <= limit - index else {
                    throw refuse(
                        CoreError(
                            .windowOverrun,
                            "sender rank \(sender) \(count) nulls at \(index) beyond window edge \(limit)"))
                }
                index += count
            }
        }
        if index > held {
            rows[memberRank].received[sender] = index
            rowVersion &+= 1
        }
    }

    /// A suspected member's row is ignored, except an installed commit: it is final (a majority
    /// held it), whoever shows it. A member that suspects the survivors (its incoming traffic was
    /// late, say) learns from their install rows that it was removed, instead of staying wedged
    /// in the view for good. A suspected member is never the leader: nothing else is acted on.
    private mutating func readRowOfSuspect(_ row: Row, from: Int) {
        statistics.rowsFromSuspectsIgnored += 1
        if row.installNumber != 0 && row.installNumber == row.commit.number {
            applyMembershipColumns(row, from: from)
        }
    }

    private mutating func applyRow(_ row: Row, from: Int) throws(CoreError) {
        guard row.received.count == senderCount else {
            throw CoreError(
                .malformedRow, "row of member rank \(from) has \(row.received.count) senders, not \(senderCount)")
        }
        let words = rows[memberRank].suspected.count
        guard row.suspected.count == words else {
            throw CoreError(
                .malformedRow, "row of member rank \(from) has \(row.suspected.count) suspicion words, not \(words)")
        }
        guard row.persisted <= row.delivered + 1 else {
            throw CoreError(
                .malformedRow,
                "row of member rank \(from) counts \(row.persisted) persisted with \(row.delivered) delivered")
        }
        try checkMembershipColumns(row, from: from)
        // A suspected member's rows are ignored: it is leaving this view, and what it reports
        // (its suspicions above all) must not steer the members that stay.
        // (Without view changes nothing is decided from rows, and a reconnected member's counters
        // still let the others deliver what is stable.)
        let viewChanges = configuration.viewChanges
        if viewChanges && rows[memberRank].isSuspected(from) { return readRowOfSuspect(row, from: from) }
        // A member that suspects so many that the rest are no majority is the one cut off (its
        // incoming links failed, say): adopting its suspicions would spread its isolation through
        // the group. Suspect it instead, and read nothing more from it. (A member suspected by
        // one that is not cut off adopts the suspicion of itself, and is removed: it cannot tell
        // which of the two lost the link, and removing one end is the cheaper guess.)
        if viewChanges
            && !Self.isMajority(survivors: view.memberCount - Self.count(row.suspected), of: view.memberCount)
        {
            suspect(from)
            return
        }
        // Suspicions spread: what another member suspects, this member suspects too.
        for word in 0..<words {
            rows[from].suspected[word] |= row.suspected[word]
            let fresh = row.suspected[word] & ~rows[memberRank].suspected[word]
            if fresh != 0 {
                rows[memberRank].suspected[word] |= fresh
                rowVersion &+= 1
                wedged = true
            }
        }
        // Any sign of a view change wedges this member before it reads the counters below:
        // counters sent after their owner wedged must not advance delivery by stability, or a
        // member could deliver beyond the ragged trim the leader computes from earlier rows.
        if row.proposal.number != 0 || row.commit.number != 0 { wedged = true }
        if mergeCounters(row, from: from) {
            statistics.rowsApplied += 1
            updateSendLimit()
        }
        applyMembershipColumns(row, from: from)
    }

    /// Counters only grow: keep the maximum, so re-sent or reordered rows are harmless. True when
    /// one moved.
    private mutating func mergeCounters(_ row: Row, from: Int) -> Bool {
        var changed = false
        for s in 0..<senderCount where row.received[s] > rows[from].received[s] {
            rows[from].received[s] = row.received[s]
            changed = true
        }
        if row.seq > rows[from].seq {
            rows[from].seq = row.seq
            changed = true
        }
        if row.delivered > rows[from].delivered {
            rows[from].delivered = row.delivered
            changed = true
        }
        if row.persisted > rows[from].persisted {
            rows[from].persisted = row.persisted
            changed = true
        }
        return changed
    }

    // MARK: - Effects

    /// Collects what the shell must do after the events fed since the last poll. Appends to
    /// `effects` (which the shell may reuse across polls to avoid allocating).
    public mutating func poll(into effects: inout [Effect]) {
        // Unordered mode delivers on receipt, and the install (membershipStep) counts every
        // received message beyond the trim as delivered here, skipping its re-sent copy in the
        // next view: what arrived since the last poll must be delivered first, or it is lost.
        if configuration.deliveryMode == .unordered { deliverUnordered(into: &effects) }
        if wedged || !pendingJoiners.isEmpty { membershipStep(into: &effects) }
        if configuration.deliveryMode == .ordered && !wedged { fillNulls() }
        transmit(into: &effects)
        updateSeq()
        switch configuration.deliveryMode {
        case .ordered: deliverOrdered(into: &effects)
        case .unordered: deliverUnordered(into: &effects)
        }
        updateSendLimit()
        let heartbeatDue = now >= lastRowSentAt.adding(configuration.heartbeatInterval)
        if rowVersion != sentRowVersion || heartbeatDue {
            sentRowVersion = rowVersion
            lastRowSentAt = now
            if view.memberCount > 1 {
                effects.append(.sendRow(rows[memberRank]))
                statistics.rowsSent += 1
            }
        }
        if wedged && !wedgeReported && removedReason == nil {
            wedgeReported = true
            effects.append(.wedged(suspectedRanks: suspectedRanks))
        }
        let nextHeartbeat = lastRowSentAt.adding(configuration.heartbeatInterval)
        if armedTimerAt != nextHeartbeat {
            armedTimerAt = nextHeartbeat
            effects.append(.armTimer(at: nextHeartbeat))
        }
    }

    /// Convenience for tests and scripts: polls into a fresh array.
    public mutating func poll() -> [Effect] {
        var effects: [Effect] = []
        poll(into: &effects)
        return effects
    }

    /// Null fill: once another sender has gone past places of ours in the global order, take
    /// them with nulls so delivery never waits on us. Called after the application has had its
    /// chance to send (the shell feeds its sends before polling), so nulls only fill real gaps.
    private mutating func fillNulls() {
        guard let own = senderRank else { return }
        let next = rows[memberRank].received[own]
        var target = next
        let received = rows[memberRank].received
        for s in 0..<senderCount where s != own {
            // Our places below sender s's highest held message (global (received[s]-1)*S + s).
            let needed = s > own ? received[s] : (received[s] > 0 ? received[s] - 1 : 0)
            if needed > target { target = needed }
        }
        target = min(target, sendLimit)
        guard target > next else { return }
        // The ring's slots above `next` are already nil: nulls need no writes.
        rows[memberRank].received[own] = target
        rowVersion &+= 1
        statistics.nullsCreated += target - next
    }

    private mutating func transmit(into effects: inout [Effect]) {
        guard let own = senderRank else { return }
        let end = rows[memberRank].received[own]
        guard transmittedCount < end else { return }
        if view.memberCount == 1 {
            transmittedCount = end
            return
        }
        let messagesMax = configuration.batchMessagesMax
        let bytesMax = configuration.batchBytesMax
        var index = transmittedCount
        while index < end {
            let first = index
            var entries: [BatchEntry] = []
            entries.reserveCapacity(min(Int(end - index), messagesMax))
            var bytes = 0
            while index < end, entries.count < messagesMax, bytes < bytesMax {
                if let payload = rings[own][index] {
                    entries.append(.message(payload))
                    bytes += payload.count
                    index += 1
                } else {
                    // A run of nulls becomes one entry.
                    var runEnd = index + 1
                    while runEnd < end, rings[own][runEnd] == nil { runEnd += 1 }
                    entries.append(.nulls(runEnd - index))
                    index = runEnd
                }
            }
            effects.append(.sendData(DataBatch(viewID: view.id, senderRank: own, firstIndex: first, entries: entries)))
            statistics.dataBatchesSent += 1
        }
        transmittedCount = end
    }

    /// seq = the first global sequence not held = min over s of received[s]*S + s.
    private mutating func updateSeq() {
        var seq = UInt64.max
        let received = rows[memberRank].received
        for s in 0..<senderCount {
            seq = min(seq, received[s] * senderCountWide + UInt64(s))
        }
        if seq != rows[memberRank].seq {
            precondition(seq > rows[memberRank].seq, "seq went back from \(rows[memberRank].seq) to \(seq)")
            rows[memberRank].seq = seq
            rowVersion &+= 1
        }
    }

    private mutating func deliverOrdered(into effects: inout [Effect]) {
        // A wedged member delivers only by the ragged trim (see applyRow). Without view changes
        // there is no trim, and what is stable is held by everyone: delivering it stays safe.
        guard !wedged || !configuration.viewChanges else { return }
        let stable = minimumSeq()
        var delivered = rows[memberRank].delivered
        guard delivered < stable else { return }
        // stable <= own seq, so every message below it is held here.
        var sender = Int(delivered % senderCountWide)
        var index = delivered / senderCountWide
        while delivered < stable {
            if let payload = rings[sender].take(index) {
                effects.append(deliver(payload, sender: sender, index: index, globalSequence: delivered))
                statistics.messagesDelivered += 1
            }
            delivered += 1
            sender += 1
            if sender == senderCount {
                sender = 0
                index += 1
            }
        }
        rows[memberRank].delivered = delivered
        rowVersion &+= 1
    }

    @inline(__always)
    func deliver(_ payload: Payload, sender: Int, index: UInt64, globalSequence: UInt64?) -> Effect {
        .deliver(
            Delivery(
                viewID: view.id, sender: senderMembers[sender], senderRank: sender, index: index,
                globalSequence: globalSequence, payload: payload))
    }

    private mutating func deliverUnordered(into effects: inout [Effect]) {
        var deliveredNow: UInt64 = 0
        for s in 0..<senderCount {
            let received = rows[memberRank].received[s]
            var index = unorderedDelivered[s]
            while index < received {
                // Own messages stay in the ring until every member holds them: a view change
                // re-sends those beyond the ragged trim.
                let held = s == senderRank ? rings[s][index] : rings[s].take(index)
                if let payload = held {
                    if unorderedSkip.isEmpty || unorderedSkip[s] == 0 {
                        effects.append(deliver(payload, sender: s, index: index, globalSequence: nil))
                        deliveredNow += 1
                    } else {
                        // A re-sent message this member delivered in the previous view.
                        unorderedSkip[s] -= 1
                    }
                }
                index += 1
            }
            unorderedDelivered[s] = index
        }
        if deliveredNow > 0 {
            rows[memberRank].delivered += deliveredNow
            statistics.messagesDelivered += deliveredNow
            rowVersion &+= 1
        }
    }

    /// The lowest index of `sender` not yet released here (what the receive window counts from).
    private func heldFrom(sender: Int) -> UInt64 {
        switch configuration.deliveryMode {
        case .ordered:
            return Self.indicesBelow(rows[memberRank].delivered, senderRank: sender, senderCount: senderCountWide)
        // Unordered delivery releases on receipt (at the next poll). A row reports received[s]
        // only after those messages were delivered, so a sender's view of the minimum received
        // never runs ahead of what any receiver has released: the window bounds the ring.
        // (Keeping messages until stable, for the ragged-edge cleanup, comes with membership.)
        case .unordered: return unorderedDelivered[sender]
        }
    }

    /// Recomputes the window's upper edge for this member's own messages.
    private mutating func updateSendLimit() {
        guard let own = senderRank else { return }
        let base: UInt64
        switch configuration.deliveryMode {
        case .ordered:
            // Durable mode counts from the persistence frontier (never beyond the delivered
            // minimum): what waits for a disk holds the window as what waits for delivery does.
            let released = configuration.durable ? minimumPersistedCount() : minimumDelivered()
            base = Self.indicesBelow(released, senderRank: own, senderCount: senderCountWide)
        case .unordered:
            base = minimumReceived(sender: own)
        }
        sendLimit = base + windowWide
        // Own messages below the window's lower edge are released everywhere: their bytes leave
        // the window.
        while ownBytesBase < base {
            let slot = Int(truncatingIfNeeded: ownBytesBase & ownSizesMask)
            ownWindowBytes -= ownSizes[slot]
            ownSizes[slot] = 0
            ownBytesBase += 1
        }
        precondition(ownWindowBytes >= 0, "window bytes went negative (\(ownWindowBytes)) at base \(base)")
    }

    /// How many of sender `senderRank`'s indices have a global sequence below `global`.
    @inline(__always)
    static func indicesBelow(_ global: UInt64, senderRank: Int, senderCount: UInt64) -> UInt64 {
        let rank = UInt64(senderRank)
        return global > rank ? (global - rank - 1) / senderCount + 1 : 0
    }

    func minimumSeq() -> UInt64 {
        var result = UInt64.max
        for k in rows.indices { result = min(result, rows[k].seq) }
        return result
    }

    private func minimumDelivered() -> UInt64 {
        var result = UInt64.max
        for k in rows.indices { result = min(result, rows[k].delivered) }
        return result
    }

    /// The least number of this view's global sequences any member has durably logged.
    private func minimumPersistedCount() -> UInt64 {
        var result = UInt64.max
        for k in rows.indices { result = min(result, rows[k].persisted == 0 ? 0 : rows[k].persisted - 1) }
        return result
    }

    private func minimumReceived(sender: Int) -> UInt64 {
        var result = UInt64.max
        for k in rows.indices { result = min(result, rows[k].received[sender]) }
        return result
    }
}

/// The core could not be created.
public enum CoreSetupError: Error, Equatable, Sendable, CustomStringConvertible {
    case configuration(ConfigurationError)
    case view(ViewError)

    public var description: String {
        switch self {
        case .configuration(let error): return error.description
        case .view(let error): return error.description
        }
    }
}
