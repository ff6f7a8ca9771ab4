// The embedding API over real TCP on loopback: what `submit` returning means, reads, joins with
// a streamed snapshot, leaving, and the errors that say what happened.

import Foundation
import LockstepCore
import LockstepRuntime
import ServiceLifecycle
import Testing

@testable import Lockstep

@Suite("ReplicatedGroup over TCP", .serialized, .timeLimit(.minutes(3)))
struct ReplicatedGroupTests {
    @Test(
        "Commands submitted on every member are applied once each, at one position each; all end alike"
    )
    func submitEverywhere() async throws {
        let group = try TestGroup(count: 3, initialState: Counter())
        var positions: Set<UInt64> = []
        for round in 1...20 {
            for member in group.members {
                let result = try await member.submit(round)
                #expect(positions.insert(result.position).inserted, "position \(result.position) answered twice")
            }
        }
        #expect(positions == Set(1...60))
        let expected = 3 * (1...20).reduce(0, +)
        // A linearizable read on each member includes every submit that returned, anywhere.
        for member in group.members {
            let state = try await member.state(.linearizable)
            #expect(state.total == expected)
        }
        // Local reads may lag, but not for long: all members reach the same state.
        for member in group.members {
            try await waitUntil("a local read sees every command") { try await member.state(.local).total == expected }
        }
        await group.stop()
    }

    @Test("Many submits in flight from one member are all answered, each with its own response")
    func pipelinedSubmits() async throws {
        let group = try TestGroup(count: 3, initialState: Counter())
        let responses = try await withThrowingTaskGroup(of: Submitted<Int>.self) { tasks in
            for _ in 0..<500 { tasks.addTask { try await group.members[1].submit(1) } }
            return try await tasks.reduce(into: [Submitted<Int>]()) { $0.append($1) }
        }
        // Each response is the total after its own command: 1...500, each once, and at its position.
        #expect(Set(responses.map(\.response)) == Set(1...500))
        #expect(responses.allSatisfy { UInt64($0.response) == $0.position })
        await group.stop()
    }

    @Test("enqueue streams commands without answers; applied gives every entry in order on each member")
    func enqueueAndApplied() async throws {
        let group = try TestGroup(count: 3, initialState: Counter())
        let reader = Task {
            var positions: [UInt64] = []
            for await applied in group.members[2].applied {
                positions.append(applied.entry.position)
                if positions.count == 1_000 { break }
            }
            return positions
        }
        for _ in 0..<1_000 { try await group.members[0].enqueue(2) }
        #expect(await reader.value == Array(1...1_000))
        #expect(try await group.members[1].state(.linearizable).total == 2_000)
        await group.stop()
    }

    @Test("A reader of applied that stops does not leave its member paused: the group goes on")
    func appliedReaderStops() async throws {
        let group = try TestGroup(count: 3, initialState: Counter()) { $0.appliedQueuedEntriesMax = 8 }
        let reader = Task {
            for await _ in group.members[2].applied { break }
        }
        _ = try await group.members[0].submit(1)
        await reader.value
        // Far more entries than the queue's bound: member 2 must keep reading and acknowledging.
        for _ in 0..<200 { _ = try await group.members[0].submit(1) }
        #expect(try await group.members[2].state(.linearizable).total == 201)
        await group.stop()
    }

