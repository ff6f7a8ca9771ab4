// The TCP transport and runtime: a group of in-process members over loopback, malformed frames
// and dropped connections on a live link, and a real multi-process run.

import Foundation
import LockstepChecker
import LockstepCore
import LockstepRuntime
import LockstepWire
import NIOCore
import NIOPosix
import Testing

@Suite("TCP transport", .serialized, .timeLimit(.minutes(5)))
struct TCPTests {
    enum RelayCase: String, CaseIterable, Sendable {
        /// No relay threshold, all three send.
        case off
        /// Threshold 100 bytes, one sender of three: the relay carries the large payloads.
        case oneSender
        /// Threshold 100 bytes, all three send: the relay is not used (every member's egress
        /// carries the same bytes either way), so nothing goes along the chain.
        case allSenders
    }

    @Test(
        """
        Three in-process members over loopback TCP deliver everything, in one order; the relay carries payloads \
        only with fewer senders than members - 1
        """,
        arguments: RelayCase.allCases)
    func inProcessGroup(relayCase: RelayCase) async throws {
        let relay = relayCase == .oneSender
        let ids = (1...3).map { MemberID(UInt64($0)) }
        let senderIDs = relay ? [ids[0]] : ids
        let view = try View(id: ViewID(1), members: ids, senders: senderIDs)
        var configuration = Configuration()
        configuration.windowMessagesMax = 16
        // Not a test of failure detection: a load spike on a shared machine suspects no one.
        configuration.failureTimeout = .seconds(2)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 3)
        let logs = (0..<3).map { _ in DeliveryLog() }
        let runtimes = try await startGroup(view: view, configuration: configuration, on: group, logs: logs) {
            settings in
            // Payloads of 100 bytes or more are relay candidates, in 64-byte blocks along the chain.
            settings.relayThresholdBytes = relayCase == .off ? nil : 100
            settings.relayBlockBytes = 64
        }
        let perSender = 300
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for (rank, runtime) in runtimes.enumerated() where rank < senderIDs.count {
                tasks.addTask {
                    for k in 0..<perSender {
                        var bytes = [UInt8](repeating: UInt8(rank), count: 16 + k % 200)
                        withUnsafeBytes(of: UInt64(k).littleEndian) { for j in 0..<8 { bytes[j] = $0[j] } }
                        try await runtime.send(bytes[...])
                    }
                }
            }
            try await tasks.waitForAll()
        }
        try await waitUntil { logs.allSatisfy { $0.count == senderIDs.count * perSender } }
        let order = logs[0].all.map { "\($0.sender)#\($0.index)" }
        for log in logs {
            #expect(log.all.map { "\($0.sender)#\($0.index)" } == order)
        }
        // Per-sender FIFO: each sender's messages in the order sent.
        for sender in senderIDs {
            let sequence = logs[1].all.filter { $0.sender == sender }.map {
                $0.payload.prefix(8).enumerated().reduce(UInt64(0)) {
                    $0 | UInt64($1.element) << (8 * UInt64($1.offset))
                }
            }
            #expect(sequence == (0..<UInt64(perSender)).map { $0 })
        }
        var forwarded: UInt64 = 0
        var assembled: UInt64 = 0
        for runtime in runtimes {
            let statistics = try await runtime.statistics()
            forwarded += statistics.blocksForwarded
            assembled += statistics.relayedMessagesAssembled
        }
        if relay {
            #expect(forwarded > 0, "blocks went along the chain")
            #expect(assembled > 0)
        } else {
            #expect(forwarded == 0 && assembled == 0)
        }
        for runtime in runtimes { await runtime.close() }
        try await group.shutdownGracefully()
    }

    /// Member 0 runs for real; the test plays member 1 through a raw socket.
    private struct PlayedLink {
        let runtime: MemberRuntime
        let group: MultiThreadedEventLoopGroup
        let log: DeliveryLog
        let port: Int
        let view: View

        static func start() async throws -> PlayedLink {
            let ports = try (0..<2).map { _ in try freePort() }
            let view = try View(id: ViewID(1), members: [MemberID(1), MemberID(2)], senders: [MemberID(2)])
            // Transport robustness only: with view changes on, the closed link would make member 0
            // suspect member 1 and (alone in a group of two, a minority) stay wedged, and a
            // reconnected member 1 would have to rejoin as a new incarnation. Here the same member
            // reconnects, so view changes are off; kill-after tests cover the view change over TCP.
            var configuration = Configuration()
            configuration.viewChanges = false
            let settings = RuntimeSettings(
                configuration: configuration, view: view, memberRank: 0,
                addresses: ports.map { PeerAddress(host: "127.0.0.1", port: $0) })
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let log = DeliveryLog()
            async let started = MemberRuntime.start(settings: settings, eventLoop: group.next(), logger: testLogger()) {
                log.append($0)
            }
            let peer = try await RawPeer.connecting(port: ports[0])
            peer.send(Self.hello(view))
            let runtime = try await started
            let link = PlayedLink(runtime: runtime, group: group, log: log, port: ports[0], view: view)
            // Two messages from "member 1", made stable by its row: member 0 delivers them.
            try await link.deliverTwo(through: peer, from: 0)
            return link
        }

        static func hello(_ view: View) -> [UInt8] {
            Wire.encode(.hello(Hello(member: MemberID(2), viewID: view.id, memberRank: 1, senderCount: 1)))
        }

        /// Sends messages `first` and `first + 1` of member 1 and its row, and waits for delivery.
        func deliverTwo(through peer: RawPeer, from first: UInt64) async throws {
            let batch = DataBatch(
                viewID: view.id, senderRank: 0, firstIndex: first,
                entries: [.message([1, 1, UInt8(first)]), .message([2, 2, UInt8(first)])])
            peer.send(Wire.encode(.message(.data(batch))))
            peer.send(
                Wire.encode(
                    .message(
                        .row(Row(viewID: view.id, received: [first + 2], seq: first + 2, delivered: 0, suspected: [0])))
                ))
            let expected = Int(first) + 2
            try await waitUntil(seconds: 10) { log.count == expected }
        }

        func stop() async throws {
            await runtime.close()
            try await group.shutdownGracefully()
        }
    }

    enum Malformed: String, CaseIterable, Sendable {
        case badMagic, badVersion, impossibleLength, truncatedBody, garbage, droppedConnection
        /// Regression (review of the house refactor): a peer's `address` with a 600 KB host was
        /// kept, and re-encoding it in a redirect passed the control frame limit (JSON escapes
        /// "/" as two bytes): the member answering a join crashed. Hosts are bounded at decode.
        case hugeHost
        /// The handshake rule: one hello per link; a second one is a broken protocol.
        case secondHello

        func bytes(_ view: View) -> [UInt8] {
            let valid = Wire.encode(
                .message(.row(Row(viewID: view.id, received: [2], seq: 2, delivered: 2, suspected: [0]))))
            switch self {
            case .badMagic: return [0xDE, 0xAD] + valid.dropFirst(2)
            case .badVersion: return Array(valid[0..<4]) + [9] + valid.dropFirst(5)
            case .impossibleLength: return Array(valid[0..<8]) + [0xFF, 0xFF, 0xFF, 0x7F]
            case .truncatedBody: return Array(valid.dropLast(5))
            case .garbage: return (0..<64).map { UInt8(($0 * 37 + 11) % 256) }
            case .droppedConnection: return []
            case .secondHello:
                return PlayedLink.hello(view)
            case .hugeHost:
                let body =
                    #"{"kind":"address","id":2,"port":7000,"host":""# + String(repeating: "/", count: 600_000) + #""}"#
                return Wire.encode(.control(Array(body.utf8)))
            }
        }
    }

    @Test(
        """
        A malformed frame or a dropped connection closes only that link; the member stays up and keeps what it \
        delivered
        """,
        arguments: Malformed.allCases)
    func badLinkCostsNothingElse(_ kind: Malformed) async throws {
        let link = try await PlayedLink.start()
        let before = link.log.all
        #expect(before.count == 2)
        do {
            let peer = try await RawPeer.connecting(port: link.port)
            peer.send(PlayedLink.hello(link.view))
            try await link.deliverTwo(through: peer, from: 2)
            peer.send(kind.bytes(link.view))
            if kind == .droppedConnection || kind == .truncatedBody {
                // The peer goes away (mid-frame, for a truncated body).
                shutdown(peer.fd, Int32(SHUT_WR))
            }
            #expect(peer.waitForClose(), "member 0 should close the link after \(kind)")
        }
        // Still up: a new connection from member 1 is accepted and its messages are delivered.
        let again = try await RawPeer.connecting(port: link.port)
        again.send(PlayedLink.hello(link.view))
        try await link.deliverTwo(through: again, from: 4)
        let after = link.log.all
        #expect(Array(after.prefix(2)) == before, "what was delivered before stays delivered")
        #expect(after.map(\.index) == [0, 1, 2, 3, 4, 5])
        let statistics = try await link.runtime.statistics()
        if kind != .droppedConnection {
            #expect(statistics.linksClosedWithError >= 1)
        }
        try await link.stop()
    }

    /// The handshake rule (Handshake.swift): an accepted connection is nobody until its hello;
    /// any protocol frame before it fails the link, and the member stays up.
    @Test("A row before the hello closes that connection; the member stays up and takes the next one")
    func frameBeforeHelloIsRefused() async throws {
        let link = try await PlayedLink.start()
        let early = try await RawPeer.connecting(port: link.port)
        early.send(Wire.encode(.message(.row(Row(viewID: link.view.id, received: [2], seq: 2, delivered: 2)))))
        #expect(early.waitForClose(), "a row before the hello should close the connection")
        let again = try await RawPeer.connecting(port: link.port)
        again.send(PlayedLink.hello(link.view))
        try await link.deliverTwo(through: again, from: 2)
        #expect(link.log.all.map(\.index) == [0, 1, 2, 3])
        #expect(try await link.runtime.statistics().linksClosedWithError >= 1)
        try await link.stop()
    }

    @Test(
        """
        A multi-process group: 3 `lockstep node` processes stream 100,000 messages of mixed sizes each and pass \
        the checker
        """
    )
    func multiProcess() async throws {
        let report = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-test-\(getpid()).json")
        defer { try? FileManager.default.removeItem(at: report) }
        let arguments = [
            "bench", "--members", "3", "--mix", "--size", "16,100,1K,4K", "--count", "100000", "--baseline-seconds",
            "0.2",
            "--relay-threshold", "4K", "--failure-timeout-ms", "2000",
            "--output", report.path,
        ]
        let (status, text) = try await runLockstep(arguments)
        #expect(status == 0, "\(text)")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: report)) as? [String: Any]
        let results = json?["results"] as? [[String: Any]]
        #expect(results?.first?["checker"] as? String == "passed")
        #expect(results?.first?["delivered_per_member"] as? [Int] == [300_000, 300_000, 300_000])
        #expect(json?["schema"] as? String == "lockstep-bench/1")
    }
}

