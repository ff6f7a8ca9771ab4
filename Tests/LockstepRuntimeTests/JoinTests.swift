// Joins through several contacts, and a member the group removed while it ran (a long pause)
// rejoining as a new incarnation (or exiting, when asked to). Regressions of chaos seeds 777001
// and 5150: joiners sent through a removed member were refused and gave up.

import Foundation
import LockstepChecker
import LockstepCore
import LockstepRuntime
import LockstepWire
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// A stand-in contact on loopback: answers every connection with `answer` (a control frame's
/// JSON body), or with nothing at all (nil: it accepts and stays silent).
private final class ScriptedContact: Sendable {
    let channel: Channel
    var address: PeerAddress { PeerAddress(host: "127.0.0.1", port: channel.localAddress?.port ?? 0) }

    private final class Answer: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let body: String?
        init(body: String?) { self.body = body }
        func channelActive(context: ChannelHandlerContext) {
            guard let body else { return }
            let bytes = Wire.encode(.control(Array(body.utf8)))
            var buffer = context.channel.allocator.buffer(capacity: bytes.count)
            buffer.writeBytes(bytes)
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        }
    }

    init(answer body: String?, on eventLoop: EventLoop) async throws {
        channel = try await ServerBootstrap(group: eventLoop)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Answer(body: body))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }
}

@Suite("Joins", .serialized, .timeLimit(.minutes(3)))
struct JoinTests {
    @Test(
        """
        A join goes on past contacts that refuse (a removed member), are not reachable, stay silent or answer \
        like no member, and is let in by the next; when every contact fails, the error names each one and why
        """
    )
    func joinTriesEveryContact() async throws {
        let ids = (1...3).map { MemberID(UInt64($0)) }
        let view = try View(id: ViewID(1), members: ids, senders: ids)
        var configuration = Configuration()
        configuration.failureTimeout = .seconds(2)  // a test of joins, not of failure detection
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 4)
        let runtimes = try await startGroup(
            view: view, configuration: configuration, on: group, logs: ids.map { _ in DeliveryLog() })
        let refusing = try await ScriptedContact(
            answer: #"{"kind":"refused","reason":"this member was removed from the group"}"#, on: group.next())
        let silent = try await ScriptedContact(answer: nil, on: group.next())
        let stranger = try await ScriptedContact(answer: #"{"kind":"done"}"#, on: group.next())
        let unreachable = PeerAddress(host: "127.0.0.1", port: try freePort())
        let failing = [refusing.address, unreachable, silent.address, stranger.address]
        let limits = WireLimits(configuration: configuration)
        let started = ContinuousClock.now
        let welcome = try await MemberRuntime.requestJoin(
            member: MemberID(4), listen: PeerAddress(host: "127.0.0.1", port: try freePort()),
            contacts: failing + [runtimes[1].settings.addresses[1]], limits: limits, eventLoop: group.next(),
            timeout: .seconds(60), attemptTimeout: .seconds(1))
        #expect(welcome.view.members == ids + [MemberID(4)], "\(welcome.view)")
        #expect(welcome.view.members[welcome.memberRank] == MemberID(4))
        // Half the overall timeout: the silent contact cost its attempt's second, not the join's
        // minute (a loaded machine may take some seconds to let the joiner in; CI took 19).
        #expect(ContinuousClock.now - started < .seconds(30), "the silent contact cost its attempt's second only")

        do {
            _ = try await MemberRuntime.requestJoin(
                member: MemberID(5), listen: PeerAddress(host: "127.0.0.1", port: try freePort()),
                contacts: failing, limits: limits, eventLoop: group.next(), timeout: .seconds(6),
                attemptTimeout: .seconds(1))
            Issue.record("a join through contacts that all fail succeeded")
        } catch let error as RuntimeError {
            #expect(error.code == .joinFailed)
            for contact in failing { #expect(error.message.contains("\(contact):"), "\(error.message)") }
            #expect(error.message.contains("refused: this member was removed from the group"), "\(error.message)")
            #expect(error.message.contains("no answer from \(silent.address) in time"), "\(error.message)")
            #expect(error.message.contains("not a member's answer (done)"), "\(error.message)")
        }
        for contact in [refusing, silent, stranger] { try await contact.channel.close() }
        for runtime in runtimes { await runtime.close() }
        try await group.shutdownGracefully()
    }

    @Test("A join's overall timeout bounds it, however many contacts stay silent")
    func joinTimeoutIsOverall() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var silent: [ScriptedContact] = []
        for _ in 0..<5 { silent.append(try await ScriptedContact(answer: nil, on: group.next())) }
        let started = ContinuousClock.now
        do {
            _ = try await MemberRuntime.requestJoin(
                member: MemberID(5), listen: PeerAddress(host: "127.0.0.1", port: try freePort()),
                contacts: silent.map(\.address), limits: WireLimits(configuration: Configuration()),
                eventLoop: group.next(), timeout: .seconds(2), attemptTimeout: .seconds(1))
            Issue.record("a join through silent contacts succeeded")
        } catch let error as RuntimeError {
            #expect(error.message.contains("not tried"), "\(error.message)")
        }
        #expect(ContinuousClock.now - started < .seconds(4), "2 s overall, not 5 x 1 s")
        for contact in silent { try await contact.channel.close() }
        try await group.shutdownGracefully()
    }
}

/// A child's stdout and stderr, read on a thread of its own as they come.
private final class OutputCollector: Sendable {
    private let state = Mutex((text: "", ended: false))
    var text: String { state.withLock { $0.text } }
    var ended: Bool { state.withLock { $0.ended } }

