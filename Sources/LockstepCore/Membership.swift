// The view change, as a function of rows (docs/MEMBERSHIP.md). Every step writes into this
// member's own row, so it is re-sent, coalesced and applied like the counters, and a new leader
// can resume from any survivor's row.
//
// 1. The leader (lowest rank this member does not suspect) proposes: removed = everyone it
//    suspects, joiners = joins it accepted. Proposal numbers are `round << 16 | leaderRank`.
// 2. Members acknowledge by copying the proposal of the member they take for leader.
// 3. Once every survivor acknowledged, the leader commits: it adopts the highest commit found in
//    any survivor's row (a predecessor's), or computes a fresh ragged trim, per sender the
//    minimum `received` over the survivors. Members copy the commit (and its trim).
// 4. Once every survivor holds the commit, the leader installs it; members install when they
//    read that. Installing delivers, in global order, exactly the messages below the trim,
//    re-sends this member's own messages beyond it in the next view, and starts the next view.
// Safety is Paxos's: a commit is installed only when a majority (every survivor of a majority
// proposal) holds it, and a later leader's acknowledgements come from a majority too, so it
// finds that commit and adopts it. A minority never proposes.

extension OrderingCore {
    /// The lowest-ranked member this member does not suspect.
    public var leaderRank: Int? {
        view.members.indices.first { !rows[memberRank].isSuspected($0) }
    }

    /// This member's last row of the previous view (with the installed commit). A shell sends it
    /// to a member that still sends traffic of that view: it missed the install, and this row
    /// lets it install too.
    public var lastRowOfPreviousView: Row? { previousViewRow }

    /// This member learned that it was removed from the group.
    public var isRemoved: Bool { removedReason != nil }

    /// Joins accepted by this member as leader and not yet installed.
    public var pendingJoinerCount: Int { pendingJoiners.count }

    /// This member leaves the group gracefully: it stops sending and the leader removes it in
    /// the next view (a leave is a suspicion of oneself, proposed like any other).
    public mutating func leave() {
        suspect(memberRank)
    }

    /// How many ids of former members (removed from views this member installed) it remembers,
    /// to refuse their reuse: four full groups' worth (256 ids, 2 KiB, at the default membersMax
    /// of 64), copied at each install. An id removed longer ago could join again; by then no
    /// traffic of the views it was in is left (shells drop what belongs to views left behind),
    /// so the cost is a reused name in logs, not a mixed-up member.
    var formerMembersMax: Int { 4 * configuration.membersMax }

    /// A process asks to join. Only the leader accepts; others redirect to it. A member that
    /// was removed redirects to a member that stayed.
    public mutating func requestJoin(_ joiner: MemberID) -> JoinAnswer {
        guard configuration.viewChanges else { return .refused(reason: "view changes are off in this member") }
        guard removedReason == nil else {
            guard let kept = keptAfterRemoval else { return .refused(reason: "this member was removed from the group") }
            return .redirect(leader: kept)
        }
        guard view.rank(of: joiner) == nil else {
            return .refused(
                reason: "\(joiner) is already a member of \(view.id); a restarted process joins with a new id")
        }
        guard !formerMembers.contains(joiner) else {
            return .refused(
                reason: "\(joiner) was a member of an earlier view; a restarted process joins with a new id")
        }
        guard let leader = leaderRank else { return .refused(reason: "this member suspects every member") }
        guard leader == memberRank else { return .redirect(leader: view.members[leader]) }
        // A leader that reaches no majority cannot propose (partition safety): the joiner would
        // wait for a view that this member cannot form. It asks again later, or elsewhere.
        let reachable = view.memberCount - Self.count(rows[memberRank].suspected)
        guard Self.isMajority(survivors: reachable, of: view.memberCount) else {
            return .refused(
                reason: "this member reaches \(reachable) of \(view.memberCount) members, no majority to form a view")
        }
        if pendingJoiners.contains(joiner) { return .accepted }
        guard view.memberCount + pendingJoiners.count < configuration.membersMax else {
            return .refused(reason: "the group is full (membersMax \(configuration.membersMax))")
        }
        pendingJoiners.append(joiner)
        return .accepted
    }

    static func count(_ bitmap: [UInt64]) -> Int { bitmap.reduce(0) { $0 + $1.nonzeroBitCount } }

    /// Partition safety: a view change needs more than half of the current view.
    static func isMajority(survivors: Int, of memberCount: Int) -> Bool { survivors * 2 > memberCount }

