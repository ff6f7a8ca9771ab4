// Checks a kv-load history (--history FILE) with Lockstep's linearizability checker (Wing & Gong
// with Lowe's memoization, per key). The history must start from an empty store: a fresh group.

import ArgumentParser
import LockstepLinearizability

@main
struct KeyValueCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kv-check",
        abstract: "Is a kv-load history linearizable? Exit 0: yes, 1: a violation, 2: the budget ran out."
    )

    @Argument(help: "A history in JSON lines, as kv-load --history writes it.")
    var history: String

    @Option(help: "Most states the search may explore per key.")
    var statesMax = 5_000_000

    @Option(help: "Most time the search may take per key, in seconds.")
    var secondsMax = 60

    func run() throws {
        let operations: [Operation]
        do {
            operations = try readHistory(path: history)
        } catch {
            throw ValidationError("\(history): \(error)")
        }
        let pending = operations.filter(\.isPending).count
        print("\(operations.count) operations (\(pending) pending)")
        let verdict = checkLinearizable(
            operations, budget: CheckBudget(statesMax: statesMax, timeMax: .seconds(secondsMax)))
        print(verdict.report())
        switch verdict.outcome {
        case .linearizable: return
        case .violation: throw ExitCode(1)
        case .unknown: throw ExitCode(2)
        }
    }
}
