// `lockstep node`: runs one member. Interactive by default (each stdin line is sent, each
// delivery printed); with --size it runs the benchmark workload instead and reports JSON lines
// on stdout (`ready`, `progress`, `stalled`, `final`: an interface scripts read, README "JSON
// lines"). On its own, a workload ends when every sender's last message is delivered and every
// member says it is done; under `lockstep bench` and `chaos` (--stop-on-eof) it ends when its
// stdin closes.

import ArgumentParser
import Foundation
import Histogram
import Logging
import LockstepCore
import LockstepRuntime
import LockstepWire
import NIOCore
import NIOPosix

struct Node: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one member of a group over TCP.",
        discussion: """
            Every member is given every member's address, in rank order, and its own rank:
              lockstep node --rank 0 --peers 10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000
            Without --size, each line read from stdin is sent and every delivery is printed.
            With --size, the member runs the benchmark workload (as `lockstep bench` does): it sends
            for --duration seconds (or --count messages), then ends once every sender's last message
            is delivered and every member said it is done; stdin is not read, unless --stop-on-eof
            makes its end stop the member (how bench and chaos stop members). A workload that
            delivers nothing for --stall-timeout seconds prints its state and exits with status 1.
            """)

    @OptionGroup var member: MemberOptions

    @Option(help: "Benchmark workload: payload bytes per message (at least 16), or a comma-separated list (K/M suffixes) that messages cycle through.")
    var size: String?

    @Option(help: "Benchmark workload: seconds of sending.")
    var duration: Double = 5

    @Option(help: "Benchmark workload: messages per sender (instead of --duration).")
    var count: Int?

    @Option(help: "Benchmark workload: file for the delivery log (read by the checker).")
    var log: String?

    @Option(help: "Join a running group through the member at this host:port (with --id and --listen) instead of starting one with --peers.")
    var join: String?

    @Option(help: "With --join: this process's member id (a new one for every start: a restarted process is a new incarnation).")
    var id: UInt64?

    @Option(help: "With --join: the host:port this member listens on.")
    var listen: String?

    @Flag(help: "Benchmark workload: stop when stdin closes (what bench and chaos use), instead of ending with the group after --duration.")
    var stopOnEof = false

    @Option(help: "Benchmark workload: seconds without a delivery, while messages are outstanding, after which the member prints its state and exits with status 1 (default: 10, or 3 x the failure timeout if larger).")
    var stallTimeout: Double?

    @Option(help: "Benchmark workload: seconds to wait, after the last delivery, for every member to say it is done.")
    var finishTimeout: Double = 10

    func run() async throws {
        let settings: RuntimeSettings
        var snapshot: [UInt8] = []
        if let join {
            guard let contact = PeerAddress(join) else { throw ValidationError("--join '\(join)' is not host:port") }
            guard let id, id >= 1 else { throw ValidationError("--join needs --id (a member id not used before)") }
            guard let listenText = listen, let address = PeerAddress(listenText) else {
                throw ValidationError("--join needs --listen host:port")
            }
            let configuration = try member.configuration()
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let welcome: Welcome
            do {
                welcome = try await MemberRuntime.requestJoin(
                    member: MemberID(id), listen: address, contact: contact, limits: WireLimits(configuration: configuration),
                    eventLoop: group.next())
            } catch {
                try? await group.shutdownGracefully()
                throw error
            }
            try await group.shutdownGracefully()
            var joining = RuntimeSettings(configuration: configuration, joining: welcome)
            joining.relayThresholdBytes = try member.relayThresholdBytes()  // the same as every member's
            settings = joining
            snapshot = welcome.snapshot
        } else {
            settings = try member.settings()
        }
        Output.error(settings.summary)
        if let size {
            let sizes = try Bench.parseSizes(size)
            for size in sizes where size > settings.configuration.messageBytesMax {
                throw ValidationError("--size \(size) exceeds messageBytesMax \(settings.configuration.messageBytesMax)")
            }
            guard duration > 0, duration <= 3_600 else { throw ValidationError("--duration must be in (0, 3600] seconds") }
            if let count, count < 1 { throw ValidationError("--count must be at least 1") }
            let stall = stallTimeout ?? stallSecondsDefault(failureTimeout: settings.configuration.failureTimeout)
            guard stall > 0, stall <= 3_600 else { throw ValidationError("--stall-timeout must be in (0, 3600] seconds") }
            guard finishTimeout > 0, finishTimeout <= 3_600 else { throw ValidationError("--finish-timeout must be in (0, 3600] seconds") }
            let member = BenchMember(settings: settings, sizes: sizes, duration: duration, count: count, logPath: log, snapshot: snapshot)
            if stopOnEof {
                try await member.runUntilStdinCloses()
            } else {
                try await member.runToTheEnd(stallSeconds: stall, finishSeconds: finishTimeout)
            }
        } else {
            try await runInteractive(settings)
        }
    }

    private func runInteractive(_ settings: RuntimeSettings) async throws {
        var logger = Logger(label: "lockstep.node")
        logger.logLevel = .info
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let runtime = try await MemberRuntime.start(settings: settings, eventLoop: group.next(), logger: logger) { delivery in
            Output.line("\(delivery.sender)#\(delivery.index): \(String(decoding: delivery.payload, as: UTF8.self))")
        }
        Output.error("all members connected; type lines to send them (Ctrl-D to stop)")
        let canSend = settings.view.senderRank(ofMemberRank: settings.memberRank) != nil
        while let line = readLine() {
            guard canSend else {
                Output.error("this member is not a sender (see --senders)")
                continue
            }
            try await runtime.send(Array(line.utf8)[...])
        }
        await runtime.close()
        try await group.shutdownGracefully()
    }
}