@Suite("Failure detection across processes", .timeLimit(.minutes(5)))
struct KillAfterTests {
    @Test(
        """
        bench --kill-after: the survivors of a SIGKILLed member suspect it, install a view without it within 3 x \
        failureTimeout, and deliver again; safety holds
        """
    )
    func killedMemberIsDetected() async throws {
        let report = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-kill-\(getpid()).json")
        defer { try? FileManager.default.removeItem(at: report) }
        let arguments = [
            "bench", "--size", "1K", "--duration", "4", "--kill-after", "1", "--baseline-seconds", "0.2", "--output",
            report.path,
        ]
        let (status, text) = try await runLockstep(arguments)
        #expect(status == 0, "\(text)")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: report)) as? [String: Any]
        let result = (json?["results"] as? [[String: Any]])?.first
        let viewChange = result?["view_change_ms"] as? [String: Any]
        let detection = try #require(viewChange?["detection_max"] as? Double, "\(text)")
        #expect(detection < 1_500, "detected within 3 x failureTimeout (500 ms)")
        let installation = try #require(viewChange?["installation_max"] as? Double, "\(text)")
        #expect(installation >= detection && installation < 1_500, "the new view installed within 3 x failureTimeout")
        // The survivors deliver again in the new view (a rate, not a timing target: debug builds).
        let after = try #require(result?["messages_per_second_after_view_change"] as? Double, "\(text)")
        #expect(after > 0, "the survivors deliver in the new view")
        #expect(result?["checker"] as? String == "passed (safety only)")
    }
}

