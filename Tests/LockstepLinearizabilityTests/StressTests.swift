import Testing

@testable import LockstepLinearizability

@Suite("Stress")
struct StressTests {
    /// All clients on one key: no help from partitioning. The search grows
    /// exponentially with the number of overlapping writes (20 clients on one
    /// key take ~10 s per 2,000 ops in release), so this stays at 10.
    @Test(arguments: [0.0, 0.05])
    func highConcurrencySingleKey(pendingProbability: Double) {
        var rng = SeededGenerator(seed: 8)
        let shape = HistoryShape(
            operationCount: 2_000, keys: ["hot"], clients: 10, pendingProbability: pendingProbability)
        let history = generateHistory(shape, rng: &rng)
        let clock = ContinuousClock()
        let start = clock.now
        let verdict = checkLinearizable(history, budget: CheckBudget(statesMax: 5_000_000, timeMax: .seconds(20)))
        print(
            "2,000 ops / 1 key / 10 clients / pending \(pendingProbability): \(clock.now - start), "
                + "\(verdict.statesExplored) states, \(verdict)"
        )
        #expect(verdict.outcome != .violation)
    }
}