    /// Refuses rows whose membership columns do not fit this view, or show what no honest member
    /// can show: a refused row changes nothing, and every step that acts on rows later (commit,
    /// install, the next view) can rely on what is checked here instead of crashing.
    func checkMembershipColumns(_ row: Row, from: Int) throws(CoreError) {
        // Honest suspicions name members of this view only (they also count toward majorities).
        if marksRankOutsideView(row.suspected) {
            throw CoreError(.malformedRow, "row of member rank \(from): suspects a rank outside \(view.id)")
        }
        // Two calls, not a loop over [proposal, commit]: an array literal would allocate per row.
        try checkViewChange(row.proposal, of: row, from: from, "proposal")
        try checkViewChange(row.commit, of: row, from: from, "commit")
        guard row.trim.isEmpty || row.trim.count == senderCount else {
            throw CoreError(
                .malformedRow, "row of member rank \(from): trim of \(row.trim.count) senders, not \(senderCount)")
        }
        guard row.commit.number == 0 || row.trim.count == senderCount else {
            throw CoreError(.malformedRow, "row of member rank \(from): a commit without a trim")
        }
        guard row.installNumber == 0 || row.installNumber == row.commit.number else {
            throw CoreError(
                .malformedRow,
                "row of member rank \(from): installs \(row.installNumber) but commits \(row.commit.number)")
        }
        if row.commit.number != 0 && !row.commit.isRemoved(memberRank) { try checkTrim(row.trim, from: from) }
    }

    /// The trim of a commit that keeps this member. Per sender it is the least `received` over
    /// the survivors of a proposal (this member among them), read from copies of their rows; a
    /// member reports only what it holds, and its counters only grow, so an honest trim never
    /// exceeds what this member holds, whenever the row arrives (rows may overtake data, but not
    /// this member's own). And this member stopped sending when it wedged, before it
    /// acknowledged, at most a window beyond what every survivor's acknowledgement reported: its
    /// own messages beyond the trim fit one window (they are re-sent in the next view).
    private func checkTrim(_ trim: [UInt64], from: Int) throws(CoreError) {
        let received = rows[memberRank].received
        for sender in 0..<senderCount where trim[sender] > received[sender] {
            throw CoreError(
                .malformedRow,
                "row of member rank \(from): trim \(trim[sender]) of sender rank \(sender) beyond the "
                    + "\(received[sender]) held here")
        }
        if let own = senderRank, received[own] - trim[own] > UInt64(configuration.windowMessagesMax) {
            throw CoreError(
                .malformedRow,
                "row of member rank \(from): trim \(trim[own]) of this member's messages is more than "
                    + "windowMessagesMax \(configuration.windowMessagesMax) below the \(received[own]) it sent")
        }
    }

    /// Honest numbers are `round << 16 | leaderRank` with round 1 or more, a leader of this
    /// view, and room for a higher round.
    static let roundMax: UInt64 = (1 << 48) - 2

    private func checkViewChange(_ change: ViewChange, of row: Row, from: Int, _ name: String) throws(CoreError) {
        guard change.removed.count <= rows[memberRank].suspected.count else {
            throw CoreError(
                .malformedRow,
                "row of member rank \(from): \(name) with a removed bitmap of \(change.removed.count) words")
        }
        guard change.joiners.count <= configuration.membersMax - view.memberCount else {
            throw CoreError(
                .malformedRow,
                "row of member rank \(from): \(name) with \(change.joiners.count) joiners; \(view.memberCount) "
                    + "members and membersMax \(configuration.membersMax)")
        }
        guard change.number != 0 else { return }
        let round = change.number >> 16
        let leader = Int(change.number & 0xFFFF)
        guard round >= 1, round <= Self.roundMax, leader < view.memberCount else {
            throw CoreError(
                .malformedRow,
                "row of member rank \(from): \(name) number \(change.number) (round \(round), leader rank "
                    + "\(leader)) in a view of \(view.memberCount)")
        }
        // A leader removes what it suspects, and a member merges the suspicions of the row it
        // copies a proposal or commit from before copying it: honest rows suspect everyone
        // they remove. (So a commit that removes this member comes with a suspicion this member
        // adopts, and it never leads a commit that removes itself.)
        for (word, bits) in change.removed.enumerated() where bits & ~row.suspected[word] != 0 {
            throw CoreError(.malformedRow, "row of member rank \(from): \(name) removes members it does not suspect")
        }
        // A leader proposes only with a majority of the view left (partition safety).
        let survivors = view.memberCount - Self.count(change.removed)
        guard Self.isMajority(survivors: survivors, of: view.memberCount) else {
            throw CoreError(
                .malformedRow,
                "row of member rank \(from): \(name) keeps \(survivors) of \(view.memberCount) members, no majority")
        }
        for (position, joiner) in change.joiners.enumerated() {
            guard view.rank(of: joiner) == nil, !change.joiners[..<position].contains(joiner) else {
                throw CoreError(
                    .malformedRow,
                    "row of member rank \(from): \(name) joins \(joiner), already a member of \(view.id) or "
                        + "named twice")
            }
        }
    }

