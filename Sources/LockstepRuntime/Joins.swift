// Joins over TCP (docs/MEMBERSHIP.md, step 9). A joining process connects to any member and
// sends a `join` control frame instead of a hello; a member that is not the leader answers
// `redirect`; the leader's core adds the joiner to its next proposal, and when that view is
// installed the leader answers `welcome`: the view, every member's listening address, the
// joiner's rank and the application's snapshot. The joiner then starts an ordinary runtime in
// that view that dials every member; members admit it by its hello (a member of a view they
// may not have installed yet) and hold what they send it until its link is up.
//
// Control bodies are JSON: rare, small, and easier to extend and to debug than a binary layout.

import Foundation
import LockstepCore
import LockstepWire
import Logging
import NIOCore
import NIOPosix

/// A control message (Frame.control), as JSON.
struct ControlMessage: Codable, Sendable {
    /// `done`: a member finished its workload and leaves with the group (MemberRuntime.finish).
    enum Kind: String, Codable, Sendable { case join, redirect, refused, welcome, address, done }
    struct Member: Codable, Sendable {
        var id: UInt64
        var host: String
        var port: Int
        var sends: Bool
    }
    var kind: Kind
    var id: UInt64? = nil
    var host: String? = nil
    var port: Int? = nil
    var reason: String? = nil
    var viewID: UInt64? = nil
    var members: [Member]? = nil
    var rank: Int? = nil
    /// A welcome, unordered mode: the joiner's skip counts (`JoinerStart.skip`).
    var skip: [UInt64]? = nil

    /// The message as a control frame, or why it cannot be one: a body beyond
    /// `Wire.controlBytesMax` (a welcome naming many members with long host names).
    func frame() throws(RuntimeError) -> ByteBuffer {
        let body: [UInt8]
        do {
            body = [UInt8](try JSONEncoder().encode(self))
        } catch {
            throw RuntimeError(.joinFailed, "cannot encode a \(kind) control message: \(error)")
        }
        guard body.count <= Wire.controlBytesMax else {
            throw RuntimeError(
                .joinFailed, "a \(kind) control message of \(body.count) bytes is beyond \(Wire.controlBytesMax) bytes")
        }
        let bytes = Wire.encode(.control(body))
        var buffer = ByteBufferAllocator().buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        return buffer
    }

    /// The frame of a message that is small by construction (no snapshot): failing to encode
    /// one is a programmer error.
    func encoded() -> ByteBuffer {
        do {
            return try frame()
        } catch {
            preconditionFailure("a small \(kind) control message did not encode: \(error)")
        }
    }

    /// The longest host name a control message may carry (a DNS name is at most 253 bytes). A
    /// peer's host is sent on (redirects, welcomes): one far longer could make those frames pass
    /// `Wire.controlBytesMax` (JSON escapes "/" as two bytes).
    static let hostBytesMax = 255

    static func decode(_ body: [UInt8]) throws(RuntimeError) -> ControlMessage {
        let message: ControlMessage
        do {
            message = try JSONDecoder().decode(ControlMessage.self, from: Data(body))
        } catch {
            throw RuntimeError(.joinFailed, "a malformed control message (\(body.count) bytes): \(error)")
        }
        let hosts = [message.host].compactMap { $0 } + (message.members ?? []).map(\.host)
        if let long = hosts.first(where: { $0.utf8.count > hostBytesMax }) {
            throw RuntimeError(
                .joinFailed,
                "a \(message.kind) control message with a host of \(long.utf8.count) bytes (at most \(hostBytesMax))")
        }
        return message
    }
}

/// What a joiner learns from the leader.
public struct Welcome: Sendable {
    public var view: View
    public var memberRank: Int
    public var addresses: [PeerAddress]
    /// The application state at the end of the view before (the welcoming member's snapshot
    /// producer), streamed: read it while the runtime starts (`Snapshots.swift`).
    public var snapshot: SnapshotReceiver
    /// Unordered mode: per sender rank, how many of the sender's first messages in the view the
    /// snapshot already holds (the joiner skips them).
    public var skip: [UInt64] = []
}

