// What went wrong, in words a caller can act on. One type with a code to switch on.

import LockstepRuntime

/// Why a group call failed.
public struct GroupError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable {
        /// This member is no longer in the group (it was suspected and removed, or it left). A
        /// command submitted before may or may not have been applied by the others.
        case removed
        /// This member reaches a minority of its view: no view forms here, nothing is applied
        /// here until the partition heals or it is removed. Reads fail rather than answer stale;
        /// a command waiting when this happened may still be applied later.
        case minority
        /// The group was left or closed (or never ran).
        case closed
        /// More commands wait for the window than `sendQueueMessagesMax`.
        case sendQueueFull
        /// The command was not applied: its bytes did not decode on the members (the same on all).
        case commandRefused
        /// Joining failed (no contact let this member in, or the snapshot did not arrive).
        case joinFailed
        /// A configuration value is out of range (the message names the field).
        case invalidConfiguration
        /// The group could not start (listen, connect).
        case startFailed
        /// No answer within `operationTimeout`: the command may still be applied.
        case timedOut
        /// The command is larger than the configuration allows, or did not encode.
        case commandTooLarge
        /// Durable mode: this member's log could not be opened, or stopped (a full disk, an IO
        /// error); the member left the group, which goes on without it.
        case storageFailed
    }

    public var code: Code
    public var message: String
    /// For `.invalidConfiguration`: the field, as `GroupConfiguration` spells it.
    public var field: String?

    public init(_ code: Code, _ message: String, field: String? = nil) {
        self.code = code
        self.message = message
        self.field = field
    }

    public var description: String { "\(code.rawValue): \(message)" }

    static func joinFailed(_ message: String) -> GroupError { GroupError(.joinFailed, message) }

    static func invalid(_ field: String, _ reason: String) -> GroupError {
        GroupError(.invalidConfiguration, "\(field) \(reason)", field: field)
    }

    /// The group's words for a runtime failure.
    init(_ error: RuntimeError) {
        switch error.code {
        case .closed: self.init(.closed, error.message)
        case .removed: self.init(.removed, error.message)
        case .minority: self.init(.minority, error.message)
        case .sendQueueFull: self.init(.sendQueueFull, error.message)
        case .sendRefused: self.init(.commandTooLarge, error.message)
        case .joinFailed: self.init(.joinFailed, error.message)
        case .invalidSettings: self.init(.invalidConfiguration, error.message)
        case .transportUnavailable, .listenFailed, .connectFailed: self.init(.startFailed, error.message)
        case .storageFailed: self.init(.storageFailed, error.message)
        }
    }
}