@Suite("Chaos on real processes", .timeLimit(.minutes(5)))
struct ChaosTests {
    @Test(
        "lockstep chaos: 5 processes stream while a new member joins over TCP and another is killed; every check passes"
    )
    func chaosRun() async throws {
        let (status, text) = try await runLockstep(["chaos", "--duration", "14", "--seed", "12"])
        #expect(status == 0, "\(text)")
        #expect(text.contains("joins through"), "the schedule added a member: \(text)")
        #expect(text.contains("SIGKILL"), "the schedule killed a member: \(text)")
        #expect(text.contains(" passed, 0 failed"), "\(text)")
    }

    @Test("lockstep chaos refuses an unknown fault kind")
    func chaosRefusesBadFaults() async throws {
        let (status, text) = try await runLockstep(["chaos", "--faults", "kill,meteor"])
        #expect(status != 0)
        #expect(text.contains("--faults"), "\(text)")
    }
}

@Suite("Delivery stream", .timeLimit(.minutes(2)))
struct DeliveryStreamTests {
    /// Three members over loopback, member rank 0 the one sender, each with a delivery stream
    /// of watermarks 4 and 16.
    static func streamingGroup(
        windowMessagesMax: Int, on group: MultiThreadedEventLoopGroup
    ) async throws
        -> [(MemberRuntime, DeliverySequence)]
    {
        let ports = try (0..<3).map { _ in try freePort() }
        let addresses = ports.map { PeerAddress(host: "127.0.0.1", port: $0) }
        let view = try View(id: ViewID(1), members: (1...3).map { MemberID(UInt64($0)) }, senders: [MemberID(1)])
        var configuration = Configuration()
        configuration.windowMessagesMax = windowMessagesMax
        return try await withThrowingTaskGroup(of: (Int, MemberRuntime, DeliverySequence).self) { tasks in
            for rank in 0..<3 {
                let settings = RuntimeSettings(
                    configuration: configuration, view: view, memberRank: rank, addresses: addresses)
                tasks.addTask {
                    let (runtime, deliveries) = try await MemberRuntime.startStreaming(
                        settings: settings, eventLoop: group.next(), logger: testLogger(), lowWatermark: 4,
                        highWatermark: 16)
                    return (rank, runtime, deliveries)
                }
            }
            var result: [(MemberRuntime, DeliverySequence)?] = [nil, nil, nil]
            for try await (rank, runtime, deliveries) in tasks { result[rank] = (runtime, deliveries) }
            return result.compactMap { $0 }
        }
    }

