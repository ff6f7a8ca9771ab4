// A fault schedule: faults at random times in the first `window`, then a heal, an operator's
// sweep, more messages from every process, and sometimes one more fault after the heal. Or, one
// seed in twelve, a safety-only schedule: a split that leaves no majority anywhere, never healed.

import LockstepCore

struct FaultSchedule {
    var memberCount: Int
    var spareProcesses: Int
    /// Safety only: when the group splits into parts none of which is a majority.
    var split: Duration?
    private var parts: [Set<Int>] = []

    /// Faults happen in the first 600 ms (in microseconds); the links heal 100 ms after.
    static let windowMicroseconds: Int64 = 600_000
    static let heal: Duration = .microseconds(windowMicroseconds + 100_000)
    /// A safety-only run lasts this long (virtual time) after its start.
    static let safetyOnlyRun: Duration = .seconds(10)
    static let safetyOnlyProbability = 1.0 / 12

    static func draw(memberCount: Int, spareProcesses: Int, using random: inout DeterministicRandom) -> FaultSchedule {
        var schedule = FaultSchedule(memberCount: memberCount, spareProcesses: spareProcesses, split: nil)
        guard random.chance(safetyOnlyProbability) else { return schedule }
        let order = Array(0..<memberCount).shuffled(using: &random)
        if memberCount % 2 == 0 && random.chance(0.5) {
            // Exact halves: neither is a majority.
            schedule.parts = [Set(order.prefix(memberCount / 2)), Set(order.suffix(memberCount / 2))]
        } else {
            // Three ways, none above half (3 members: one each).
            let first = max(1, (memberCount - 1) / 2)
            let second = max(1, (memberCount - first) / 2)
            schedule.parts = [
                Set(order.prefix(first)), Set(order.dropFirst(first).prefix(second)),
                Set(order.dropFirst(first + second)),
            ]
        }
        schedule.split = at(using: &random)
        return schedule
    }

    func schedule(on group: SimulatedGroup, configuration: Configuration, using random: inout DeterministicRandom) {
        if let split {
            for (index, part) in parts.enumerated() {
                for other in parts[(index + 1)...] { group.cut(part, from: other, at: split) }
            }
            return
        }
        var budget = Int.random(in: 0...max(0, (memberCount - 1) / 2), using: &random)
        var order = Array(0..<memberCount).shuffled(using: &random)
        // One fault may wait for after the heal.
        let afterHeal = budget > 0 && random.chance(0.25) ? order.removeLast() : nil
        if afterHeal != nil { budget -= 1 }
        var faults = Faults(group: group, configuration: configuration, budget: budget, order: order)
        faults.schedule(using: &random)
        scheduleJoiners(on: group, crashBudget: faults.budget, using: &random)
        // The faults end: links heal, the operator restarts whatever is outside the group,
        // and every live member sends more (new messages must be delivered after the faults).
        group.healLinks(at: Self.heal)
        group.recoverStragglers(at: Self.heal + configuration.failureTimeout * 3)
        if let afterHeal {
            group.crash(afterHeal, at: Self.heal + .milliseconds(Int64.random(in: 0...1_000, using: &random)))
        }
        for process in 0..<(memberCount + spareProcesses) {
            group.send(
                from: process, count: Int.random(in: 1...20, using: &random),
                at: Self.heal + configuration.failureTimeout * 6)
        }
    }

    static func at(using random: inout DeterministicRandom) -> Duration {
        .microseconds(Int64.random(in: 0...windowMicroseconds, using: &random))
    }

    /// Every spare process joins during the faults; half of them send a little; with what is
    /// left of the budget, one may crash soon after it asks (a joiner counts against the
    /// majority of the view that adds it).
    private func scheduleJoiners(on group: SimulatedGroup, crashBudget: Int, using random: inout DeterministicRandom) {
        var budget = crashBudget
        for process in memberCount..<(memberCount + spareProcesses) {
            let when = Self.at(using: &random)
            group.join(process, at: when)
            if budget > 0, random.chance(0.3) {
                budget -= 1
                group.crash(process, at: when + .milliseconds(Int64.random(in: 0...300, using: &random)))
            }
            if random.chance(0.5) {
                group.send(
                    from: process, count: Int.random(in: 1...50, using: &random),
                    at: Self.at(using: &random) + .milliseconds(300))
            }
        }
    }
}

/// The faults of one schedule, each paid for from the budget by the members it can cost: the
/// premise of progress is that a connected majority of the first members remains.
private struct Faults {
    let group: SimulatedGroup
    let configuration: Configuration
    var budget: Int
    var order: [Int]

    private mutating func take(_ count: Int) -> [Int] {
        let taken = Array(order.prefix(count))
        order.removeFirst(taken.count)
        budget -= taken.count
        return taken
    }

    private var memberCount: Int { group.view.memberCount }

    mutating func schedule(using random: inout DeterministicRandom) {
        if budget > 0, random.chance(0.3) {
            group.partition(Set(take(Int.random(in: 1...budget, using: &random))), at: FaultSchedule.at(using: &random))
        }
        // A one-way failure costs one end: the end that no longer hears the other suspects it,
        // and the suspected end adopts the suspicion of itself. A reset costs both (each end is
        // told, and suspects the other).
        if budget > 0, random.chance(0.3) {
            let reset = budget >= 2 && random.chance(0.3)
            let ends = take(reset ? 2 : 1)
            let from = ends[0]
            let to = reset ? ends[1] : (from + Int.random(in: 1..<memberCount, using: &random)) % memberCount
            group.failLink(from: from, to: to, at: FaultSchedule.at(using: &random), reset: reset)
        }
        // A cut where A and C cannot talk but both reach B: each suspects the other.
        if budget >= 2, memberCount >= 3, random.chance(0.15) {
            let ends = take(2)
            group.cut([ends[0]], from: [ends[1]], at: FaultSchedule.at(using: &random))
        }
        // A flapping link: it fails and heals a few times (each failure breaks the connection
        // for good, as TCP does; the heal matters for new incarnations).
        if budget > 0, random.chance(0.2), let from = take(1).first {
            let to = (from + Int.random(in: 1..<memberCount, using: &random)) % memberCount
            var when = FaultSchedule.at(using: &random)
            for _ in 0..<3 {
                group.failLink(from: from, to: to, at: when)
                when += .milliseconds(Int64.random(in: 5...60, using: &random))
                group.healLink(from: from, to: to, at: when)
                when += .milliseconds(Int64.random(in: 5...60, using: &random))
            }
        }
        // A pause longer than the failure timeout: the member resumes with stale state, learns
        // it was removed, and joins again as a new incarnation.
        if budget > 0, random.chance(0.2), let paused = take(1).first {
            let length = configuration.failureTimeout * Double.random(in: 1.5...4, using: &random)
            group.pause(paused, at: FaultSchedule.at(using: &random), for: length)
        }
        if budget > 0, random.chance(0.2), let leaver = take(1).first {
            group.leave(leaver, at: FaultSchedule.at(using: &random))
        }
        for process in take(budget) {
            let when = FaultSchedule.at(using: &random)
            group.crash(process, at: when)
            if random.chance(0.5) {
                group.restart(process, at: when + .milliseconds(Int64.random(in: 10...400, using: &random)))
            }
        }
    }
}
