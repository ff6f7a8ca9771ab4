// The relay: large payloads do not go from their sender to every member. The data batch (with
// each large payload replaced by its length) goes to everyone, as the order needs, while the
// payload's bytes go in blocks along a chain of the current view's ranks, sender rank
// r -> r+1 -> r+2 ... (mod N), each member passing a block on as soon as it has it. The sender's
// link and CPU then carry each byte once instead of N-1 times, and the copies spread over the
// group (Derecho's RDMC does the same with a binomial pipeline). A receiver holds a batch until
// its relayed payloads are complete, then hands it to the core; later batches of the same
// sender wait behind it, so per-sender FIFO holds. The core is unchanged: it sees whole batches.
//
// When: a member's egress carries (N-1) x its stream without the relay, and about S streams
// with it (it forwards every sender's blocks). So the relay is used in a view with S < N-1
// senders, where it lowers the busiest egress, and not when (nearly) everyone sends, where both
// carry the same bytes and the relay only adds a hop and a copy (measured:
// bench-results/README.md). Every member decides from the view alone, so all agree.
//
// This type holds the relay's state and rules; the runtime (MemberRuntime+Relay.swift) does its
// IO: writing blocks to links, closing a link that breaks the rules, handing batches to the core.

import LockstepCore
import LockstepWire
import NIOCore

struct Relay {
    /// A payload being assembled from its blocks.
    struct Assembly {
        var bytes: [UInt8]
        var filled: Int
        var isComplete: Bool { filled == bytes.count }
    }

    /// Payloads of at least this many bytes are relayed (nil: never).
    let thresholdBytes: Int?
    /// Payloads are cut into blocks of this many bytes.
    let blockBytes: Int
    /// Payloads one origin may have in assembly at once: a window's worth of messages, twice.
    let assembliesPerOriginMax: Int

    /// Per origin: data batches waiting for relayed payloads, in arrival order.
    private(set) var waitingBatches: [MemberID: CircularBuffer<(DataBatch, [RelayedEntry])>] = [:]
    /// Per origin: payloads being assembled, by message index.
    private(set) var assemblies: [MemberID: [UInt64: Assembly]] = [:]
    /// Blocks to forward that arrived before every link was up.
    var forwardBacklog: [ByteBuffer] = []

    init(settings: RuntimeSettings) {
        thresholdBytes = settings.relayThresholdBytes
        blockBytes = settings.relayBlockBytes
        assembliesPerOriginMax = 2 * settings.configuration.windowMessagesMax
    }

    /// Whether payloads of at least the threshold travel through the relay in `view`.
    func threshold(in view: View) -> Int? {
        guard let thresholdBytes, view.memberCount > 2, view.senderCount < view.memberCount - 1 else { return nil }
        return thresholdBytes
    }

    /// Whether `batch` has a payload the relay carries in `view`.
    func carries(_ batch: DataBatch, in view: View) -> Int? {
        guard let threshold = threshold(in: view) else { return nil }
        let relayed = batch.entries.contains { entry in
            if case .message(let payload) = entry { return payload.count >= threshold }
            return false
        }
        return relayed ? threshold : nil
    }

    /// The blocks of `batch`'s large payloads, encoded, for the sender at member rank `ownRank`.
    func blocks(of batch: DataBatch, ownRank: Int, threshold: Int) -> [ByteBuffer] {
        var blocks: [ByteBuffer] = []
        var index = batch.firstIndex
        for entry in batch.entries {
            defer { index += entry.indexCount }
            guard case .message(let payload) = entry, payload.count >= threshold else { continue }
            var offset = 0
            while offset < payload.count {
                let end = min(offset + blockBytes, payload.count)
                let start = payload.startIndex
                let block = Block(
                    viewID: batch.viewID, originMemberRank: ownRank, index: index, totalBytes: payload.count,
                    offset: offset, bytes: payload[(start + offset)..<(start + end)])
                let size = Wire.encodedBytes(block)
                var buffer = ByteBufferAllocator().buffer(capacity: size)
                buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { Wire.encode(block, into: $0) }
                blocks.append(buffer)
                offset = end
            }
        }
        return blocks
    }

