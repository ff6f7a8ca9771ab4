// The key-value store specification, checked per key, and the convenience
// entry point used by the replication tests.

public enum KVInput: Sendable, Hashable {
    case put(key: String, value: String)
    case get(key: String)
    case delete(key: String)
    case compareAndSet(key: String, expected: String?, new: String)

    public var key: String {
        switch self {
        case .put(let key, _), .get(let key), .delete(let key), .compareAndSet(let key, _, _):
            return key
        }
    }
}

public enum KVOutput: Sendable, Hashable {
    /// Result of put and delete.
    case ok
    /// Result of get; `nil` when the key is absent.
    case value(String?)
    /// Result of compareAndSet.
    case swapped(Bool)
}

public typealias Operation = HistoryOperation<KVInput, KVOutput>
public typealias Verdict = CheckVerdict<KVInput, KVOutput>

/// A map of string keys to string values. Keys are independent, so the
/// history is partitioned per key and `State` is the value of one key.
public struct KVModel: Model {
    public init() {}

    public var initialState: String? { nil }

    public func step(_ state: String?, _ input: KVInput, _ output: KVOutput?) -> String?? {
        switch input {
        case .put(_, let value):
            guard output == nil || output == .ok else { return nil }
            return .some(value)
        case .get:
            guard output == nil || output == .value(state) else { return nil }
            return .some(state)
        case .delete:
            guard output == nil || output == .ok else { return nil }
            return .some(nil)
        case .compareAndSet(_, let expected, let new):
            let swaps = state == expected
            guard output == nil || output == .swapped(swaps) else { return nil }
            return .some(swaps ? new : state)
        }
    }

    public func partition(_ history: [Operation]) -> [HistoryPartition] {
        var indicesByKey: [String: [Int]] = [:]
        var keysInOrder: [String] = []
        for (index, operation) in history.enumerated() {
            let key = operation.input.key
            if indicesByKey[key] == nil { keysInOrder.append(key) }
            indicesByKey[key, default: []].append(index)
        }
        return keysInOrder.map { HistoryPartition(label: $0, operationIndices: indicesByKey[$0] ?? []) }
    }

    public func isReadOnly(_ input: KVInput) -> Bool {
        if case .get = input { return true }
        return false
    }
}

/// Checks a key-value history; `budget` applies to each key separately.
public func checkLinearizable(_ history: [Operation], budget: CheckBudget = CheckBudget()) -> Verdict {
    checkLinearizable(history, model: KVModel(), budget: budget)
}

extension CheckVerdict where Input == KVInput, Output == KVOutput {
    public var checkedKeys: Int { checkedPartitions }
}

extension PartitionFailure where Input == KVInput, Output == KVOutput {
    public var key: String { label }
}

extension KVInput: CustomStringConvertible {
    public var description: String {
        switch self {
        case .put(let key, let value): return "put(\(key), \(quoted(value)))"
        case .get(let key): return "get(\(key))"
        case .delete(let key): return "delete(\(key))"
        case .compareAndSet(let key, let expected, let new):
            return "cas(\(key), \(quoted(expected)) -> \(quoted(new)))"
        }
    }
}

extension KVOutput: CustomStringConvertible {
    public var description: String {
        switch self {
        case .ok: return "ok"
        case .value(let value): return quoted(value)
        case .swapped(let swapped): return swapped ? "swapped" : "not swapped"
        }
    }
}

private func quoted(_ value: String?) -> String {
    value.map { "\"\($0)\"" } ?? "nil"
}