    @Test("A joiner gets the state through the streamed snapshot, applies what follows, and its submits count")
    func joinerRestores() async throws {
        let group = try TestGroup(count: 3, initialState: Counter())
        for _ in 0..<100 { _ = try await group.members[0].submit(3) }
        let (joiner, run) = try group.join(initialState: Counter())
        try await waitUntil("the joiner is restored") { (try? await joiner.state(.local))?.total == 300 }
        let result = try await joiner.submit(7)
        #expect(result.response == 307)
        #expect(result.position == 101)
        for member in group.members { #expect(try await member.state(.linearizable).total == 307) }
        let view = try #require(await group.members[0].currentView())
        #expect(view.members.count == 4)
        try await joiner.leave()
        _ = try await run.value
        await group.stop()
    }

    @Test("A member that leaves is removed at once, its run returns, and its calls then fail with closed")
    func leave() async throws {
        let group = try TestGroup(count: 3, initialState: Counter())
        _ = try await group.members[2].submit(1)
        let started = ContinuousClock.now
        try await group.members[2].leave()
        _ = try await group.runs[2].value
        try await waitUntil("the others install a view without the leaver") {
            await group.members[0].currentView()?.members == [MemberID(1), MemberID(2)]
        }
        // Well under the failure timeout (2 s here) would be the point; on a loaded machine only
        // "it happened" is asserted, and the time is printed.
        print("leave: the others installed the view without it in \(ContinuousClock.now - started)")
        await #expect(throws: GroupError.self) { _ = try await group.members[2].submit(1) }
        do {
            _ = try await group.members[2].submit(1)
        } catch {
            #expect(error.code == .closed)
        }
        #expect(try await group.members[0].submit(1).response == 2)
        await group.stop()
    }

    @Test("A member cut off from the others fails its reads and submits with minority, and does not hang")
    func minorityFailsReads() async throws {
        let group = try TestGroup(count: 3, initialState: Counter())
        _ = try await group.members[0].submit(1)
        // Two members crash (closed without leaving): the third reaches a minority.
        for member in group.members[1...] {
            let runtime = try await member.started()
            await runtime.close()
        }
        try await waitUntil("the survivor learns it is in a minority") {
            do {
                _ = try await group.members[0].state(.linearizable)
                return false
            } catch let error as GroupError {
                return error.code == .minority
            }
        }
        do {
            _ = try await group.members[0].submit(1)
            Issue.record("a submit in a minority was answered")
        } catch {
            #expect(error.code == .minority)
        }
        // A local read still answers (it says what this member has).
        #expect(try await group.members[0].state(.local).total == 1)
        await group.stop()
    }

    @Test("A configuration with a bad value is refused with the field named")
    func invalidConfiguration() throws {
        let address = PeerAddress(host: "127.0.0.1", port: 1)
        let cases: [(GroupConfiguration, String)] = [
            (.bootstrap(members: [], me: MemberID(1)), "start"),
            (.bootstrap(members: [.init(id: MemberID(2), address: address)], me: MemberID(1)), "start"),
            (.join(contacts: [], listen: address), "start"),
            (
                {
                    var configuration = GroupConfiguration.bootstrap(
                        members: [.init(id: MemberID(1), address: address)], me: MemberID(1))
                    configuration.operationTimeout = .zero
                    return configuration
                }(), "operationTimeout"
            ),
            (
                {
                    var configuration = GroupConfiguration.bootstrap(
                        members: [.init(id: MemberID(1), address: address)], me: MemberID(1))
                    configuration.protocolConfiguration.deliveryMode = .unordered
                    return configuration
                }(), "protocolConfiguration"
            ),
            (
                {
                    var configuration = GroupConfiguration.bootstrap(
                        members: [.init(id: MemberID(1), address: address)], me: MemberID(1))
                    configuration.protocolConfiguration.windowMessagesMax = 0
                    return configuration
                }(), "protocolConfiguration"
            ),
        ]
        for (configuration, field) in cases {
            do {
                _ = try ReplicatedGroup(configuration: configuration, initialState: Counter())
                Issue.record("accepted a configuration with a bad \(field)")
            } catch {
                #expect(error.code == .invalidConfiguration)
                #expect(error.field == field, "\(error)")
            }
        }
    }

    @Test("A call on a group nobody runs fails within the operation timeout instead of hanging")
    func notRunning() async throws {
        var configuration = GroupConfiguration.bootstrap(
            members: [.init(id: MemberID(1), address: try loopback())], me: MemberID(1))
        configuration.operationTimeout = .milliseconds(300)
        let group = try ReplicatedGroup(configuration: configuration, initialState: Counter())
        do {
            _ = try await group.submit(1)
            Issue.record("answered without running")
        } catch {
            #expect(error.code == .timedOut)
        }
    }
}

@Suite("ReplicatedGroup as a Service", .serialized, .timeLimit(.minutes(2)))
struct ReplicatedGroupServiceTests {
    @Test("Under a ServiceGroup, graceful shutdown leaves the group: the others remove it at once")
    func gracefulShutdownLeaves() async throws {
        let group = try TestGroup(count: 3, initialState: Counter())
        _ = try await group.members[0].submit(1)
        // A fourth member, run by a ServiceGroup (as a service would run it).
        let joiner = try group.joiner(initialState: Counter())
        let services = ServiceGroup(
            services: [joiner], gracefulShutdownSignals: [], cancellationSignals: [], logger: testLogger())
        let running = Task { try await services.run() }
        try await waitUntil("the joiner is in the view") {
            await group.members[0].currentView()?.members.count == 4
        }
        await services.triggerGracefulShutdown()
        try await running.value
        // Removed by the view change its leave starts, not after a failure timeout's wait.
        try await waitUntil(seconds: 10, "the others install a view without it") {
            await group.members[0].currentView()?.members.count == 3
        }
        #expect(try await group.members[1].submit(1).response == 2)
        await group.stop()
    }
}
