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
    var snapshot: Data? = nil
    /// A welcome, unordered mode: the joiner's skip counts (`JoinerStart.skip`).
    var skip: [UInt64]? = nil

    /// The message as a control frame, or why it cannot be one: a body beyond
    /// `Wire.controlBytesMax` (a welcome whose snapshot is too large for one frame).
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
        precondition(snapshot == nil, "a control message with a snapshot is encoded with frame(), which can fail")
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
    /// The application state at the end of the view before (the welcoming member's snapshot hook).
    public var snapshot: [UInt8]
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
            do {
                answer = try await ask(
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
                return try welcome(answer, for: member, from: target)
            case .join, .address, .done:
                throw RuntimeError(.joinFailed, "\(path)not a member's answer (\(answer.kind))")
            }
        }
        throw RuntimeError(.joinFailed, "\(path)more than \(Self.redirectsMax) redirects")
    }

    private static func welcome(
        _ answer: ControlMessage, for member: MemberID, from target: PeerAddress
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
            snapshot: answer.snapshot.map { [UInt8]($0) } ?? [], skip: skip)
    }

    /// Sends one control message on a fresh connection and waits for the first control answer.
    private static func ask(
        _ address: PeerAddress, _ message: ControlMessage, limits: WireLimits, eventLoop: EventLoop,
        deadline: ContinuousClock.Instant
    ) async throws -> ControlMessage {
        let handler = ControlAnswerHandler(answer: eventLoop.makePromise(of: ControlMessage.self))
        let channel: Channel
        do {
            // Connecting counts against the deadline too (a SYN nobody answers).
            let connectTimeout = max(deadline - ContinuousClock.now, .milliseconds(1))
            channel = try await ClientBootstrap(group: eventLoop)
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
        defer { channel.close(promise: nil) }
        try await channel.writeAndFlush(message.encoded()).get()
        let remaining = deadline - ContinuousClock.now
        let timer = eventLoop.scheduleTask(in: .nanoseconds(Int64(max(remaining, .zero).nanosecondsClamped))) {
            handler.finish(.failure(RuntimeError(.joinFailed, "no answer from \(address) in time")))
        }
        defer { timer.cancel() }
        return try await handler.answer.futureResult.get()
    }
}

/// Fulfils a promise with the first control frame of a connection (or fails it on close).
/// Used on one event loop only; completes the promise once.
final class ControlAnswerHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ReceivedFrame
    let answer: EventLoopPromise<ControlMessage>
    private var done = false
    init(answer: EventLoopPromise<ControlMessage>) { self.answer = answer }
    func finish(_ result: Result<ControlMessage, Error>) {
        guard !done else { return }
        done = true
        answer.completeWith(result)
    }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .control(let body) = unwrapInboundIn(data).frame {
            do {
                finish(.success(try ControlMessage.decode(body)))
            } catch {
                finish(.failure(error))
            }
        }
    }
    func channelInactive(context: ChannelHandlerContext) {
        finish(.failure(RuntimeError(.joinFailed, "the connection closed before an answer")))
    }
    func errorCaught(context: ChannelHandlerContext, error: Error) { finish(.failure(error)) }
}