extension MemberRuntime {
    /// A join follows at most this many redirects from one contact (a leader that changes
    /// meanwhile redirects again; more than this is a group that cannot settle on one).
    static let redirectsMax = 8
    /// The most contacts one join tries (in order, round after round until its timeout).
    public static let joinContactsMax = 64
    /// Rounds through the contacts at most, and the pause between two.
    static let joinRoundsMax = 1_000
    static let joinRoundPause: Duration = .milliseconds(50)

    /// Asks the group to add `member` (listening at `listen`) through the first of `contacts`
    /// that lets it in, and waits for the welcome. A contact that refuses, is not reachable,
    /// closes, does not answer within `attemptTimeout`, answers like no member, or sends more than
    /// `redirectsMax` redirects costs only itself: the next one is tried, and after the last the
    /// first again (refusals too: most pass). Keep `attemptTimeout` below the group's failure
    /// timeout (`lockstep node` uses half of it). Redirects to the leader
    /// are followed within the contact's attempt. The whole join ends within `timeout`; when
    /// every contact failed, the error names each one and why. Then start a runtime with
    /// `RuntimeSettings(joining:)`.
    ///
    ///     let welcome = try await MemberRuntime.requestJoin(
    ///         member: MemberID(7), listen: PeerAddress(host: "10.0.0.7", port: 7000),
    ///         contacts: [first, second], limits: limits, eventLoop: loop)
    public static func requestJoin(
        member: MemberID, listen: PeerAddress, contacts: [PeerAddress], limits: WireLimits, eventLoop: EventLoop,
        timeout: Duration = .seconds(30), attemptTimeout: Duration = .seconds(1)
    ) async throws -> Welcome {
        guard !contacts.isEmpty, contacts.count <= Self.joinContactsMax else {
            throw RuntimeError(.joinFailed, "a join needs 1...\(Self.joinContactsMax) contacts, got \(contacts.count)")
        }
        let deadline = ContinuousClock.now + timeout
        // Each contact's latest failure, in contact order.
        var failures = contacts.map { "\($0): not tried, the join's \(timeout) had passed" }
        // Round after round through the contacts until the deadline: a joiner is a member of the
        // view that adds it from the install on, and one that has not started within the failure
        // timeout is suspected. Asking again (the same id) is what gets it welcomed when the member
        // that accepted it died after the commit: any member of its view welcomes it when asked.
        for round in 0..<Self.joinRoundsMax {
            for (index, contact) in contacts.enumerated() where ContinuousClock.now < deadline {
                let attemptDeadline = min(deadline, ContinuousClock.now + attemptTimeout)
                do {
                    return try await join(
                        member: member, listen: listen, through: contact, limits: limits, eventLoop: eventLoop,
                        deadline: attemptDeadline)
                } catch {
                    failures[index] = "\(contact): \(Self.reason(error))"
                }
            }
            // Refusals too are asked again: most pass (a welcoming member that lacks an address
            // yet, a leader without a majority for now, an id still in a view that removes it).
            if ContinuousClock.now >= deadline { break }
            if round + 1 < Self.joinRoundsMax { try await Task.sleep(for: Self.joinRoundPause) }
        }
        throw RuntimeError(
            .joinFailed,
            "no contact let \(member) in (\(contacts.count) tried): " + failures.joined(separator: "; "))
    }

    /// One contact: `requestJoin(contacts: [contact])`.
    public static func requestJoin(
        member: MemberID, listen: PeerAddress, contact: PeerAddress, limits: WireLimits, eventLoop: EventLoop,
        timeout: Duration = .seconds(20)
    ) async throws -> Welcome {
        try await requestJoin(
            member: member, listen: listen, contacts: [contact], limits: limits, eventLoop: eventLoop,
            timeout: timeout, attemptTimeout: timeout)
    }

    /// A failure's words, without the error type's decoration where it has its own.
    private static func reason(_ error: Error) -> String {
        if let error = error as? RuntimeError { return error.message }
        return "\(error)"
    }

