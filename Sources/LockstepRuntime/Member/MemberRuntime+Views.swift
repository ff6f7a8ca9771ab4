// Traffic of other views, and installs: a peer ahead (it installed the next view first) has its
// frames held until this member installs that view too; a peer behind (it missed the install)
// is answered with this member's last row of its view, which carries the install.

import LockstepCore
import LockstepWire
import NIOCore
import NIOPosix

extension MemberRuntime {
    func received(_ message: Message, from member: MemberID, link: TransportLink) {
        if case .row = message { noteRowArrival(from: member) }
        let viewID = message.viewID
        guard viewID == core.view.id else { return receivedOfOtherView(message, from: member, link: link) }
        guard let rank = core.view.rank(of: member) else {
            stats.staleMessagesDropped += 1
            return
        }
        if case .data(let batch) = message, relay.isWaiting(for: member) {
            // Behind a batch that waits for relayed payloads: keep the sender's order.
            relay.wait(batch, relayed: [], from: member)
            return
        }
        do {
            try core.handle(.received(message, fromMemberRank: rank))
        } catch {
            closeLink(link, reason: "member rank \(rank) (\(member)) broke the protocol: \(error)")
        }
    }

    private func receivedOfOtherView(_ message: Message, from member: MemberID, link: TransportLink) {
        let viewID = message.viewID
        if viewID > core.view.id {
            // A peer installed the next view first: hold its traffic until this member does.
            guard hold(.message(message), from: member, viewID: viewID, link: link) else { return }
            // Its sender is alive even if this member is slow to install the view.
            if let rank = core.view.rank(of: member) { heard(fromMemberRank: rank) }
            return
        }
        stats.staleMessagesDropped += 1
        // The sender is still in a view this member has left: it missed the install. This
        // member's last row of that view carries it (once per straggler and view).
        if let last = core.lastRowOfPreviousView, last.viewID == viewID,
            answeredStragglers.insert(Straggler(member: member, viewID: viewID)).inserted
        {
            link.write(encode(.row(last)))
            link.flush()
        }
    }

    /// Tells the failure detector `rank` is alive. The core refuses only a rank outside its view,
    /// which the callers have looked up in that view.
    func heard(fromMemberRank rank: Int) {
        do {
            try core.handle(.heard(fromMemberRank: rank))
        } catch {
            preconditionFailure("the core refused to hear from rank \(rank) of \(core.view): \(error)")
        }
    }

    /// The longest gap between two rows from one peer: what the failure detector sees. Rows come
    /// at least every heartbeat interval, so the gap beyond that is how long a row waited.
    private func noteRowArrival(from member: MemberID) {
        let now = NIODeadline.now().uptimeNanoseconds
        if let last = lastRowArrival[member] {
            stats.rowGapMaxNanoseconds = max(stats.rowGapMaxNanoseconds, now - last)
        }
        lastRowArrival[member] = now
    }

    /// Holds a frame of a view not installed yet; false if that would pass the bound (the link
    /// is then closed: a peer this far ahead is not one this member can catch up with).
    func hold(_ frame: HeldFrame, from member: MemberID, viewID: ViewID, link: TransportLink) -> Bool {
        guard nextViewHold.hold(frame, from: member) else {
            let bounds = "\(nextViewHold.framesMax) frames or \(nextViewHold.bytesMax) bytes"
            closeLink(
                link, reason: "\(member) sent more than \(bounds) of \(viewID) ahead of this member's \(core.view.id)")
            return false
        }
        stats.futureMessagesHeld += 1
        return true
    }

    /// The next view is installed: forget the relay's state, welcome joiners (as the leader that
    /// installed it), and replay what peers sent in this view before this member installed it.
    func installed(_ view: View) {
        let previous = effectView
        effectView = view
        heldForJoiners = heldForJoiners.filter { view.members.contains($0.key) }
        if ledBeforePoll { welcomeJoiners(of: view, previous: previous) }
        relay.reset()
        stats.viewInstalledAtUptimeNanoseconds = NIODeadline.now().uptimeNanoseconds
        stats.wedgedAtUptimeNanoseconds = stats.wedgedAtUptimeNanoseconds ?? stats.viewInstalledAtUptimeNanoseconds
        logger.warning("installed \(view) at rank \(core.memberRank)")
        onViewInstalled?(view)
        replayPending = !nextViewHold.isEmpty
    }

    func replayHeldFrames() {
        replayPending = false
        for (member, frame) in nextViewHold.takeAll() {
            guard let link = links[member] else { continue }
            switch frame {
            case .message(let message):
                received(message, from: member, link: link)
            case .relayed(let batch, let relayed):
                receivedRelayedData(batch, relayed: relayed, from: member, link: link)
            case .block(let block, let buffer, let bytesAt):
                buffer.withUnsafeReadableBytes { bytes in
                    receivedBlock(block, frameBytes: bytes, raw: buffer, bytesAt: bytesAt, from: member, link: link)
                }
            }
        }
    }
}
