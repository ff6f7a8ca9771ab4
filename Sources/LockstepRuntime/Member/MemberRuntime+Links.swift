// What the transport reports (TransportDelegate): links up and down, frames, writability. Every
// peer is a MemberID here; its rank is looked up in the core's view when a frame reaches the shell.core.

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
        if !deliveriesWanted || readingPaused.contains(member) { link.setReading(false) }
        if let held = heldForJoiners.removeValue(forKey: member) {
            if let lost = held.lost {
                // What it must receive was not all kept: it would find a gap and close anyway.
                closeLink(link, reason: "\(member) connected after \(lost) frames for it were more than could be held")
                return
            }
            for buffer in held.buffers { link.write(buffer) }
            link.flush()
        }
        checkReady()
    }

    func admit(_ hello: Hello) -> Bool {
        eventLoop.preconditionInEventLoop()
        guard hello.member != me else { return false }
        if knownMembers.contains(hello.member) { return true }
        // A joiner: a member of this view that had not connected, or of a view not installed yet.
        let view = shell.core.view
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
        snapshotWriters.removeValue(forKey: ObjectIdentifier(link))?.cancel()
        if let joiner = joinerLinks.first(where: { $0.value === link })?.key {
            joinerLinks[joiner] = nil
            shell.joinerGone(joiner)
        }
        guard let member, links[member] === link else { return }
        links[member] = nil
        if isExpectedDown(member) {
            if !isClosed { logger.info("link to \(member), which is done, closed") }
            return
        }
        guard !isClosed, shell.core.view.rank(of: member) != nil else { return }
        // A failed link is a suspicion (shared through the rows): the member wedges and the view
        // change removes the peer.
        shell.linkFailed(member)
        poll()
        logger.warning("link to \(member) is down")
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
        for block in relay.forwardBacklog { relayToSuccessor(block, in: shell.core.view) }
        relay.forwardBacklog = []
        poll()
    }

    /// Links of the other members of `view` (the view an effect names: after a poll that
    /// installs a view, effects before the install belong to the old one). A member never
    /// connected (a joiner) gets `holding` kept for it; a known member whose link is down gets
    /// nothing (it is suspected).
    func forEachPeerLink(
        in view: View? = nil, holding buffer: ByteBuffer? = nil, row: Row? = nil,
        _ body: (MemberID, TransportLink) -> Void
    ) {
        for member in (view ?? shell.core.view).members where member != me {
            if let link = links[member] {
                body(member, link)
            } else if !knownMembers.contains(member), let buffer {
                holdForJoiner(member, buffer, row: row)
            }
        }
    }

    /// A joiner that has not connected yet: keep what it must receive (sent at its linkUp).
    func holdForJoiner(_ member: MemberID, _ buffer: ByteBuffer, row: Row?) {
        var hold = heldForJoiners[member] ?? JoinerHold(configuration: settings.configuration)
        if hold.hold(buffer, row: row) {
            logger.error("more is to be held for \(member), which has not connected, than \(hold.framesMax) frames")
        }
        heldForJoiners[member] = hold
    }
}

/// What a member holds for a joiner that has not connected yet, in order. Rows are latest-wins,
/// so only the newest row is kept (an install row is never replaced: it is what a straggler
/// needs); data is bounded by the window, which waits for the joiner's acknowledgements. So an
/// honest group never passes the bound; if it is passed anyway, the hold is marked lost and the
/// joiner's link is closed when it comes, rather than fed a gap.
struct JoinerHold {
    private(set) var buffers: [ByteBuffer] = []
    /// Where the newest row is in `buffers`, unless it carries an install.
    private var replaceableRowAt: Int?
    private(set) var lost: Int? = nil
    let framesMax: Int

    init(configuration: Configuration) {
        framesMax = 4 * configuration.windowMessagesMax + 1_024
    }

    /// Holds `buffer`; returns true the first time the bound is passed.
    mutating func hold(_ buffer: ByteBuffer, row: Row?) -> Bool {
        if let lost {
            self.lost = lost + 1
            return false
        }
        if let row, let at = replaceableRowAt {
            buffers[at] = buffer
            replaceableRowAt = row.installNumber != 0 ? nil : at
            return false
        }
        guard buffers.count < framesMax else {
            lost = 1
            buffers = []
            return true
        }
        if let row { replaceableRowAt = row.installNumber != 0 ? nil : buffers.count }
        buffers.append(buffer)
        return false
    }
}
