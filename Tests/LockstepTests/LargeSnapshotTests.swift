// A 256 MiB state reaches a joiner in chunks while the group keeps applying commands. Its own
// run (LOCKSTEP_LARGE_SNAPSHOT_TESTS=1, as .ci/run does): the peak-memory figure is the
// process's, and other suites running beside it would blur it.

import Foundation
import LockstepCore
import LockstepRuntime
import Testing

@testable import Lockstep

/// A state of many 1 MiB blobs (a key-value store of large values, say), with its own snapshot
/// that writes blob by blob: never a second whole copy of the state in memory.
struct Blobs: ReplicatedStateMachine, Equatable {
    static let blobBytes = 1 << 20
    var blobs: [[UInt8]]

    init(count: Int) {
        blobs = (0..<count).map { index in [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: Self.blobBytes) }
    }

    enum Command: Codable, Sendable { case touch(blob: Int, byte: UInt8) }

    mutating func apply(_ command: Command, entry: EntryInfo) -> Int {
        switch command {
        case .touch(let blob, let byte):
            guard blobs.indices.contains(blob) else { return -1 }
            blobs[blob][Int(entry.position) % Self.blobBytes] = byte
            return blob
        }
    }

    func writeSnapshot(to sink: SnapshotSink) async throws {
        var count: [UInt8] = []
        Entry.appendLittleEndian(UInt64(blobs.count), to: &count)
        try await sink.write(count[...])
        for blob in blobs { try await sink.write(blob[...]) }
    }

    static func restore(from source: SnapshotSource) async throws -> Blobs {
        var restored = Blobs(count: 0)
        var pending: [UInt8] = []
        var count: Int?
        while let chunk = try await source.next() {
            pending.append(contentsOf: chunk)
            if count == nil, pending.count >= 8 {
                count = Int(Entry.readLittleEndian(pending[..<8]))
                pending.removeFirst(8)
                restored.blobs.reserveCapacity(count!)
            }
            while pending.count >= blobBytes {
                restored.blobs.append(Array(pending[..<blobBytes]))
                pending.removeFirst(blobBytes)
            }
        }
        guard let count, restored.blobs.count == count, pending.isEmpty else {
            throw TestFailure("the snapshot ended at \(restored.blobs.count) of \(count ?? -1) blobs")
        }
        return restored
    }
}

@Suite(
    "Large snapshots", .serialized, .timeLimit(.minutes(5)),
    .enabled(if: ProcessInfo.processInfo.environment["LOCKSTEP_LARGE_SNAPSHOT_TESTS"] == "1"))
struct LargeSnapshotTests {
    @Test(
        "A 256 MiB state reaches a joiner in chunks while the group applies commands; peak memory stays under 2x"
    )
    func quarterGigabyte() async throws {
        let stateBytes = 256 << 20
        let state = Blobs(count: stateBytes / Blobs.blobBytes)
        let group = try TestGroup(count: 3, initialState: state) { configuration in
            configuration.protocolConfiguration.failureTimeout = .seconds(5)
        }
        _ = try await group.members[0].submit(.touch(blob: 0, byte: 1))
        let peakBefore = peakResidentBytes()
        let started = ContinuousClock.now
        let (joiner, run) = try group.join(initialState: Blobs(count: 0))
        // Commands go on while the state transfers; count those answered before the restore. They
        // touch one blob: a blob touched while the welcoming member's snapshot copy still holds it
        // is copied there (copy-on-write), which costs the welcoming member, not the joiner, and
        // here all members share the same blobs (one process), so each would copy it.
        let writer = Task {
            var answered = 0
            var answeredBeforeRestore = 0
            while !Task.isCancelled {
                _ = try await group.members[1].submit(.touch(blob: 0, byte: 2))
                answered += 1
                if (try? await joiner.state(.local)) == nil { answeredBeforeRestore += 1 }
            }
            return answeredBeforeRestore
        }
        try await waitUntil(seconds: 120, "the joiner restores 256 MiB") {
            (try? await joiner.statistics())?.position ?? 0 > 0
        }
        let elapsed = ContinuousClock.now - started
        writer.cancel()
        let answeredBeforeRestore = (try? await writer.value) ?? 0
        let growth = peakResidentBytes() - peakBefore
        print(
            "large snapshot: \(stateBytes >> 20) MiB restored in \(elapsed); peak RSS grew \(growth >> 20) MiB "
                + "(\(String(format: "%.2f", Double(growth) / Double(stateBytes)))x the state); "
                + "\(answeredBeforeRestore) commands answered while it transferred")
        #expect(answeredBeforeRestore > 0, "the group applied nothing while the state transferred")
        #expect(growth < 2 * stateBytes)
        // The joiner's state is the others' (compared on a read ordered after everything).
        let joinerState = try await joiner.state(.linearizable)
        let memberState = try await group.members[0].state(.linearizable)
        #expect(joinerState == memberState)
        await joiner.close()
        _ = try? await run.value
        await group.stop()
    }
}