/// The benchmark payload: send time (uptime ns) and the sender's message number, then filler
/// derived from both so the receiver can check the content without a copy of what was sent.
enum BenchPayload {
    static let headerBytes = 16
    /// Set in the send-time word of a sender's last message (uptimes never reach bit 63): a
    /// receiver that delivered it has everything that sender sent.
    static let lastFlag: UInt64 = 1 << 63

    static func make(size: Int, sequence: UInt64, now: UInt64, last: Bool = false) -> Payload {
        let stamp = last ? now | lastFlag : now
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            raw.storeBytes(of: stamp.littleEndian, toByteOffset: 0, as: UInt64.self)
            raw.storeBytes(of: sequence.littleEndian, toByteOffset: 8, as: UInt64.self)
            let fill = filler(sequence)
            for k in headerBytes..<size { buffer[k] = fill }
            count = size
        }
        return bytes[...]
    }

    static func filler(_ sequence: UInt64) -> UInt8 { UInt8(truncatingIfNeeded: sequence &* 31 &+ 7) }

    /// (send time, sequence, content intact, the sender's last message).
    static func read(_ payload: Payload) -> (UInt64, UInt64, Bool, Bool) {
        guard payload.count >= headerBytes else { return (0, 0, false, false) }
        return payload.withUnsafeBytes { raw in
            let stamp = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
            let sent = stamp & ~lastFlag
            let sequence = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            // Checking the first and last filler bytes catches misplaced or mixed payloads cheaply.
            let fill = filler(sequence)
            let intact = raw.count == headerBytes || (raw[headerBytes] == fill && raw[raw.count - 1] == fill)
            return (sent, sequence, intact, stamp & lastFlag != 0)
        }
    }
}

/// The workload of one benchmark member: pull-based sending, delivery accounting, a delivery
/// log, latency histogram, and JSON lines on stdout.
final class BenchMember: MessageSource, @unchecked Sendable {
    let settings: RuntimeSettings
    /// Message i has payload size sizes[i % sizes.count].
    let sizes: [Int]
    let duration: Double
    let count: Int?
    let logPath: String?
    // Everything below is touched only on the member's event loop.
    private var sent: UInt64 = 0
    private var sendingDone = false
    private var sendDeadline: UInt64 = 0
    private var delivered: UInt64 = 0
    private var deliveredBytes: UInt64 = 0
    private var deliveredBytesFromOthers: UInt64 = 0
    private var corrupt: UInt64 = 0
    private var fifoViolations: UInt64 = 0
    private var expected: [UInt64]
    private var startedAt: UInt64 = 0
    private var lastDeliveryAt: UInt64 = 0
    private var latency = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    private var logBuffer: [UInt8] = []
    private var logFile: FileHandle?
    /// A digest chained over every delivery (origin, sequence), and the views installed with
    /// the digest at each install: the checker's virtual-synchrony evidence.
    private var digest: UInt64 = 0xcbf2_9ce4_8422_2325
    private var views: [ViewSummary] = []
    /// Members (by id) whose last message this member delivered, and the view it is in.
    private var lastDelivered: Set<UInt64> = []
    private var currentView: View
    /// Whether this member sent in its first view; if it becomes a sender later, it sends only
    /// a marked last message (`markerOnly`).
    private var wasSender = false
    private var markerOnly = false
    /// Set by `runToTheEnd` (not under --stop-on-eof).
    private var endsByItself = false

