// The runtime's errors: one type with a code a caller can switch on and a message that says
// what happened in words (the CLI prints the message as it is).

/// Why a runtime could not start, a send was refused, or a join failed.
public struct RuntimeError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Code: String, Sendable, Equatable {
        /// A setting is out of range, or the settings contradict each other (the message names
        /// the field).
        case invalidSettings
        /// The transport asked for is not available here (no RDMA device, or not for joins).
        case transportUnavailable
        /// The member could not listen on its address.
        case listenFailed
        /// A peer could not be reached before `connectTimeout`.
        case connectFailed
        /// The member closed (or was closing) while the call waited.
        case closed
        /// More application sends wait for the window than `sendQueueMessagesMax`.
        case sendQueueFull
        /// The core refused a message (wedged, removed, or too large for the configuration).
        case sendRefused
        /// A join was refused, redirected too often, or answered with something malformed.
        case joinFailed
        /// This member was removed from the group: nothing more is sent from it.
        case removed
        /// This member is in a minority of its view: nothing is admitted until it installs one.
        case minority
        /// Durable mode: the log could not be opened, or stopped (a full disk, an IO error): the
        /// member leaves the group, which goes on without it; its log ends at its last commit.
        case storageFailed
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
