// What the poller thread owns of one connection, and what it tells the event loop.

import CLockstepVerbs
import Foundation
import LockstepCore
import LockstepWire
import Logging
import NIOCore
import Synchronization

/// What the poller owns of one connection (poller thread only).
final class RDMAConnection {
    let conn: OpaquePointer
    let id: UInt32
    /// Registered memory, allocated by the shell once the route is known (dialed) or at once
    /// (accepted): asked for each time (a peer may write before this side sees "established").
    var memory: UnsafeMutableRawPointer { UnsafeMutableRawPointer(lsv_conn_memory(conn)) }
    let link: RDMALink
    /// For dialed connections: the rank dialed and who waits for the outcome.
    var dialedRank: Int?
    var established = false
    var failed = false
    // Sending.
    var pending = CircularBuffer<ByteBuffer>()
    /// Row frames waiting for a row slot: posted before any pending data (strict priority).
    var pendingRows = CircularBuffer<ByteBuffer>()
    /// The hello is first in `pending` and not posted yet: rows wait for it (a peer refuses any
    /// frame before the hello).
    var helloPending = false
    var sendHead: UInt64 = 0
    var immediatesSent: UInt64 = 0
    var rowsSent: UInt64 = 0
    var writesOutstanding = 0
    /// The first pending buffer was partly copied (its rest must follow as data).
    var midFrame = false
    var peerConsumedBytes: UInt64 = 0
    var peerConsumedImmediates: UInt64 = 0
    /// Since when a write has been outstanding (or the link has waited for credit) without progress.
    var stalledSince: ContinuousClock.Instant?
    // Receiving: where the next chunk and row lie; what was returned as credit; arrivals before
    // this side saw "established" (they follow the link's up).
    var receiveHead: UInt64 = 0
    var rowsReceived: UInt64 = 0
    var returnedBytes: UInt64 = 0
    var returnedImmediates: UInt64 = 0
    var early: [RDMAArrival] = []

    init(conn: OpaquePointer, link: RDMALink) {
        self.conn = conn
        self.id = lsv_conn_id(conn)
        self.link = link
    }
}

/// Everything the poller tells the event loop in one round.
enum RDMALinkEvent {
    case up(RDMALink, member: MemberID)
    case arrived(RDMALink, RDMAArrival)
    case failed(RDMALink, String)
    case down(RDMALink)
    case writable(RDMALink)
}