    /// Origins (member id - 1) this workload tracks: membersMax of the default configuration.
    static let originsMax = 64

    init(settings: RuntimeSettings, sizes: [Int], duration: Double, count: Int?, logPath: String?, snapshot: [UInt8] = []) {
        precondition(!sizes.isEmpty, "a workload needs at least one size")
        self.settings = settings
        self.sizes = sizes
        self.duration = duration
        self.count = count
        self.logPath = logPath
        self.expected = Array(repeating: 0, count: Self.originsMax)
        // A joiner starts from the leader's state: per origin, how many messages it delivered,
        // and the digest over them.
        if let state = try? JSONDecoder().decode(WorkloadState.self, from: Data(snapshot)), state.expected.count == Self.originsMax {
            expected = state.expected
            digest = state.digest
        }
        initialCounts = expected
        currentView = settings.view
        // The first view, with the state it starts from (before any delivery can happen).
        views = [ViewSummary(id: settings.view.id.rawValue, members: settings.view.members.map(\.rawValue), stateDigest: digest)]
    }

    private var initialCounts: [UInt64] = []
    /// This member's origin (its id - 1), computed once: read on every delivery, and reaching it
    /// through `settings.view.members` costs a retain and a release each time.
    private lazy var ownOrigin: Int = Int(settings.view.members[settings.memberRank].rawValue - 1)

    private var runtime: MemberRuntime?
    private var group: MultiThreadedEventLoopGroup?

