// The rules every link follows, whatever carries it (TCP connections or an RDMA queue pair):
// the dialer's first frame is its hello; an accepted link is nobody until its hello is admitted;
// a second hello, or any other frame before the hello, is a broken protocol and fails the link;
// a failed link is reported and closed, never repaired; a refused dial is retried every
// `DialSchedule.retryInterval` until the deadline.

import LockstepCore
import LockstepWire
import NIOCore

/// Where a link stands in its handshake, and what each frame that arrives on it means.
struct HandshakeGate {
    /// Who the peer is: known at once on a link this member dialed, from the hello on one it
    /// accepted.
    private(set) var member: MemberID?

    init(member: MemberID?) { self.member = member }

    enum Step: Equatable {
        /// A control frame: taken on any link, identified or not (a joiner's never sends a hello).
        case control([UInt8])
        /// The peer's hello: admit it (then `admitted`) or refuse it.
        case hello(Hello)
        /// A protocol frame from `member`.
        case frame(from: MemberID)
        /// The peer broke the handshake: fail the link for this reason.
        case refuse(String)
    }

    func step(for frame: Frame) -> Step {
        switch frame {
        case .control(let body):
            return .control(body)
        case .hello(let hello):
            return member == nil ? .hello(hello) : .refuse("a second hello on a live link")
        case .message, .relayedData, .block:
            guard let member else { return .refuse("a frame before the hello") }
            return .frame(from: member)
        }
    }

    mutating func admitted(_ hello: Hello) { member = hello.member }
}

extension Hello {
    /// This member's hello, for the `lane` it opens.
    init(from settings: RuntimeSettings, lane: Lane = .all) {
        self.init(
            member: settings.view.members[settings.memberRank], viewID: settings.view.id,
            memberRank: settings.memberRank, senderCount: settings.view.senderCount, lane: lane)
    }

    /// The hello as a frame.
    func encoded(allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: Wire.encodedHelloBytes)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: Wire.encodedHelloBytes) { Wire.encode(self, into: $0) }
        return buffer
    }
}

extension TransportDelegate {
    /// A link broke the protocol or failed: reported once, then closed (the member stays up).
    func failAndClose(_ link: TransportLink, reason: String) {
        linkFailed(link, reason: reason)
        link.close()
    }
}

/// When to dial a peer again after a refused or failed attempt (peers start in any order).
struct DialSchedule {
    /// Between two attempts to reach one peer.
    static let retryInterval = Duration.milliseconds(50)
    let deadline: ContinuousClock.Instant

    init(timeout: Duration) { deadline = ContinuousClock.now + timeout }

    /// After an attempt failed for `reason`: when to try again, or (past the deadline) the
    /// error to give up with, naming `peer`.
    func nextAttempt(to peer: String, after reason: String) throws(RuntimeError) -> ContinuousClock.Instant {
        let now = ContinuousClock.now
        guard now <= deadline else { throw RuntimeError(.connectFailed, "cannot connect to \(peer): \(reason)") }
        return now + Self.retryInterval
    }
}

extension RuntimeSettings {
    /// How a peer is named in errors and logs: who, at which rank of the first view, where.
    func describePeer(rank: Int) -> String {
        "member \(view.members[rank]) (rank \(rank)) at \(addresses[rank])"
    }
}
