// Core vocabulary of the checker: a recorded operation, a sequential model
// the history is judged against, and the verdict.

/// One client operation as recorded by the test harness.
///
/// `returned == nil` means the client never saw an answer (a timeout, or the
/// server it talked to crashed). Such an operation may have taken effect at any
/// instant after `call`, or never; its `output` is ignored and treated as
/// "any output".
public struct HistoryOperation<Input: Sendable, Output: Sendable>: Sendable {
    public var client: Int
    public var input: Input
    /// Invocation time in nanoseconds.
    public var call: UInt64
    /// Completion time in nanoseconds; `nil` when no answer arrived.
    public var returned: UInt64?
    /// Observed output; `nil` means unknown, which accepts any result.
    public var output: Output?

    public init(client: Int, input: Input, call: UInt64, returned: UInt64?, output: Output?) {
        self.client = client
        self.input = input
        self.call = call
        self.returned = returned
        self.output = output
    }

    public var isPending: Bool { returned == nil }
}

/// A subset of a history that can be checked on its own (P-compositionality:
/// a history is linearizable iff each of its per-object sub-histories is).
public struct HistoryPartition: Sendable, Hashable {
    /// Human-readable name of the partition, e.g. the key.
    public var label: String
    /// Indices into the full history.
    public var operationIndices: [Int]

    public init(label: String, operationIndices: [Int]) {
        self.label = label
        self.operationIndices = operationIndices
    }
}

/// A deterministic sequential specification.
///
/// `State` is the state of one partition (for a key-value store partitioned
/// per key, that is the value of a single key).
public protocol Model: Sendable {
    associatedtype State: Hashable & Sendable
    associatedtype Input: Sendable
    associatedtype Output: Sendable

    var initialState: State { get }

    /// Applies `input` to `state`. Returns the next state if `output` is a
    /// possible result, `nil` if it is impossible. `output == nil` means the
    /// output is unknown and must be accepted whatever the result would be.
    func step(_ state: State, _ input: Input, _ output: Output?) -> State?

    /// Splits a history into independently checkable partitions.
    func partition(_ history: [HistoryOperation<Input, Output>]) -> [HistoryPartition]

    /// Read-only inputs never change the state, so one whose output is
    /// unknown constrains nothing and can be dropped before the search.
    func isReadOnly(_ input: Input) -> Bool
}

extension Model {
    public func partition(_ history: [HistoryOperation<Input, Output>]) -> [HistoryPartition] {
        [HistoryPartition(label: "", operationIndices: Array(history.indices))]
    }

    public func isReadOnly(_ input: Input) -> Bool { false }
}

/// Limits for the search of one partition. The search is exponential in the
/// worst case, so a partition that exceeds a limit is reported as unknown
/// instead of hanging.
public struct CheckBudget: Sendable {
    /// Maximum number of distinct (linearized set, state) pairs per partition.
    /// Each costs on the order of 100 bytes of memory, so this also bounds
    /// memory (the default, about 0.5 GB).
    public var statesMax: Int?
    /// Maximum wall time per partition.
    public var timeMax: Duration?

    public init(statesMax: Int? = 5_000_000, timeMax: Duration? = .seconds(60)) {
        self.statesMax = statesMax
        self.timeMax = timeMax
    }

    public static let unlimited = CheckBudget(statesMax: nil, timeMax: nil)
}

public enum Outcome: Sendable, Hashable {
    case linearizable
    /// At least one partition has no linearization.
    case violation
    /// No violation found, but some partition ran out of budget.
    case unknown
}

/// Diagnostic for one partition that is not linearizable or was not decided.
public struct PartitionFailure<Input: Sendable, Output: Sendable>: Sendable {
    public var label: String
    /// The partition's operations in call order.
    public var operations: [HistoryOperation<Input, Output>]
    /// The longest sequence of operations the search managed to linearize,
    /// in linearization order; the culprit is usually just after it.
    public var longestLinearizablePrefix: [HistoryOperation<Input, Output>]
    public var statesExplored: Int
}

public struct CheckVerdict<Input: Sendable, Output: Sendable>: Sendable {
    /// True only when every partition was proved linearizable. False on a
    /// violation and also when `timedOut` (then the answer is "unknown").
    public var ok: Bool { outcome == .linearizable }
    /// Some partition exceeded its budget; without a violation elsewhere the
    /// verdict is unknown, not linearizable.
    public var timedOut: Bool { !undecided.isEmpty }
    public var checkedPartitions: Int
    /// Partitions proved not linearizable.
    public var failures: [PartitionFailure<Input, Output>]
    /// Partitions whose budget ran out.
    public var undecided: [PartitionFailure<Input, Output>]
    public var statesExplored: Int

    public var outcome: Outcome {
        if !failures.isEmpty { return .violation }
        if !undecided.isEmpty { return .unknown }
        return .linearizable
    }
}