    @Test("Deliveries as an AsyncSequence: a slow consumer pauses its member's reads, and nothing is lost or reordered")
    func slowConsumerPushesBack() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 3)
        let started = try await Self.streamingGroup(windowMessagesMax: 16, on: group)
        let count = 600
        let consumers = started.enumerated().map { rank, member in
            Task { () -> [UInt64] in
                if rank == 2 {
                    // Member 2's application does not read at first: its stream fills to the high
                    // watermark and the member must stop reading (give it 20 s on a slow machine).
                    let deadline = ContinuousClock.now + .seconds(20)
                    while (try? await member.0.statistics())?.readPauses == 0, ContinuousClock.now < deadline {
                        try? await Task.sleep(for: .milliseconds(5))
                    }
                }
                var indices: [UInt64] = []
                for await delivery in member.1 {
                    indices.append(delivery.index)
                    if indices.count == count { break }
                }
                return indices
            }
        }
        for k in 0..<count { try await started[0].0.send([UInt8(k % 256), 1, 2, 3][...]) }
        for consumer in consumers {
            #expect(await consumer.value == (0..<UInt64(count)).map { $0 })
        }
        let slow = try await started[2].0.statistics()
        #expect(slow.readPauses > 0, "the slow consumer should have made its member stop reading")
        for (runtime, _) in started { await runtime.close() }
        try await group.shutdownGracefully()
    }

    /// Regression (issue 10): rows and heartbeats shared the data's byte stream, so a member
    /// whose reads were paused (or whose link was full of data) stopped hearing its peers, and a
    /// healthy group suspected itself apart. Rows now travel on the control lane, which is read
    /// whatever the data lane does.
    @Test(
        """
        A consumer that reads nothing for 4 x the failure timeout costs no suspicion: rows still flow on the \
        control lane while its data lane is paused
        """
    )
    func pausedDataLaneKeepsHeartbeats() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 3)
        let started = try await Self.streamingGroup(windowMessagesMax: 64, on: group)
        let count = 400
        let pause = Duration.milliseconds(4 * 500)
        let consumers = started.enumerated().map { rank, member in
            Task { () -> [UInt64] in
                if rank == 2 {
                    // Member 2 reads nothing until its member has stopped reading, then for 2 s more.
                    let deadline = ContinuousClock.now + .seconds(20)
                    while (try? await member.0.statistics())?.readPauses == 0, ContinuousClock.now < deadline {
                        try? await Task.sleep(for: .milliseconds(5))
                    }
                    try? await Task.sleep(for: pause)
                }
                var indices: [UInt64] = []
                for await delivery in member.1 {
                    indices.append(delivery.index)
                    if indices.count == count { break }
                }
                return indices
            }
        }
        let sender = Task {
            for k in 0..<count { try await started[0].0.send([UInt8](repeating: UInt8(k % 256), count: 2_048)[...]) }
        }
        for consumer in consumers {
            #expect(await consumer.value == (0..<UInt64(count)).map { $0 })
        }
        try await sender.value
        for (rank, (runtime, _)) in started.enumerated() {
            let statistics = try await runtime.statistics()
            #expect(
                statistics.wedgedAtUptimeNanoseconds == nil,
                "member rank \(rank) suspected \(statistics.suspectedRanks)")
            #expect(statistics.viewID == 1)
        }
        #expect(try await started[2].0.statistics().readPauses > 0)
        for (runtime, _) in started { await runtime.close() }
        try await group.shutdownGracefully()
    }
}

