// A single integer register: the smallest useful model, used to exercise the
// generic core independently of the key-value model.

public enum RegisterInput: Sendable, Hashable {
    case read
    case write(Int)
}

public enum RegisterOutput: Sendable, Hashable {
    case ok
    case value(Int)
}

/// One register holding an `Int`, initially `initialValue`.
public struct RegisterModel: Model {
    public var initialValue: Int

    public init(initialValue: Int = 0) {
        self.initialValue = initialValue
    }

    public var initialState: Int { initialValue }

    public func step(_ state: Int, _ input: RegisterInput, _ output: RegisterOutput?) -> Int? {
        switch input {
        case .read:
            guard output == nil || output == .value(state) else { return nil }
            return state
        case .write(let value):
            guard output == nil || output == .ok else { return nil }
            return value
        }
    }

    public func isReadOnly(_ input: RegisterInput) -> Bool { input == .read }
}