    /// Asks through one contact, following its redirects, until `deadline`.
    private static func join(
        member: MemberID, listen: PeerAddress, through contact: PeerAddress, limits: WireLimits,
        eventLoop: EventLoop, deadline: ContinuousClock.Instant
    ) async throws -> Welcome {
        var target = contact
        var path = ""
        for _ in 0..<Self.redirectsMax {
            let answer: ControlMessage
            let receiver: SnapshotReceiver?
            do {
                (answer, receiver) = try await ask(
                    target, ControlMessage(kind: .join, id: member.rawValue, host: listen.host, port: listen.port),
                    limits: limits, eventLoop: eventLoop, deadline: deadline)
            } catch {
                throw RuntimeError(.joinFailed, "\(path)\(reason(error))")
            }
            switch answer.kind {
            case .redirect:
                guard let host = answer.host, let port = answer.port else {
                    throw RuntimeError(.joinFailed, "\(path)a redirect without an address")
                }
                target = PeerAddress(host: host, port: port)
                path += "redirected to \(target), "
            case .refused:
                throw RuntimeError(.joinFailed, "\(path)refused: \(answer.reason ?? "no reason given")")
            case .welcome:
                let snapshot = receiver ?? SnapshotReceiver()
                do {
                    return try welcome(answer, for: member, from: target, snapshot: snapshot)
                } catch {
                    snapshot.close()
                    throw error
                }
            case .join, .address, .done:
                throw RuntimeError(.joinFailed, "\(path)not a member's answer (\(answer.kind))")
            }
        }
        throw RuntimeError(.joinFailed, "\(path)more than \(Self.redirectsMax) redirects")
    }

    private static func welcome(
        _ answer: ControlMessage, for member: MemberID, from target: PeerAddress, snapshot: SnapshotReceiver
    ) throws(RuntimeError) -> Welcome {
        guard let viewID = answer.viewID, let members = answer.members, let rank = answer.rank else {
            throw RuntimeError(.joinFailed, "an incomplete welcome from \(target)")
        }
        let view: View
        do {
            view = try View(
                id: ViewID(viewID), members: members.map { MemberID($0.id) },
                senders: members.filter(\.sends).map { MemberID($0.id) })
        } catch {
            throw RuntimeError(.joinFailed, "the welcome's view is invalid: \(error)")
        }
        guard view.members.indices.contains(rank), view.members[rank] == member else {
            throw RuntimeError(.joinFailed, "the welcome does not place \(member) at rank \(rank) of \(view)")
        }
        let skip = answer.skip ?? []
        guard skip.isEmpty || skip.count == view.senderCount else {
            throw RuntimeError(.joinFailed, "the welcome's skip counts do not fit \(view)")
        }
        return Welcome(
            view: view, memberRank: rank, addresses: members.map { PeerAddress(host: $0.host, port: $0.port) },
            snapshot: snapshot, skip: skip)
    }

    /// Sends one control message on a fresh connection and waits for the first control answer.
    private static func ask(
        _ address: PeerAddress, _ message: ControlMessage, limits: WireLimits, eventLoop: EventLoop,
        deadline: ContinuousClock.Instant
    ) async throws -> (ControlMessage, SnapshotReceiver?) {
        let handler = ControlAnswerHandler(answer: eventLoop.makePromise(of: ControlMessage.self))
        let channel: Channel
        do {
            // Connecting counts against the deadline too (a SYN nobody answers).
            let connectTimeout = max(deadline - ContinuousClock.now, .milliseconds(1))
            channel = try await ClientBootstrap(group: eventLoop)
                .channelOption(ChannelOptions.autoRead, value: false)
                .connectTimeout(.nanoseconds(Int64(connectTimeout.nanosecondsClamped)))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            ByteToMessageHandler(FrameDecoder(limits: limits)))
                        try channel.pipeline.syncOperations.addHandler(handler)
                    }
                }
                .connect(host: address.host, port: address.port).get()
        } catch {
            // No channel, so no handler to complete the promise: it must not be left pending.
            eventLoop.execute { handler.finish(.failure(error)) }
            throw error
        }
        let remaining = deadline - ContinuousClock.now
        let timer = eventLoop.scheduleTask(in: .nanoseconds(Int64(max(remaining, .zero).nanosecondsClamped))) {
            handler.finish(.failure(RuntimeError(.joinFailed, "no answer from \(address) in time")))
        }
        defer { timer.cancel() }
        do {
            try await channel.writeAndFlush(message.encoded()).get()
            let answer = try await handler.answer.futureResult.get()
            // A welcome's connection carries the snapshot next: the receiver owns it from here.
            guard answer.kind == .welcome else {
                channel.close(promise: nil)
                return (answer, nil)
            }
            return (answer, SnapshotReceiver(channel: channel, handler: handler))
        } catch {
            channel.close(promise: nil)
            throw error
        }
    }
}