@Suite("Lanes", .timeLimit(.minutes(1)))
struct LaneTests {
    /// Regression (found running the full suite for the house refactor): a member heartbeats
    /// only once all of its own links are up, so a peer that was ready sooner timed its silence
    /// from its own start and, on a busy machine, removed it at once (m3, 600 ms in). A peer that
    /// is connected and has sent no row yet is starting, not failed, until connectTimeout.
    @Test(
        """
        A connected peer that has sent no row yet is not suspected within connectTimeout of the start, and is \
        suspected after it
        """
    )
    func startingPeerIsNotSuspected() async throws {
        let ports = try (0..<2).map { _ in try freePort() }
        let view = try View(id: ViewID(1), members: [MemberID(1), MemberID(2)], senders: [MemberID(1)])
        var settings = RuntimeSettings(
            configuration: Configuration(), view: view, memberRank: 0,
            addresses: ports.map { PeerAddress(host: "127.0.0.1", port: $0) })
        settings.connectTimeout = .seconds(3)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let startedAt = NIODeadline.now().uptimeNanoseconds
        async let started = MemberRuntime.start(settings: settings, eventLoop: group.next(), logger: testLogger()) {
            _ in
        }
        var lanes: [RawPeer] = []
        for lane in [Lane.control, .data] {
            let peer = try await RawPeer.connecting(port: ports[0])
            peer.send(
                Wire.encode(
                    .hello(Hello(member: MemberID(2), viewID: view.id, memberRank: 1, senderCount: 1, lane: lane))))
            lanes.append(peer)
        }
        let runtime = try await started
        // The peer never sends a row. It is suspected, but not before connectTimeout has passed
        // since the start (the member's own clock says when it wedged: no test timing involved).
        // The figures are read again after the deadline: a sleep that a starved pool overran
        // (CI, issue 13) left the loop with figures from before connectTimeout.
        let deadline = ContinuousClock.now + .seconds(20)
        var statistics = try await runtime.statistics()
        while statistics.suspectedRanks != [1] {
            let late = ContinuousClock.now >= deadline
            try await Task.sleep(for: .milliseconds(50))
            statistics = try await runtime.statistics()
            if late { break }
        }
        #expect(statistics.suspectedRanks == [1], "the silent peer is suspected once connectTimeout has passed")
        let wedgedAfter = (statistics.wedgedAtUptimeNanoseconds ?? startedAt) - startedAt
        #expect(
            wedgedAfter >= 3_000_000_000,
            "suspected \(wedgedAfter / 1_000_000) ms after the start, within connectTimeout")
        await runtime.close()
        try await group.shutdownGracefully()
        _ = lanes
    }

    /// The lane rule: a pair's second connection must come within connectTimeout of the first,
    /// or the link fails (the peer is then suspected like any failed link), and the member stays up.
    @Test(
        """
        A peer that opens its control lane but never its data lane has its link failed after connectTimeout; the \
        member stays up
        """
    )
    func missingDataLaneFailsTheLink() async throws {
        let ports = try (0..<2).map { _ in try freePort() }
        let view = try View(id: ViewID(1), members: [MemberID(1), MemberID(2)], senders: [MemberID(1)])
        var configuration = Configuration()
        configuration.viewChanges = false
        var settings = RuntimeSettings(
            configuration: configuration, view: view, memberRank: 0,
            addresses: ports.map { PeerAddress(host: "127.0.0.1", port: $0) })
        settings.connectTimeout = .seconds(2)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        async let started = MemberRuntime.start(settings: settings, eventLoop: group.next(), logger: testLogger()) {
            _ in
        }
        let control = try await RawPeer.connecting(port: ports[0])
        control.send(
            Wire.encode(
                .hello(Hello(member: MemberID(2), viewID: view.id, memberRank: 1, senderCount: 1, lane: .control))))
        // The link is up at its first lane: the member starts (no count of failed links before the
        // close is asserted: on a loaded machine connectTimeout may pass before the member says).
        let runtime = try await started
        #expect(control.waitForClose(), "the half-open link is closed once connectTimeout passes")
        #expect(try await runtime.statistics().linksClosedWithError == 1)
        await runtime.close()
        try await group.shutdownGracefully()
    }
}

