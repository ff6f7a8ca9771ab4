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
