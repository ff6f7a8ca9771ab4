// Traffic by view, and installs. The rules are the member shell's (LockstepCore's `Member`):
// it routes every frame by its view, holds what belongs to a view not installed yet and answers
// stragglers. Here: handing frames to it, and what the runtime does at an install (the relay
// starts afresh, held frames are replayed through the same paths as fresh ones).

import LockstepCore
import LockstepWire
import NIOCore
import NIOPosix

extension MemberRuntime {
    func received(_ message: Message, from member: MemberID, link: TransportLink) {
        if case .row = message { noteRowArrival(from: member) }
        if case .data(let batch) = message, batch.viewID == shell.core.view.id, relay.isWaiting(for: member) {
            // Behind a batch that waits for relayed payloads: keep the sender's order.
            relay.wait(batch, relayed: [], from: member)
            return
        }
        do {
            if case .dropped = try shell.receive(message, from: member) { stats.staleMessagesDropped += 1 }
        } catch {
            closeLink(link, reason: "\(member) broke the protocol: \(error)")
        }
    }

    /// Tells the failure detector `member` is alive.
    func heard(_ member: MemberID) {
        shell.heard(member)
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

    /// Holds a relay frame of a view not installed yet (the member shell's hold, bounded: past
    /// it, reading from the sender pauses until the install).
    func hold(_ frame: HeldFrame, from member: MemberID) {
        shell.hold(frame, from: member)
        stats.futureMessagesHeld += 1
    }

    /// The next view is installed: the relay starts afresh, and holds for joiners of other views go.
    func installed(_ view: View, previous: View) {
        heldForJoiners = heldForJoiners.filter { view.members.contains($0.key) }
        joinerLinks = joinerLinks.filter { !previous.members.contains($0.key) || view.members.contains($0.key) }
        pruneForgottenMembers(keeping: view, previous: previous)
        relay.reset()
        stats.viewInstalledAtUptimeNanoseconds = NIODeadline.now().uptimeNanoseconds
        stats.wedgedAtUptimeNanoseconds = stats.wedgedAtUptimeNanoseconds ?? stats.viewInstalledAtUptimeNanoseconds
        logger.warning("installed \(view) at rank \(shell.core.memberRank)")
        // A member in a minority that installs after all (the partition healed) sends again.
        if queueRefusal?.code == .minority { queueRefusal = nil }
        onViewInstalled?(view)
        onEvent?(.installed(view, memberRank: shell.core.memberRank))
    }

    /// Members of neither the view left nor the view installed leave every table (their links
    /// are closed: a member removed two views ago has nothing to say to this one).
    private func pruneForgottenMembers(keeping view: View, previous: View) {
        let kept = Set(view.members).union(previous.members).union(joinerLinks.keys)
        for (member, link) in links where !kept.contains(member) {
            links[member] = nil
            link.close()
        }
        knownMembers = knownMembers.filter { kept.contains($0) }
        addresses = addresses.filter { kept.contains($0.key) }
        pendingRows = pendingRows.filter { kept.contains($0.key) }
        lastRowArrival = lastRowArrival.filter { kept.contains($0.key) }
        membersDone = membersDone.filter { kept.contains($0) }
    }

    func replayHeldFrames() {
        for (member, frame) in shell.takeHeldTraffic() {
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
