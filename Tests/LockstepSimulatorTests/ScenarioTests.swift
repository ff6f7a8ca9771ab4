// Scenarios told as stories, on the simulator running the real core. The names follow the
// message-flow diagrams of the Paxos article this project grew from (shared/seeds): in Lockstep
// every sender is a proposer whose place in the order is fixed in advance, every member is an
// acceptor (it must hold a message before it is stable) and a learner (it delivers).
// Failures proper (crashes, view changes) arrive with membership; until then a "failed" member
// is a paused one, and the stories show what the group does while it waits.

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
        for rank in 0..<3 { #expect(group.deliveries(rank).count == 500) }
        expectCorrect(group)
    }

    @Test("An acceptor stops answering: nothing becomes stable without it, the senders stop at their window, and all resumes when it returns")
    func slowAcceptorHoldsStabilityNotSafety() throws {
        let group = try group(members: 3, senders: [0, 1]) { $0.windowMessagesMax = 8 }
        group.pause(2, for: .milliseconds(200))
        group.send(from: 0, count: 100)
        group.send(from: 1, count: 100)
        group.run(for: .milliseconds(150))
        // Member 2 holds nothing, so nothing is stable and nothing is delivered...
        for rank in 0..<3 { #expect(group.deliveries(rank).isEmpty) }
        // ...and memory stays bounded: each sender has stopped at its window.
        #expect(group.core(0).ownRow.received[0] == 8)
        #expect(group.backlog(0) == 92)
        #expect(group.runUntilQuiet())
        for rank in 0..<3 { #expect(group.deliveries(rank).count == 200) }
        expectCorrect(group)
    }

    @Test("A redundant learner is slow: the others deliver what is stable once it catches up, and it catches up in the same order")
    func slowLearnerCatchesUp() throws {
        let group = try group(members: 4, senders: [0, 1, 2]) { $0.windowMessagesMax = 32 }
        group.send(from: 0, count: 50)
        group.send(from: 1, count: 50)
        group.send(from: 2, count: 50)
        group.pause(3, at: .milliseconds(3), for: .milliseconds(50))
        #expect(group.runUntilQuiet())
        for rank in 0..<4 { #expect(group.deliveries(rank).count == 150) }
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
        for rank in 0..<4 { group.send(from: rank, count: 60, at: .milliseconds(Int64(rank))) }
        #expect(group.runUntilQuiet())
        for rank in 0..<5 { #expect(group.deliveries(rank).count == 240) }
        #expect(group.core(4).statistics.nullsCreated > 0)
        expectCorrect(group)
    }

    @Test("A proposer pauses mid-stream: the order waits at its next place (until membership can remove it), then flows")
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
        for rank in 0..<3 { #expect(group.deliveries(rank).count == 90) }
        expectCorrect(group)
    }

    @Test("Links with very different delays: the order is the same everywhere")
    func skewedLinks() throws {
        let group = try group(members: 4, seed: 9)
        group.setLinkDelay(from: 0, to: 3, .milliseconds(30))
        group.setLinkDelay(from: 2, to: 1, .microseconds(1))
        for rank in 0..<4 { group.send(from: rank, count: 100) }
        #expect(group.runUntilQuiet())
        expectCorrect(group)
    }

    @Test("Unordered mode: each learner delivers on receipt; per-sender FIFO still holds")
    func unorderedScenario() throws {
        let group = try group(members: 3) { $0.deliveryMode = .unordered; $0.windowMessagesMax = 4 }
        for rank in 0..<3 { group.send(from: rank, count: 100) }
        group.pause(1, at: .milliseconds(2), for: .milliseconds(40))
        #expect(group.runUntilQuiet())
        for rank in 0..<3 { #expect(group.deliveries(rank).count == 300) }
        expectCorrect(group, ordered: false)
    }

    @Test("A burst far beyond the window never puts more than the window in flight")
    func windowHoldsUnderBursts() throws {
        let window = 5
        let group = try group(members: 3) { $0.windowMessagesMax = window }
        for rank in 0..<3 { group.send(from: rank, count: 200) }
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

    // Failures proper. Membership changes are not built yet, so these stories end with the group
    // waiting; what they show is safety: nobody delivers what the others cannot.

    @Test("An acceptor crashes mid-stream: the others deliver exactly what it had acknowledged, in one order, then wait")
    func acceptorCrashes() throws {
        let group = try group(members: 3) { $0.windowMessagesMax = 8 }
        for rank in 0..<3 { group.send(from: rank, count: 100) }
        group.crash(2, at: .milliseconds(3))
        group.run(for: .seconds(2))
        #expect(group.crashedRanks == [2])
        let survivors = [group.deliveries(0), group.deliveries(1)]
        #expect(survivors[0] == survivors[1], "the survivors agree on what is stable")
        #expect(survivors[0].count < 300, "without a view change the order cannot pass the crashed member's places")
        #expect(group.deliveries(2).count <= survivors[0].count)
        // Failure detection: both survivors suspect member 2 and wedge within failureTimeout
        // (500 ms) plus two heartbeat intervals (the core hears time only from ticks, which come
        // once a heartbeat) and the link delays, and send nothing new after that.
        for rank in 0..<2 {
            let wedgedAt = try #require(group.wedgedAt(rank))
            #expect(wedgedAt > 3_000_000 + 500_000_000 - 100_000_000, "not before the timeout")
            #expect(wedgedAt < 3_000_000 + 500_000_000 + 2 * 100_000_000 + 20_000_000)
            #expect(group.sentAfterWedging(rank) == 0)
            #expect(group.core(rank).suspectedRanks == [2])
        }
        expectCorrect(group, quiesced: false)
    }

    @Test("A partition splits the group: neither side delivers past what both sides held")
    func partitionStopsBothSides() throws {
        let group = try group(members: 5, seed: 4) { $0.windowMessagesMax = 16 }
        for rank in 0..<5 { group.send(from: rank, count: 80) }
        group.partition([0, 1], at: .milliseconds(2))
        group.run(for: .seconds(2))
        let logs = (0..<5).map { group.deliveries($0) }
        let shortest = logs.map(\.count).min() ?? 0
        for log in logs { #expect(Array(log.prefix(shortest)) == Array(logs[0].prefix(shortest))) }
        #expect(group.messagesLost > 0)
        expectCorrect(group, quiesced: false)
    }
}
