// Completions and timeouts: what the completion queue reports, credit returns to peers, and the
// failing of links whose peer stopped answering.

import CLockstepVerbs
import Foundation
import LockstepCore
import LockstepWire
import Logging
import NIOCore
import Synchronization

extension RDMAPoller {
    func pollCompletions() -> Bool {
        var worked = false
        let most = Int32(Self.completionsPerPoll)
        for _ in 0..<Self.completionPollsPerRound {
            let count = Int(completions.withUnsafeMutableBufferPointer { lsv_poll(fabric, $0.baseAddress, most) })
            guard count > 0 else { break }
            worked = true
            for index in 0..<count { handle(completions[index]) }
            if count < Self.completionsPerPoll { break }
        }
        return worked
    }

    func handle(_ completion: lsv_completion) {
        let id = UInt32(truncatingIfNeeded: completion.wr_id >> 8)
        logger.trace(
            """
            completion: connection \(id) op \(completion.op) status \(completion.status) imm \(completion.imm) \
            tag \(completion.wr_id & 0xff)
            """)
        // A connection closed meanwhile: its late completions (flushes) are of no interest.
        guard let connection = connections[id], !connection.failed else { return }
        let tag = completion.wr_id & 0xff
        guard completion.status == 0 else {
            local.errorCompletions += 1
            let what =
                completion.op == LSV_OP_RECV ? "a receive" : tag == Self.tagCredit ? "a credit write" : "an RDMA write"
            fail(connection, "\(what) failed: \(String(cString: lsv_status_string(completion.status)))")
            return
        }
        if completion.op == LSV_OP_SEND {
            connection.writesOutstanding -= 1
            connection.stalledSince = connection.writesOutstanding > 0 ? .now : nil
            switch tag {
            case Self.tagData:
                local.dataWrites += 1
                local.bytesWritten += UInt64(completion.byte_len)
            case Self.tagRow: local.rowWrites += 1
            default: local.creditWrites += 1
            }
            return
        }
        local.receives += 1
        guard lsv_post_recv(connection.conn, UInt64(connection.id) << 8) == 0 else {
            fail(connection, "posting a receive failed")
            return
        }
        let length = Int(completion.imm & ~Self.rowFlag)
        let arrival: RDMAArrival
        if completion.imm & Self.rowFlag != 0 {
            guard length <= rdma.rowSlotBytes else {
                return fail(connection, "a row of \(length) bytes, beyond the slot")
            }
            let slot = Int(connection.rowsReceived % UInt64(rdma.rowSlots))
            connection.rowsReceived += 1
            arrival = .row(offset: Int(layout.row_recv) + slot * rdma.rowSlotBytes, length: length)
        } else {
            let offset = Int(connection.receiveHead % UInt64(rdma.ringBytes))
            guard length > 0, offset + length <= rdma.ringBytes else {
                return fail(connection, "a data chunk of \(length) bytes at \(offset) does not fit the ring")
            }
            connection.receiveHead += UInt64(length)
            arrival = .chunk(offset: Int(layout.recv_ring) + offset, length: length)
        }
        if connection.established {
            events.append(.arrived(connection.link, arrival))
        } else {
            connection.early.append(arrival)
        }
    }

    /// Credit goes back once this fraction of the ring (or of the row slots) is consumed: often
    /// enough that a sender never waits long, rarely enough to cost few writes.
    static let creditReturnFraction = 8

    /// Tells peers how far this member consumed, once a good part of the ring or the slots is
    /// free again (never while reading is paused: that is the back-pressure).
    func returnCredits() {
        for connection in connections.values where connection.established && !connection.failed {
            let consumedBytes = connection.link.consumedBytes.load(ordering: .acquiring)
            let consumedImmediates = connection.link.consumedImmediates.load(ordering: .acquiring)
            let bytes = consumedBytes - connection.returnedBytes
            let immediates = consumedImmediates - connection.returnedImmediates
            guard
                bytes >= UInt64(rdma.ringBytes / Self.creditReturnFraction)
                    || immediates >= UInt64(rdma.rowSlots / Self.creditReturnFraction)
            else { continue }
            let word = connection.memory + Int(layout.credit_send)
            word.storeBytes(of: consumedBytes, as: UInt64.self)
            (word + 8).storeBytes(of: consumedImmediates, as: UInt64.self)
            (word + 16).storeBytes(of: Self.creditCheck(consumedBytes, consumedImmediates), as: UInt64.self)
            if post(
                connection, local: Int(layout.credit_send), remote: Int(layout.credit_recv), length: 24, imm: 0,
                tag: Self.tagCredit)
            {
                connection.returnedBytes = consumedBytes
                connection.returnedImmediates = consumedImmediates
            }
        }
    }

    func checkTimeouts() {
        let now = ContinuousClock.now
        guard now - lastTimeoutCheck > Self.timeoutCheckInterval else { return }
        lastTimeoutCheck = now
        publishStatistics()
        for (id, dial) in dials where now - dial.at > Self.dialAttemptTimeout {
            guard let connection = connections[id] else { continue }
            dialFailed(
                id, conn: connection.conn, reason: "no answer to the connect request within \(Self.dialAttemptTimeout)")
        }
        for connection in connections.values where connection.established && !connection.failed {
            if let since = connection.stalledSince, now - since > rdma.peerTimeout {
                fail(connection, "the peer stopped answering: no completion or credit for \(rdma.peerTimeout)")
            }
        }
    }

    func fail(_ connection: RDMAConnection, _ reason: String) {
        guard !connection.failed else { return }
        connection.failed = true
        connections.removeValue(forKey: connection.id)
        bury(connection)
        events.append(.failed(connection.link, reason))
    }

    /// Disconnects now; frees the memory once the event loop is done with it (.release).
    func bury(_ connection: RDMAConnection) {
        lsv_conn_disconnect(connection.conn)
        graveyard[connection.id] = connection.conn
    }
}