    /// Connects to the group and starts sending.
    func start() async throws {
        if let logPath {
            guard FileManager.default.createFile(atPath: logPath, contents: nil) else {
                throw ValidationError("cannot create the delivery log \(logPath)")
            }
            logFile = FileHandle(forWritingAtPath: logPath)
            logBuffer.reserveCapacity(1 << 20)
        }
        var logger = Logger(label: "lockstep.member\(settings.memberRank)")
        // LOCKSTEP_LOG_LEVEL=warning (or notice, info, debug) shows suspicions, link losses and
        // view installs in the member's stderr (bench and chaos keep it in member-N.err).
        logger.logLevel = ProcessInfo.processInfo.environment["LOCKSTEP_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .error
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.group = group
        let runtime = try await MemberRuntime.start(settings: settings, eventLoop: group.next(), logger: logger) {
            [self] delivery in self.delivered(delivery)
        }
        self.runtime = runtime
        runtime.setSnapshotProvider { [self] in
            [UInt8]((try? JSONEncoder().encode(WorkloadState(expected: self.expected, digest: self.digest))) ?? Data())
        }
        runtime.setViewObserver { [self] view in
            self.currentView = view
            // A view without the old senders makes everyone a sender. A member that did not send
            // in the workload sends only its marked last message, so that every member can still
            // tell it has everything (found by review: survivors of a killed lone sender waited
            // for last messages that never came).
            // Only when the workload ends by itself: under bench and chaos (--stop-on-eof) the
            // members are stopped one by one, and the later views of that shutdown must not
            // make them send (ShapedLinkTests: a message after the first member's final report).
            if self.endsByItself, !self.wasSender, let rank = view.rank(of: self.settings.view.members[self.settings.memberRank]),
                view.senderRank(ofMemberRank: rank) != nil, !self.markerOnly
            {
                self.markerOnly = true
                self.sendingDone = false
            }
            self.views.append(ViewSummary(id: view.id.rawValue, members: view.members.map(\.rawValue), stateDigest: self.digest))
        }
        try await runtime.eventLoop.submit {
            self.startedAt = NIODeadline.now().uptimeNanoseconds
            self.sendDeadline = self.startedAt + UInt64(self.duration * 1e9)
            let isSender = self.settings.view.senderRank(ofMemberRank: self.settings.memberRank) != nil
            self.wasSender = isSender
            self.sendingDone = !isSender
        }.get()
        runtime.setSource(self)
    }

    /// Where the member is now (and a nudge to pull, so a deadline-stopped source is noticed).
    func progress() async throws -> MemberProgress {
        guard let runtime else { throw ValidationError("member not started") }
        runtime.wake()
        let statistics = try await runtime.statistics()
        return try await runtime.eventLoop.submit {
            var progress = MemberProgress(
                rank: self.settings.memberRank, sent: self.sent, sendingDone: self.sendingDone, delivered: self.delivered,
                deliveredBytes: self.deliveredBytes, rssMegabytes: residentMegabytes(), inFlight: self.ownInFlight,
                wedgedAtUptimeNanoseconds: statistics.wedgedAtUptimeNanoseconds, suspectedRanks: statistics.suspectedRanks,
                currentView: statistics.viewID, viewInstalledAtUptimeNanoseconds: statistics.viewInstalledAtUptimeNanoseconds)
            progress.member = self.settings.view.members[self.settings.memberRank].rawValue
            progress.wedged = statistics.isWedgedNow
            progress.minority = statistics.minority
            progress.removed = statistics.removed
            progress.complete = self.isComplete
            progress.queues = statistics.occupancy
            self.rowGapMaxMilliseconds = Double(statistics.rowGapMaxNanoseconds) / 1e6
            return progress
        }.get()
    }

    /// This member sent everything it will, and delivered the last message of every sender of
    /// its view (so, by per-sender FIFO, everything they sent).
    private var isComplete: Bool {
        guard sendingDone else { return false }
        return currentView.senderMemberRanks.allSatisfy { lastDelivered.contains(currentView.members[$0].rawValue) }
    }

    /// Stops the member and returns its figures.
    func finish() async throws -> MemberFinal {
        guard let runtime, let group else { throw ValidationError("member not started") }
        // Stop pulling first: a message sent after the report would look created to the checker.
        let final = try await runtime.eventLoop.submit {
            self.sendingDone = true
            return self.finalReport()
        }.get()
        await runtime.close()
        try await group.shutdownGracefully()
        flushLog()
        try logFile?.close()
        return final
    }

    /// As a process of `lockstep bench` or `chaos`: JSON lines on stdout; stops when stdin closes.
    func runUntilStdinCloses() async throws {
        try await start()
        Output.line(try jsonLine(["event": "ready"]))
        let reporter = Task {
            while !Task.isCancelled {
                try await Task.sleep(for: .milliseconds(250))
                Output.line(try jsonLine(try await progress()))
            }
        }
        _ = await Task.detached { FileHandle.standardInput.readDataToEndOfFile() }.value
        reporter.cancel()
        Output.line(try jsonLine(try await finish()))
    }

    /// On its own: sends for the duration (or count), runs until every sender's last message is
    /// delivered here, then ends with the group (`MemberRuntime.finish`: no member takes the
    /// others' departure for a failure). A member that delivers nothing for `stallSeconds` while
    /// incomplete prints its state (a `stalled` line and a sentence on stderr) and exits 1.
    func runToTheEnd(stallSeconds: Double, finishSeconds: Double) async throws {
        endsByItself = true
        try await start()
        Output.line(try jsonLine(["event": "ready"]))
        var lastCount: UInt64 = 0
        var lastChange = ContinuousClock.now
        while true {
            try await Task.sleep(for: .milliseconds(250))
            let now = try await progress()
            Output.line(try jsonLine(now))
            if now.complete == true { break }
            if now.delivered != lastCount {
                lastCount = now.delivered
                lastChange = ContinuousClock.now
            }
            if now.removed == true {
                Output.error("member rank \(now.rank): removed from the group; the workload cannot finish here")
                _ = try await finish()
                throw ExitCode(1)
            }
            if ContinuousClock.now - lastChange >= .milliseconds(Int64(stallSeconds * 1_000)) {
                var stalled = now
                stalled.event = "stalled"
                Output.line(try jsonLine(stalled))
                Output.error("member rank \(now.rank): \(now.stallSentence(seconds: stallSeconds))")
                _ = try await finish()
                throw ExitCode(1)
            }
        }
        guard let runtime else { throw ValidationError("member not started") }
        let missing = await runtime.finish(timeout: .milliseconds(Int64(finishSeconds * 1_000)))
        Output.line(try jsonLine(try await finalAfterFinish()))
        if !missing.isEmpty {
            let names = missing.map(\.description).joined(separator: ", ")
            Output.error("member rank \(settings.memberRank): \(names) did not say they were done within \(finishSeconds) s")
            throw ExitCode(1)
        }
    }

    /// The final figures once the runtime has finished (and closed).
    private func finalAfterFinish() async throws -> MemberFinal {
        guard let runtime, let group else { throw ValidationError("member not started") }
        let final = try await runtime.eventLoop.submit { self.finalReport() }.get()
        try await group.shutdownGracefully()
        flushLog()
        try logFile?.close()
        return final
    }

    func nextPayloads(limit: Int, bytesLimit: Int, into payloads: inout [Payload]) {
        guard !sendingDone else { return }
        let now = NIODeadline.now().uptimeNanoseconds
        // Past the deadline one more message goes: the last, marked (receivers know from it that
        // they have everything this sender sent).
        let pastDeadline = markerOnly || count == nil && now >= sendDeadline
        var allowed = min(limit, pastDeadline ? 1 : 1_024)
        if let count { allowed = min(allowed, count - Int(sent)) }
        var bytes = 0
        for _ in 0..<max(0, allowed) {
            let size = sizes[Int(sent % UInt64(sizes.count))]
            guard bytes + size <= bytesLimit else { break }
            bytes += size
            let last = pastDeadline || count.map { sent + 1 >= UInt64($0) } ?? false
            payloads.append(BenchPayload.make(size: size, sequence: sent, now: now, last: last))
            sent += 1
            if last {
                sendingDone = true
                break
            }
        }
    }

    private var ownInFlight: UInt64 {
        guard settings.view.senderRank(ofMemberRank: settings.memberRank) != nil, expected.indices.contains(ownOrigin) else { return 0 }
        return sent - min(sent, expected[ownOrigin])
    }

    private func delivered(_ delivery: Delivery) {
        let now = NIODeadline.now().uptimeNanoseconds
        let (sentAt, sequence, intact, last) = BenchPayload.read(delivery.payload)
        if !intact { corrupt += 1 }
        if last { lastDelivered.insert(delivery.sender.rawValue) }
        // By the sender's first-view rank (its id - 1): sender ranks change with views.
        let origin = Int(delivery.sender.rawValue &- 1)
        guard expected.indices.contains(origin) else {
            corrupt += 1
            return
        }
        if sequence != expected[origin] { fifoViolations += 1 }
        expected[origin] = sequence + 1
        for value in [UInt64(origin), sequence] { digest = (digest ^ value) &* 0x0000_0100_0000_01B3 }
        delivered += 1
        deliveredBytes += UInt64(delivery.payload.count)
        if origin != ownOrigin { deliveredBytesFromOthers += UInt64(delivery.payload.count) }
        lastDeliveryAt = now
        if now > sentAt { _ = latency.record((now - sentAt) / 1_000) }
        if logFile != nil {
            withUnsafeBytes(of: UInt16(origin).littleEndian) { logBuffer.append(contentsOf: $0) }
            withUnsafeBytes(of: sequence.littleEndian) { logBuffer.append(contentsOf: $0) }
            withUnsafeBytes(of: delivery.viewID.rawValue.littleEndian) { logBuffer.append(contentsOf: $0) }
            if logBuffer.count >= 1 << 20 { flushLog() }
        }
    }

    private func flushLog() {
        guard let logFile, !logBuffer.isEmpty else { return }
        logFile.write(Data(logBuffer))
        logBuffer.removeAll(keepingCapacity: true)
    }

    /// Updated on every progress report (the runtime's statistics are asynchronous).
    private var rowGapMaxMilliseconds: Double = 0

    private func finalReport() -> MemberFinal {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let cpu = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
            + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
        let seconds = Double(max(lastDeliveryAt, startedAt + 1) - startedAt) / 1e9
        return MemberFinal(
            rank: settings.memberRank, sent: sent, delivered: delivered, deliveredBytes: deliveredBytes,
            deliveredBytesFromOthers: deliveredBytesFromOthers, seconds: seconds,
            latencyMicroseconds: Percentiles(
                p50: latency.valueAtPercentile(50), p99: latency.valueAtPercentile(99),
                p999: latency.valueAtPercentile(99.9)),
            cpuSeconds: cpu, rssMegabytesMax: peakResidentMegabytes(), corrupt: corrupt,
            fifoViolations: fifoViolations, latencySamples: latency.totalCount, views: views,
            member: settings.view.members[settings.memberRank].rawValue, initialCounts: initialCounts,
            rdma: runtime?.rdmaStatistics, rowGapMaxMilliseconds: rowGapMaxMilliseconds)
    }
}

/// The stall watchdog's default bound (node and bench): 10 s, or 3 failure timeouts if longer,
/// so that a view change (detection, proposal, install) never looks like a stall.
func stallSecondsDefault(failureTimeout: Duration) -> Double {
    max(10, 3 * Double(failureTimeout.nanosecondsClamped) / 1e9)
}

/// Peak resident memory of this process image, MB (10^6 bytes), from VmHWM in /proc/self/status.
/// Not getrusage's ru_maxrss: that one keeps the peak of the parent process a child was forked
/// from (the peak survives exec), which reported the bench parent's memory as the members'.
func peakResidentMegabytes() -> Double { statusMegabytes("VmHWM:") }

/// Resident memory of this process now, MB.
func residentMegabytes() -> Double { statusMegabytes("VmRSS:") }

private func statusMegabytes(_ field: String) -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix(field) {
        let kilobytes = line.split(separator: " ").compactMap { Double($0) }.first ?? 0
        return kilobytes * 1_024 / 1e6
    }
    return 0
}

