import Testing

@testable import LockstepLinearizability

@Suite("Randomized histories")
struct RandomizedTests {
    static let smallShape = HistoryShape(operationCount: 50, keys: ["a", "b", "c"], clients: 5)

    @Test func generatedHistoriesAreLinearizable() {
        var rng = SeededGenerator(seed: 0x5EED)
        var failures = 0
        for _ in 0..<1_000 {
            let history = generateHistory(Self.smallShape, rng: &rng)
            let verdict = checkLinearizable(history)
            if !verdict.ok {
                if failures == 0 { print(verdict.report()) }
                failures += 1
            }
        }
        #expect(failures == 0)
    }

    @Test func readsOfNeverWrittenValuesAreDetected() {
        var rng = SeededGenerator(seed: 1)
        var mutated = 0
        var detected = 0
        for _ in 0..<1_000 {
            var history = generateHistory(Self.smallShape, rng: &rng)
            let reads = history.indices.filter { history[$0].returned != nil && isGet(history[$0]) }
            guard let target = reads.randomElement(using: &rng) else { continue }
            history[target].output = .value("never-written")
            mutated += 1
            let verdict = checkLinearizable(history)
            if verdict.outcome == .violation, verdict.failures.map(\.key) == [history[target].input.key] {
                detected += 1
            }
        }
        print("never-written reads: \(detected) of \(mutated) detected")
        #expect(mutated > 900)
        #expect(detected == mutated)
    }

    @Test func readsOfOverwrittenValuesAreDetected() {
        var rng = SeededGenerator(seed: 2)
        var mutated = 0
        var detected = 0
        for _ in 0..<1_000 {
            var history = generateHistory(Self.smallShape, rng: &rng)
            guard let (target, value) = overwrittenValueMutation(history) else { continue }
            history[target].output = .value(value)
            mutated += 1
            if checkLinearizable(history).outcome == .violation { detected += 1 }
        }
        print("overwritten-value reads: \(detected) of \(mutated) detected")
        #expect(mutated > 100)
        #expect(detected == mutated)
    }

    @Test func arbitraryReadMutationsAreSometimesDetected() {
        // Replacing a read's value by another value of the same key may stay
        // linearizable, so only count.
        var rng = SeededGenerator(seed: 3)
        var mutated = 0
        var detected = 0
        for _ in 0..<1_000 {
            var history = generateHistory(Self.smallShape, rng: &rng)
            let reads = history.indices.filter { history[$0].returned != nil && isGet(history[$0]) }
            guard let target = reads.randomElement(using: &rng) else { continue }
            let key = history[target].input.key
            let candidates = writtenValues(history, key: key).filter { .value($0) != history[target].output }
            guard let value = candidates.randomElement(using: &rng) else { continue }
            history[target].output = .value(value)
            mutated += 1
            if checkLinearizable(history).outcome == .violation { detected += 1 }
        }
        print("arbitrary read mutations: \(detected) of \(mutated) detected")
        #expect(detected > 0)
        #expect(detected < mutated)
    }

    @Test func largeHistoryPerformance() {
        var rng = SeededGenerator(seed: 4)
        let shape = HistoryShape(
            operationCount: 10_000, keys: (0..<10).map { "key\($0)" }, clients: 20, pendingProbability: 0.02)
        let history = generateHistory(shape, rng: &rng)
        let clock = ContinuousClock()
        let start = clock.now
        let verdict = checkLinearizable(history)
        let elapsed = clock.now - start
        print("10,000 ops / 10 keys / 20 clients: \(elapsed), \(verdict.statesExplored) states")
        #expect(verdict.ok)
        #if !DEBUG
            #expect(elapsed < .seconds(30))
        #endif
    }

    @Test func hundredThousandOperationsDoNotOverflowTheStack() {
        var rng = SeededGenerator(seed: 5)
        let shape = HistoryShape(
            operationCount: 100_000, keys: (0..<20).map { "key\($0)" }, clients: 6, pendingProbability: 0.01)
        let history = generateHistory(shape, rng: &rng)
        let clock = ContinuousClock()
        let start = clock.now
        let verdict = checkLinearizable(history)
        print("100,000 ops / 20 keys / 6 clients: \(clock.now - start), \(verdict.statesExplored) states")
        #expect(verdict.ok)
    }

    @Test func singleLongPartitionIsSearchedWithoutRecursion() {
        var rng = SeededGenerator(seed: 6)
        let shape = HistoryShape(operationCount: 30_000, keys: ["only"], clients: 3, pendingProbability: 0.01)
        let history = generateHistory(shape, rng: &rng)
        #expect(checkLinearizable(history).ok)
    }

    @Test func violationAtTheEndOfALongPartitionIsFound() {
        // Proving a violation means exhausting the search, so keep pending
        // operations out: each can linearize anywhere, which multiplies the
        // states to refute.
        var rng = SeededGenerator(seed: 7)
        let shape = HistoryShape(operationCount: 5_000, keys: ["only"], clients: 3, pendingProbability: 0)
        var history = generateHistory(shape, rng: &rng)
        let end = (history.compactMap(\.returned).max() ?? 0) + 1_000
        history.append(get(0, "only", "never-written", end, end + 10))
        let clock = ContinuousClock()
        let start = clock.now
        let verdict = checkLinearizable(history)
        print("refuting 5,000 ops on one key: \(clock.now - start), \(verdict.statesExplored) states")
        #expect(verdict.outcome == .violation)
        #expect((verdict.failures.first?.longestLinearizablePrefix.count ?? 0) == 5_000)
    }
}

func isGet(_ operation: Operation) -> Bool {
    if case .get = operation.input { return true }
    return false
}

func writtenValues(_ history: [Operation], key: String) -> [String] {
    history.compactMap { operation in
        switch operation.input {
        case .put(let k, let value) where k == key: return value
        case .compareAndSet(let k, _, let value) where k == key: return value
        default: return nil
        }
    }
}

/// Finds a completed read R and a value v1 such that v1's put completed before
/// another completed put started, which itself completed before R was called:
/// R can then never see v1 (values are unique).
func overwrittenValueMutation(_ history: [Operation]) -> (Int, String)? {
    for (readIndex, read) in history.enumerated() where isGet(read) && read.returned != nil {
        let key = read.input.key
        let puts = history.filter { operation in
            if case .put(let k, _) = operation.input, k == key, operation.returned != nil { return true }
            return false
        }
        for overwriter in puts {
            guard let overwriterReturn = overwriter.returned, overwriterReturn < read.call else { continue }
            for earlier in puts {
                guard let earlierReturn = earlier.returned, earlierReturn < overwriter.call,
                    case .put(_, let value) = earlier.input
                else { continue }
                return (readIndex, value)
            }
        }
    }
    return nil
}
