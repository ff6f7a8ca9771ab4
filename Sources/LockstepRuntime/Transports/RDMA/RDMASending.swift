// The send and credit pump: queued frames into registered memory, posted as far as the
// receiver's credit allows; rows ahead of data not yet posted.

import CLockstepVerbs
import Foundation
import LockstepCore
import LockstepWire
import Logging
import NIOCore
import Synchronization

extension RDMAPoller {
    /// Reads the peer's credit word: (bytes, immediates) consumed, with a check word, since the
    /// peer may be writing it while it is read.
    func readCredit(_ connection: RDMAConnection) {
        let word = connection.memory + Int(layout.credit_recv)
        let bytes = word.loadUnaligned(as: UInt64.self)
        let immediates = (word + 8).loadUnaligned(as: UInt64.self)
        let check = (word + 16).loadUnaligned(as: UInt64.self)
        guard check == Self.creditCheck(bytes, immediates), bytes <= connection.sendHead,
            immediates <= connection.immediatesSent
        else { return }
        if bytes > connection.peerConsumedBytes || immediates > connection.peerConsumedImmediates {
            connection.stalledSince = nil
        }
        connection.peerConsumedBytes = max(connection.peerConsumedBytes, bytes)
        connection.peerConsumedImmediates = max(connection.peerConsumedImmediates, immediates)
    }

    static func creditCheck(_ bytes: UInt64, _ immediates: UInt64) -> UInt64 {
        (bytes &* 0x9E37_79B9_7F4A_7C15) ^ immediates ^ 0x4C53_524D_4352_4544
    }

    /// A buffer that is exactly one row frame, small enough for a row slot.
    func isWholeRow(_ frame: ByteBuffer) -> Bool {
        guard frame.readableBytes <= rdma.rowSlotBytes, let header = frame.frameHeader, header.type == .row else {
            return false
        }
        return header.frameBytes == frame.readableBytes
    }

    /// Moves queued frames into registered memory and posts them, as far as credit allows.
    /// Returns whether it posted anything and whether it waits for credit.
    func pump(_ connection: RDMAConnection) -> (Bool, Bool) {
        guard !connection.pending.isEmpty || !connection.pendingRows.isEmpty else { return (false, false) }
        readCredit(connection)
        var posted = false
        let ring = UInt64(rdma.ringBytes)
        let sendQueueMax = 2 * rdma.rowSlots
        var copiedBytes = 0
        defer { if copiedBytes > 0 { released(connection, bytes: copiedBytes) } }
        // Rows first: one-sided into the next row slot each, ahead of any data not yet posted.
        while !connection.helloPending, let first = connection.pendingRows.first {
            guard connection.writesOutstanding < sendQueueMax,
                connection.immediatesSent - connection.peerConsumedImmediates < UInt64(rdma.rowSlots)
            else { return blocked(connection, posted) }
            let slot = Int(connection.rowsSent % UInt64(rdma.rowSlots))
            let offset = Int(layout.row_send) + slot * rdma.rowSlotBytes
            let length = first.readableBytes
            first.withUnsafeReadableBytes {
                UnsafeMutableRawBufferPointer(start: connection.memory + offset, count: length).copyMemory(from: $0)
            }
            let remote = Int(layout.row_recv) + slot * rdma.rowSlotBytes
            guard
                post(
                    connection, local: offset, remote: remote, length: length, imm: Self.rowFlag | UInt32(length),
                    tag: Self.tagRow)
            else { return (posted, false) }
            connection.rowsSent += 1
            connection.pendingRows.removeFirst()
            copiedBytes += length
            posted = true
        }
        while !connection.pending.isEmpty {
            guard connection.writesOutstanding < sendQueueMax,
                connection.immediatesSent - connection.peerConsumedImmediates < UInt64(rdma.rowSlots)
            else { return blocked(connection, posted) }
            // Data (rows never queue here: they wait in `pendingRows`): frames into one chunk of
            // the ring (never across its end).
            let free = ring - (connection.sendHead - connection.peerConsumedBytes)
            let offset = connection.sendHead % ring
            let room = Int(min(free, ring - offset, UInt64(rdma.chunkBytesMax)))
            guard room > 0 else { return blocked(connection, posted) }
            var length = 0
            let base = connection.memory + Int(layout.send_ring) + Int(offset)
            while length < room, var next = connection.pending.first {
                let take = min(room - length, next.readableBytes)
                next.withUnsafeReadableBytes {
                    UnsafeMutableRawBufferPointer(start: base + length, count: take)
                        .copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<take]))
                }
                next.moveReaderIndex(forwardBy: take)
                length += take
                if next.readableBytes == 0 {
                    connection.pending.removeFirst()
                    connection.midFrame = false
                } else {
                    connection.pending[connection.pending.startIndex] = next
                    connection.midFrame = true
                }
            }
            copiedBytes += length
            guard
                post(
                    connection, local: Int(layout.send_ring) + Int(offset), remote: Int(layout.recv_ring) + Int(offset),
                    length: length, imm: UInt32(length), tag: Self.tagData)
            else { return (posted, false) }
            connection.sendHead += UInt64(length)
            connection.helloPending = false
            posted = true
        }
        return (posted, false)
    }

    func blocked(_ connection: RDMAConnection, _ posted: Bool) -> (Bool, Bool) {
        if connection.stalledSince == nil { connection.stalledSince = .now }
        return (posted, true)
    }

    func released(_ connection: RDMAConnection, bytes: Int) {
        // `reportWritable` says the event loop found the link unwritable: tell it once the queue
        // is below half the high-water mark (however many steps it took to get there).
        let after = connection.link.queuedByteCount.subtract(bytes, ordering: .relaxed).newValue
        if after < highWater / 2, connection.link.reportWritable.load(ordering: .relaxed),
            connection.link.reportWritable.exchange(false, ordering: .relaxed)
        {
            events.append(.writable(connection.link))
        }
    }

    func post(_ connection: RDMAConnection, local: Int, remote: Int, length: Int, imm: UInt32, tag: UInt64) -> Bool {
        let withImmediate: Int32 = tag == Self.tagCredit ? 0 : 1
        let rc = lsv_post_write(
            connection.conn, UInt64(local), UInt64(remote), UInt32(length), withImmediate, imm,
            UInt64(connection.id) << 8 | tag)
        guard rc == 0 else {
            fail(connection, "posting an RDMA write failed: \(String(cString: strerror(rc)))")
            return false
        }
        connection.writesOutstanding += 1
        if withImmediate == 1 { connection.immediatesSent += 1 }
        if connection.stalledSince == nil { connection.stalledSince = .now }
        return true
    }
}
