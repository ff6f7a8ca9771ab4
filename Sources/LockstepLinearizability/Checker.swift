// Wing & Gong linearizability search with Lowe's memoization, as popularised
// by Porcupine, checked one partition at a time (P-compositionality).
//
// The history of a partition becomes a doubly linked list of call and return
// entries sorted by time. The search repeatedly picks a call entry that
// precedes the first return entry still in the list (an operation that may be
// linearized next), applies it to the model and "lifts" it out of the list.
// Reaching a return entry means the operation owning it had to be linearized
// already: backtrack. The (linearized set, state) pairs already explored are
// cached, since reaching one again cannot lead anywhere new.
//
// Operations without a return get return time +infinity and accept any
// output. Because the model is deterministic and such an operation can always
// be linearized after everything else (where it changes nothing observable),
// the search succeeds as soon as every completed operation is linearized;
// pending operations that were never linearized are the ones that "never took
// effect".

/// Checks a history against `model`, each partition separately.
public func checkLinearizable<M: Model>(
    _ history: [HistoryOperation<M.Input, M.Output>],
    model: M,
    budget: CheckBudget = CheckBudget()
) -> CheckVerdict<M.Input, M.Output> {
    var failures: [PartitionFailure<M.Input, M.Output>] = []
    var undecided: [PartitionFailure<M.Input, M.Output>] = []
    var statesTotal = 0
    let partitions = model.partition(history)
    for partition in partitions {
        let ordered = partition.operationIndices.sorted { lhs, rhs in
            history[lhs].call != history[rhs].call ? history[lhs].call < history[rhs].call : lhs < rhs
        }
        // An unknown-output read can always be linearized without effect.
        let kept = ordered.filter { index in
            let operation = history[index]
            let outputUnknown = operation.isPending || operation.output == nil
            return !(outputUnknown && model.isReadOnly(operation.input))
        }
        let operations = kept.map { history[$0] }
        var search = PartitionSearch(model: model, operations: operations, budget: budget)
        let result = search.run()
        statesTotal += search.statesExplored
        guard result != .linearizable else { continue }
        let failure = PartitionFailure(
            label: partition.label,
            operations: ordered.map { history[$0] },
            longestLinearizablePrefix: search.longestPrefix.map { operations[Int($0)] },
            statesExplored: search.statesExplored)
        if result == .violation {
            failures.append(failure)
        } else {
            undecided.append(failure)
        }
    }
    return CheckVerdict(
        checkedPartitions: partitions.count,
        failures: failures,
        undecided: undecided,
        statesExplored: statesTotal)
}

enum SearchResult: Equatable {
    case linearizable
    case violation
    case budgetExhausted
}

/// Memoization key. The linearized set is stored compactly: nearly all
/// searches linearize operations roughly in call order, so the set is "every
/// operation below `prefixLength`" plus a few bits in a short window above it.
/// This keeps each cache entry O(concurrency) instead of O(operations).
struct CacheKey<State: Hashable>: Hashable {
    var prefixLength: Int
    var windowWords: [UInt64]
    var state: State
}

/// A call or return event of one operation, before linking.
struct SearchEntry {
    var time: UInt64
    var isReturn: Bool
    var operation: Int32
}

struct PartitionSearch<M: Model> {
    let model: M
    let inputs: [M.Input]
    /// `nil`: unknown output (pending operations always have `nil`).
    let outputs: [M.Output?]
    let isPending: [Bool]
    /// Read-only operations with a known output (others were dropped).
    let isReadOnly: [Bool]
    let budget: CheckBudget

    // Linked list over nodes: 0 is the head sentinel, 1...2n are entries, 2n+1
    // is the tail sentinel.
    var next: [Int32]
    var previous: [Int32]
    /// Operation owning each node (-1 for sentinels).
    var operationOfNode: [Int32]
    var nodeIsReturn: [Bool]
    var callNode: [Int32]
    var returnNode: [Int32]

    var linearizedBits: [UInt64]
    var linearizedCount = 0
    /// Lowest operation id not linearized.
    var prefixLength = 0