/// A source that ignores the byte budget it is given (offers `limit` payloads, whatever their bytes).
final class GreedySource: MessageSource, @unchecked Sendable {
    let total: Int
    let bytes: Int
    var next = 0
    init(total: Int, bytes: Int) {
        self.total = total
        self.bytes = bytes
    }
    func nextPayloads(limit: Int, bytesLimit: Int, into payloads: inout [Payload]) {
        while payloads.count < limit, next < total {
            var payload = [UInt8](repeating: 0, count: bytes)
            withUnsafeBytes(of: UInt64(next).littleEndian) { for j in 0..<8 { payload[j] = $0[j] } }
            payloads.append(payload[...])
            next += 1
        }
    }
}

/// Gives exactly what it is asked for (in messages), until `total`.
final class ExactSource: MessageSource, @unchecked Sendable {
    let total: Int
    var next = 0
    init(total: Int) { self.total = total }
    func nextPayloads(limit: Int, bytesLimit: Int, into payloads: inout [Payload]) {
        while payloads.count < limit, next < total {
            withUnsafeBytes(of: UInt64(next).littleEndian) { payloads.append(Array($0)[...]) }
            next += 1
        }
    }
}

@Suite("Window in bytes on the runtime", .timeLimit(.minutes(2)))
struct RuntimeWindowTests {
    /// Regression (review of the house refactor): when a source filled the message window
    /// exactly, the poll took it for drained although the window reopens inside that poll; the
    /// source was asked again only at the next event, which with an idle receiver is the next
    /// heartbeat. With heartbeats 10 s apart here, that stalls for 10 s per window; the source
    /// must be asked again as soon as the window reopens.
    @Test("A source that fills the message window exactly is asked again as soon as the window reopens")
    func exactSourceIsAskedWhenTheWindowReopens() async throws {
        let ids = (1...2).map { MemberID(UInt64($0)) }
        let view = try View(id: ViewID(1), members: ids, senders: [ids[0]])
        var configuration = Configuration()
        configuration.windowMessagesMax = 4
        configuration.heartbeatInterval = .seconds(10)
        configuration.failureTimeout = .seconds(60)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let logs = (0..<2).map { _ in DeliveryLog() }
        let runtimes = try await startGroup(view: view, configuration: configuration, on: group, logs: logs)
        let total = 200
        let source = ExactSource(total: total)  // the runtime holds its source weakly
        runtimes[0].setSource(source)
        let deadline = ContinuousClock.now + .seconds(30)
        while !logs.allSatisfy({ $0.count == total }), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(logs.map(\.count) == [total, total], "delivered \(logs.map(\.count)) of \(total)")
        withExtendedLifetime(source) {}
        for runtime in runtimes { await runtime.close() }
        try await group.shutdownGracefully()
    }

    /// Regression (found measuring issue 10): an empty window admits one message of any size, so
    /// the runtime offered its source an unlimited byte budget; the source gave 1,024 messages of
    /// 1 MiB, the core refused all but one, and the refused ones were lost (gaps in the senders'
    /// sequences, 1.1 GB of RSS, a stalled run).
    @Test(
        """
        A source that gives more than the byte window admits loses nothing: every message is delivered, in order, \
        and the window held
        """
    )
    func greedySourceLosesNothing() async throws {
        let ids = (1...3).map { MemberID(UInt64($0)) }
        let view = try View(id: ViewID(1), members: ids, senders: [ids[0]])
        var configuration = Configuration()
        configuration.windowBytesMax = 256 * 1_024
        // Not a test of failure detection (a loaded CI machine once suspected everyone here).
        configuration.failureTimeout = .seconds(2)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 3)
        let logs = (0..<3).map { _ in DeliveryLog() }
        let runtimes = try await startGroup(view: view, configuration: configuration, on: group, logs: logs)
        let total = 200
        let source = GreedySource(total: total, bytes: 64 * 1_024)
        runtimes[0].setSource(source)
        var inFlightMax = 0
        let deadline = ContinuousClock.now + .seconds(60)
        while logs.contains(where: { $0.count < total }), ContinuousClock.now < deadline {
            inFlightMax = max(inFlightMax, try await runtimes[0].statistics().occupancy.windowBytesInFlight)
            try await Task.sleep(for: .milliseconds(2))
        }
        for log in logs {
            let sequence = log.all.map {
                $0.payload.prefix(8).enumerated().reduce(UInt64(0)) {
                    $0 | UInt64($1.element) << (8 * UInt64($1.offset))
                }
            }
            #expect(sequence == (0..<UInt64(total)).map { $0 })
        }
        #expect(inFlightMax <= 256 * 1_024, "the window held: \(inFlightMax) bytes in flight at most")
        for runtime in runtimes { await runtime.close() }
        try await group.shutdownGracefully()
    }
}

