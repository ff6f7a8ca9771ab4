// Traffic of a view this member has not installed yet: a peer that installed the next view first
// sends in it at once. It is held, bounded in frames and bytes, and replayed at the install.

import LockstepCore
import LockstepWire
import NIOCore

/// A frame of a view this member has not installed yet, kept until it does.
enum HeldFrame {
    case message(Message)
    case relayed(DataBatch, [RelayedEntry])
    /// A relay block: the whole frame, its payload bytes starting at the offset.
    case block(Block, ByteBuffer, Int)

    // What a held frame is counted as against `bytesMax`: its payload bytes, plus a fixed
    // estimate of what the decoded structures around them take.
    static let batchBytesEstimate = 64
    static let messageEntryBytesEstimate = 5
    static let nullsEntryBytesEstimate = 9
    static let rowBytesEstimate = 256
    static let relayedEntryBytesEstimate = 16

    var bytes: Int {
        switch self {
        case .message(.data(let batch)):
            return batch.entries.reduce(Self.batchBytesEstimate) { total, entry in
                if case .message(let payload) = entry { return total + Self.messageEntryBytesEstimate + payload.count }
                return total + Self.nullsEntryBytesEstimate
            }
        case .message(.row): return Self.rowBytesEstimate
        case .relayed(let batch, _):
            return Self.batchBytesEstimate + Self.relayedEntryBytesEstimate * batch.entries.count
        case .block(_, let buffer, _): return buffer.readableBytes
        }
    }
}

/// The held frames, by sender, in arrival order.
struct NextViewHold {
    let framesMax: Int
    let bytesMax: Int
    private(set) var frames: [(MemberID, HeldFrame)] = []
    private(set) var bytes = 0

    /// Slack for rows and control next to the data bounds, in frames and bytes.
    static let framesSlack = 1_024
    static let bytesSlack = 16 * 1_024 * 1_024

    /// Bounds from the configuration: what peers can send ahead of an install is their windows
    /// (data re-sent in the next view) and the relay's blocks of them, with room for rows.
    init(configuration: Configuration, memberCount: Int) {
        framesMax = 4 * configuration.windowMessagesMax * memberCount + Self.framesSlack
        bytesMax = 2 * max(configuration.windowBytesMax, configuration.messageBytesMax) * memberCount + Self.bytesSlack
    }

    /// Holds `frame`; false if that would pass a bound (nothing is held then).
    mutating func hold(_ frame: HeldFrame, from member: MemberID) -> Bool {
        let frameBytes = frame.bytes
        guard frames.count < framesMax, bytes + frameBytes <= bytesMax else { return false }
        frames.append((member, frame))
        bytes += frameBytes
        return true
    }

    /// Everything held, in arrival order; the hold is empty after.
    mutating func takeAll() -> [(MemberID, HeldFrame)] {
        defer {
            frames = []
            bytes = 0
        }
        return frames
    }

    var isEmpty: Bool { frames.isEmpty }
}