    private(set) var statesExplored = 0
    private(set) var longestPrefix: [Int32] = []

    init(model: M, operations: [HistoryOperation<M.Input, M.Output>], budget: CheckBudget) {
        self.model = model
        self.budget = budget
        let count = operations.count
        inputs = operations.map(\.input)
        outputs = operations.map { $0.isPending ? nil : $0.output }
        isPending = operations.map(\.isPending)
        isReadOnly = operations.map { model.isReadOnly($0.input) }

        var entries: [SearchEntry] = []
        entries.reserveCapacity(2 * count)
        for (id, operation) in operations.enumerated() {
            entries.append(SearchEntry(time: operation.call, isReturn: false, operation: Int32(id)))
            // A return recorded before its call is malformed; treat it as
            // instantaneous rather than producing an impossible interval.
            let returnTime = operation.returned.map { max($0, operation.call) } ?? UInt64.max
            entries.append(SearchEntry(time: returnTime, isReturn: true, operation: Int32(id)))
        }
        // On equal times calls go first: operations that touch are treated as
        // concurrent, which never rejects a valid history.
        entries.sort { lhs, rhs in
            if lhs.time != rhs.time { return lhs.time < rhs.time }
            if lhs.isReturn != rhs.isReturn { return !lhs.isReturn }
            return lhs.operation < rhs.operation
        }

        let nodeCount = 2 * count + 2
        next = (0..<nodeCount).map { Int32($0 + 1) }
        previous = (0..<nodeCount).map { Int32($0 - 1) }
        operationOfNode = Array(repeating: -1, count: nodeCount)
        nodeIsReturn = Array(repeating: false, count: nodeCount)
        callNode = Array(repeating: 0, count: count)
        returnNode = Array(repeating: 0, count: count)
        for (position, entry) in entries.enumerated() {
            let node = position + 1
            operationOfNode[node] = entry.operation
            nodeIsReturn[node] = entry.isReturn
            if entry.isReturn {
                returnNode[Int(entry.operation)] = Int32(node)
            } else {
                callNode[Int(entry.operation)] = Int32(node)
            }
        }
        linearizedBits = Array(repeating: 0, count: (count + 63) / 64)
    }

    mutating func run() -> SearchResult {
        let clock = ContinuousClock()
        let start = clock.now
        let budgetCheckInterval = 1024
        var iterations = 0

        var cache = Set<CacheKey<M.State>>()
        // Explicit stack instead of recursion: depth equals the number of
        // linearized operations, which can be the whole partition.
        var stack: [(operation: Int32, stateBefore: M.State)] = []
        var state = model.initialState
        var completedRemaining = isPending.lazy.filter { !$0 }.count
        var node = Int(next[0])

        while true {
            if completedRemaining == 0 {
                statesExplored = cache.count
                return .linearizable
            }
            iterations += 1
            if iterations % budgetCheckInterval == 0, isOverBudget(states: cache.count, elapsed: clock.now - start) {
                recordPrefix(stack.map(\.operation))
                statesExplored = cache.count
                return .budgetExhausted
            }
            // Unreachable while a completed operation is unlinearized: a safe stop.
            guard node != next.count - 1 else {
                statesExplored = cache.count
                return .violation
            }
            let operation = Int(operationOfNode[node])
            if !nodeIsReturn[node] {
                var refuted = false
                if let nextState = model.step(state, inputs[operation], outputs[operation]) {
                    let savedPrefixLength = prefixLength
                    markLinearized(operation)
                    let key = CacheKey(prefixLength: prefixLength, windowWords: windowWords(), state: nextState)
                    if cache.insert(key).inserted {
                        stack.append((Int32(operation), state))
                        state = nextState
                        lift(operation)
                        if !isPending[operation] { completedRemaining -= 1 }
                        node = Int(next[0])
                        continue
                    }
                    unmarkLinearized(operation)
                    prefixLength = savedPrefixLength
                    // A cached pair off the path was refuted: for a read, so is this node (below).
                    refuted = isReadOnly[operation]
                }
                if !refuted {
                    node = Int(next[node])
                    continue
                }
            }
            // Dead end: the first remaining return entry was reached (its
            // operation should have been linearized already), or a read
            // refuted this node. Backtrack. A read that could be linearized
            // at a node is never worth deferring: it leaves the state alone,
            // and every operation that must precede it is linearized already,
            // so any solution from that node can be rearranged to start with
            // the read. Once the read's subtree fails, so does the node it
            // was taken from: keep popping past reads.
            guard let resumeAt = backtrack(&stack, state: &state, completedRemaining: &completedRemaining) else {
                statesExplored = cache.count
                return .violation
            }
            node = resumeAt
        }
    }

