// A short linearizability run: clients put, read (linearizable) and compare-and-set through
// three members of a key-value machine over TCP while one member crashes; the checker judges the
// history (LockstepLinearizability). The long runs under `lockstep chaos` use the key-value
// example (Examples/KeyValue).

import Foundation
import LockstepCore
import LockstepLinearizability
import Synchronization
import Testing

@testable import Lockstep

/// The key-value store of the test (the example's has the same commands).
struct KeyValueMachine: ReplicatedStateMachine, Codable, Equatable {
    var values: [String: String] = [:]
    enum Command: Codable, Sendable {
        case put(key: String, value: String)
        case compareAndSet(key: String, expected: String?, new: String)
    }
    mutating func apply(_ command: Command, entry: EntryInfo) -> Bool {
        switch command {
        case .put(let key, let value):
            values[key] = value
            return true
        case .compareAndSet(let key, let expected, let new):
            guard values[key] == expected else { return false }
            values[key] = new
            return true
        }
    }
}

@Suite("Linearizability", .serialized, .timeLimit(.minutes(3)))
struct LinearizabilityRunTests {
    @Test("Puts, linearizable reads and compare-and-sets through three members, one of which crashes, are linearizable")
    func historyWithACrash() async throws {
        let group = try TestGroup(count: 3, initialState: KeyValueMachine()) { configuration in
            configuration.operationTimeout = .seconds(10)
        }
        // The members are up once one command went through (not part of the history: the model
        // starts from the empty store, and so does this command's key).
        _ = try await group.members[0].submit(.put(key: "warm-up", value: ""))
        let recorder = HistoryRecorder()
        let clients = 6
        let opsPerClient = 40
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for client in 0..<clients {
                tasks.addTask {
                    var random = SystemRandomNumberGenerator()
                    for index in 0..<opsPerClient {
                        let member = group.members[client % 3]
                        // A call on member 2 once its close has returned never reaches the group:
                        // it is no operation of the history. Kept as pending (it may linearize
                        // anywhere), thirty such writes per key ran the checker out of its
                        // budget on a loaded CI machine (issue 13).
                        let onClosedMember = client % 3 == 2 && recorder.closed.load(ordering: .acquiring)
                        let key = "k\(Int.random(in: 0..<3, using: &random))"
                        let call = recorder.now()
                        let choice = Int.random(in: 0..<3, using: &random)
                        var operation: LockstepLinearizability.Operation
                        switch choice {
                        case 0:
                            let value = "c\(client)-\(index)"
                            operation = .init(
                                client: client, input: .put(key: key, value: value), call: call, returned: nil,
                                output: nil)
                            if (try? await member.submit(.put(key: key, value: value))) != nil {
                                operation.returned = recorder.now()
                                operation.output = .ok
                            }
                        case 1:
                            operation = .init(
                                client: client, input: .get(key: key), call: call, returned: nil, output: nil)
                            if let state = try? await member.state(.linearizable) {
                                operation.returned = recorder.now()
                                operation.output = .value(state.values[key])
                            }
                        default:
                            let expected: String? = index % 2 == 0 ? nil : "c\(client)-\(index - 1)"
                            let new = "cas\(client)-\(index)"
                            operation = .init(
                                client: client, input: .compareAndSet(key: key, expected: expected, new: new),
                                call: call, returned: nil, output: nil)
                            if let result = try? await member.submit(
                                .compareAndSet(key: key, expected: expected, new: new))
                            {
                                operation.returned = recorder.now()
                                operation.output = .swapped(result.response)
                            }
                        }
                        if !(onClosedMember && operation.returned == nil) {
                            recorder.history.withLock { $0.append(operation) }
                        }
                        // A third of the way through, member 2 crashes (closed without leaving).
                        if client == 0, index == opsPerClient / 3, !recorder.crashed.exchange(true, ordering: .relaxed)
                        {
                            await group.members[2].close()
                            recorder.closed.store(true, ordering: .releasing)
                        }
                    }
                }
            }
            try await tasks.waitForAll()
        }
        let operations = recorder.history.withLock { $0 }
        let answered = operations.filter { $0.returned != nil }.count
        let verdict = checkLinearizable(operations)
        print("linearizability: \(operations.count) operations (\(answered) answered), \(verdict)")
        #expect(answered > operations.count / 2, "most operations should be answered")
        #expect(verdict.ok, "\(verdict.report())")
        await group.stop()
    }
}

/// The clients' shared history and clock.
final class HistoryRecorder: Sendable {
    let origin = ContinuousClock.now
    let history = Mutex<[LockstepLinearizability.Operation]>([])
    let crashed = Atomic<Bool>(false)
    /// Member 2's close has returned: calls on it from now on fail before reaching the group.
    let closed = Atomic<Bool>(false)

    /// Nanoseconds since the run began.
    func now() -> UInt64 {
        let elapsed = ContinuousClock.now - origin
        return UInt64(elapsed.components.seconds) * 1_000_000_000
            + UInt64(elapsed.components.attoseconds / 1_000_000_000)
    }
}