    /// Whether `bitmap` (by member rank) marks a rank outside this view.
    private func marksRankOutsideView(_ bitmap: [UInt64]) -> Bool {
        for (word, bits) in bitmap.enumerated() where bits != 0 && (word + 1) * 64 > view.memberCount {
            let ranksInWord = max(0, view.memberCount - word * 64)
            if bits >> UInt64(ranksInWord) != 0 { return true }
        }
        return false
    }

    /// Records the membership columns of `from`'s row and acts on those of the leader.
    mutating func applyMembershipColumns(_ row: Row, from: Int) {
        // The common case, outside view changes: nothing to record or act on.
        if row.proposal.number == 0 && row.commit.number == 0 && row.installNumber == 0 { return }
        if row.proposal.number > rows[from].proposal.number { rows[from].proposal = row.proposal }
        if row.commit.number > rows[from].commit.number {
            rows[from].commit = row.commit
            rows[from].trim = row.trim
        }
        if row.installNumber > rows[from].installNumber { rows[from].installNumber = row.installNumber }
        guard removedReason == nil else { return }
        var own = rows[memberRank]
        // An installed commit is final (every survivor of a majority held it): whoever shows it,
        // leader or not, this member may act on it. That is how a member that missed the
        // leader's install (a partition, a crashed leader) catches up from any survivor's last
        // row of the view.
        if row.installNumber != 0 && row.installNumber == row.commit.number {
            if row.commit.isRemoved(memberRank) {
                removedReason = "removed from \(view.id) (install shown by \(view.members[from]))"
                keptAfterRemoval = view.members.indices.first { !row.commit.isRemoved($0) }.map { view.members[$0] }
                return
            }
            if own.commit.number != row.commit.number || own.trim != row.trim {
                own.commit = row.commit
                own.trim = row.trim
            }
            own.installNumber = row.installNumber
            rows[memberRank] = own
            rowVersion &+= 1
            wedged = true
            return
        }
        guard from == leaderRank else { return }
        // Acknowledge: copy the leader's proposal (a higher number only: Paxos's promise).
        if row.proposal.number > own.proposal.number && !row.proposal.isRemoved(memberRank) {
            own.proposal = row.proposal
            wedged = true
        }
        // Copy the commit, unless this member has promised a higher-numbered proposal since.
        if row.commit.number > own.commit.number && row.commit.number >= own.proposal.number
            && !row.commit.isRemoved(memberRank)
        {
            own.commit = row.commit
            own.trim = row.trim
        }
        if own != rows[memberRank] {
            rows[memberRank] = own
            rowVersion &+= 1
        }
    }

    /// Runs at every poll of a wedged member (or a leader with joins to propose).
    mutating func membershipStep(into effects: inout [Effect]) {
        if let reason = removedReason {
            if !removedReported {
                removedReported = true
                effects.append(.removed(reason: reason))
            }
            return
        }
        guard configuration.viewChanges else { return }
        // An install this member took from any survivor's row (see applyMembershipColumns).
        if rows[memberRank].installNumber != 0 && rows[memberRank].installNumber == rows[memberRank].commit.number {
            install(into: &effects)
            return
        }
        guard let leader = leaderRank else { return }
        if leader != memberRank {
            // A member installs the commit it holds once the leader says every survivor holds it.
            let leaderRow = rows[leader]
            if leaderRow.installNumber != 0, leaderRow.installNumber == rows[memberRank].commit.number {
                install(into: &effects)
            }
            return
        }
        leaderStep(into: &effects)
    }