    init(reading pipe: Pipe) {
        let thread = Thread { [self] in
            while true {
                let data = pipe.fileHandleForReading.availableData
                if data.isEmpty { break }
                self.state.withLock { $0.text += String(decoding: data, as: UTF8.self) }
            }
            self.state.withLock { $0.ended = true }
        }
        thread.start()
    }
}

@Suite("A removed member rejoins", .serialized, .timeLimit(.minutes(3)))
struct RejoinTests {
    /// Regression (chaos seeds 777001 and 5150): a member removed after a long pause stayed outside
    /// the group for good, doing nothing.
    @Test(
        """
        5 `lockstep node --duration 16` processes: two are paused beyond the failure timeout and removed; the one \
        with --rejoin-ids 9 rejoins as m9 (its own log, the others deliver m9's messages) and ends with status 0, \
        the one with --exit-when-removed exits with status 3
        """
    )
    func removedMemberRejoins() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-rejoin-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let ports = try (0..<5).map { _ in try freePort() }
        let peers = ports.map { "127.0.0.1:\($0)" }.joined(separator: ",")
        let logs = (0..<5).map { directory.appendingPathComponent("member-\($0).log").path }
        let extra: [[String]] = [[], [], [], ["--rejoin-ids", "9"], ["--exit-when-removed"]]
        var processes: [Process] = []
        var outputs: [Pipe] = []
        for rank in 0..<5 {
            let process = Process()
            process.executableURL = try lockstepExecutable()
            process.arguments =
                [
                    "node", "--rank", "\(rank)", "--peers", peers, "--size", "256", "--duration", "16", "--log",
                    logs[rank], "--failure-timeout-ms", "1000",
                ]
                + extra[rank]
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            process.standardInput = FileHandle.nullDevice
            try process.run()
            processes.append(process)
            outputs.append(pipe)
        }
        defer { for process in processes where process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        // Read every output on threads of their own (a full pipe would block a member).
        let texts = outputs.map { OutputCollector(reading: $0) }
        // Pause them once the group runs (a member not yet heard from is not suspected), for
        // 5 x the failure timeout (1 s, not the default 500 ms: on a loaded CI machine the
        // survivors suspected each other too).
        try await waitUntil(seconds: 60) { texts.allSatisfy { $0.text.contains("\"progress\"") } }
        for rank in 3..<5 { kill(processes[rank].processIdentifier, SIGSTOP) }
        try await Task.sleep(for: .seconds(5))
        for rank in 3..<5 { kill(processes[rank].processIdentifier, SIGCONT) }
        var results: [(status: Int32, text: String)] = []
        for (process, text) in zip(processes, texts) {
            try await waitUntil(seconds: 90) { !process.isRunning }
            try await waitUntil(seconds: 5) { text.ended }
            results.append((process.terminationStatus, text.text))
        }
        for rank in 0..<3 { #expect(results[rank].status == 0, "rank \(rank): \(results[rank].text.suffix(3_000))") }
        let rejoiner = results[3].text
        #expect(results[3].status == 0, "\(rejoiner.suffix(3_000))")
        #expect(rejoiner.contains(#""event":"rejoining""#) && rejoiner.contains(#""new_member":9"#), "\(rejoiner)")
        let finals = rejoiner.split(separator: "\n").filter { $0.contains(#""event":"final""#) }
        #expect(finals.count == 2 && finals[0].contains(#""member":4"#) && finals[1].contains(#""member":9"#))
        let newLog = try LockstepChecker.DeliveryLog.read(path: logs[3] + ".m9")
        #expect(!newLog.isEmpty, "the new incarnation writes its own log")
        let oldViews = Set(try LockstepChecker.DeliveryLog.read(path: logs[3]).map(\.viewID))
        #expect(newLog.allSatisfy { $0.viewID > (oldViews.max() ?? 0) }, "the new log starts in a later view")
        let survivor = try LockstepChecker.DeliveryLog.read(path: logs[0])
        #expect(survivor.contains { $0.sender == MemberID(9) }, "m9's messages are delivered as m9's")
        #expect(results[4].status == 3, "\(results[4].text.suffix(3_000))")
        #expect(results[4].text.contains("removed from the group; exiting (--exit-when-removed)"))
    }
}
