// What a LocalGroup call or check found wrong, in words a test failure can show as they are.

/// Why a `LocalGroup` call failed, or what `check()` found.
public struct LocalGroupError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable {
        /// No answer within `LocalGroup.operationTimeout` of simulated time (the message says what
        /// was awaited and where the member stood). The command may still be applied later.
        case timedOut
        /// The member reaches a minority of its view: nothing is applied there until the
        /// partition heals (as `GroupError.minority`).
        case minority
        /// The member is not running: it crashed, was removed, left, or was never started.
        case notRunning
        /// The command's bytes did not decode on the members (the same on all).
        case commandRefused
        /// The command did not encode, or is beyond the configuration's `messageBytesMax`.
        case commandTooLarge
        /// `join()` found no spare member (`LocalGroup(spareMembers:)`).
        case noSpareMember
        /// A configuration value is out of range (the message names the field).
        case invalidConfiguration
        /// `check()` found violations (listed in `violations`).
        case checkFailed
    }

    public var code: Code
    public var message: String
    /// For `.checkFailed`: every violation found, one sentence each.
    public var violations: [String]

    public init(_ code: Code, _ message: String, violations: [String] = []) {
        self.code = code
        self.message = message
        self.violations = violations
    }

    public var description: String {
        ([ "\(code.rawValue): \(message)" ] + violations.map { "  - \($0)" }).joined(separator: "\n")
    }
}
