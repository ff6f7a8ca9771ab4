// A joiner's snapshot, streamed (docs/MEMBERSHIP.md, "Joins over TCP"). The welcome is one JSON
// control frame as before; the application state follows on the same connection as a run of
// snapshot frames, so a state of any size (memory permitting) reaches the joiner in chunks of
// `chunkBytes`, produced off the event loop and paced by what the connection takes:
//
//   control body = JSON object (starts with "{")            a ControlMessage
//                | 0x00 chunk bytes                         the next piece of the snapshot
//                | 0x01 u64 little-endian total bytes       the end: every chunk was sent
//                | 0x02 UTF-8 reason                        the welcoming member gave up
//
// The member's provider is called on the event loop at the welcome (after the deliveries of the
// view that ends, so the state is exactly the one the joiner starts from) and returns a producer
// that runs in a task of its own: a provider copies a value (copy-on-write, cheap), and the
// producer encodes and writes it at leisure. The joiner starts its runtime as soon as the welcome
// comes, so the group keeps delivering while the state transfers; the application holds what is
// delivered until the state is restored (ReplicatedGroup does).

import LockstepCore
import LockstepWire
import NIOCore

/// Writes a joiner's snapshot from the producer's task. Each `write` is split into chunks and
/// waits while the connection has more than `queuedBytesHighWater` unsent (back-pressure: a slow
/// joiner never makes the welcoming member buffer the whole state).
public final class SnapshotWriter: @unchecked Sendable {
    /// Bytes per snapshot frame (well under `Wire.controlBytesMax`).
    public static let chunkBytes = 256 * 1_024
    /// The connection's unsent bytes above which a write waits.
    static let queuedBytesHighWater = 4 * 1_024 * 1_024
    /// How long a write waits for the connection to take bytes before giving up on the joiner.
    static let stallTimeout: Duration = .seconds(30)

    private let link: TransportLink
    private let eventLoop: EventLoop
    /// Set on the event loop when the joiner's connection goes down.
    private var isCancelled = false
    /// Bytes written so far (the producer's task only).
    public private(set) var bytesWritten: UInt64 = 0

    init(link: TransportLink, eventLoop: EventLoop) {
        self.link = link
        self.eventLoop = eventLoop
    }

    /// Appends `bytes` to the snapshot.
    public func write(_ bytes: some Collection<UInt8>) async throws(RuntimeError) {
        var rest = bytes[...]
        while !rest.isEmpty {
            let piece = rest.prefix(Self.chunkBytes)
            rest = rest.dropFirst(piece.count)
            var body: [UInt8] = []
            body.reserveCapacity(piece.count + 1)
            body.append(SnapshotFrame.chunkTag)
            body.append(contentsOf: piece)
            try await send(body)
            bytesWritten += UInt64(piece.count)
        }
    }

    /// The end of the snapshot.
    func finish() async throws(RuntimeError) {
        var body: [UInt8] = [SnapshotFrame.endTag]
        withUnsafeBytes(of: bytesWritten.littleEndian) { body.append(contentsOf: $0) }
        try await send(body)
    }

    /// The producer failed: tells the joiner why (best effort).
    func abort(_ reason: String) async {
        try? await send([SnapshotFrame.abortTag] + Array(reason.utf8.prefix(1_024)))
    }

    /// Called on the event loop when the joiner's connection is gone.
    func cancel() {
        eventLoop.preconditionInEventLoop()
        isCancelled = true
    }

    private func send(_ body: [UInt8]) async throws(RuntimeError) {
        let frame = ByteBuffer(bytes: Wire.encode(.control(body)))
        let deadline = ContinuousClock.now + Self.stallTimeout
        while true {
            let sent: Bool
            do {
                sent = try await eventLoop.submit { () throws(RuntimeError) -> Bool in
                    guard !self.isCancelled else {
                        throw RuntimeError(.joinFailed, "the joiner's connection closed during its snapshot")
                    }
                    guard self.link.queuedBytes < Self.queuedBytesHighWater else { return false }
                    self.link.write(frame)
                    self.link.flush()
                    return true
                }.get()
            } catch let error as RuntimeError {
                throw error
            } catch {
                throw RuntimeError(.closed, "the member closed during a snapshot transfer")
            }
            if sent { return }
            guard ContinuousClock.now < deadline else {
                throw RuntimeError(.joinFailed, "the joiner took no snapshot bytes for \(Self.stallTimeout)")
            }
            // The connection drains at network speed; a millisecond is a few hundred kilobytes at
            // gigabit rates, well inside the high-water mark.
            do { try await Task.sleep(for: .milliseconds(1)) } catch {
                throw RuntimeError(.closed, "the snapshot transfer was cancelled")
            }
        }
    }
}

/// Produces a joiner's snapshot into a writer, in a task of its own.
public typealias SnapshotProducer = @Sendable (SnapshotWriter) async throws -> Void

enum SnapshotFrame {
    static let chunkTag: UInt8 = 0x00
    static let endTag: UInt8 = 0x01
    static let abortTag: UInt8 = 0x02

    /// Whether a control body is a snapshot frame (a JSON control message starts with "{").
    static func isSnapshotFrame(_ body: [UInt8]) -> Bool { (body.first ?? 0xFF) <= abortTag }
}

/// The joiner's end of a snapshot transfer: the chunks in order, pulled (the connection is read
/// only as fast as the joiner consumes), then the end. Any thread.
public final class SnapshotReceiver: Sendable {
    private let channel: Channel?
    private let handler: ControlAnswerHandler?

    init(channel: Channel, handler: ControlAnswerHandler) {
        self.channel = channel
        self.handler = handler
    }

    /// A receiver of an empty snapshot (tests, and welcomes built by hand).
    public init() {
        channel = nil
        handler = nil
    }

    /// The next chunk, or nil once the whole snapshot came (its size checked). Throws when the
    /// connection closes early, the member gave up, or no byte came for `stallTimeout`.
    public func next() async throws(RuntimeError) -> [UInt8]? {
        guard let channel, let handler else { return nil }
        do {
            return try await channel.eventLoop.flatSubmit { handler.nextChunk(channel: channel) }.get()
        } catch let error as RuntimeError {
            channel.close(promise: nil)
            throw error
        } catch {
            channel.close(promise: nil)
            throw RuntimeError(.joinFailed, "the snapshot transfer failed: \(error)")
        }
    }

    /// The whole snapshot in one array, refused beyond `bytesMax`.
    public func readAll(bytesMax: Int) async throws(RuntimeError) -> [UInt8] {
        var bytes: [UInt8] = []
        while let chunk = try await next() {
            guard bytes.count + chunk.count <= bytesMax else {
                close()
                throw RuntimeError(.joinFailed, "the snapshot is larger than \(bytesMax) bytes")
            }
            bytes.append(contentsOf: chunk)
        }
        return bytes
    }

    /// Stops the transfer (the welcoming member's producer is told by its connection closing).
    public func close() { channel?.close(promise: nil) }
}

/// What happened to the member's membership, as the event observer hears it (on the event loop).
public enum RuntimeEvent: Sendable, Equatable {
    /// A view was installed with this member at `memberRank` (after the last view's deliveries).
    case installed(View, memberRank: Int)
    /// The view is wedged: these members are suspected; a view change follows.
    case wedged(suspected: [MemberID])
    /// This member reaches only `reachable` of the view's `of` members: no view forms here.
    case minority(reachable: Int, of: Int)
    /// This member was removed (it left, or the others suspected it); it stops.
    case removed(reason: String)
    /// Durable mode: the log stopped (a full disk, an IO error); the member leaves the group.
    case storageFailed(reason: String)
}