@Suite("Node workloads end by themselves", .serialized, .timeLimit(.minutes(3)))
struct NodeEndTests {
    /// Regression (issue 10, items 4 and 5): `node --duration` waited for stdin to close (and with
    /// stdin at EOF from the start ended at once with nothing delivered), and every normal end
    /// logged errors (minority, connection reset, truncated frames): node had no way to leave.
    /// Also (found while measuring): with the byte window empty and the source done, the runtime
    /// took the source for never drained and re-polled itself without end, starving its reads;
    /// the peers' rows piled up unread and everyone suspected everyone at the end (1 MiB here
    /// makes the byte window bind).
    @Test(
        """
        3 `lockstep node --duration 1` processes (4 KiB and 1 MiB messages) with stdin at EOF run their workload, \
        end by themselves with equal deliveries and status 0, and log no error
        """
    )
    func nodesEndTogether() async throws {
        let ports = try (0..<3).map { _ in try freePort() }
        let peers = ports.map { "127.0.0.1:\($0)" }.joined(separator: ",")
        let results = try await withThrowingTaskGroup(of: (Int, Int32, String).self) { tasks in
            for rank in 0..<3 {
                tasks.addTask {
                    let (status, text) = try await runProcess(
                        try lockstepExecutable(),
                        [
                            "node", "--rank", "\(rank)", "--peers", peers, "--size", "4K,1M", "--duration", "1",
                            // Not a test of failure detection: a loaded machine's stall suspects no one.
                            "--failure-timeout-ms", "2000",
                        ],
                        environment: ["LOCKSTEP_LOG_LEVEL": "info"], timeoutSeconds: 90)
                    return (rank, status, text)
                }
            }
            var all: [(Int, Int32, String)] = []
            for try await result in tasks { all.append(result) }
            return all.sorted { $0.0 < $1.0 }
        }
        var delivered: [Int] = []
        for (rank, status, text) in results {
            #expect(status == 0, "member rank \(rank): \(text.suffix(2_000))")
            let errors = text.split(separator: "\n").filter { $0.contains("error") && !$0.hasPrefix("{") }
            #expect(errors.isEmpty, "member rank \(rank) logged errors: \(errors)")
            let final = text.split(separator: "\n").last { $0.contains("\"final\"") }
            let json = try final.flatMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            delivered.append(json?["delivered"] as? Int ?? -1)
            #expect(json?["corrupt"] as? Int == 0)
            #expect(json?["fifo_violations"] as? Int == 0)
        }
        #expect(delivered.count == 3 && delivered[0] > 0 && Set(delivered).count == 1, "\(delivered)")
    }

    /// Regression (issue 10 review): when the lone sender is killed, the next view makes every
    /// member a sender; members that had not sent never sent a marked last message, so each
    /// survivor waited for the others' and ended only by the stall watchdog, with status 1.
    @Test(
        "Survivors of a killed lone sender (`node --senders one`) end by themselves with status 0 and equal deliveries")
    func survivorsOfTheSenderEnd() async throws {
        let ports = try (0..<3).map { _ in try freePort() }
        let peers = ports.map { "127.0.0.1:\($0)" }.joined(separator: ",")
        let sender = Process()
        sender.executableURL = try lockstepExecutable()
        sender.arguments = [
            "node", "--rank", "0", "--peers", peers, "--senders", "one", "--size", "4K", "--duration", "30",
        ]
        sender.standardOutput = FileHandle.nullDevice
        sender.standardError = FileHandle.nullDevice
        sender.standardInput = FileHandle.nullDevice
        try sender.run()
        defer { kill(sender.processIdentifier, SIGKILL) }
        let killer = Task {
            try await Task.sleep(for: .seconds(3))
            kill(sender.processIdentifier, SIGKILL)
        }
        let results = try await withThrowingTaskGroup(of: (Int, Int32, String).self) { tasks in
            for rank in 1..<3 {
                tasks.addTask {
                    let (status, text) = try await runProcess(
                        try lockstepExecutable(),
                        [
                            "node", "--rank", "\(rank)", "--peers", peers, "--senders", "one", "--size", "4K",
                            "--duration", "30",
                        ],
                        timeoutSeconds: 90)
                    return (rank, status, text)
                }
            }
            var all: [(Int, Int32, String)] = []
            for try await result in tasks { all.append(result) }
            return all.sorted { $0.0 < $1.0 }
        }
        try await killer.value
        var delivered: [Int] = []
        for (rank, status, text) in results {
            #expect(status == 0, "member rank \(rank): \(text.suffix(2_000))")
            let final = text.split(separator: "\n").last { $0.contains("\"final\"") }
            let json = try final.flatMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            delivered.append(json?["delivered"] as? Int ?? -1)
        }
        #expect(delivered.count == 2 && delivered[0] > 0 && delivered[0] == delivered[1], "\(delivered)")
    }

