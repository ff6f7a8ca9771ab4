import Testing

@testable import LockstepLinearizability

@Suite("Hand-written key-value histories")
struct HandWrittenTests {
    @Test func sequentialOperationsAreLinearizable() {
        let history = [
            put(1, "k", "a", 0, 10),
            get(1, "k", "a", 20, 30),
            put(2, "k", "b", 40, 50),
            get(3, "k", "b", 60, 70),
            op(1, .delete(key: "k"), 80, 90, .ok),
            get(2, "k", nil, 100, 110),
        ]
        let verdict = checkLinearizable(history)
        #expect(verdict.ok)
        #expect(verdict.outcome == .linearizable)
        #expect(verdict.checkedKeys == 1)
    }

    @Test func emptyHistoryIsLinearizable() {
        #expect(checkLinearizable([]).ok)
    }

    @Test(arguments: ["a", "b"])
    func overlappingWritesThenReadSeeingEither(_ seen: String) {
        let history = [
            put(1, "k", "a", 0, 10),
            put(2, "k", "b", 5, 15),
            get(3, "k", seen, 20, 30),
            get(1, "k", seen, 40, 50),
        ]
        #expect(checkLinearizable(history).ok)
    }

    @Test func overlappingWritesReadsMustAgreeAfterBothComplete() {
        let history = [
            put(1, "k", "a", 0, 10),
            put(2, "k", "b", 5, 15),
            get(3, "k", "b", 20, 30),
            get(1, "k", "a", 40, 50),
        ]
        let verdict = checkLinearizable(history)
        #expect(verdict.outcome == .violation)
    }

    @Test func staleReadAfterCompletedWriteIsReportedWithKey() {
        let history = [
            put(1, "x", "old", 0, 10),
            put(2, "x", "new", 20, 30),
            get(3, "x", "old", 40, 50),
        ]
        let verdict = checkLinearizable(history)
        #expect(!verdict.ok)
        #expect(!verdict.timedOut)
        #expect(verdict.outcome == .violation)
        #expect(verdict.failures.map(\.key) == ["x"])
        #expect(verdict.failures.first?.operations.count == 3)
        // Both puts can be linearized; the read is the culprit.
        #expect(verdict.failures.first?.longestLinearizablePrefix.count == 2)
        #expect(verdict.report().contains("key \"x\""))
    }

    @Test func readOfValueNeverWrittenIsViolation() {
        let history = [
            put(1, "k", "a", 0, 10),
            get(2, "k", "zzz", 5, 15),
        ]
        #expect(checkLinearizable(history).outcome == .violation)
    }

    @Test func readOfInitialAbsenceConcurrentWithFirstWriteIsLinearizable() {
        let history = [
            put(1, "k", "a", 0, 10),
            get(2, "k", nil, 5, 15),
        ]
        #expect(checkLinearizable(history).ok)
    }

    @Test func compareAndSetSuccessAndFailure() {
        let history = [
            put(1, "k", "a", 0, 10),
            op(2, .compareAndSet(key: "k", expected: "a", new: "b"), 20, 30, .swapped(true)),
            op(3, .compareAndSet(key: "k", expected: "a", new: "c"), 40, 50, .swapped(false)),
            get(1, "k", "b", 60, 70),
            op(2, .compareAndSet(key: "q", expected: nil, new: "first"), 0, 10, .swapped(true)),
            get(3, "q", "first", 20, 30),
        ]
        #expect(checkLinearizable(history).ok)
    }

    @Test func compareAndSetClaimingSuccessOnWrongValueIsViolation() {
        let history = [
            put(1, "k", "a", 0, 10),
            op(2, .compareAndSet(key: "k", expected: "z", new: "b"), 20, 30, .swapped(true)),
        ]
        #expect(checkLinearizable(history).outcome == .violation)
    }

    @Test func compareAndSetClaimingFailureOnMatchingValueIsViolation() {
        let history = [
            put(1, "k", "a", 0, 10),
            op(2, .compareAndSet(key: "k", expected: "a", new: "b"), 20, 30, .swapped(false)),
        ]
        #expect(checkLinearizable(history).outcome == .violation)
    }

