// `lockstep bench-api`: the embedding API's cost, next to raw baselines measured in the same
// run (these machines are shared and noisy: ratios hold, absolute times do not).
//
// 1. Light load: one caller submits 100-byte commands one after another on a 3-member group on
//    loopback; p50/p99 of `submit`, against the p50 of a 100-byte TCP round trip on loopback.
// 2. Full load: every member enqueues 64-byte commands as fast as the window admits (64
//    concurrent callers per member), for --seconds; commands applied per second, against the
//    raw multicast (MemberRuntime.send of 64-byte payloads by the same drivers) at the same
//    window. Both pay one hop to the event loop per message: `lockstep bench`'s pull-based
//    source (no hop) is faster still, and is the raw layer's own figure.

import ArgumentParser
import Foundation
import Lockstep
import LockstepCore
import LockstepRuntime
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// A machine of raw commands: it counts them (the work of applying is not what is measured).
struct CountingMachine: ReplicatedStateMachine, Codable {
    var applied: UInt64 = 0
    mutating func apply(_ command: Payload, entry: EntryInfo) -> UInt64 {
        applied += 1
        return applied
    }
}

struct BenchAPI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-api",
        abstract: "Measure ReplicatedGroup's submit latency and throughput next to raw baselines of the same run.")

    @Option(help: "Submits measured one after another (light load).")
    var submits = 2_000

    @Option(help: "Seconds of full load, for the group and for the raw multicast each.")
    var seconds = 5.0

    @Option(help: "Window, in messages (the same for the group and the raw baseline).")
    var window = 1_024

    @Option(help: "Folder for the JSON report.")
    var output = "bench-results/api"

    func validate() throws {
        guard (10...1_000_000).contains(submits) else { throw ValidationError("--submits takes 10...1000000") }
        guard seconds > 0, seconds <= 600 else { throw ValidationError("--seconds takes (0, 600]") }
        guard (1...65_536).contains(window) else { throw ValidationError("--window takes 1...65536") }
    }

    func run() async throws {
        var protocolConfiguration = Configuration()
        protocolConfiguration.windowMessagesMax = window
        Output.error("1/4 TCP round trip on loopback (100 bytes)")
        let roundTrip = try await Self.tcpRoundTrips(count: submits)
        Output.error("2/4 submit latency, 3 members, one caller (100-byte commands)")
        let group = try await Self.startGroup(protocolConfiguration)
        let command = [UInt8](repeating: 7, count: 100)[...]
        var latencies: [Double] = []
        latencies.reserveCapacity(submits)
        for index in 0..<submits {
            let started = ContinuousClock.now
            _ = try await group.members[0].submit(command)
            latencies.append((ContinuousClock.now - started).microseconds)
            if index % 500 == 499 { Output.error("   \(index + 1) of \(submits) submits") }
        }
        Output.error("3/4 group throughput, every member enqueues 64-byte commands for \(seconds) s")
        let groupRate = try await Self.fullLoad(seconds: seconds, members: group.members.count) { member in
            try await group.members[member].enqueue([UInt8](repeating: 1, count: 64)[...])
        } applied: {
            try await group.members[0].statistics().position
        }
        await group.stop()
        Output.error(
            "4/4 raw multicast: one caller's 100-byte messages, then every member's 64-byte ones for \(seconds) s")
        let raw = try await RawGroup.start(protocolConfiguration)
        var rawLatencies: [Double] = []
        for _ in 0..<submits {
            let started = ContinuousClock.now
            try await raw.sendAndWaitForOwnDelivery(command)
            rawLatencies.append((ContinuousClock.now - started).microseconds)
        }
        rawLatencies.sort()
        let rawRate = try await Self.fullLoad(seconds: seconds, members: raw.runtimes.count) { member in
            try await raw.runtimes[member].send([UInt8](repeating: 1, count: 64)[...])
        } applied: {
            raw.delivered.count.load(ordering: .relaxed)
        }
        await raw.stop()

        latencies.sort()
        let report = APIReport(
            submits: submits, window: window, seconds: seconds,
            tcpRoundTripP50Microseconds: roundTrip.percentile(0.5),
            rawDeliveryP50Microseconds: rawLatencies.percentile(0.5),
            submitP50Microseconds: latencies.percentile(0.5), submitP99Microseconds: latencies.percentile(0.99),
            groupCommandsPerSecond: groupRate, rawMessagesPerSecond: rawRate)
        print(report.table)
        try report.save(in: output)
    }

    // MARK: - Baselines and drivers

    /// p50 of 100-byte ping-pongs over one loopback TCP connection (NIO, as the members use).
    static func tcpRoundTrips(count: Int) async throws -> [Double] {
        let group = MultiThreadedEventLoopGroup.singleton
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { $0.pipeline.addHandler(EchoHandler()) }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { server.close(promise: nil) }
        let pong = PongHandler()
        let client = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { $0.pipeline.addHandler(pong) }
            .connect(host: "127.0.0.1", port: server.localAddress?.port ?? 0).get()
        defer { client.close(promise: nil) }
        var times: [Double] = []
        for _ in 0..<count {
            let started = ContinuousClock.now
            let answered = client.eventLoop.makePromise(of: Void.self)
            try await client.eventLoop.submit { pong.expect(100, answered) }.get()
            try await client.writeAndFlush(ByteBuffer(repeating: 3, count: 100)).get()
            try await answered.futureResult.get()
            times.append((ContinuousClock.now - started).microseconds)
        }
        return times.sorted()
    }

    static func startGroup(_ configuration: Configuration) async throws -> BenchGroup {
        let group = try BenchGroup(configuration)
        // The first submit waits for the members to connect.
        _ = try await group.members[0].submit([0][...])
        return group
    }

    /// Runs `send` from `members` concurrent drivers (each as fast as its window admits) for
    /// `seconds`, and returns what `applied` counted per second over that time.
    static func fullLoad(
        seconds: Double, members: Int, driversPerMember: Int = 64, send: @escaping @Sendable (Int) async throws -> Void,
        applied: @escaping @Sendable () async throws -> UInt64
    ) async throws -> Double {
        let before = try await applied()
        let started = ContinuousClock.now
        let deadline = started + .milliseconds(Int64(seconds * 1_000))
        try await withThrowingTaskGroup(of: Void.self) { drivers in
            // Several drivers per member, so that the window, not one caller's round of awaits,
            // is what limits the rate.
            for member in 0..<members {
                for _ in 0..<driversPerMember {
                    drivers.addTask {
                        while ContinuousClock.now < deadline { try await send(member) }
                    }
                }
            }
            try await drivers.waitForAll()
        }
        let after = try await applied()
        return Double(after - before) / (ContinuousClock.now - started).inSeconds
    }
}