/// Latency percentiles, microseconds.
struct Percentiles: Codable, Sendable {
    var p50: UInt64
    var p99: UInt64
    var p999: UInt64
}

/// A member's progress line.
struct MemberProgress: Codable, Sendable {
    var event = "progress"
    var rank: Int
    var sent: UInt64
    var sendingDone: Bool
    var delivered: UInt64
    var deliveredBytes: UInt64
    /// Resident memory of the process now, MB.
    var rssMegabytes: Double
    /// This member's own messages sent and not yet delivered here.
    var inFlight: UInt64
    /// When the member wedged (CLOCK_MONOTONIC nanoseconds), and whom it suspected.
    var wedgedAtUptimeNanoseconds: UInt64?
    var suspectedRanks: [Int]
    /// The view the member is in, and when it installed it (CLOCK_MONOTONIC nanoseconds).
    var currentView: UInt64 = 1
    var viewInstalledAtUptimeNanoseconds: UInt64?
    /// This member's id; wedged (holds a suspicion in its current view), in a minority, removed;
    /// the workload complete here (sent everything, delivered every sender's last message); and
    /// its window and queues. Optional in decoding: older members do not send them.
    var member: UInt64? = nil
    var wedged: Bool? = nil
    var minority: Bool? = nil
    var removed: Bool? = nil
    var complete: Bool? = nil
    var queues: QueueOccupancy? = nil

