// The RDMA transport: the transport contract (Transport.swift) over RC queue pairs set up with
// rdma_cm, through the thin C shell CLockstepVerbs (libibverbs and librdmacm loaded at run time).
// docs/RDMA.md describes the link protocol; in short, per connection and direction:
//
// - a data ring of `ringBytes` in the receiver's registered memory. The sender copies the
//   frames it is given (a byte stream, as on TCP) into its own registered staging ring at the
//   same offset and pushes them with RDMA WRITE_WITH_IMM (immediate = chunk length). Chunks never
//   cross the ring's end; frames may span chunks (the receiver cumulates, as on TCP);
// - `rowSlots` row slots: a row frame (the counter row, Derecho's SST) is written one-sided into
//   the next slot with WRITE_WITH_IMM (immediate = 1 << 31 | length). Rows and data share one
//   queue pair, so the receiver sees them in the order they were written (FIFO, as on TCP);
// - receiver credits: the receiver writes how far it has consumed (ring bytes, immediates) into
//   the sender's credit word with a plain RDMA WRITE (no receive consumed, no completion at the
//   sender: the sender reads its own memory). A sender never has more than `ringBytes` bytes or
//   `rowSlots` immediates unconsumed, so a write never lands on unread bytes and never finds the
//   receive queue empty (which would be "receiver not ready").
//
// One poller thread per member owns every verbs object: it takes frames the event loop queued,
// posts writes, polls the one completion queue, runs rdma_cm's events, and hands received frames
// to the event loop in one hop per round. Adaptive polling: it spins for `spinMicroseconds`
// after the last work, then arms the completion queue and sleeps on the completion channel (and
// rdma_cm's channel and a wake-up eventfd), so three members on two cores do not starve each other.
// A peer that stops answering may give no completion at all (rxe gives none for minutes): a
// link with a write outstanding, or waiting for credit, for `peerTimeout` is failed.

import CLockstepVerbs
import Foundation
import LockstepCore
import LockstepWire
import Logging
import NIOCore
import Synchronization

/// A C string in a buffer, as text.
func cText(_ chars: [CChar]) -> String {
    String(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Loads libibverbs and librdmacm and names the first RDMA device, or says what is missing.
public func probeRDMADevice() -> Result<String, RuntimeError> {
    var device = [CChar](repeating: 0, count: RDMAPoller.deviceNameBytes)
    var error = [CChar](repeating: 0, count: RDMAPoller.errorTextBytes)
    if lsv_probe(&device, device.count, &error, error.count) == 0 {
        return .success(cText(device))
    }
    return .failure(RuntimeError(.transportUnavailable, cText(error)))
}

final class RDMATransport: Transport, @unchecked Sendable {
    private let settings: RuntimeSettings
    private let limits: WireLimits
    private let logger: Logger
    private var poller: RDMAPoller?

    init(settings: RuntimeSettings, limits: WireLimits, logger: Logger) {
        self.settings = settings
        self.limits = limits
        self.logger = logger
    }

    func start(eventLoop: EventLoop, delegate: TransportDelegate) async throws {
        try settings.rdma.validate()
        guard !settings.dialsEveryone else {
            throw RuntimeError(
                .transportUnavailable, "joining a running group is not supported over RDMA yet: use --transport tcp")
        }
        let poller = try RDMAPoller(
            settings: settings, limits: limits, logger: logger, eventLoop: eventLoop, delegate: delegate)
        self.poller = poller
        poller.start()
        // Rank r dials every lower rank, as on TCP; refused dials are retried until connectTimeout.
        // Every pair at once, as on TCP (a member heartbeats only once all its links are up).
        try await withThrowingTaskGroup(of: Void.self) { pairs in
            for rank in 0..<settings.memberRank { pairs.addTask { try await poller.dial(rank: rank) } }
            try await pairs.waitForAll()
        }
    }

    func close() async {
        await poller?.stop()
    }

    var statistics: RDMAStatistics? { poller?.statistics }
}
