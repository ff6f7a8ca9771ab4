// Control frames (Joins.swift has their format): a joiner's address, join requests (accepted,
// redirected to the leader, or refused), the welcome a leader sends once the joiner's view is
// installed, and `done` (finishing together).

import Foundation
import LockstepCore
import LockstepWire
import NIOCore

extension MemberRuntime {
    func control(_ body: [UInt8], link: TransportLink, member: MemberID?) {
        let message: ControlMessage
        do {
            message = try ControlMessage.decode(body)
        } catch {
            closeLink(link, reason: "a malformed control frame: \(error)")
            return
        }
        switch message.kind {
        case .address:
            if let member, let host = message.host, let port = message.port, message.id == member.rawValue {
                addresses[member] = PeerAddress(host: host, port: port)
            }
        case .join:
            join(message, link: link)
        case .done:
            guard let member, message.id == member.rawValue else {
                closeLink(link, reason: "a done frame from an unidentified link or for another member")
                return
            }
            membersDone.insert(member)
            logger.info("member \(member) is done (heard at \(NIODeadline.now().uptimeNanoseconds / 1_000_000) ms)")
            checkAllDone()
        case .redirect, .refused, .welcome:
            closeLink(link, reason: "unexpected control frame \(message.kind) from a peer")
        }
    }

    /// A join request: this member accepts it (it leads), welcomes it at once (the joiner is in
    /// this member's view already: its join was committed and its welcome never came), redirects
    /// to the leader, or refuses (the member shell decides).
    private func join(_ message: ControlMessage, link: TransportLink) {
        guard let id = message.id, let host = message.host, let port = message.port else {
            closeLink(link, reason: "a join without id or address")
            return
        }
        let joiner = MemberID(id)
        let address = PeerAddress(host: host, port: port)
        if let waiting = addresses[joiner], waiting != address, joinerLinks[joiner] != nil {
            // Two processes with one id (a rejoin id drawn twice): the first keeps it.
            link.write(
                ControlMessage(kind: .refused, reason: "\(joiner) is asked for by another process (\(waiting))")
                    .encoded())
            link.flush()
            return
        }
        switch shell.requestJoin(joiner) {
        case .accepted:
            joinerLinks[joiner] = link
            addresses[joiner] = address
            logger.warning("accepted a join from \(joiner) at \(address)")
            poll()
        case .welcome(let start):
            addresses[joiner] = address
            logger.warning("\(joiner) asks to join \(start.view.id), which it is in: welcoming it")
            welcome(joiner, start, on: link)
        case .redirect(let leader):
            if let leaderAddress = addresses[leader] {
                link.write(
                    ControlMessage(kind: .redirect, host: leaderAddress.host, port: leaderAddress.port).encoded())
            } else {
                link.write(ControlMessage(kind: .refused, reason: "the leader's address is unknown here").encoded())
            }
            link.flush()
        case .refused(let reason):
            link.write(ControlMessage(kind: .refused, reason: reason).encoded())
            link.flush()
        }
    }

    /// Sends `joiner` its welcome: the view, every member's address, its rank, the skip counts
    /// and this member's snapshot.
    func welcome(_ joiner: MemberID, _ start: JoinerStart, on link: TransportLink) {
        let view = start.view
        var members: [ControlMessage.Member] = []
        for (memberRank, id) in view.members.enumerated() {
            guard let address = addresses[id] else {
                logger.error("cannot welcome \(joiner): no address for \(id)")
                link.write(ControlMessage(kind: .refused, reason: "no address for \(id) here").encoded())
                link.flush()
                return
            }
            let sends = view.senderRank(ofMemberRank: memberRank) != nil
            members.append(.init(id: id.rawValue, host: address.host, port: address.port, sends: sends))
        }
        // The snapshot first: a member that cannot give one refuses, and the joiner asks on.
        let producer: SnapshotProducer
        if let provider = snapshotProvider {
            guard let made = provider() else {
                link.write(
                    ControlMessage(kind: .refused, reason: "this member's own state has not arrived yet").encoded())
                link.flush()
                return
            }
            producer = made
        } else {
            producer = { @Sendable _ in }
        }
        var welcome = ControlMessage(kind: .welcome, viewID: view.id.rawValue, members: members, rank: start.memberRank)
        welcome.skip = start.skip.isEmpty ? nil : start.skip
        do {
            link.write(try welcome.frame())
        } catch {
            logger.error("cannot welcome \(joiner): \(error)")
            link.write(ControlMessage(kind: .refused, reason: error.message).encoded())
            link.flush()
            return
        }
        link.flush()
        streamSnapshot(producer, to: joiner, on: link)
    }

    /// Streams the application's snapshot after a welcome (Snapshots.swift): the provider runs
    /// now, on the event loop, after the deliveries of the view that ended; its producer runs in
    /// a task of its own, paced by the joiner's connection.
    private func streamSnapshot(_ producer: @escaping SnapshotProducer, to joiner: MemberID, on link: TransportLink) {
        let writer = SnapshotWriter(link: link, eventLoop: eventLoop)
        snapshotWriters[ObjectIdentifier(link)] = writer
        stats.snapshotsStarted += 1
        let logger = self.logger
        Task {
            let started = ContinuousClock.now
            do {
                try await producer(writer)
                try await writer.finish()
                let elapsed = ContinuousClock.now - started
                logger.info("sent \(joiner) its snapshot: \(writer.bytesWritten) bytes in \(elapsed)")
            } catch {
                logger.error("the snapshot for \(joiner) failed after \(writer.bytesWritten) bytes: \(error)")
                await writer.abort("\(error)")
            }
            self.eventLoop.execute { self.snapshotWriters[ObjectIdentifier(link)] = nil }
        }
    }
}
