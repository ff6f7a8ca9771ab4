// Scenarios told as stories, on the simulator running the real core. The names follow the
// message-flow diagrams of the Paxos article this project grew from (shared/seeds): in Lockstep
// every sender is a proposer whose place in the order is fixed in advance, every member is an
// acceptor (it must hold a message before it is stable) and a learner (it delivers).
// The first stories have no failure: a "failed" member is a paused one, and they show what the
// group does while it waits; the later ones crash, partition, join and leave. Stories name
// simulated processes by index; in the first view a process's index is also its member's rank.

import LockstepChecker
import LockstepCore
import LockstepSimulator
import Testing

@Suite("Scenarios")
struct ScenarioTests {
    private func group(
        members: Int, senders: [Int]? = nil, seed: UInt64 = 1, configure: (inout Configuration) -> Void = { _ in }
    ) throws -> SimulatedGroup {
        var configuration = Configuration()
        configure(&configuration)
        return try SimulatedGroup(memberCount: members, senderRanks: senders, configuration: configuration, seed: seed)
    }

    private func expectCorrect(_ group: SimulatedGroup, ordered: Bool = true, quiesced: Bool = true) {
        #expect(group.coreErrors.isEmpty, "\(group.coreErrors)")
        let violations = group.checker.check(totalOrder: ordered, quiesced: quiesced)
        #expect(violations.isEmpty, "\(violations)")
    }

