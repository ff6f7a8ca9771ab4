// The rules around the user's state machine, sans IO, shared by ReplicatedGroup (on the runtime)
// and LocalGroup (on the simulator): what an entry is inside a multicast message, applying
// entries in the total order, and the snapshot's header. Neither shell has a rule of its own.
//
// An entry (one multicast message):
//
//   kind u8 (1 command, 2 read marker) | request u64 little-endian | command bytes (commands)
//
// `request` is the submitting member's number for it (0: nobody waits for the answer, as with
// `enqueue`); with the message's sender it names the caller to answer. A read marker carries no
// command: when it is applied, the reading member's state includes every write that completed
// anywhere before the read was submitted (it is ordered after them).
//
// A snapshot starts with the position of the last command applied (u64 little-endian), then the
// machine's own bytes.

import LockstepCore

package enum EntryKind: UInt8 {
    case command = 1
    case read = 2
}

package enum Entry {
    package static let headerBytes = 9
    package static let snapshotHeaderBytes = 8

    /// A message with the header of an entry of `kind`, ready for the command's bytes.
    package static func header(_ kind: EntryKind, request: UInt64, capacity: Int = 64) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(headerBytes + capacity)
        bytes.append(kind.rawValue)
        appendLittleEndian(request, to: &bytes)
        return bytes
    }

    static func appendLittleEndian(_ value: UInt64, to bytes: inout [UInt8]) {
        for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    static func readLittleEndian(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        precondition(bytes.count == 8, "a u64 is 8 bytes")
        return bytes.reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }
}

/// What applying one delivered message came to.
package enum Applied<Response> {
    /// A command was applied; `request` is its submitter's number (0: no answer wanted).
    case command(request: UInt64, sender: MemberID, entry: EntryInfo, response: Response)
    /// A read marker came round: the reading member answers from its state now.
    case read(request: UInt64, sender: MemberID)
    /// The command's bytes did not decode: every member refuses it alike.
    case refused(request: UInt64, sender: MemberID, reason: String)
    /// Not an entry at all (a member of another program in the group?): skipped everywhere.
    case malformed(sender: MemberID, reason: String)
}

/// The state machine and its place in the order.
package struct Replica<Machine: ReplicatedStateMachine>: Sendable {
    package var machine: Machine
    /// The position of the last command applied (0: none yet).
    package var position: UInt64

    package init(machine: Machine, position: UInt64 = 0) {
        self.machine = machine
        self.position = position
    }

    /// Applies one delivered message.
    package mutating func apply(_ delivery: Delivery) -> Applied<Machine.Response> {
        let payload = delivery.payload
        guard payload.count >= Entry.headerBytes, let kind = EntryKind(rawValue: payload[payload.startIndex]) else {
            return .malformed(sender: delivery.sender, reason: "a message of \(payload.count) bytes is not an entry")
        }
        let requestStart = payload.startIndex + 1
        let request = Entry.readLittleEndian(payload[requestStart..<requestStart + 8])
        let body = payload[(requestStart + 8)...]
        switch kind {
        case .read:
            return .read(request: request, sender: delivery.sender)
        case .command:
            let command: Machine.Command
            do {
                command = try Machine.decodeCommand(from: body)
            } catch {
                return .refused(request: request, sender: delivery.sender, reason: "\(error)")
            }
            position += 1
            let entry = EntryInfo(position: position, view: delivery.viewID, sender: delivery.sender)
            let response = machine.apply(command, entry: entry)
            return .command(request: request, sender: delivery.sender, entry: entry, response: response)
        }
    }
}

/// A snapshot in memory (LocalGroup, and tests): a sink that keeps what it is given, a source
/// that gives it back.
package final class MemorySnapshot: SnapshotSink, SnapshotSource, @unchecked Sendable {
    // Used by one task at a time: written fully, then read.
    private var chunks: [[UInt8]] = []
    private var next = 0

    package init() {}

    package func write(_ bytes: ArraySlice<UInt8>) async throws { chunks.append(Array(bytes)) }

    package func next() async throws -> [UInt8]? {
        guard next < chunks.count else { return nil }
        defer { next += 1 }
        return chunks[next]
    }
}

/// A source that takes the snapshot header off the front of another (the position, read first).
final class PositionedSource: SnapshotSource, @unchecked Sendable {
    // Used by the restoring task only.
    private let base: SnapshotSource
    private var rest: [UInt8] = []

    init(_ base: SnapshotSource) { self.base = base }

    /// Reads the header; after it, `next` gives the machine's bytes.
    func readPosition() async throws -> UInt64 {
        var header: [UInt8] = []
        while header.count < Entry.snapshotHeaderBytes {
            guard let chunk = try await base.next() else {
                throw GroupError.joinFailed("the snapshot ended in its header")
            }
            header.append(contentsOf: chunk)
        }
        rest = Array(header[Entry.snapshotHeaderBytes...])
        return Entry.readLittleEndian(header[..<Entry.snapshotHeaderBytes])
    }

    func next() async throws -> [UInt8]? {
        if !rest.isEmpty {
            defer { rest = [] }
            return rest
        }
        return try await base.next()
    }
}

extension Replica {
    /// The entry of a command, as every member decodes it (`apply`); at most `messageBytesMax`.
    package static func entry(
        _ command: Machine.Command, request: UInt64, messageBytesMax: Int
    ) throws(GroupError) -> [UInt8] {
        var payload = Entry.header(.command, request: request)
        do {
            try Machine.encode(command, into: &payload)
        } catch {
            throw GroupError(.commandTooLarge, "the command did not encode: \(error)")
        }
        guard payload.count <= messageBytesMax else {
            throw GroupError(
                .commandTooLarge, "a command of \(payload.count) bytes is beyond messageBytesMax \(messageBytesMax)")
        }
        return payload
    }

    /// The entry of a read marker.
    package static func readMarker(request: UInt64) -> [UInt8] { Entry.header(.read, request: request, capacity: 0) }

    /// Writes the snapshot of a copy of this replica (call off the event loop).
    package static func writeSnapshot(of replica: Replica, to sink: SnapshotSink) async throws {
        var header: [UInt8] = []
        Entry.appendLittleEndian(replica.position, to: &header)
        try await sink.write(header[...])
        try await replica.machine.writeSnapshot(to: sink)
    }

    /// A replica restored from a snapshot `writeSnapshot` wrote.
    package static func restore(from source: SnapshotSource) async throws -> Replica {
        let positioned = PositionedSource(source)
        let position = try await positioned.readPosition()
        let machine = try await Machine.restore(from: positioned)
        return Replica(machine: machine, position: position)
    }
}