    /// The leader's part of a view change: propose, then commit once every survivor has
    /// acknowledged the proposal, then install once every survivor holds the commit.
    private mutating func leaderStep(into effects: inout [Effect]) {
        let suspected = rows[memberRank].suspected
        let survivorCount = view.memberCount - Self.count(suspected)
        guard Self.isMajority(survivors: survivorCount, of: view.memberCount) else {
            if !minorityReported {
                minorityReported = true
                effects.append(.minority(reachable: survivorCount, of: view.memberCount))
            }
            return
        }
        wedged = true
        let own = rows[memberRank]
        let committed = own.commit.number != 0
        let mine = own.proposal.number != 0 && Int(own.proposal.number & 0xFFFF) == memberRank
        if !mine || own.proposal.removed != suspected || (!committed && own.proposal.joiners != pendingJoiners) {
            return propose(removing: suspected)
        }
        let number = own.proposal.number
        let survivors = view.members.indices.filter { !rows[memberRank].isSuspected($0) }
        // Members acknowledge only a number above any they promised (Paxos), and copy a commit
        // only if they promised nothing higher since. A survivor whose row shows a higher number
        // (a predecessor's proposal this leader never saw: a one-way link failure hid it, or it
        // proposed before those rows arrived) would never acknowledge this proposal, nor copy its
        // commit: propose again, above every number any row shows. Only survivors must
        // acknowledge, so a higher number in a suspected member's row does not call for it (the
        // next proposal goes above those as well).
        if survivors.contains(where: { rows[$0].proposal.number > number || rows[$0].commit.number > number }) {
            return propose(removing: suspected)
        }
        guard survivors.allSatisfy({ rows[$0].proposal.number == number }) else { return }
        if own.commit.number != number { return commit(number, survivors: survivors, removing: suspected) }
        guard survivors.allSatisfy({ rows[$0].commit.number == number }) else { return }
        rows[memberRank].installNumber = number
        rowVersion &+= 1
        // The install must reach the old view's members before anything of the next view.
        effects.append(.sendRow(rows[memberRank]))
        statistics.rowsSent += 1
        install(into: &effects)
    }

    /// Proposes (again): the first time, or because suspicions or joins grew. The number is above
    /// every proposal and commit any row shows, with this member's rank in its low bits.
    private mutating func propose(removing suspected: [UInt64]) {
        var round: UInt64 = 0
        for row in rows { round = max(round, row.proposal.number >> 16, row.commit.number >> 16) }
        rows[memberRank].proposal = ViewChange(
            number: (round + 1) << 16 | UInt64(memberRank), removed: suspected, joiners: pendingJoiners)
        rowVersion &+= 1
        statistics.proposalsMade += 1
    }

    /// Commits proposal `number`: adopts the highest commit any survivor holds; only if there is
    /// none, trims afresh (per sender, the least any survivor received).
    private mutating func commit(_ number: UInt64, survivors: [Int], removing suspected: [UInt64]) {
        var own = rows[memberRank]
        let adopted = survivors.filter { rows[$0].commit.number != 0 }.max {
            rows[$0].commit.number < rows[$1].commit.number
        }
        if let adopted {
            let row = rows[adopted]
            own.commit = ViewChange(number: number, removed: row.commit.removed, joiners: row.commit.joiners)
            own.trim = row.trim
        } else {
            own.commit = ViewChange(number: number, removed: suspected, joiners: own.proposal.joiners)
            own.trim = (0..<senderCount).map { sender in survivors.map { rows[$0].received[sender] }.min() ?? 0 }
        }
        rows[memberRank] = own
        rowVersion &+= 1
        statistics.commitsMade += 1
    }

    /// Delivers to the committed trim, builds the next view and becomes its core.
    private mutating func install(into effects: inout [Effect]) {
        // This member's last row of the view says the commit is installed: a member that missed
        // the install can take it from here (the shell re-sends it to stragglers).
        rows[memberRank].installNumber = rows[memberRank].commit.number
        let own = rows[memberRank]
        let commit = own.commit
        precondition(
            own.trim.count == senderCount && !commit.isRemoved(memberRank),
            "installing without a commit that keeps this member: trim \(own.trim), \(senderCount) senders, "
                + "commit \(commit)"
        )
        if configuration.durable { effects.append(.raggedTrim(own.trim)) }
        if configuration.deliveryMode == .ordered { deliverToTrim(own, into: &effects) }
        let resend = ownMessagesBeyondTrim(own)
        let nextView = viewAfter(commit)
        guard let nextRank = nextView.rank(of: view.members[memberRank]) else {
            preconditionFailure("this member is not in the view it installs")
        }
        var next = nextCore(nextView, rank: nextRank, resending: resend)
        if configuration.deliveryMode == .unordered { carryUnorderedSkip(own, into: &next, nextView: nextView) }
        // Suspicions of members that stay carry over: they start the next view change at once.
        for rank in view.members.indices where rows[memberRank].isSuspected(rank) && !commit.isRemoved(rank) {
            if let carried = nextView.rank(of: view.members[rank]) { next.suspect(carried) }
        }
        // Joins accepted too late for this change wait for the next one, if this member leads it.
        if next.leaderRank == nextRank {
            next.pendingJoiners = pendingJoiners.filter { !commit.joiners.contains($0) }
        }
        next.previousViewRow = own
        for joiner in commit.joiners {
            if let rank = nextView.rank(of: joiner), rank != nextRank { next.joinersNotStarted.insert(rank) }
        }
        let removed = view.members.indices.filter { commit.isRemoved($0) }.map { view.members[$0] }
        next.formerMembers = Array((formerMembers + removed).suffix(formerMembersMax))
        self = next
        effects.append(.installView(nextView, memberRank: nextRank))
    }