    /// What a stall watchdog says about this member.
    func stallSentence(seconds: Double) -> String {
        var state: [String] = ["view \(currentView)"]
        if !suspectedRanks.isEmpty { state.append("suspects ranks \(suspectedRanks)") }
        if wedged == true { state.append("wedged") }
        if minority == true { state.append("in a minority (partition safety: it forms no view)") }
        if removed == true { state.append("removed") }
        state.append("sent \(sent)\(sendingDone ? " (done sending)" : ""), delivered \(delivered), \(inFlight) own in flight")
        if let queues { state.append(queues.description) }
        return "no delivery for \(format(seconds, 1)) s: " + state.joined(separator: ", ")
    }
}

/// A member's window and queues, as its runtime counts them (`queues` in the JSON lines).
typealias QueueOccupancy = Occupancy

/// A member's final figures. CPU and memory are the whole process's (one member per process,
/// except with --in-process).
struct MemberFinal: Codable, Sendable {
    var event = "final"
    var rank: Int
    var sent: UInt64
    var delivered: UInt64
    var deliveredBytes: UInt64
    /// Payload bytes delivered here from other members (absent in older reports).
    var deliveredBytesFromOthers: UInt64? = nil
    /// From the start of sending to the last delivery.
    var seconds: Double
    var latencyMicroseconds: Percentiles
    var cpuSeconds: Double
    var rssMegabytesMax: Double
    var corrupt: UInt64
    var fifoViolations: UInt64
    var latencySamples: UInt64
    /// Views installed, the first included (delivery logs name the view of each delivery).
    var views: [ViewSummary] = []
    /// This member's id, and for a joiner the snapshot's per-origin counts (origin = id - 1).
    var member: UInt64 = 0
    var initialCounts: [UInt64] = []
    /// RDMA operations this member's transport completed (nil on TCP).
    var rdma: RDMAStatistics?
    /// The longest gap between two rows from one peer, ms (heartbeat interval + the longest a row
    /// waited); absent in older reports.
    var rowGapMaxMilliseconds: Double? = nil
}

/// The workload's application state, as a joiner's snapshot.
struct WorkloadState: Codable {
    var expected: [UInt64]
    var digest: UInt64
}

/// A view as a member installed it, with the digest of everything it had delivered then.
struct ViewSummary: Codable, Sendable {
    var id: UInt64
    var members: [UInt64]
    var stateDigest: UInt64
}

func jsonLine<T: Encodable>(_ value: T) throws -> String {
    String(decoding: try BenchReport.encoder(pretty: false).encode(value), as: UTF8.self)
}