    @Test("Multi-Paxos with a steady leader: one sender streams, every learner delivers everything in order")
    func steadyLeaderStreams() throws {
        let group = try group(members: 3, senders: [0]) { $0.windowMessagesMax = 16 }
        group.send(from: 0, count: 500)
        #expect(group.runUntilQuiet())
        for process in 0..<3 { #expect(group.deliveries(process).count == 500) }
        expectCorrect(group)
    }

    @Test(
        """
            An acceptor stops answering: nothing becomes stable without it, the senders stop at their window, and all \
            resumes when it returns
            """
    )
    func slowAcceptorHoldsStabilityNotSafety() throws {
        let group = try group(members: 3, senders: [0, 1]) { $0.windowMessagesMax = 8 }
        group.pause(2, for: .milliseconds(200))
        group.send(from: 0, count: 100)
        group.send(from: 1, count: 100)
        group.run(for: .milliseconds(150))
        // Member 2 holds nothing, so nothing is stable and nothing is delivered...
        for process in 0..<3 { #expect(group.deliveries(process).isEmpty) }
        // ...and memory stays bounded: each sender has stopped at its window.
        #expect(group.core(0).ownRow.received[0] == 8)
        #expect(group.backlog(0) == 92)
        #expect(group.runUntilQuiet())
        for process in 0..<3 { #expect(group.deliveries(process).count == 200) }
        expectCorrect(group)
    }

    @Test(
        """
            A redundant learner is slow: the others deliver what is stable once it catches up, and it catches up in \
            the same order
            """
    )
    func slowLearnerCatchesUp() throws {
        let group = try group(members: 4, senders: [0, 1, 2]) { $0.windowMessagesMax = 32 }
        group.send(from: 0, count: 50)
        group.send(from: 1, count: 50)
        group.send(from: 2, count: 50)
        group.pause(3, at: .milliseconds(3), for: .milliseconds(50))
        #expect(group.runUntilQuiet())
        for process in 0..<4 { #expect(group.deliveries(process).count == 150) }
        expectCorrect(group)
    }

    @Test("Dueling proposers: two senders burst at the same instant and get one order, with no round of conflict")
    func duelingSendersNeedNoArbitration() throws {
        let group = try group(members: 3, senders: [0, 1]) { $0.batchMessagesMax = 4 }
        group.send(from: 0, count: 40)
        group.send(from: 1, count: 40)
        #expect(group.runUntilQuiet())
        let order = group.deliveries(2).map(\.sender.rawValue)
        // Round-robin: member 1, then member 2, then member 1... (ids are rank + 1).
        #expect(order == (0..<80).map { UInt64($0 % 2 + 1) })
        expectCorrect(group)
    }

    @Test("An idle proposer never stalls the others: its places are filled with nulls")
    func idleSenderIsFilled() throws {
        let group = try group(members: 5)
        for process in 0..<4 { group.send(from: process, count: 60, at: .milliseconds(Int64(process))) }
        #expect(group.runUntilQuiet())
        for process in 0..<5 { #expect(group.deliveries(process).count == 240) }
        #expect(group.core(4).statistics.nullsCreated > 0)
        expectCorrect(group)
    }

    @Test(
        "A proposer pauses mid-stream: the order waits at its next place (until membership can remove it), then flows")
    func pausedSenderStallsTheOrderUntilItResumes() throws {
        let group = try group(members: 3) { $0.windowMessagesMax = 64 }
        group.send(from: 0, count: 30)
        group.send(from: 1, count: 30)
        group.pause(1, at: .milliseconds(1), for: .milliseconds(100))
        group.send(from: 0, count: 30, at: .milliseconds(20))
        group.run(for: .milliseconds(90))
        let deliveredDuringPause = group.deliveries(0).count
        #expect(deliveredDuringPause < 90, "the order cannot pass the paused sender's places")
        #expect(group.runUntilQuiet())
        for process in 0..<3 { #expect(group.deliveries(process).count == 90) }
        expectCorrect(group)
    }

    @Test("Links with very different delays: the order is the same everywhere")
    func skewedLinks() throws {
        let group = try group(members: 4, seed: 9)
        group.setLinkDelay(from: 0, to: 3, .milliseconds(30))
        group.setLinkDelay(from: 2, to: 1, .microseconds(1))
        for process in 0..<4 { group.send(from: process, count: 100) }
        #expect(group.runUntilQuiet())
        expectCorrect(group)
    }

    @Test("Unordered mode: each learner delivers on receipt; per-sender FIFO still holds")
    func unorderedScenario() throws {
        let group = try group(members: 3) {
            $0.deliveryMode = .unordered; $0.windowMessagesMax = 4
        }
        for process in 0..<3 { group.send(from: process, count: 100) }
        group.pause(1, at: .milliseconds(2), for: .milliseconds(40))
        #expect(group.runUntilQuiet())
        for process in 0..<3 { #expect(group.deliveries(process).count == 300) }
        expectCorrect(group, ordered: false)
    }

    @Test("A burst far beyond the window never puts more than the window in flight")
    func windowHoldsUnderBursts() throws {
        let window = 5
        let group = try group(members: 3) { $0.windowMessagesMax = window }
        for process in 0..<3 { group.send(from: process, count: 200) }
        for _ in 0..<2_000 {
            group.run(for: .microseconds(200))
            // Each sender: own index at most `window` beyond the group's delivered minimum.
            for rank in 0..<3 {
                let core = group.core(rank)
                let minimumDelivered = (0..<3).map { core.row(ofMemberRank: $0).delivered }.min() ?? 0
                let ownDelivered = minimumDelivered > UInt64(rank) ? (minimumDelivered - UInt64(rank) - 1) / 3 + 1 : 0
                #expect(core.ownRow.received[rank] <= ownDelivered + UInt64(window))
            }
        }
        #expect(group.runUntilQuiet())
        expectCorrect(group)
    }

    // Failures proper: suspicion, wedging, the view change (proposal, acknowledgements, commit
    // with the ragged trim, install, re-send), partition safety, joins and leaves.

    /// Runs to quiescence and checks everything, views and virtual synchrony included.
    private func expectRecovered(_ group: SimulatedGroup, ordered: Bool = true, file: StaticString = #filePath) {
        #expect(group.runUntilQuiet(limit: .seconds(60)), "the group recovers and quiesces")
        expectCorrect(group, ordered: ordered)
        let views = Set(group.activeProcesses.map { group.core($0).view.id })
        #expect(views.count == 1, "every live member ends in one view: \(views)")
        for process in group.activeProcesses { #expect(!group.core(process).isWedged) }
    }

    @Test(
        """
            An acceptor fails mid-stream: the survivors suspect it, agree on the ragged trim, install a view without \
            it, re-send what was cut, and deliver everything they sent
            """
    )
    func acceptorCrashes() throws {
        let group = try group(members: 3) { $0.windowMessagesMax = 8 }
        for process in 0..<3 { group.send(from: process, count: 100) }
        group.crash(2, at: .milliseconds(3))
        group.run(for: .milliseconds(400))
        #expect(group.wedgedAt(0) == nil, "not suspected before failureTimeout")
        expectRecovered(group)
        #expect(group.crashedProcesses == [2])
        for process in 0..<2 {
            let views = group.installedViews(process)
            #expect(views.map(\.viewID) == [1, 2])
            #expect(views.last?.members == [MemberID(1), MemberID(2)])
            // Everything the survivors sent arrived, at both, in one order (checked above).
            let counts = group.appState(process).counts
            #expect(counts[MemberID(1)] == 100 && counts[MemberID(2)] == 100)
            #expect(group.sentAfterWedging(process) == 0)
        }
        #expect(group.deliveries(0) == group.deliveries(1))
        // The crashed member delivered a prefix of what the survivors delivered in v1.
        let crashed = group.deliveries(2)
        #expect(Array(group.deliveries(0).filter { $0.viewID == 1 }.prefix(crashed.count)) == crashed)
    }

    @Test("A redundant learner fails: the senders lose no message and the view shrinks around it")
    func learnerCrashes() throws {
        let group = try group(members: 4, senders: [0, 1]) { $0.windowMessagesMax = 16 }
        group.send(from: 0, count: 200)
        group.send(from: 1, count: 200)
        group.crash(3, at: .milliseconds(20))
        expectRecovered(group)
        for process in 0..<3 { #expect(group.appState(process).counts.values.reduce(0, +) == 400) }
        #expect(group.core(0).view.members == [MemberID(1), MemberID(2), MemberID(3)])
    }

    @Test(
        """
            The leader fails during a broadcast: the next-ranked member leads the view change and the leader's cut-off\
             messages are simply gone
            """
    )
    func leaderFailsDuringBroadcast() throws {
        let group = try group(members: 5) { $0.windowMessagesMax = 32 }
        for process in 0..<5 { group.send(from: process, count: 150) }
        group.crash(0, at: .milliseconds(30))
        expectRecovered(group)
        for process in 1..<5 {
            #expect(group.core(process).view.members.first == MemberID(2), "rank 1 of v1 is the new first member")
            for sender in 2...5 { #expect(group.appState(process).counts[MemberID(UInt64(sender))] == 150) }
        }
        #expect(group.core(1).statistics.proposalsMade >= 1, "the next-ranked member proposed")
    }

    @Test(
        """
            Dueling leaders after a recovery: a paused leader comes back believing it leads; it learns it was removed,\
             and rejoins as a new incarnation
            """
    )
    func duelingLeadersAfterRecovery() throws {
        let group = try group(members: 3) { $0.windowMessagesMax = 16 }
        for process in 0..<3 { group.send(from: process, count: 60) }
        group.pause(0, at: .milliseconds(10), for: .milliseconds(900))
        group.run(for: .seconds(2))
        #expect(group.status(0) == .removed, "the old leader learns it is out: \(group.status(0))")
        #expect(group.core(1).view.members == [MemberID(2), MemberID(3)])
        group.restart(0)
        expectRecovered(group)
        #expect(group.core(0).view.members == [MemberID(2), MemberID(3), MemberID(4)])
        #expect(group.memberID(0) == MemberID(4))
    }

    @Test(
        """
            The leader fails in the middle of a view change: its successor adopts whatever it committed, and every \
            survivor installs the same view
            """
    )
    func leaderFailsDuringViewChange() throws {
        for seed: UInt64 in 1...8 {
            let group = try group(members: 5, seed: seed) { $0.windowMessagesMax = 16 }
            for process in 0..<5 { group.send(from: process, count: 80) }
            group.crash(4, at: .milliseconds(5))
            // The leader proposes about failureTimeout after the crash; it dies while the change
            // is under way (a different moment for each seed).
            group.crash(0, at: .milliseconds(505 + Int64(seed) * 25))
            // Long enough for the failed leader to be detected in whichever view it died.
            group.run(for: .seconds(3))
            expectRecovered(group)
            for process in 1..<4 {
                #expect(group.core(process).view.members == [MemberID(2), MemberID(3), MemberID(4)])
            }
        }
    }

    @Test("Cascading failures: three of seven members fail one after another, each during the previous view change")
    func cascadingFailures() throws {
        let group = try group(members: 7, seed: 3) { $0.windowMessagesMax = 16 }
        for process in 0..<7 { group.send(from: process, count: 100) }
        group.crash(6, at: .milliseconds(10))
        group.crash(3, at: .milliseconds(520))
        group.crash(1, at: .milliseconds(1_030))
        expectRecovered(group)
        #expect(group.core(0).view.members == [1, 3, 5, 6].map { MemberID(UInt64($0)) })
        #expect(group.core(0).view.id.rawValue >= 2)
    }

    @Test(
        """
            A partition: the majority side installs a view and goes on; the minority side stays wedged and says why; \
            after the heal it rejoins
            """
    )
    func partitionThatHeals() throws {
        let group = try group(members: 5, seed: 4) { $0.windowMessagesMax = 16 }
        for process in 0..<5 { group.send(from: process, count: 80) }
        group.partition([0, 1], at: .milliseconds(2))
        group.send(from: 3, count: 50, at: .seconds(2))
        group.run(for: .seconds(3))
        #expect(group.core(2).view.members == [MemberID(3), MemberID(4), MemberID(5)])
        #expect(group.appState(2).counts[MemberID(4)] == 130, "the majority delivers new messages")
        for process in 0..<2 {
            #expect(group.core(process).view.id == ViewID(1), "the minority never forms a view")
            #expect(group.core(process).isWedged)
        }
        #expect(group.reportedMinority(0), "the minority's leader reports that it is in a minority")
        #expect(group.messagesLost > 0)
        group.healLinks()
        group.recoverStragglers(at: .seconds(4))
        expectRecovered(group)
        #expect(group.core(0).view.memberCount == 5)
    }

    @Test("A join during heavy traffic: the joiner receives a snapshot, then delivers exactly what follows it")
    func joinUnderLoad() throws {
        var configuration = Configuration()
        configuration.windowMessagesMax = 64
        let group = try SimulatedGroup(memberCount: 3, configuration: configuration, seed: 7, spareProcesses: 1)
        for process in 0..<3 { group.send(from: process, count: 2_000) }
        group.join(3, at: .milliseconds(20))
        group.send(from: 3, count: 100, at: .milliseconds(400))
        expectRecovered(group)
        let joined = group.installedViews(3)
        #expect(joined.first?.viewID == 2 && joined.first?.members.count == 4)
        #expect(group.deliveries(3).count > 0 && group.deliveries(3).count < group.deliveries(0).count)
        // The snapshot plus what it delivered is everything: its state equals the others'.
        #expect(group.appState(3) == group.appState(0))
        #expect(group.appState(0).counts[group.memberID(3)] == 100)
    }

    @Test("A graceful leave: the member proposes its own removal and the others go on without it")
    func gracefulLeave() throws {
        let group = try group(members: 4) { $0.windowMessagesMax = 16 }
        for process in 0..<4 { group.send(from: process, count: 50) }
        group.leave(2, at: .milliseconds(30))
        expectRecovered(group)
        #expect(group.status(2) == .removed)
        #expect(group.core(0).view.members == [MemberID(1), MemberID(2), MemberID(4)])
        // A leave is quicker than a failure: nobody waits for a timeout.
        #expect(group.core(0).statistics.viewsInstalled == 1)
    }
}