    private func isOverBudget(states: Int, elapsed: Duration) -> Bool {
        let overStates = budget.statesMax.map { states > $0 } ?? false
        let overTime = budget.timeMax.map { elapsed > $0 } ?? false
        return overStates || overTime
    }

    /// Undoes linearized operations from the top of `stack` (past reads, see `run`); returns the
    /// node to resume the search at, or nil when nothing is left to undo (a violation).
    private mutating func backtrack(
        _ stack: inout [(operation: Int32, stateBefore: M.State)], state: inout M.State, completedRemaining: inout Int
    ) -> Int? {
        recordPrefix(stack.map(\.operation))
        while let top = stack.popLast() {
            let undone = Int(top.operation)
            state = top.stateBefore
            unmarkLinearized(undone)
            prefixLength = min(prefixLength, undone)
            unlift(undone)
            if !isPending[undone] { completedRemaining += 1 }
            if !isReadOnly[undone] { return Int(next[Int(callNode[undone])]) }
        }
        return nil
    }

    private mutating func recordPrefix(_ prefix: @autoclosure () -> [Int32]) {
        // Cheap check first so the copy happens only on a new record.
        if linearizedCount > longestPrefix.count {
            longestPrefix = prefix()
        }
    }

    private mutating func markLinearized(_ operation: Int) {
        linearizedBits[operation >> 6] |= 1 << UInt64(operation & 63)
        linearizedCount += 1
        while prefixLength < inputs.count, isLinearized(prefixLength) {
            prefixLength += 1
        }
    }

    /// Leaves `prefixLength` to the caller, which knows its previous value.
    private mutating func unmarkLinearized(_ operation: Int) {
        linearizedBits[operation >> 6] &= ~(1 << UInt64(operation & 63))
        linearizedCount -= 1
    }

    private func isLinearized(_ operation: Int) -> Bool {
        linearizedBits[operation >> 6] & (1 << UInt64(operation & 63)) != 0
    }

    /// The linearized bits at or above `prefixLength`, up to the last set bit.
    private func windowWords() -> [UInt64] {
        var remaining = linearizedCount - prefixLength
        guard remaining > 0 else { return [] }
        var wordIndex = prefixLength >> 6
        var word = linearizedBits[wordIndex] & (UInt64.max << UInt64(prefixLength & 63))
        var words: [UInt64] = []
        while true {
            words.append(word)
            remaining -= word.nonzeroBitCount
            if remaining <= 0 { return words }
            wordIndex += 1
            word = linearizedBits[wordIndex]
        }
    }

    /// Removes an operation's call and return entries from the list.
    private mutating func lift(_ operation: Int) {
        unlink(Int(callNode[operation]))
        unlink(Int(returnNode[operation]))
    }

    /// Reinserts in the reverse order of `lift` (dancing links), restoring the
    /// exact previous list.
    private mutating func unlift(_ operation: Int) {
        relink(Int(returnNode[operation]))
        relink(Int(callNode[operation]))
    }

    private mutating func unlink(_ node: Int) {
        next[Int(previous[node])] = next[node]
        previous[Int(next[node])] = previous[node]
    }

    /// Relies on the node still holding its old neighbours.
    private mutating func relink(_ node: Int) {
        next[Int(previous[node])] = Int32(node)
        previous[Int(next[node])] = Int32(node)
    }
}
