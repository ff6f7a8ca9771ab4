// What can go wrong with a member's log, said so that an operator knows what to do.

/// A storage failure. A full disk and an IO error stop the log cleanly (nothing is committed
/// half-way); a corrupt log is refused, never silently used.
public struct StorageError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// No space left for a record or a new segment: the log stopped at its last commit.
        case diskFull
        /// A read, write or sync failed (errno in the message).
        case io
        /// A record that a later commit covers fails its checksum, or a segment header is
        /// damaged: the log cannot be trusted past it (repair from a peer, or refuse).
        case corrupt
        /// The directory holds no log, or one this version cannot read.
        case notALog
        /// The log was closed, or stopped after an earlier failure.
        case stopped
        /// Limits that cannot work together (the message names them).
        case invalidSettings
        /// Appends wait on the disk beyond the bound on pending bytes: wait for `persisted`.
        case backPressure
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}