/// Fulfils a promise with the first control frame of a connection (or fails it on close); after
/// a welcome, queues the snapshot frames that follow and hands them out as the joiner pulls
/// (`SnapshotReceiver`). The connection is read only when asked: autoRead is off from the start.
/// Used on one event loop only; completes the answer promise once.
final class ControlAnswerHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ReceivedFrame
    let answer: EventLoopPromise<ControlMessage>
    private var done = false
    // The snapshot after a welcome.
    private var chunks = CircularBuffer<[UInt8]>()
    private var chunkBytesReceived: UInt64 = 0
    private var ended = false
    private var failure: RuntimeError?
    private var waiter: EventLoopPromise<[UInt8]?>?
    private var stallTimer: Scheduled<Void>?
    /// Chunks queued before the connection is read no further (4 x 256 KiB).
    static let chunksQueuedMax = 4

    init(answer: EventLoopPromise<ControlMessage>) { self.answer = answer }

    func finish(_ result: Result<ControlMessage, Error>) {
        guard !done else { return }
        done = true
        answer.completeWith(result)
    }

    func channelActive(context: ChannelHandlerContext) {
        context.read()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .control(let body) = unwrapInboundIn(data).frame else { return }
        guard done else {
            do {
                finish(.success(try ControlMessage.decode(body)))
            } catch {
                finish(.failure(error))
            }
            return
        }
        guard !ended, failure == nil else { return }
        guard SnapshotFrame.isSnapshotFrame(body) else {
            return fail(RuntimeError(.joinFailed, "a control message where the snapshot was expected"))
        }
        switch body[0] {
        case SnapshotFrame.chunkTag:
            chunkBytesReceived += UInt64(body.count - 1)
            chunks.append(Array(body.dropFirst()))
        case SnapshotFrame.endTag:
            guard body.count == 9 else { return fail(RuntimeError(.joinFailed, "a malformed snapshot end")) }
            let total = body[1...].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            guard total == chunkBytesReceived else {
                return fail(
                    RuntimeError(
                        .joinFailed, "the snapshot ended at \(chunkBytesReceived) bytes of the \(total) announced"))
            }
            ended = true
        default:
            let reason = String(decoding: body.dropFirst(), as: UTF8.self)
            return fail(RuntimeError(.joinFailed, "the welcoming member gave up the snapshot: \(reason)"))
        }
        serveWaiter()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // Before the answer, and while the joiner has few chunks queued, read on.
        if !done || (!ended && failure == nil && chunks.count < Self.chunksQueuedMax) { context.read() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(.failure(RuntimeError(.joinFailed, "the connection closed before an answer")))
        if !ended { fail(RuntimeError(.joinFailed, "the connection closed during the snapshot")) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        finish(.failure(error))
        fail(RuntimeError(.joinFailed, "the snapshot connection failed: \(error)"))
    }

    /// The joiner asks for the next chunk (on the event loop).
    func nextChunk(channel: Channel) -> EventLoopFuture<[UInt8]?> {
        precondition(waiter == nil, "one snapshot chunk is asked for at a time")
        let promise = channel.eventLoop.makePromise(of: [UInt8]?.self)
        waiter = promise
        serveWaiter()
        if waiter != nil {
            channel.read()
            stallTimer = channel.eventLoop.scheduleTask(
                in: .nanoseconds(Int64(SnapshotWriter.stallTimeout.nanosecondsClamped))
            ) {
                self.fail(RuntimeError(.joinFailed, "no snapshot bytes for \(SnapshotWriter.stallTimeout)"))
            }
        }
        return promise.futureResult
    }

    private func fail(_ error: RuntimeError) {
        guard failure == nil, !ended else { return }
        failure = error
        serveWaiter()
    }

    private func serveWaiter() {
        guard let promise = waiter else { return }
        if let chunk = chunks.popFirst() {
            waiter = nil
            stallTimer?.cancel()
            promise.succeed(chunk)
        } else if ended {
            waiter = nil
            stallTimer?.cancel()
            promise.succeed(nil)
        } else if let failure {
            waiter = nil
            stallTimer?.cancel()
            promise.fail(failure)
        }
    }
}