    @Test func failedCompareAndSetMustNotWrite() {
        let history = [
            put(1, "k", "a", 0, 10),
            op(2, .compareAndSet(key: "k", expected: "z", new: "b"), 20, 30, .swapped(false)),
            get(3, "k", "b", 40, 50),
        ]
        #expect(checkLinearizable(history).outcome == .violation)
    }

    @Test func concurrentCompareAndSetsOnlyOneWins() {
        let bothWin = [
            put(1, "k", "a", 0, 10),
            op(2, .compareAndSet(key: "k", expected: "a", new: "b"), 20, 40, .swapped(true)),
            op(3, .compareAndSet(key: "k", expected: "a", new: "c"), 25, 45, .swapped(true)),
        ]
        #expect(checkLinearizable(bothWin).outcome == .violation)
        var oneWins = bothWin
        oneWins[2].output = .swapped(false)
        #expect(checkLinearizable(oneWins).ok)
    }

    @Test func pendingPutLaterReadIsLinearizable() {
        let history = [
            put(1, "k", "old", 0, 10),
            put(2, "k", "new", 20, nil),
            get(3, "k", "new", 1_000, 1_010),
        ]
        #expect(checkLinearizable(history).ok)
    }

    @Test func pendingPutNeverReadIsLinearizable() {
        let history = [
            put(1, "k", "old", 0, 10),
            put(2, "k", "new", 20, nil),
            get(3, "k", "old", 1_000, 1_010),
            get(1, "k", "old", 2_000, 2_010),
        ]
        #expect(checkLinearizable(history).ok)
    }

    @Test func pendingPutReadThenOldValueAgainIsViolation() {
        let history = [
            put(1, "k", "old", 0, 10),
            put(2, "k", "new", 20, nil),
            get(3, "k", "new", 30, 40),
            get(1, "k", "old", 50, 60),
        ]
        let verdict = checkLinearizable(history)
        #expect(verdict.outcome == .violation)
        #expect(verdict.failures.map(\.key) == ["k"])
    }

    @Test func pendingPutCannotTakeEffectBeforeItsCall() {
        let history = [
            put(1, "k", "old", 0, 10),
            get(3, "k", "new", 20, 30),
            put(2, "k", "new", 40, nil),
        ]
        #expect(checkLinearizable(history).outcome == .violation)
    }

    @Test func pendingOutputIsIgnored() {
        // A pending cas with a recorded (impossible) output: the output is not
        // trustworthy, so it must not cause a violation.
        let history = [
            put(1, "k", "a", 0, 10),
            op(2, .compareAndSet(key: "k", expected: "a", new: "b"), 20, nil, .swapped(false)),
            get(3, "k", "b", 30, 40),
        ]
        #expect(checkLinearizable(history).ok)
    }

    @Test func pendingCompareAndSetTakesEffectOnlyIfExpectedMatches() {
        let history = [
            put(1, "k", "a", 0, 10),
            op(2, .compareAndSet(key: "k", expected: "z", new: "b"), 20, nil, nil),
            get(3, "k", "b", 30, 40),
        ]
        #expect(checkLinearizable(history).outcome == .violation)
    }

    @Test func pendingGetIsDropped() {
        let history = [
            put(1, "k", "a", 0, 10),
            op(2, .get(key: "k"), 20, nil, .value("garbage")),
        ]
        #expect(checkLinearizable(history).ok)
    }

    @Test func deleteThenGetNil() {
        let history = [
            put(1, "k", "a", 0, 10),
            op(2, .delete(key: "k"), 20, 30, .ok),
            get(3, "k", nil, 40, 50),
        ]
        #expect(checkLinearizable(history).ok)
        var stale = history
        stale[2].output = .value("a")
        #expect(checkLinearizable(stale).outcome == .violation)
    }

    @Test func pendingDeleteMayOrMayNotApply() {
        let applied = [
            put(1, "k", "a", 0, 10),
            op(2, .delete(key: "k"), 20, nil, nil),
            get(3, "k", nil, 40, 50),
        ]
        #expect(checkLinearizable(applied).ok)
        var notApplied = applied
        notApplied[2].output = .value("a")
        #expect(checkLinearizable(notApplied).ok)
    }

