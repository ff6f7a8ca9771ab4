// Durable mode through the embedding API over TCP: each member logs what it applies, a submit
// that waits for `.persisted` returns only once every member's log holds the command, and the
// logs agree.

import Foundation
import LockstepCore
import LockstepRuntime
import LockstepStorage
import Testing

@testable import Lockstep

@Suite("Durable ReplicatedGroup", .serialized, .timeLimit(.minutes(3)))
struct DurableGroupTests {
    /// A fresh directory under the temporary directory, removed by the caller.
    private func scratch(_ name: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent(
            "lockstep-\(name)-\(UInt64.random(in: 0...UInt64.max))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    private func durableGroup(in root: URL, count: Int = 3) throws -> TestGroup<Counter> {
        try TestGroup(count: count, initialState: Counter()) {
            $0.protocolConfiguration.durable = true
            $0.dataDirectory = root.appendingPathComponent("member-\($0.me.rawValue)").path
        }
    }

    /// The payloads of every delivery in the log in `path`, in log order, and the views logged.
    private func readLog(_ path: String) throws -> (payloads: [[UInt8]], views: [ViewID]) {
        var records: [LogRecord] = []
        _ = try LogRecovery.recover(try PosixLogDirectory(path: path), settings: LogSettings()) { records.append($0) }
        var payloads: [[UInt8]] = []
        var views: [ViewID] = []
        for record in records {
            switch try DurableRecords.decode(record) {
            case .view(let view): views.append(view.id)
            case .entries(_, let deliveries): payloads += deliveries.map { Array($0.payload) }
            case .raggedTrim, nil: break
            }
        }
        return (payloads, views)
    }

    @Test("A submit that waits for .persisted returns once every member's log holds it (a copy taken then shows it)")
    func persistedMeansOnEveryDisk() async throws {
        let root = try scratch("durable")
        defer { try? FileManager.default.removeItem(at: root) }
        let group = try durableGroup(in: root)
        for round in 1...20 { _ = try await group.members[round % 3].submit(round) }
        let last = try await group.members[1].submit(1_000, waitFor: .persisted)
        // Copy every member's log now, while it runs: each copy must hold the command already.
        for member in 1...3 {
            let source = root.appendingPathComponent("member-\(member)")
            let copy = root.appendingPathComponent("copy-\(member)")
            try FileManager.default.copyItem(at: source, to: copy)
            let logged = try readLog(copy.path)
            #expect(logged.payloads.count >= Int(last.position), "member \(member) logged \(logged.payloads.count)")
            #expect(logged.views == [ViewID(1)])
        }
        let statistics = try await group.members[0].statistics()
        let durable = try #require(statistics.runtime?.durable)
        #expect(durable.commits > 0 && durable.records >= durable.commits)
        await group.stop()
        // After a clean stop every log holds all 21 commands, in one order.
        let logs = try (1...3).map { try readLog(root.appendingPathComponent("member-\($0)").path).payloads }
        #expect(logs[0].count == 21)
        #expect(logs[1] == logs[0] && logs[2] == logs[0])
    }

    @Test("Many pipelined .persisted submits all return, and the group commit groups them (fewer syncs than commands)")
    func pipelinedPersistedSubmits() async throws {
        let root = try scratch("durable-pipelined")
        defer { try? FileManager.default.removeItem(at: root) }
        let group = try durableGroup(in: root)
        let responses = try await withThrowingTaskGroup(of: Submitted<Int>.self) { tasks in
            for k in 0..<300 { tasks.addTask { try await group.members[k % 3].submit(1, waitFor: .persisted) } }
            return try await tasks.reduce(into: [Submitted<Int>]()) { $0.append($1) }
        }
        #expect(Set(responses.map(\.position)) == Set(1...300))
        for member in group.members {
            let statistics = try await member.statistics()
            let durable = try #require(statistics.runtime?.durable)
            #expect(durable.commits < 300, "\(durable.commits) syncs for 300 commands")
            #expect(durable.persistenceFrontier > 0)
        }
        await group.stop()
    }

    @Test("Bad durable settings are refused with the field named; a directory holding an earlier run's log too")
    func badDurableSettings() async throws {
        let root = try scratch("durable-settings")
        defer { try? FileManager.default.removeItem(at: root) }
        let member = GroupConfiguration.Member(id: MemberID(1), address: try loopback())
        var configuration = GroupConfiguration.bootstrap(members: [member], me: member.id)
        configuration.protocolConfiguration = testProtocol()
        configuration.protocolConfiguration.durable = true
        #expect(throws: GroupError.self) { try ReplicatedGroup(configuration: configuration, initialState: Counter()) }
        configuration.protocolConfiguration.durable = false
        configuration.dataDirectory = root.path
        do {
            _ = try ReplicatedGroup(configuration: configuration, initialState: Counter())
            Issue.record("a data directory without durable mode was accepted")
        } catch {
            #expect(error.field == "dataDirectory")
        }
        configuration.dataDirectory = nil
        let inMemory = try ReplicatedGroup(configuration: configuration, initialState: Counter())
        await #expect(throws: GroupError.self) { try await inMemory.submit(1, waitFor: .persisted) }
        await inMemory.close()

        // One run logs; a second run in the same directory is refused (restart is not built).
        configuration.protocolConfiguration.durable = true
        configuration.dataDirectory = root.path
        let first = try ReplicatedGroup(configuration: configuration, initialState: Counter())
        let run = Task { try await first.run() }
        _ = try await first.submit(5, waitFor: .persisted)
        await first.close()
        _ = try? await run.value
        configuration.start = .bootstrap(
            members: [GroupConfiguration.Member(id: MemberID(1), address: try loopback())], me: MemberID(1))
        let second = try ReplicatedGroup(configuration: configuration, initialState: Counter())
        do {
            try await second.run()
            Issue.record("a second run in a directory holding a log started")
        } catch {
            #expect("\(error)".contains("earlier run"), "\(error)")
        }
    }
}

/// Commands of a given size, counted: what fills a disk quickly.
struct Sink: ReplicatedStateMachine, Codable, Equatable {
    var count = 0
    mutating func apply(_ bytes: [UInt8], entry: EntryInfo) -> Int {
        count += 1
        return count
    }
}

#if canImport(Glibc)
    import Glibc
#endif

/// A full disk, for real: one member's log on a 1 MiB tmpfs (mounting needs root, as CI and this
/// machine have; elsewhere the suite says so and skips).
@Suite("Durable ReplicatedGroup on a full disk", .serialized, .timeLimit(.minutes(3)), .enabled(if: getuid() == 0))
struct DurableFullDiskTests {
    @Test(
        """
        A member whose disk fills says so (storageFailed), leaves, and its log ends at its last commit; the group goes \
        on without it, durably
        """)
    func fullDiskStopsOneMemberCleanly() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent(
            "lockstep-full-\(UInt64.random(in: 0...UInt64.max))")
        let small = root.appendingPathComponent("small")
        try FileManager.default.createDirectory(at: small, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        guard mount("tmpfs", small.path, "tmpfs", 0, "size=1m") == 0 else {
            Issue.record("cannot mount a tmpfs at \(small.path): \(String(cString: strerror(errno)))")
            return
        }
        defer { umount(small.path) }
        let group = try TestGroup(count: 3, initialState: Sink()) {
            $0.protocolConfiguration.durable = true
            $0.protocolConfiguration.messageBytesMax = 4_096
            $0.logSegmentBytes = 64 * 1_024
            let parent = $0.me == MemberID(3) ? small : root
            $0.dataDirectory = parent.appendingPathComponent("member-\($0.me.rawValue)").path
        }
        let failed = Task {
            for await event in group.members[2].events { if case .storageFailed = event { return true } }
            return false
        }
        let command = [UInt8](repeating: 0xAB, count: 2_000)
        var sent = 0
        // 1 MiB holds about 500 of these: 3,000 are far beyond it.
        while sent < 3_000 {
            try await group.members[0].enqueue(command)
            sent += 1
            if sent % 100 == 0, await group.members[2].currentView()?.members.count == 2 { break }
        }
        #expect(await failed.value, "member 3 never said its log stopped")
        // The others go on, durably, in a view without it.
        try await waitUntil(seconds: 30, "a view without member 3") {
            await group.members[0].currentView()?.members.count == 2
        }
        _ = try await group.members[0].submit(command, waitFor: .persisted)
        await #expect(throws: GroupError.self) { try await group.members[2].submit(command) }
        await group.stop()
        // Its log ends at its last commit: it recovers, and holds a prefix of what member 1 logged.
        var records = 0
        _ = try LogRecovery.recover(
            try PosixLogDirectory(path: small.appendingPathComponent("member-3").path), settings: LogSettings()
        ) { _ in records += 1 }
        #expect(records > 1)
    }
}
