// Human-readable rendering of a verdict, shared by lin-check and test logs.

extension HistoryOperation: CustomStringConvertible {
    public var description: String {
        let end = returned.map { "\($0)" } ?? "pending"
        let result = isPending ? "?" : (output.map { "\($0)" } ?? "?")
        return "client \(client): \(input) -> \(result)  [\(call), \(end)]"
    }
}

extension CheckVerdict {
    /// A multi-line report: the outcome, then each failing partition with its
    /// operations in call order and the longest linearizable prefix found.
    public func report(operationsMax: Int = 200) -> String {
        var lines: [String] = []
        switch outcome {
        case .linearizable:
            lines.append("ok: linearizable (\(checkedPartitions) partitions, \(statesExplored) states)")
        case .violation:
            lines.append("violation: \(failures.count) of \(checkedPartitions) partitions not linearizable")
        case .unknown:
            lines.append(
                "unknown: budget ran out in \(undecided.count) of \(checkedPartitions) partitions; no violation found")
        }
        for (title, group) in [("not linearizable", failures), ("undecided (budget)", undecided)] {
            for failure in group {
                lines.append("")
                lines.append(
                    "key \"\(failure.label)\": \(title), \(failure.operations.count) operations, "
                        + "\(failure.statesExplored) states"
                )
                lines.append("  operations in call order:")
                for operation in failure.operations.prefix(operationsMax) {
                    lines.append("    \(operation)")
                }
                if failure.operations.count > operationsMax {
                    lines.append("    ... \(failure.operations.count - operationsMax) more")
                }
                lines.append("  longest linearizable prefix (\(failure.longestLinearizablePrefix.count) operations):")
                for operation in failure.longestLinearizablePrefix.suffix(operationsMax) {
                    lines.append("    \(operation)")
                }
            }
        }
        return lines.joined(separator: "\n")
    }
}

extension CheckVerdict: CustomStringConvertible {
    /// One line; `report()` has the details.
    public var description: String {
        switch outcome {
        case .linearizable: return "linearizable (\(checkedPartitions) partitions)"
        case .violation: return "violation in \(failures.map(\.label))"
        case .unknown: return "unknown: budget ran out in \(undecided.map(\.label))"
        }
    }
}