    /// Nothing hangs silently: a member left in a minority (its only peer stopped, SIGSTOP) stops
    /// delivering; its watchdog says so with its state and exits 1.
    @Test(
        """
        A node whose group stops delivering (its one peer is SIGSTOPped) prints a stalled line with its state and \
        exits 1 within the stall timeout
        """
    )
    func stalledNodeSaysWhy() async throws {
        let ports = try (0..<2).map { _ in try freePort() }
        let peers = ports.map { "127.0.0.1:\($0)" }.joined(separator: ",")
        let peer = Process()
        peer.executableURL = try lockstepExecutable()
        peer.arguments = ["node", "--rank", "1", "--peers", peers, "--size", "1K", "--duration", "60"]
        peer.standardOutput = FileHandle.nullDevice
        peer.standardError = FileHandle.nullDevice
        peer.standardInput = FileHandle.nullDevice
        try peer.run()
        defer {
            kill(peer.processIdentifier, SIGCONT)
            kill(peer.processIdentifier, SIGKILL)
        }
        let stopper = Task {
            try await Task.sleep(for: .seconds(2))
            kill(peer.processIdentifier, SIGSTOP)
        }
        let started = ContinuousClock.now
        let (status, text) = try await runProcess(
            try lockstepExecutable(),
            ["node", "--rank", "0", "--peers", peers, "--size", "1K", "--duration", "60", "--stall-timeout", "3"],
            timeoutSeconds: 60)
        try await stopper.value
        #expect(status == 1, "\(text.suffix(2_000))")
        #expect(text.contains("\"stalled\""), "\(text.suffix(2_000))")
        #expect(text.contains("no delivery for 3.0 s") && text.contains("minority"), "\(text.suffix(2_000))")
        #expect(ContinuousClock.now - started < .seconds(30))
    }
}

@Suite("Relay rules", .timeLimit(.minutes(1)))
struct RelayRuleTests {
    /// Member 0 runs for real in a view of three where member rank 2 alone sends (the relay is
    /// used with fewer senders than members - 1); the test plays members 1 and 2.
    @Test("A relay block from a member that is not the predecessor in the chain is refused, and only that link closes")
    func blockOutOfChainIsRefused() async throws {
        let ports = try (0..<3).map { _ in try freePort() }
        let view = try View(id: ViewID(1), members: (1...3).map { MemberID(UInt64($0)) }, senders: [MemberID(3)])
        let settings = RuntimeSettings(
            configuration: Configuration(), view: view, memberRank: 0,
            addresses: ports.map { PeerAddress(host: "127.0.0.1", port: $0) })
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        async let started = MemberRuntime.start(settings: settings, eventLoop: group.next(), logger: testLogger()) {
            _ in
        }
        let one = try await RawPeer.connecting(port: ports[0])
        one.send(Wire.encode(.hello(Hello(member: MemberID(2), viewID: view.id, memberRank: 1, senderCount: 1))))
        let two = try await RawPeer.connecting(port: ports[0])
        two.send(Wire.encode(.hello(Hello(member: MemberID(3), viewID: view.id, memberRank: 2, senderCount: 1))))
        let runtime = try await started
        // Member 0's predecessor in every chain is rank 2; a block of origin 2 arriving from rank 1
        // (which should have received it from 2, not sent it on to 0) breaks the chain.
        let block = Block(
            viewID: view.id, originMemberRank: 2, index: 0, totalBytes: 10, offset: 0,
            bytes: Array(repeating: 7, count: 10)[...])
        one.send(Wire.encode(.block(block)))
        // Watched through the member's statistics (a blocking read here could hang the test).
        var deadline = ContinuousClock.now + .seconds(10)
        while try await runtime.statistics().linksClosedWithError == 0, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        let statistics = try await runtime.statistics()
        #expect(statistics.linksClosedWithError == 1, "the out-of-chain link is closed")
        #expect(statistics.blocksForwarded == 0)
        // The same block from the predecessor is accepted and passed on (to rank 1: 0's successor).
        two.send(Wire.encode(.block(block)))
        deadline = ContinuousClock.now + .seconds(10)
        while try await runtime.statistics().blocksForwarded == 0, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(try await runtime.statistics().blocksForwarded == 1)
        await runtime.close()
        try await group.shutdownGracefully()
    }
}