    /// Ordered mode: delivers, in the total order, everything up to the committed trim.
    private mutating func deliverToTrim(_ own: Row, into effects: inout [Effect]) {
        let trim = own.trim
        var delivered = own.delivered
        var end: UInt64 = delivered
        for sender in 0..<senderCount where trim[sender] > 0 {
            end = max(end, (trim[sender] - 1) * senderCountWide + UInt64(sender) + 1)
        }
        while delivered < end {
            let sender = Int(delivered % senderCountWide)
            let index = delivered / senderCountWide
            if index < trim[sender] {
                precondition(
                    index < own.received[sender], "trim \(trim[sender]) of sender \(sender) beyond what is held here")
                if let payload = rings[sender].take(index) {
                    effects.append(deliver(payload, sender: sender, index: index, globalSequence: delivered))
                    statistics.messagesDelivered += 1
                }
            }
            delivered += 1
        }
    }

    /// Own messages beyond the trim were not delivered everywhere: they are sent again, first, in
    /// the next view. (Unordered mode: some members delivered some of them on receipt; they skip
    /// as many.)
    private mutating func ownMessagesBeyondTrim(_ own: Row) -> [Payload] {
        guard let sender = senderRank else { return [] }
        var resend: [Payload] = []
        var index = own.trim[sender]
        while index < own.received[sender] {
            if let payload = rings[sender].take(index) { resend.append(payload) }
            index += 1
        }
        return resend
    }

    /// The next view: survivors in their old order, then joiners. If no sender survives, every
    /// member of the next view sends (a view needs a sender).
    private func viewAfter(_ commit: ViewChange) -> View {
        let keptRanks = view.members.indices.filter { !commit.isRemoved($0) }
        let members = keptRanks.map { view.members[$0] } + commit.joiners
        var senders = view.senderMemberRanks.filter { !commit.isRemoved($0) }.map { view.members[$0] } + commit.joiners
        if senders.isEmpty { senders = members }
        do {
            return try View(id: ViewID(view.id.rawValue + 1), members: members, senders: senders)
        } catch {
            preconditionFailure("a committed view change made an invalid view: \(error)")
        }
    }

    /// The core of the next view, carrying this one's statistics and clock, with `resend` in its
    /// window first.
    private func nextCore(_ nextView: View, rank nextRank: Int, resending resend: [Payload]) -> OrderingCore {
        var next: OrderingCore
        do {
            next = try OrderingCore(configuration: configuration, view: nextView, memberRank: nextRank)
        } catch {
            preconditionFailure("could not build the core of \(nextView): \(error)")
        }
        next.statistics = statistics
        next.statistics.viewsInstalled += 1
        next.now = now
        next.clockStarted = clockStarted
        for rank in next.lastHeard.indices { next.lastHeard[rank] = now }
        for payload in resend { next.resend(payload) }
        next.statistics.messagesResent += UInt64(resend.count)
        return next
    }

    /// Unordered mode: per surviving sender, how many of its first messages in the next view
    /// this member skips. What it holds beyond the trim it delivered (or skipped) here, plus the
    /// skip of this view not used up yet: re-sends of the previous view still on their way (rows
    /// overtake data) come again in the next view, first.
    private func carryUnorderedSkip(_ own: Row, into next: inout OrderingCore, nextView: View) {
        next.unorderedSkip = Array(repeating: 0, count: next.senderCount)
        for (oldSender, rank) in view.senderMemberRanks.enumerated() where !own.commit.isRemoved(rank) {
            guard let nextRank = nextView.rank(of: view.members[rank]),
                let newSender = nextView.senderRank(ofMemberRank: nextRank)
            else { continue }
            let leftover = unorderedSkip.isEmpty ? 0 : unorderedSkip[oldSender]
            // poll delivers before it installs: everything received here was delivered (or skipped).
            precondition(
                unorderedDelivered[oldSender] == own.received[oldSender],
                "installing with \(own.received[oldSender]) received of sender \(oldSender) but only "
                    + "\(unorderedDelivered[oldSender]) delivered")
            next.unorderedSkip[newSender] = own.received[oldSender] - own.trim[oldSender] + leftover
        }
        next.resentAlreadyDelivered = next.unorderedSkip
    }
}
