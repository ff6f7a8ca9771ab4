// The user's side of a replicated group: a deterministic state machine, how its commands travel,
// and how its state reaches a joiner.

import LockstepCore
import LockstepRuntime

/// A deterministic state machine that a `ReplicatedGroup` keeps the same on every member: each
/// member applies the same commands in the same order, so `apply` must depend on nothing but the
/// state, the command and the entry (no clocks, no randomness, no iteration order of a `Set`).
///
/// Commands travel to every member; responses do not (the member that submitted a command
/// applies it itself and hands the response to its caller), so `Response` needs no encoding.
/// With `Codable` commands and a `Codable` machine, the defaults encode both with
/// `BinaryEncoder` (compact, positional, deterministic).
public protocol ReplicatedStateMachine: Sendable {
    associatedtype Command: Sendable
    associatedtype Response: Sendable

    /// Applies one command. Runs on the member's event loop, in the total order: keep it quick
    /// (a slow apply slows the member's deliveries, and then the group's window).
    mutating func apply(_ command: Command, entry: EntryInfo) -> Response

    /// Called when a view is installed, between the last entry of the old view and the first of
    /// the new one (the same point on every member that stays). Default: nothing.
    mutating func viewInstalled(_ view: GroupView)

    /// The bytes of a command, appended to `bytes` (the group's header is already there).
    static func encode(_ command: Command, into bytes: inout [UInt8]) throws
    /// A command from its bytes. Throwing refuses the entry on every member alike (the submitter
    /// gets `GroupError.commandRefused`); it never stops the member.
    static func decodeCommand(from bytes: ArraySlice<UInt8>) throws -> Command

    /// Writes the state for a joiner, in as many pieces as suits it. Runs off the event loop, on
    /// a copy of the state taken at the view change (a value: copy-on-write makes it cheap).
    func writeSnapshot(to sink: SnapshotSink) async throws
    /// Rebuilds a state from what `writeSnapshot` wrote.
    static func restore(from source: SnapshotSource) async throws -> Self
}

extension ReplicatedStateMachine {
    public mutating func viewInstalled(_ view: GroupView) {}
}

extension ReplicatedStateMachine where Command: Codable {
    public static func encode(_ command: Command, into bytes: inout [UInt8]) throws {
        try BinaryEncoder().encode(command, into: &bytes)
    }

    public static func decodeCommand(from bytes: ArraySlice<UInt8>) throws -> Command {
        try BinaryDecoder().decode(Command.self, from: bytes)
    }
}

extension ReplicatedStateMachine where Command == Payload {
    /// Raw commands: the bytes as given, copied once into the message (the benchmark's path).
    public static func encode(_ command: Command, into bytes: inout [UInt8]) throws {
        bytes.append(contentsOf: command)
    }

    /// Raw commands: a slice of the delivered message, not copied.
    public static func decodeCommand(from bytes: ArraySlice<UInt8>) throws -> Command { bytes }
}

extension ReplicatedStateMachine where Self: Codable {
    /// The whole state, encoded at once off the event loop, then written in chunks. A state far
    /// larger than memory allows twice over wants its own `writeSnapshot` that writes as it goes.
    public func writeSnapshot(to sink: SnapshotSink) async throws {
        try await sink.write(try BinaryEncoder().encode(self)[...])
    }

    public static func restore(from source: SnapshotSource) async throws -> Self {
        var bytes: [UInt8] = []
        while let chunk = try await source.next() { bytes.append(contentsOf: chunk) }
        return try BinaryDecoder().decode(Self.self, from: bytes)
    }
}

/// Where a state machine writes its snapshot (a joiner's connection, or memory in tests).
public protocol SnapshotSink: Sendable {
    /// Appends `bytes`; may wait while the joiner catches up (back-pressure).
    func write(_ bytes: ArraySlice<UInt8>) async throws
}

/// Where a joiner reads its snapshot from, chunk by chunk.
public protocol SnapshotSource: Sendable {
    /// The next piece, or nil at the end.
    func next() async throws -> [UInt8]?
}

/// What an applied entry is, besides its command: the same on every member.
public struct EntryInfo: Sendable, Hashable, CustomStringConvertible {
    /// The entry's place in the group's history of commands: 1 for the first command ever
    /// applied, one more for each after it (read markers are not counted).
    public var position: UInt64
    /// The view it was delivered in.
    public var view: ViewID
    /// The member that submitted it.
    public var sender: MemberID

    public init(position: UInt64, view: ViewID, sender: MemberID) {
        self.position = position
        self.view = view
        self.sender = sender
    }

    public var description: String { "#\(position) (\(view), from \(sender))" }
}

/// A view as the application sees it.
public struct GroupView: Sendable, Hashable, CustomStringConvertible {
    public var id: ViewID
    /// In rank order; the leader is the lowest-ranked member not suspected.
    public var members: [MemberID]
    /// The members that send in this view.
    public var senders: [MemberID]
    /// This member's rank in it.
    public var memberRank: Int

    public init(_ view: View, memberRank: Int) {
        id = view.id
        members = view.members
        senders = view.senderMemberRanks.map { view.members[$0] }
        self.memberRank = memberRank
    }

    public var description: String { "\(id) \(members) (this member at rank \(memberRank))" }
}