    /// Why a block from `member` is not one the chain of `view` can carry to this member (at
    /// `ownRank`), or nil when it is.
    func refusal(of block: Block, from member: MemberID, in view: View, ownRank: Int) -> String? {
        let count = view.memberCount
        let origin = block.originMemberRank
        guard origin < count, origin != ownRank, view.senderRank(ofMemberRank: origin) != nil,
            member == view.members[(ownRank + count - 1) % count], threshold(in: view) != nil
        else {
            return "member \(member) relayed a block of member rank \(origin) out of the chain of \(view.id)"
        }
        return nil
    }

    func isWaiting(for origin: MemberID) -> Bool { !(waitingBatches[origin]?.isEmpty ?? true) }

    mutating func wait(_ batch: DataBatch, relayed: [RelayedEntry], from origin: MemberID) {
        waitingBatches[origin, default: CircularBuffer()].append((batch, relayed))
    }

    /// Adds a block's bytes (`frameBytes[bytesAt...]`) to its payload's assembly. Returns
    /// whether the payload is complete now, or why the block is refused.
    mutating func add(
        _ block: Block, frameBytes: UnsafeRawBufferPointer, bytesAt: Int, origin: MemberID
    )
        -> Result<Bool, RelayRefusal>
    {
        let blockBytes = frameBytes.count - bytesAt
        let total = block.totalBytes
        // Blocks of a message arrive in order along the chain, so each continues where the last
        // ended and a complete payload has no gap (its storage starts uninitialized).
        var assembly =
            assemblies[origin]?.removeValue(forKey: block.index)
            ?? Assembly(bytes: [UInt8](unsafeUninitializedCapacity: total) { $1 = total }, filled: 0)
        guard assembly.bytes.count == total, block.offset == assembly.filled, assembly.filled + blockBytes <= total,
            (assemblies[origin]?.count ?? 0) < assembliesPerOriginMax
        else {
            return .failure(RelayRefusal(reason: "an inconsistent block \(block.index)@\(block.offset)"))
        }
        assembly.bytes.withUnsafeMutableBytes { target in
            if let from = frameBytes.baseAddress, let to = target.baseAddress {
                (to + block.offset).copyMemory(from: from + bytesAt, byteCount: blockBytes)
            }
        }
        assembly.filled += blockBytes
        assemblies[origin, default: [:]][block.index] = assembly
        return .success(assembly.isComplete)
    }

    /// The origin's next waiting batch with its relayed payloads filled in, and how many were,
    /// if they are all complete (nil: none waits, or it waits for more blocks).
    mutating func nextComplete(from origin: MemberID) -> Result<(DataBatch, assembled: Int), RelayRefusal>? {
        guard let (batch, relayed) = waitingBatches[origin]?.first else { return nil }
        for entry in relayed where assemblies[origin]?[entry.index]?.isComplete != true { return nil }
        waitingBatches[origin]?.removeFirst()
        var entries = batch.entries
        for entry in relayed {
            guard let assembly = assemblies[origin]?.removeValue(forKey: entry.index),
                assembly.bytes.count == entry.bytes
            else {
                return .failure(RelayRefusal(reason: "relayed payload \(entry.index) has the wrong length"))
            }
            entries[entry.position] = .message(assembly.bytes[...])
        }
        let whole = DataBatch(
            viewID: batch.viewID, senderRank: batch.senderRank, firstIndex: batch.firstIndex, entries: entries)
        return .success((whole, relayed.count))
    }

    /// A view change: nothing of the old view's relay carries over (its batches are re-sent).
    mutating func reset() {
        waitingBatches.removeAll()
        assemblies.removeAll()
        forwardBacklog.removeAll()
    }

    func record(into occupancy: inout Occupancy) {
        occupancy.relayBatchesWaiting = waitingBatches.values.reduce(0) { $0 + $1.count }
        occupancy.relayAssemblies = assemblies.values.reduce(0) { $0 + $1.count }
        occupancy.relayAssemblyBytes = assemblies.values.reduce(0) { total, byIndex in
            byIndex.values.reduce(total) { $0 + $1.bytes.count }
        }
        occupancy.relayBlocksBacklogged = forwardBacklog.count
    }
}

/// Why the relay refused what a peer sent (the runtime closes that peer's link).
struct RelayRefusal: Error {
    var reason: String
}
