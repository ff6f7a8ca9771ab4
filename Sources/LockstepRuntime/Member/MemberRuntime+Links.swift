// What the transport reports (TransportDelegate): links up and down, frames, writability. Every
// peer is a MemberID here; its rank is looked up in the core's view when a frame reaches the core.

import LockstepCore
import LockstepWire
import NIOCore

extension MemberRuntime: TransportDelegate {
    func linkUp(_ link: TransportLink, member: MemberID) {
        eventLoop.preconditionInEventLoop()
        if let old = links[member], old !== link {
            closeLink(old, reason: "replaced by a new connection from \(member)")
        }
        links[member] = link
        knownMembers.insert(member)
        if !deliveriesWanted { link.setReading(false) }
        if let held = heldForJoiners.removeValue(forKey: member) {
            for buffer in held { link.write(buffer) }
            link.flush()
        }
        checkReady()
    }

    func admit(_ hello: Hello) -> Bool {
        eventLoop.preconditionInEventLoop()
        guard hello.member != me else { return false }
        if knownMembers.contains(hello.member) { return true }
        // A joiner: a member of this view that had not connected, or of a view not installed yet.
        let view = core.view
        return hello.viewID > view.id || (hello.viewID == view.id && view.rank(of: hello.member) != nil)
    }

    func received(_ frame: ReceivedFrame, from member: MemberID, link: TransportLink) {
        switch frame.frame {
        case .hello:
            break  // the transport's business (Handshake.swift)
        case .message(let message):
            received(message, from: member, link: link)
        case .relayedData(let batch, let relayed):
            receivedRelayedData(batch, relayed: relayed, from: member, link: link)
        case .block(let block):
            if let raw = frame.raw {
                raw.withUnsafeReadableBytes { bytes in
                    receivedBlock(
                        block, frameBytes: bytes, raw: raw, bytesAt: frame.blockBytesAt, from: member, link: link)
                }
            } else if let lent = frame.lent {
                receivedBlock(block, frameBytes: lent, raw: nil, bytesAt: frame.blockBytesAt, from: member, link: link)
            }
        case .control(let body):
            control(body, link: link, member: member)
        }
    }

    /// One poll for every connection that had reads in this event-loop iteration: NIO reports
    /// the end of reads per channel, and with two lanes per peer a poll each would double the
    /// rows written (a system call each); the deferred poll runs right after the loop's reads.
    func readsComplete() {
        guard !pollAfterReads else { return }
        pollAfterReads = true
        eventLoop.execute(pollAfterReadsTask)
    }

    func linkFailed(_ link: TransportLink, reason: String) {
        if isExpectedDown(links.first { $0.value === link }?.key) {
            logger.info("closing the link of a member that is done: \(reason)")
            return
        }
        stats.linksClosedWithError += 1
        logger.error("closing link: \(reason)")
    }

    func linkWritable(member: MemberID) {
        if let row = pendingRows.removeValue(forKey: member), let link = links[member] {
            link.write(row)
            link.flush()
        }
    }

    func linkDown(_ link: TransportLink, member: MemberID?) {
        guard let member, links[member] === link else { return }
        links[member] = nil
        if isExpectedDown(member) {
            if !isClosed { logger.info("link to \(member), which is done, closed") }
            return
        }
        guard !isClosed, let rank = core.view.rank(of: member) else { return }
        // A failed link is a suspicion (shared through the rows): the member wedges and the view
        // change removes the peer.
        do {
            try core.handle(.linkFailed(memberRank: rank))
        } catch {
            logger.error("the core refused the failure of \(member)'s link: \(error)")
        }
        poll()
        logger.warning("link to member rank \(rank) (\(member)) is down")
    }

    /// Closes one link with a logged reason; the member stays up.
    func closeLink(_ link: TransportLink, reason: String) {
        failAndClose(link, reason: reason)
    }

    /// The first view's members are all connected: the member is ready (`start` returns).
    func checkReady() {
        guard !isReady else { return }
        for member in settings.view.members where member != me && links[member] == nil { return }
        isReady = true
        readyPromise.succeed(())
        for block in relay.forwardBacklog { relayToSuccessor(block, in: core.view) }
        relay.forwardBacklog = []
        poll()
    }

    /// Links of the other members of the view the effects being carried out belong to. Not
    /// `core.view`: after a poll that installs a view the core is already in the next one, while
    /// the effects before `installView` (the leader's install row above all) belong to the old
    /// one and must reach all of its members. A member never connected (a joiner) gets
    /// `holding` kept for it; a known member whose link is down gets nothing (it is suspected).
    func forEachPeerLink(holding buffer: ByteBuffer? = nil, _ body: (MemberID, TransportLink) -> Void) {
        for member in effectView.members where member != me {
            if let link = links[member] {
                body(member, link)
            } else if !knownMembers.contains(member), let buffer {
                holdForJoiner(member, buffer)
            }
        }
    }

    /// A joiner that has not connected yet: keep what it must receive, bounded (sent at its
    /// linkUp). Past the bound the joiner cannot catch up from this member's traffic: what does
    /// not fit is dropped, and said so once per joiner.
    func holdForJoiner(_ member: MemberID, _ buffer: ByteBuffer) {
        let held = heldForJoiners[member, default: []].count
        guard held < nextViewHold.framesMax else {
            if joinersOverflowed.insert(member).inserted {
                logger.error("holding \(held) frames for \(member), which has not connected: dropping what follows")
            }
            return
        }
        heldForJoiners[member, default: []].append(buffer)
    }
}