/// Three members of the counting machine on loopback.
final class BenchGroup: Sendable {
    let members: [ReplicatedGroup<CountingMachine>]
    let runs: [Task<Void, Error>]

    init(_ configuration: Configuration) throws {
        let ports = try (0..<3).map { _ in try RawTCP.freePort() }
        let list = ports.enumerated().map {
            GroupConfiguration.Member(
                id: MemberID(UInt64($0.offset + 1)), address: PeerAddress(host: "127.0.0.1", port: $0.element))
        }
        members = try list.map { member in
            var group = GroupConfiguration.bootstrap(members: list, me: member.id)
            group.protocolConfiguration = configuration
            return try ReplicatedGroup(configuration: group, initialState: CountingMachine())
        }
        runs = members.map { member in Task { try await member.run() } }
    }

    func stop() async {
        await withTaskGroup(of: Void.self) { tasks in
            for member in members { tasks.addTask { await member.close() } }
        }
        for run in runs { _ = try? await run.value }
    }
}

/// Three raw runtimes on loopback, counting deliveries at member 0.
final class RawGroup: Sendable {
    let runtimes: [MemberRuntime]
    let delivered: DeliveryCount
    private let loops: MultiThreadedEventLoopGroup

    private init(runtimes: [MemberRuntime], delivered: DeliveryCount, loops: MultiThreadedEventLoopGroup) {
        self.runtimes = runtimes
        self.delivered = delivered
        self.loops = loops
    }

    static func start(_ configuration: Configuration) async throws -> RawGroup {
        let addresses = try (0..<3).map { _ in PeerAddress(host: "127.0.0.1", port: try RawTCP.freePort()) }
        let view = try View(id: ViewID(1), members: (1...3).map { MemberID(UInt64($0)) })
        let loops = MultiThreadedEventLoopGroup(numberOfThreads: 3)
        let delivered = DeliveryCount()
        let logger = { () -> Logger in
            var logger = Logger(label: "bench-api")
            // Stopping closes links without `finish`: the resets it causes are not news.
            logger.logLevel = .critical
            return logger
        }()
        let runtimes = try await withThrowingTaskGroup(of: (Int, MemberRuntime).self) { starts in
            for rank in 0..<3 {
                let settings = RuntimeSettings(
                    configuration: configuration, view: view, memberRank: rank, addresses: addresses)
                starts.addTask {
                    let runtime = try await MemberRuntime.start(
                        settings: settings, eventLoop: loops.next(), logger: logger
                    ) {
                        _ in
                        if rank == 0 {
                            delivered.count.add(1, ordering: .relaxed)
                            delivered.waiter?.succeed(())
                            delivered.waiter = nil
                        }
                    }
                    return (rank, runtime)
                }
            }
            let started = try await starts.reduce(into: [Int: MemberRuntime]()) { $0[$1.0] = $1.1 }
            return (0..<3).compactMap { started[$0] }
        }
        return RawGroup(runtimes: runtimes, delivered: delivered, loops: loops)
    }

