// One RDMA connection as the runtime sees it (a transport link), and what arrives on it.

import CLockstepVerbs
import Foundation
import LockstepCore
import LockstepWire
import Logging
import NIOCore
import Synchronization

/// One connection as a transport link. Its methods run on the member's event loop; the bytes
/// it is given go to the poller through a locked queue.
final class RDMALink: TransportLink, @unchecked Sendable {
    let connectionID: UInt32
    unowned let poller: RDMAPoller
    /// Frames written and not yet flushed (event loop only), and flushed ones the poller takes.
    private var unflushed: [ByteBuffer] = []
    let outbound = Mutex<[ByteBuffer]>([])
    /// Bytes written and not yet copied into registered memory (event loop adds, poller subtracts).
    let queuedByteCount = Atomic<Int>(0)
    /// Bytes written and not yet copied into registered memory.
    var queuedBytes: Int { queuedByteCount.load(ordering: .relaxed) }
    let reportWritable = Atomic<Bool>(false)
    // Event loop only: the handshake (the peer is known at once on dialed links, from the hello
    // on accepted ones), and whether the link was closed.
    var gate: HandshakeGate
    var isClosed = false
    // Receiving, on the event loop: frames are decoded straight from registered memory (a frame
    // cut by a chunk's end is copied aside until its rest arrives); what was consumed is
    // published for the poller, which returns it to the peer as credit. While reading is paused
    // chunks wait here undecoded, credit stays unreturned, and the peer's window closes.
    var memory: UnsafeMutableRawPointer?
    var cumulation = ByteBuffer()
    var reading = true
    var waiting: [RDMAArrival] = []
    let consumedBytes = Atomic<UInt64>(0)
    let consumedImmediates = Atomic<UInt64>(0)

    init(connectionID: UInt32, poller: RDMAPoller, member: MemberID?) {
        self.connectionID = connectionID
        self.poller = poller
        self.gate = HandshakeGate(member: member)
    }

    var isWritable: Bool {
        if queuedByteCount.load(ordering: .relaxed) < poller.highWater { return true }
        reportWritable.store(true, ordering: .relaxed)
        return false
    }

    func write(_ frame: ByteBuffer) {
        guard !isClosed else { return }
        queuedByteCount.add(frame.readableBytes, ordering: .relaxed)
        unflushed.append(frame)
    }

    func flush() {
        guard !unflushed.isEmpty, !isClosed else { return }
        // One flush command covers every frame queued before the poller takes them: submit only
        // when the queue was empty (otherwise a command is pending and will take these too).
        let wasEmpty = outbound.withLock { queue in
            let wasEmpty = queue.isEmpty
            queue.append(contentsOf: unflushed)
            return wasEmpty
        }
        unflushed.removeAll(keepingCapacity: true)
        if wasEmpty { poller.submit(.flush(connectionID)) }
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        unflushed.removeAll()
        poller.submit(.close(connectionID))
    }

    func setReading(_ enabled: Bool) {
        reading = enabled
        if enabled { poller.resume(self) }
    }
}

/// What arrived on a connection, where it lies in the receiver's registered memory.
enum RDMAArrival {
    case chunk(offset: Int, length: Int)
    case row(offset: Int, length: Int)
}
