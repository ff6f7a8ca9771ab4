// LocalGroup: the user's machine on simulated members, with faults and the check at the end.
// Each test would fail if LocalGroup lost, reordered, duplicated or diverged what it applies, or
// if its errors and its check said nothing.

import Lockstep
import LockstepCore
import LockstepTesting
import Testing

@Suite("LocalGroup")
struct LocalGroupTests {
    @Test("Submits and linearizable reads on three members: every member applies each command at one position")
    func submitAndRead() throws {
        let group = try LocalGroup(members: 3, initialState: Counter(), seed: 7)
        let first = try group.submit(5, at: 0)
        #expect(first.response == 5 && first.position == 1)
        try group.enqueue(1, at: 1)
        let second = try group.submit(10, at: 2)
        #expect(second.position == 3 && second.response == 16, "the enqueued 1 came before: \(second)")
        for member in 0..<3 { #expect(try group.state(.linearizable, at: member).total == 16) }
        try group.check()
        for member in 0..<3 { #expect(group.position(at: member) == 3) }
    }

    @Test("A member is killed: the survivors install a view without it, go on submitting, and the check passes")
    func killThenSubmit() throws {
        let group = try LocalGroup(members: 3, initialState: Counter(), seed: 3)
        try group.submit(1, at: 0)
        group.kill(1)
        #expect(throws: LocalGroupError.self) { try group.submit(1, at: 1) }
        for amount in 1...5 { try group.submit(amount, at: amount % 2 == 0 ? 0 : 2) }
        #expect(group.view(at: 0)?.members == [MemberID(1), MemberID(3)])
        #expect(try group.state(.linearizable, at: 2).total == 16)
        try group.check()
    }

    @Test(
        """
            A partition: the minority side's submit fails with a minority error, the majority goes on; after the heal \
            the minority rejoins with a snapshot and every member agrees
            """
    )
    func partitionThenHeal() throws {
        let group = try LocalGroup(members: 3, initialState: Counter(), seed: 4)
        try group.submit(1, at: 0)
        group.partition([0], from: [1, 2])
        do {
            try group.submit(100, at: 0)
            Issue.record("a submit in a minority returned")
        } catch {
            #expect(error.code == .minority, "\(error)")
            #expect(error.message.contains("minority"))
        }
        try group.submit(2, at: 1)
        try group.submit(3, at: 2)
        #expect(group.view(at: 1)?.members == [MemberID(2), MemberID(3)])
        group.heal()
        group.run(for: .seconds(3))
        try group.check()
        #expect(group.memberID(0) != MemberID(1), "member 0 came back as a new incarnation")
        // The minority's submit never went through the order: 1 + 2 + 3 only.
        for member in 0..<3 { #expect(try group.state(.local, at: member).total == 6) }
    }

    @Test("A joiner starts from its welcoming member's snapshot and then applies what follows")
    func joinWithSnapshot() throws {
        let group = try LocalGroup(members: 3, initialState: Counter(), seed: 11)
        for amount in 1...20 { try group.enqueue(amount, at: amount % 3) }
        try group.submit(1, at: 0)
        let joiner = try group.join()
        #expect(joiner == 3)
        let read = try group.state(.linearizable, at: joiner)
        #expect(read.total == 211)
        // The snapshot's position header came across: positions continue, not restart at 1.
        let next = try group.submit(4, at: joiner)
        #expect(next.position == 22 && next.response == 215)
        try group.check()
        #expect(try group.state(.local, at: joiner) == group.state(.local, at: 0))
        #expect(group.view(at: joiner)?.members.count == 4)
    }

    @Test("The same seed and the same calls give the same run")
    func determinism() throws {
        func run(seed: UInt64) throws -> [String] {
            let group = try LocalGroup(members: 4, initialState: Counter(), seed: seed)
            for amount in 1...30 { try group.enqueue(amount, at: amount % 4) }
            group.kill(3)
            try group.submit(7, at: 1)
            _ = try group.join()
            group.run(for: .seconds(2))
            try group.check()
            return group.runningMembers.map {
                "\($0) \(group.memberID($0)) \(group.position(at: $0) ?? 0) \(group.view(at: $0)?.id.rawValue ?? 0)"
            } + ["\(group.elapsed) \(group.simulation.eventsProcessed)"]
        }
        let first = try run(seed: 21)
        #expect(try run(seed: 21) == first)
        #expect(try run(seed: 22) != first, "a different seed gives a different run: the comparison can fail")
    }

    @Test("check() fails on a machine whose state depends on the member: it names the members that differ")
    func checkFailsOnNondeterminism() throws {
        let group = try LocalGroup(members: 3, initialState: RankCounter(), seed: 5)
        try group.submit(1, at: 0)
        group.kill(0)
        try group.submit(1, at: 1)
        do {
            try group.check()
            Issue.record("check passed on diverged states")
        } catch {
            #expect(error.code == .checkFailed)
            #expect(error.violations.contains { $0.contains("state") && $0.contains("differs") }, "\(error)")
        }
    }

    @Test("The example of LocalGroup's documentation runs as written")
    func documentationExample() throws {
        let group = try LocalGroup(members: 3, initialState: Counter(), seed: 7)
        #expect(try group.submit(5, at: 0).response == 5)
        group.kill(2)
        try group.enqueue(1, at: 1)
        let joiner = try group.join()
        #expect(try group.state(.linearizable, at: joiner).total == 6)
        try group.check()
    }

    @Test("A member leaves and stays out; a restarted one comes back as a new member with the group's state")
    func leaveAndRestart() throws {
        let group = try LocalGroup(members: 4, initialState: Counter(), seed: 13)
        try group.submit(2, at: 0)
        group.leave(3)
        try group.submit(3, at: 1)
        #expect(group.view(at: 0)?.members == [MemberID(1), MemberID(2), MemberID(3)])
        #expect(throws: LocalGroupError.self) { try group.enqueue(1, at: 3) }
        group.kill(2)
        group.restart(2)
        #expect(try group.state(.linearizable, at: 2).total == 5)
        #expect(group.memberID(2) == MemberID(5))
        try group.check()
        #expect(group.runningMembers == [0, 1, 2])
    }

    @Test(
        "Under runtime-like harshness, over 20 seeds: a crash, a partition that heals and a joiner, then the check",
        arguments: 1...20 as ClosedRange<UInt64>)
    func harshFaults(seed: UInt64) throws {
        let group = try LocalGroup(members: 5, initialState: Counter(), seed: seed, harshness: .runtimeLike)
        for amount in 1...40 { try group.enqueue(amount, at: amount % 5) }
        try group.submit(1, at: 0)
        group.kill(4)
        group.partition([0], from: [1, 2, 3])
        try group.submit(2, at: 1)
        group.heal()
        let joiner = try group.join()
        try group.submit(3, at: joiner)
        try group.check()
        // 820 from the enqueues that reached the order, at most, plus the three submits.
        let total = try group.state(.linearizable, at: 1).total
        #expect(total >= 6 && total <= 826, "\(total)")
    }

    @Test("A submit that cannot complete says what it waited for: a member paused past the operation timeout")
    func timeoutSaysWhat() throws {
        let group = try LocalGroup(members: 3, initialState: Counter(), seed: 9)
        group.operationTimeout = .milliseconds(300)
        group.pause(2, for: .milliseconds(400))
        do {
            try group.submit(1, at: 2)
            Issue.record("a paused member's submit returned within the timeout")
        } catch {
            #expect(error.code == .timedOut, "\(error)")
            #expect(error.message.contains("did not apply the submit"))
        }
    }
}

/// Not deterministic on purpose: its state holds the rank of the member it runs on, which a view
/// change gives each member differently.
struct RankCounter: ReplicatedStateMachine, Codable, Equatable {
    var total = 0
    var rank = 0
    mutating func apply(_ amount: Int, entry: EntryInfo) -> Int {
        total += amount
        return total
    }

    mutating func viewInstalled(_ view: GroupView) { rank = view.memberRank }
}
