// The relay's IO (its rules and state are Relay.swift): sending a batch's large payloads as
// blocks to the next member of the chain, forwarding blocks as they arrive, and handing batches
// whose payloads are complete to the shell.core.

import LockstepCore
import LockstepWire
import NIOCore

extension MemberRuntime {
    /// Sends a relay block to the next member of the chain in `view`; if that member has not
    /// connected yet (a joiner), keeps it for it like everything else it must receive (bounded).
    func relayToSuccessor(_ buffer: ByteBuffer, in view: View) {
        guard let rank = view.rank(of: me) else { return }
        let next = view.members[(rank + 1) % view.memberCount]
        if let link = links[next] {
            link.write(buffer)
        } else if !knownMembers.contains(next) {
            holdForJoiner(next, buffer, row: nil)
        }
    }

    /// Sends a batch with large payloads: the batch to everyone, the payloads to the next member.
    func sendThroughRelay(_ batch: DataBatch, threshold: Int, to view: View) {
        let direct = encode(.data(batch), relayingFrom: threshold)
        forEachPeerLink(in: view, holding: direct) { _, link in
            link.write(direct)
            stats.framesSent += 1
            stats.bytesSent += UInt64(direct.readableBytes)
        }
        guard let ownRank = view.rank(of: me) else { return }
        for block in relay.blocks(of: batch, ownRank: ownRank, threshold: threshold) {
            relayToSuccessor(block, in: view)
            stats.blocksSent += 1
            stats.bytesSent += UInt64(block.readableBytes)
        }
    }

    func receivedRelayedData(_ batch: DataBatch, relayed: [RelayedEntry], from member: MemberID, link: TransportLink) {
        switch shell.route(batch.viewID, from: member) {
        case .later: return hold(.relayed(batch, relayed), from: member)
        case .dropped:
            stats.staleMessagesDropped += 1
            return
        case .current: break
        }
        relay.wait(batch, relayed: relayed, from: member)
        releaseWaitingBatches(of: member)
    }

    /// A relay block: `frameBytes` is the whole frame, `raw` the same bytes as a buffer when the
    /// transport has one (else a buffer is made only if the block is forwarded or held).
    func receivedBlock(
        _ block: Block, frameBytes: UnsafeRawBufferPointer, raw: ByteBuffer?, bytesAt: Int, from member: MemberID,
        link: TransportLink
    ) {
        let view = shell.core.view
        switch shell.route(block.viewID, from: member) {
        case .later: return hold(.block(block, raw ?? ByteBuffer(bytes: frameBytes), bytesAt), from: member)
        case .dropped:
            stats.staleMessagesDropped += 1
            return
        case .current: break
        }
        let ownRank = shell.core.memberRank
        if let refusal = relay.refusal(of: block, from: member, in: view, ownRank: ownRank) {
            return closeLink(link, reason: refusal)
        }
        let origin = view.members[block.originMemberRank]
        let complete: Bool
        switch relay.add(block, frameBytes: frameBytes, bytesAt: bytesAt, origin: origin) {
        case .success(let isComplete): complete = isComplete
        case .failure(let refusal):
            return closeLink(link, reason: "\(member) relayed \(refusal.reason) of \(origin)")
        }
        // Pass it on at once (the pipeline), unless the next member is the origin.
        if (ownRank + 1) % view.memberCount != block.originMemberRank {
            let forwarded = raw ?? ByteBuffer(bytes: frameBytes)
            if isReady {
                relayToSuccessor(forwarded, in: view)
            } else {
                relay.forwardBacklog.append(forwarded)
            }
            stats.blocksForwarded += 1
        }
        if complete { releaseWaitingBatches(of: origin) }
    }

    /// Hands the origin's waiting batches to the core, in order, while their payloads are complete.
    private func releaseWaitingBatches(of origin: MemberID) {
        while let next = relay.nextComplete(from: origin) {
            let batch: DataBatch
            switch next {
            case .success(let (whole, assembled)):
                batch = whole
                stats.relayedMessagesAssembled += UInt64(assembled)
            case .failure(let refusal):
                if let link = links[origin] { closeLink(link, reason: "\(origin): \(refusal.reason)") }
                return
            }
            do {
                try shell.receive(.data(batch), from: origin)
            } catch {
                if let link = links[origin] { closeLink(link, reason: "\(origin) broke the protocol: \(error)") }
            }
        }
    }
}
