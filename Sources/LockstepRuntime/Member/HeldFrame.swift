// Frames of a view this member has not installed yet: a peer that installed the next view first
// sends in it at once. The member shell (LockstepCore's `Member`) holds them, bounded, and hands
// them back at the install; this is what the runtime holds besides core messages.

import LockstepCore
import LockstepWire
import NIOCore

/// A frame of a view this member has not installed yet, kept until it does.
enum HeldFrame: HeldTraffic {
    case message(Message)
    case relayed(DataBatch, [RelayedEntry])
    /// A relay block: the whole frame, its payload bytes starting at the offset.
    case block(Block, ByteBuffer, Int)

    init(_ message: Message) { self = .message(message) }

    var message: Message? {
        if case .message(let message) = self { return message }
        return nil
    }

    var viewID: ViewID {
        switch self {
        case .message(let message): return message.viewID
        case .relayed(let batch, _): return batch.viewID
        case .block(let block, _, _): return block.viewID
        }
    }

    /// What a held frame of the relay is counted as: the batch's estimate for each entry, or the
    /// block's whole frame.
    var heldBytes: Int {
        switch self {
        case .message(let message): return message.heldBytes
        case .relayed(let batch, _):
            return TrafficHold<HeldFrame>.batchBytesEstimate + TrafficHold<HeldFrame>.entryBytesEstimate
                * batch.entries.count
        case .block(_, let buffer, _): return buffer.readableBytes
        }
    }
}
