// Regression tests for view-change bugs found by reading the core: each replays the schedule
// that broke it, by hand, through DirectGroup, and fails without its fix.

import LockstepCore
import Testing

@Suite("Membership regressions")
struct MembershipRegressionTests {
    typealias Link = DirectGroup.Link

    /// Every link from and to `rank`: a member that is dead (or crashed) for the test.
    private func links(of rank: Int, in group: DirectGroup) -> Set<Link> {
        var links: Set<Link> = []
        for other in group.cores.indices where other != rank {
            links.insert(Link(from: rank, to: other))
            links.insert(Link(from: other, to: rank))
        }
        return links
    }

    /// What member `rank` delivered of member `sender`'s messages, as first bytes.
    private func delivered(_ group: DirectGroup, _ rank: Int, from sender: MemberID) -> [[UInt8]] {
        group.deliveries[rank].filter { $0.sender == sender }.map { Array($0.payload) }
    }

    // MARK: - Unordered delivery across a view change

    @Test(
        """
            Unordered mode: a member that reads a message and the install of the next view before one poll \
            delivers the message once, in the old view, and loses nothing across the view change
            """
    )
    func unorderedMessageReadWithTheInstallIsDelivered() throws {
        let group = try DirectGroup(memberCount: 4) { $0.deliveryMode = .unordered }
        let dead = links(of: 3, in: group)  // m4 is dead from the start
        // m2 sends A0, which m1 and m3 receive; then A1, while its link to m3 is slow.
        try group.send(1, [0xA0])
        group.poll(1)
        try group.flush(from: 1, to: 0)
        try group.flush(from: 1, to: 2)
        try group.send(1, [0xA1])
        group.poll(1)
        try group.flush(from: 1, to: 0)
        // m1 (the leader) finds m4 dead: proposal and acknowledgements, then commit and copies. m3
        // acknowledges received = 1 of m2's, so the trim of m2's messages is 1.
        try group.cores[0].handle(.linkFailed(memberRank: 3))
        group.poll(0)
        for _ in 0..<2 {
            try group.flush(from: 0, to: 1)
            try group.flush(from: 0, to: 2)
            try group.flush(from: 1, to: 0)
            try group.flush(from: 2, to: 0)
        }
        #expect(group.cores[0].view.id == ViewID(8), "m1 installed the next view")
        #expect(group.cores[2].ownRow.trim == [0, 1, 0, 0])
        // m3 now reads A1 and m1's install row in one batch, then polls once.
        guard case .data(let a1) = group.queues[1][2].removeFirst(), a1.firstIndex == 1 else {
            Issue.record("m2's link to m3 should start with A1")
            return
        }
        guard case .row(let install) = group.queues[0][2].removeFirst(), install.installNumber != 0 else {
            Issue.record("m1's link to m3 should start with its install row")
            return
        }
        try group.cores[2].handle(.received(.data(a1), fromMemberRank: 1))
        try group.cores[2].handle(.received(.row(install), fromMemberRank: 0))
        group.poll(2)
        #expect(group.cores[2].view.id == ViewID(8))
        #expect(group.deliveries[2].first { $0.payload == [0xA1] }?.viewID == ViewID(7), "A1 delivered in v7")
        // The rest of the view change, then A2 in the next view.
        try group.settle(holding: dead)
        try group.send(1, [0xA2])
        try group.settle(holding: dead)
        for rank in 0..<3 {
            #expect(group.cores[rank].view.id == ViewID(8))
            #expect(
                delivered(group, rank, from: MemberID(2)) == [[0xA0], [0xA1], [0xA2]],
                "m\(rank + 1): each of m2's messages exactly once, in order")
        }
    }

    // MARK: - A view change that never finished

    @Test(
        """
            A new leader whose first proposal is below one the survivors promised to a crashed leader (a one-way \
            link failure hid it) proposes again, above it, and the survivors install the next view without the \
            crashed leader and without the joiners it proposed but never committed
            """
    )
    func leaderProposesAboveWhatTheSurvivorsPromised() throws {
        let group = try DirectGroup(memberCount: 4)
        // m1's link to m2 fails one way: what m1 sends m2 is lost. m1 accepts three joins in quick
        // succession and proposes rounds 1 to 3, which m3 and m4 acknowledge.
        for (round, joiner) in [11, 12, 13].enumerated() {
            #expect(group.cores[0].requestJoin(MemberID(UInt64(joiner))) == .accepted)
            group.poll(0)
            #expect(group.cores[0].ownRow.proposal.number == UInt64(round + 1) << 16)
            group.queues[0][1] = []
            try group.flush(from: 0, to: 2)
            try group.flush(from: 0, to: 3)
        }
        #expect(group.cores[2].ownRow.proposal.number == 3 << 16)
        #expect(group.cores[3].ownRow.proposal.number == 3 << 16)
        // m1 crashes. m2 suspects it and proposes before the rows of m3 and m4 reach it: 1.1, below
        // the 3.0 they promised.
        try group.cores[1].handle(.linkFailed(memberRank: 0))
        group.poll(1)
        #expect(group.cores[1].ownRow.proposal.number == 1 << 16 | 1)
        try group.settle(holding: links(of: 0, in: group))
        // The joiners go: m1, whose shell would have welcomed them with a snapshot, is gone, and
        // no survivor accepted them; an uncommitted proposal decides nothing. They ask again.
        for rank in 1...3 {
            #expect(group.cores[rank].view.id == ViewID(8), "m\(rank + 1) installed the next view")
            #expect(group.cores[rank].view.members == [MemberID(2), MemberID(3), MemberID(4)])
            let wedged = group.cores[rank].isWedged
            #expect(!wedged)
        }
        #expect(group.cores[1].ownRow.proposal.number == 0, "a fresh view")
        // And the new view works.
        try group.send(1, [7])
        try group.settle(holding: links(of: 0, in: group))
        for rank in 1...3 { #expect(group.delivered(rank) == [[7]]) }
    }

    // MARK: - Hostile rows

    /// Rows no honest member sends, each refused with `.malformedRow` instead of a crash.
    enum HostileRow: String, CaseIterable, CustomTestStringConvertible {
        case trimBeyondWhatIsHeld = "a commit's trim beyond what the receiver holds"
        case trimTooFarBelowOwnMessages = "a commit's trim more than a window below the receiver's own messages"
        case joinerNamedTwice = "a commit that joins the same id twice"
        case joinerAlreadyAMember = "a commit that joins a member of the view"
        case proposalJoinerAlreadyAMember = "a proposal that joins a member of the view"
        case joinersBeyondMembersMax = "a commit whose joiners make the view larger than membersMax"
        case commitRemovesEveryone = "a commit that removes every member"
        case commitLeavesNoMajority = "a commit that keeps a minority of the view"
        case commitRemovesUnsuspected = "a commit that removes a member its row does not suspect"
        case proposalLeaderOutsideView = "a proposal whose number names a leader rank outside the view"
        case commitLeaderOutsideView = "a commit whose number names a leader rank outside the view"
        case proposalRoundZero = "a proposal number of round 0"
        case proposalRoundWithoutRoomAbove = "a proposal of the highest round, which no proposal can pass"
        case suspicionOutsideView = "a suspicion of a rank outside the view"

        var testDescription: String { rawValue }

        /// Turns the honest `row` (of member rank 1, in a view of 3 where member rank 0, which
        /// holds `held`, receives it) into this hostile one.
        func apply(to row: inout Row, held: Row) {
            Self.makeHonestCommit(&row, held: held)
            switch self {
            case .trimBeyondWhatIsHeld: row.trim[1] += 1
            case .trimTooFarBelowOwnMessages: row.trim[0] = 0
            case .joinerNamedTwice: row.commit.joiners = [MemberID(9), MemberID(9)]
            case .joinerAlreadyAMember: row.commit.joiners = [MemberID(2)]
            case .proposalJoinerAlreadyAMember: row.proposal.joiners = [MemberID(1)]
            case .joinersBeyondMembersMax: row.commit.joiners = [MemberID(9), MemberID(10), MemberID(11)]
            case .commitRemovesEveryone:
                row.suspected = [0b111]
                row.commit.removed = [0b111]
            case .commitLeavesNoMajority:
                row.suspected = [0b110]
                row.commit.removed = [0b110]
            case .commitRemovesUnsuspected: row.suspected = [0]
            case .proposalLeaderOutsideView: row.proposal.number = 4 << 16 | 3
            case .commitLeaderOutsideView: row.commit.number = 1 << 16 | 70
            case .proposalRoundZero: row.proposal.number = 1
            case .proposalRoundWithoutRoomAbove: row.proposal.number = UInt64.max << 16 | 1
            case .suspicionOutsideView: row.suspected = [1 << 2 | 1 << 5]
            }
        }

        /// What every hostile row starts from: the row of a member that acknowledged and copied
        /// the commit of leader rank 1 removing member rank 2, trimmed at what the receiver holds.
        static func makeHonestCommit(_ row: inout Row, held: Row) {
            let removingLast = ViewChange(number: 1 << 16 | 1, removed: [1 << 2], joiners: [])
            row.suspected = [1 << 2]
            row.proposal = removingLast
            row.commit = removingLast
            row.trim = held.received
        }
    }

    /// Three members, a window of 4 and membersMax 5; member rank 0 sent 6 messages, delivered.
    private func warmGroup() throws -> DirectGroup {
        let group = try DirectGroup(memberCount: 3) {
            $0.windowMessagesMax = 4
            $0.membersMax = 5
        }
        try group.send(0, count: 4)
        try group.settle()
        try group.send(0, count: 2, first: 4)
        try group.settle()
        #expect(group.deliveries.allSatisfy { $0.count == 6 })
        return group
    }

    @Test("The honest row each hostile row is made from is accepted: the checks refuse only what they should")
    func honestCounterpartIsAccepted() throws {
        let group = try warmGroup()
        var row = group.cores[1].ownRow
        HostileRow.makeHonestCommit(&row, held: group.cores[0].ownRow)
        try group.cores[0].handle(.received(.row(row), fromMemberRank: 1))
        #expect(group.cores[0].suspectedRanks == [2])
        #expect(group.cores[0].row(ofMemberRank: 1).commit == row.commit)
    }

    @Test(
        "A hostile row is refused with a typed error, changes nothing, and the member keeps working",
        arguments: HostileRow.allCases)
    func hostileRowIsRefused(_ hostile: HostileRow) throws {
        let group = try warmGroup()
        var row = group.cores[1].ownRow
        hostile.apply(to: &row, held: group.cores[0].ownRow)
        var before = group.cores[0]
        do {
            try group.cores[0].handle(.received(.row(row), fromMemberRank: 1))
            Issue.record("\(hostile.rawValue) was accepted")
        } catch {
            #expect(error.code == .malformedRow, "\(error)")
            #expect(error.isProtocolViolation)
        }
        // Nothing changed: the same rows, and the same poll as a copy taken before.
        for rank in 0..<3 { #expect(group.cores[0].row(ofMemberRank: rank) == before.row(ofMemberRank: rank)) }
        let wedged = group.cores[0].isWedged
        #expect(!wedged)
        #expect(group.poll(0) == before.poll())
        // The member keeps working.
        try group.send(0, [42])
        try group.settle()
        for rank in 0..<3 { #expect(group.delivered(rank).last == [42]) }
    }

    @Test("A row that only looks hostile is accepted: a commit that removes the receiver needs no trim it holds")
    func commitRemovingTheReceiverIsNotCheckedAgainstItsHoldings() throws {
        let group = try DirectGroup(memberCount: 3)
        var row = group.cores[1].ownRow
        row.suspected = [1 << 0]
        row.commit = ViewChange(number: 1 << 16 | 1, removed: [1 << 0], joiners: [])
        row.trim = [5, 5, 5]
        try group.cores[0].handle(.received(.row(row), fromMemberRank: 1))
        #expect(group.cores[0].suspectedRanks == [0])
    }

    // MARK: - Joins

    /// Three members; m3 is removed (m1 lost its link), and m1 and m2 install v8.
    private func groupWithoutTheThird() throws -> DirectGroup {
        let group = try DirectGroup(memberCount: 3)
        try group.cores[0].handle(.linkFailed(memberRank: 2))
        try group.settle(holding: links(of: 2, in: group))
        #expect(group.cores[0].view.members == [MemberID(1), MemberID(2)])
        return group
    }

    @Test("A join with the id of a member of an earlier view is refused: a restarted process joins with a new id")
    func formerMemberIDIsRefused() throws {
        let group = try groupWithoutTheThird()
        guard case .refused(let reason) = group.cores[0].requestJoin(MemberID(3)) else {
            Issue.record("m3's id was accepted again")
            return
        }
        #expect(reason.contains("a restarted process joins with a new id"), "\(reason)")
        #expect(group.cores[0].requestJoin(MemberID(9)) == .accepted)
        #expect(group.cores[1].requestJoin(MemberID(3)) != .redirect(leader: MemberID(1)), "every member refuses")
    }

    @Test("A leader that reaches no majority refuses a join: it cannot form the view the joiner would wait for")
    func leaderInAMinorityRefusesJoins() throws {
        let group = try DirectGroup(memberCount: 3)
        try group.cores[0].handle(.linkFailed(memberRank: 1))
        try group.cores[0].handle(.linkFailed(memberRank: 2))
        guard case .refused(let reason) = group.cores[0].requestJoin(MemberID(9)) else {
            Issue.record("a leader in a minority accepted a join")
            return
        }
        #expect(reason.contains("no majority"), "\(reason)")
        #expect(group.cores[0].pendingJoinerCount == 0)
    }

    @Test("A removed member sends a joiner to a member that stayed: the lowest-ranked one the install kept")
    func removedMemberRedirectsJoins() throws {
        let group = try groupWithoutTheThird()
        try group.flush(from: 0, to: 2)
        #expect(group.cores[2].isRemoved)
        #expect(group.cores[2].requestJoin(MemberID(9)) == .redirect(leader: MemberID(1)))
    }
}
