// The replicated state of the example: a map from strings to strings, and the commands that change
// it. A value with no IO: every member applies the same commands in the same order and so holds
// the same map.

import Lockstep

/// A key-value map kept the same on every member of a `ReplicatedGroup`.
///
/// ```swift
/// let group = try ReplicatedGroup(configuration: configuration, initialState: KeyValueStore())
/// _ = try await group.submit(.put(key: "a", value: "1"))
/// let value = try await group.state(.linearizable).entries["a"]  // "1"
/// ```
public struct KeyValueStore: ReplicatedStateMachine, Codable, Hashable {
    /// What a client asks of the map. Synthesized `Codable`: Lockstep's `BinaryEncoder` writes the
    /// case name, then the fields in order (renaming a case is a format change).
    public enum Command: Codable, Sendable, Hashable {
        case put(key: String, value: String)
        case delete(key: String)
        /// Sets `key` to `new` only when its value is `expected` now (nil: only when it is absent).
        case compareAndSet(key: String, expected: String?, new: String)
    }

    /// What applying a command answered (on the member that submitted it).
    public enum Response: Sendable, Hashable {
        case ok
        /// Whether a compare-and-set found the expected value (and so wrote the new one).
        case swapped(Bool)
    }

    public private(set) var entries: [String: String]

    public init(entries: [String: String] = [:]) { self.entries = entries }

    public subscript(key: String) -> String? { entries[key] }

    /// Depends on nothing but the map and the command (no clock, no randomness, no iteration).
    public mutating func apply(_ command: Command, entry: EntryInfo) -> Response {
        switch command {
        case .put(let key, let value):
            entries[key] = value
            return .ok
        case .delete(let key):
            entries[key] = nil
            return .ok
        case .compareAndSet(let key, let expected, let new):
            guard entries[key] == expected else { return .swapped(false) }
            entries[key] = new
            return .swapped(true)
        }
    }
}