    @Test func violationInOneKeyIsFoundAmongMany() {
        var history: [Operation] = []
        for index in 0..<50 {
            let key = "key\(index)"
            let base = UInt64(index * 7)
            history.append(put(index % 5, key, "v\(index)", base, base + 100))
            history.append(get((index + 1) % 5, key, "v\(index)", base + 200, base + 300))
        }
        history.append(put(1, "b", "one", 0, 10))
        history.append(put(2, "b", "two", 20, 30))
        history.append(get(3, "b", "one", 40, 50))
        let verdict = checkLinearizable(history)
        #expect(verdict.outcome == .violation)
        #expect(verdict.checkedKeys == 51)
        #expect(verdict.failures.map(\.key) == ["b"])
    }

    @Test func returnBeforeCallIsTreatedAsInstantaneous() {
        let history = [
            put(1, "k", "a", 50, 10),
            get(2, "k", "a", 60, 70),
        ]
        #expect(checkLinearizable(history).ok)
    }

    @Test func budgetExhaustionIsReportedAsUnknown() {
        // Twenty concurrent puts then a read of a value never written: a true
        // violation, but proving it needs ~2^20 states.
        var history: [Operation] = (0..<20).map { put($0, "k", "v\($0)", 0, 100) }
        history.append(get(0, "k", "v0", 200, 210))
        history.append(get(0, "k", "never", 300, 310))
        let verdict = checkLinearizable(history, budget: CheckBudget(statesMax: 5_000, timeMax: .seconds(10)))
        #expect(verdict.timedOut)
        #expect(!verdict.ok)
        #expect(verdict.outcome == .unknown)
        #expect(verdict.undecided.map(\.key) == ["k"])
        #expect(verdict.failures.isEmpty)
    }

    @Test func timeBudgetStopsTheSearch() {
        var history: [Operation] = (0..<26).map { put($0, "k", "v\($0)", 0, 100) }
        history.append(get(0, "k", "never", 300, 310))
        let clock = ContinuousClock()
        let start = clock.now
        let verdict = checkLinearizable(history, budget: CheckBudget(statesMax: nil, timeMax: .milliseconds(200)))
        #expect(verdict.outcome == .unknown)
        #expect(clock.now - start < .seconds(20))
    }
}

@Suite("Single-register model")
struct RegisterModelTests {
    typealias RegisterOperation = HistoryOperation<RegisterInput, RegisterOutput>

    func register(
        _ client: Int, _ input: RegisterInput, _ call: UInt64, _ returned: UInt64?, _ output: RegisterOutput?
    )
        -> RegisterOperation
    {
        RegisterOperation(client: client, input: input, call: call, returned: returned, output: output)
    }

    @Test func linearizableRegisterHistory() {
        let history = [
            register(1, .write(1), 0, 10, .ok),
            register(2, .read, 5, 15, .value(0)),
            register(3, .write(2), 20, 40, .ok),
            register(1, .read, 25, 35, .value(2)),
            register(2, .read, 50, 60, .value(2)),
        ]
        let verdict = checkLinearizable(history, model: RegisterModel())
        #expect(verdict.ok)
        #expect(verdict.checkedPartitions == 1)
    }

    @Test func staleRegisterReadIsViolation() {
        let history = [
            register(1, .write(1), 0, 10, .ok),
            register(2, .read, 20, 30, .value(0)),
        ]
        #expect(checkLinearizable(history, model: RegisterModel()).outcome == .violation)
    }

    @Test func pendingRegisterWrite() {
        let seen = [
            register(1, .write(7), 0, nil, nil),
            register(2, .read, 20, 30, .value(7)),
        ]
        #expect(checkLinearizable(seen, model: RegisterModel()).ok)
        let flipFlop = seen + [register(2, .read, 40, 50, .value(0))]
        #expect(checkLinearizable(flipFlop, model: RegisterModel()).outcome == .violation)
    }
}