    /// Sends from member 0 and waits until member 0 delivers it (registering the wait and the
    /// send in one turn of its event loop, as ReplicatedGroup.submit does).
    func sendAndWaitForOwnDelivery(_ payload: Payload) async throws {
        let runtime = runtimes[0]
        let delivered = runtime.eventLoop.makePromise(of: Void.self)
        let admitted = runtime.eventLoop.makePromise(of: Void.self)
        runtime.eventLoop.execute {
            self.delivered.waiter = delivered
            runtime.sendOnLoop(payload, admitted: admitted)
        }
        try await admitted.futureResult.get()
        try await delivered.futureResult.get()
    }

    func stop() async {
        for runtime in runtimes { await runtime.close() }
        try? await loops.shutdownGracefully()
    }
}

final class DeliveryCount: @unchecked Sendable {
    let count = Atomic<UInt64>(0)
    /// Succeeded at member 0's next delivery (member 0's event loop only).
    var waiter: EventLoopPromise<Void>?
}

struct APIReport: Codable {
    var submits: Int
    var window: Int
    var seconds: Double
    var tcpRoundTripP50Microseconds: Double
    /// The raw multicast's send-to-own-delivery time for one caller's 100-byte messages.
    var rawDeliveryP50Microseconds: Double
    var submitP50Microseconds: Double
    var submitP99Microseconds: Double
    var groupCommandsPerSecond: Double
    var rawMessagesPerSecond: Double

    var table: String {
        let ratio = submitP50Microseconds / tcpRoundTripP50Microseconds
        let share = groupCommandsPerSecond / rawMessagesPerSecond
        return """
            | figure | group | raw baseline (same run) | ratio | target |
            |---|---|---|---|---|
            \(latencyRow(ratio))
            \(rawLatencyRow())
            \(throughputRow(share))
            """
    }

    private func latencyRow(_ ratio: Double) -> String {
        let group = "\(Self.f(submitP50Microseconds)) µs (p99 \(Self.f(submitP99Microseconds)) µs)"
        let raw = "TCP round trip p50 \(Self.f(tcpRoundTripP50Microseconds)) µs"
        return "| submit p50, 100 B, one caller | \(group) | \(raw) | \(Self.f(ratio))x | ≤ 3x |"
    }

    private func rawLatencyRow() -> String {
        let raw = "TCP round trip p50 \(Self.f(tcpRoundTripP50Microseconds)) µs"
        let ratio = Self.f(rawDeliveryP50Microseconds / tcpRoundTripP50Microseconds)
        return "| raw multicast, send to own delivery, 100 B, one caller | \(Self.f(rawDeliveryP50Microseconds)) µs "
            + "| \(raw) | \(ratio)x | (the protocol's floor) |"
    }

    private func throughputRow(_ share: Double) -> String {
        let group = "\(Self.f(groupCommandsPerSecond)) commands/s"
        let raw = "raw multicast \(Self.f(rawMessagesPerSecond)) messages/s"
        return "| full load, 64 B, all members, window \(window) | \(group) | \(raw) | \(Self.f(share)) | ≥ 0.5 |"
    }

    static func f(_ value: Double) -> String {
        value >= 100 ? String(Int(value.rounded())) : String(format: "%.2f", value)
    }

    func save(in folder: String) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
        let path = "\(folder)/\(stamp).json"
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).write(to: URL(fileURLWithPath: path))
        Output.error("saved \(path)")
    }
}

private final class EchoHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) { context.writeAndFlush(data, promise: nil) }
}

/// Completes a promise once the expected number of echoed bytes came back (event loop only).
private final class PongHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    private var remaining = 0
    private var promise: EventLoopPromise<Void>?
    func expect(_ bytes: Int, _ promise: EventLoopPromise<Void>) {
        remaining = bytes
        self.promise = promise
    }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        remaining -= unwrapInboundIn(data).readableBytes
        if remaining <= 0, let promise {
            self.promise = nil
            promise.succeed(())
        }
    }
}

extension Duration {
    var microseconds: Double { inSeconds * 1e6 }
}

extension [Double] {
    /// Of a sorted array.
    func percentile(_ fraction: Double) -> Double {
        guard !isEmpty else { return 0 }
        return self[Swift.min(count - 1, Int(Double(count) * fraction))]
    }
}
