// The benchmark workload of one member (`lockstep node --size`, and bench's --in-process
// members): pull-based sending, delivery accounting, the delivery log (LockstepChecker's
// format), a latency histogram, and JSON lines on stdout (MemberReports.swift).

import ArgumentParser
import Foundation
import Histogram
import LockstepChecker
import LockstepCore
import LockstepRuntime
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// How a workload run ended: as asked (stdin closed, or the workload ended with the group), or
/// with this member removed from the group, still running until `finishRemoved`.
enum WorkloadEnd: Sendable {
    case ended
    case removed(Removal)
}

/// What a removed member knows for rejoining: who it was, where it listened, the other members
/// of its last view (the contacts), and the highest member id it saw in any view.
struct Removal: Sendable {
    var member: MemberID
    var listen: PeerAddress
    var contacts: [PeerAddress]
    var highestMemberID: UInt64
}

/// Whether stdin has reached its end. Read once for the whole process: a member that rejoins
/// runs one workload per incarnation over the one stdin.
final class StdinWatch: Sendable {
    /// How often a workload looks (the delay between stdin closing and the member stopping).
    static let pollMilliseconds = 20
    private let closed = Mutex(false)

    /// Starts reading stdin to its end.
    static func started() -> StdinWatch {
        let watch = StdinWatch()
        Task.detached {
            _ = FileHandle.standardInput.readDataToEndOfFile()
            watch.closed.withLock { $0 = true }
        }
        return watch
    }

    var isClosed: Bool { closed.withLock { $0 } }
}

/// A workload that cannot run, with the reason.
struct WorkloadError: Error, CustomStringConvertible {
    var description: String
}

/// The workload of one benchmark member: pull-based sending, delivery accounting, a delivery
/// log, latency histogram, and JSON lines on stdout.
final class BenchMember: MessageSource, @unchecked Sendable {
    /// Origins (member id - 1) this workload tracks: membersMax of the default configuration.
    static let originsMax = 64
    /// The highest latency the histogram tracks (a minute), microseconds.
    static let latencyMicrosecondsMax: UInt64 = 60_000_000
    /// The most messages one pull hands the runtime while sending.
    static let pullMessagesMax = 1_024
    /// How often a running member prints a progress line.
    static let progressIntervalMilliseconds = 250

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
    /// Per origin, the sequence of the next message expected from it.
    private var expected: [UInt64]
    private var startedAt: UInt64 = 0
    private var lastDeliveryAt: UInt64 = 0
    private var latency = Histogram<UInt64>(
        highestTrackableValue: BenchMember.latencyMicrosecondsMax, numberOfSignificantValueDigits: .three)
    private var log: DeliveryLogWriter?
    /// A digest chained over every delivery (origin, sequence), and the views installed with
    /// the digest at each install: the checker's virtual-synchrony evidence.
    private var digest = StateDigest()
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
    private var initialCounts: [UInt64] = []
    /// This member's origin (its id - 1), computed once: read on every delivery, and reaching it
    /// through `settings.view.members` costs a retain and a release each time.
    private lazy var ownOrigin: Int = DeliveryLog.origin(of: settings.view.members[settings.memberRank])
    /// Updated on every progress report (the runtime's statistics are asynchronous).
    private var rowGapMaxMilliseconds: Double = 0

    private var runtime: MemberRuntime?
    private var group: MultiThreadedEventLoopGroup?

    /// A member of the group `settings` describes; a joiner passes the snapshot it was welcomed
    /// with (empty: it starts from nothing).
    init(
        settings: RuntimeSettings, sizes: [Int], duration: Double, count: Int?, logPath: String?,
        snapshot: [UInt8] = []
    ) throws {
        precondition(!sizes.isEmpty, "a workload needs at least one size")
        self.settings = settings
        self.sizes = sizes
        self.duration = duration
        self.count = count
        self.logPath = logPath
        self.expected = Array(repeating: 0, count: Self.originsMax)
        // A joiner starts from the leader's state: per origin, how many messages it delivered,
        // and the digest over them.
        if !snapshot.isEmpty {
            let state = try Self.decodeSnapshot(snapshot)
            expected = state.expected
            digest = StateDigest(value: state.digest)
        }
        initialCounts = expected
        currentView = settings.view
        // The first view, with the state it starts from (before any delivery can happen).
        views = [ViewSummary(view: settings.view, stateDigest: digest.value)]
    }

    private static func decodeSnapshot(_ snapshot: [UInt8]) throws -> WorkloadState {
        let state: WorkloadState
        do {
            state = try JSONDecoder().decode(WorkloadState.self, from: Data(snapshot))
        } catch {
            throw WorkloadError(description: "the joiner's snapshot is not a workload state: \(error)")
        }
        guard state.expected.count == originsMax else {
            throw WorkloadError(
                description: "the joiner's snapshot counts \(state.expected.count) origins, not \(originsMax)")
        }
        return state
    }

    /// Connects to the group and starts sending.
    func start() async throws {
        if let logPath { log = try DeliveryLogWriter(path: logPath) }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.group = group
        let runtime = try await MemberRuntime.start(settings: settings, eventLoop: group.next(), logger: logger()) {
            [self] delivery in self.delivered(delivery)
        }
        self.runtime = runtime
        runtime.setSnapshotProvider(bytes: { [self] in self.snapshot() })
        runtime.setViewObserver { [self] view in self.installed(view) }
        try await runtime.eventLoop.submit {
            self.startedAt = NIODeadline.now().uptimeNanoseconds
            self.sendDeadline = self.startedAt + UInt64(self.duration * 1e9)
            let isSender = self.settings.view.senderRank(ofMemberRank: self.settings.memberRank) != nil
            self.wasSender = isSender
            self.sendingDone = !isSender
        }.get()
        runtime.setSource(self)
    }

    private func logger() -> Logger {
        var logger = Logger(label: "lockstep.member\(settings.memberRank)")
        // LOCKSTEP_LOG_LEVEL=warning (or notice, info, debug) shows suspicions, link losses and
        // view installs in the member's stderr (bench and chaos keep it in member-N.err).
        logger.logLevel =
            ProcessInfo.processInfo.environment["LOCKSTEP_LOG_LEVEL"]
            .flatMap(Logger.Level.init(rawValue:)) ?? .error
        return logger
    }

    /// The application state a joiner starts from.
    private func snapshot() -> [UInt8] {
        do {
            return [UInt8](try JSONEncoder().encode(WorkloadState(expected: expected, digest: digest.value)))
        } catch {
            preconditionFailure("a workload state of counts and a digest always encodes: \(error)")
        }
    }

    private func installed(_ view: View) {
        currentView = view
        // A view without the old senders makes everyone a sender. A member that did not send
        // in the workload sends only its marked last message, so that every member can still
        // tell it has everything (found by review: survivors of a killed lone sender waited
        // for last messages that never came).
        // Only when the workload ends by itself: under bench and chaos (--stop-on-eof) the
        // members are stopped one by one, and the later views of that shutdown must not
        // make them send (ShapedLinkTests: a message after the first member's final report).
        if endsByItself, !wasSender, let rank = view.rank(of: settings.view.members[settings.memberRank]),
            view.senderRank(ofMemberRank: rank) != nil, !markerOnly
        {
            markerOnly = true
            sendingDone = false
        }
        views.append(ViewSummary(view: view, stateDigest: digest.value))
    }

    /// Where the member is now (and a nudge to pull, so a deadline-stopped source is noticed).
    func progress() async throws -> MemberProgress {
        guard let runtime else { throw WorkloadError(description: "member not started") }
        runtime.wake()
        let statistics = try await runtime.statistics()
        return try await runtime.eventLoop.submit {
            var progress = MemberProgress(
                rank: self.settings.memberRank, sent: self.sent, sendingDone: self.sendingDone,
                delivered: self.delivered, deliveredBytes: self.deliveredBytes, rssMegabytes: residentMegabytes(),
                inFlight: self.ownInFlight, wedgedAtUptimeNanoseconds: statistics.wedgedAtUptimeNanoseconds,
                suspectedRanks: statistics.suspectedRanks, currentView: statistics.viewID,
                viewInstalledAtUptimeNanoseconds: statistics.viewInstalledAtUptimeNanoseconds)
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
        guard let runtime, let group else { throw WorkloadError(description: "member not started") }
        // Stop pulling first: a message sent after the report would look created to the checker.
        var final = try await runtime.eventLoop.submit {
            self.sendingDone = true
            return self.finalReport()
        }.get()
        final.durable = try await runtime.statistics().durable
        await runtime.close()
        try await group.shutdownGracefully()
        try log?.close()
        return final
    }

    /// As a process of `lockstep bench` or `chaos`: JSON lines on stdout; stops when stdin closes
    /// (the final line printed), or returns `.removed` (nothing printed yet: see `finishRemoved`)
    /// when the group removed this member.
    func runUntilStdinCloses(stdin: StdinWatch) async throws -> WorkloadEnd {
        try await start()
        Output.line(try JSONLines.line(["event": "ready"]))
        var lastReport = ContinuousClock.now
        while !stdin.isClosed {
            try await Task.sleep(for: .milliseconds(StdinWatch.pollMilliseconds))
            guard ContinuousClock.now - lastReport >= .milliseconds(Self.progressIntervalMilliseconds) else { continue }
            lastReport = ContinuousClock.now
            let now = try await progress()
            Output.line(try JSONLines.line(now))
            if now.removed == true { return .removed(try await removal()) }
        }
        Output.line(try JSONLines.line(try await finish()))
        return .ended
    }

    /// On its own: sends for the duration (or count), runs until every sender's last message is
    /// delivered here, then ends with the group (`MemberRuntime.finish`: no member takes the
    /// others' departure for a failure). A member that delivers nothing for `stallSeconds` while
    /// incomplete prints its state (a `stalled` line and a sentence on stderr) and exits 1; one
    /// the group removed returns `.removed` (see `finishRemoved`).
    func runToTheEnd(stallSeconds: Double, finishSeconds: Double) async throws -> WorkloadEnd {
        endsByItself = true
        try await start()
        Output.line(try JSONLines.line(["event": "ready"]))
        if try await !watchUntilComplete(stallSeconds: stallSeconds) { return .removed(try await removal()) }
        guard let runtime else { throw WorkloadError(description: "member not started") }
        let missing = await runtime.finish(timeout: .milliseconds(Int64(finishSeconds * 1_000)))
        Output.line(try JSONLines.line(try await finalAfterFinish()))
        if !missing.isEmpty {
            let names = missing.map(\.description).joined(separator: ", ")
            Output.error(
                "member rank \(settings.memberRank): \(names) did not say they were done within \(finishSeconds) s")
            throw ExitCode(1)
        }
        return .ended
    }

    /// A removed member's way back: the other members of its last view, and the highest member
    /// id it has seen in any view.
    private func removal() async throws -> Removal {
        guard let runtime else { throw WorkloadError(description: "member not started") }
        let contacts = try await runtime.otherMemberAddresses()
        let highest = try await runtime.eventLoop.submit { self.views.flatMap(\.members).max() ?? 0 }.get()
        return Removal(
            member: settings.view.members[settings.memberRank], listen: settings.addresses[settings.memberRank],
            contacts: contacts, highestMemberID: highest)
    }

    /// After `.removed`: stops the member and prints its final line (this incarnation's last).
    func finishRemoved() async throws {
        Output.line(try JSONLines.line(try await finish()))
    }

    /// Prints progress until the workload is complete here (true); false if the member is
    /// removed; exits 1 (after a final line) if it delivers nothing for `stallSeconds`.
    private func watchUntilComplete(stallSeconds: Double) async throws -> Bool {
        var lastCount: UInt64 = 0
        var lastChange = ContinuousClock.now
        while true {
            try await Task.sleep(for: .milliseconds(Self.progressIntervalMilliseconds))
            let now = try await progress()
            Output.line(try JSONLines.line(now))
            if now.complete == true { return true }
            if now.delivered != lastCount {
                lastCount = now.delivered
                lastChange = ContinuousClock.now
            }
            if now.removed == true { return false }
            if ContinuousClock.now - lastChange >= .milliseconds(Int64(stallSeconds * 1_000)) {
                var stalled = now
                stalled.event = "stalled"
                Output.line(try JSONLines.line(stalled))
                Output.error("member rank \(now.rank): \(now.stallSentence(seconds: stallSeconds))")
                _ = try await finish()
                throw ExitCode(1)
            }
        }
    }

    /// The final figures once the runtime has finished (and closed).
    private func finalAfterFinish() async throws -> MemberFinal {
        guard let runtime, let group else { throw WorkloadError(description: "member not started") }
        var final = try await runtime.eventLoop.submit { self.finalReport() }.get()
        final.durable = try? await runtime.statistics().durable
        try await group.shutdownGracefully()
        try log?.close()
        return final
    }

    func nextPayloads(limit: Int, bytesLimit: Int, into payloads: inout [Payload]) {
        guard !sendingDone else { return }
        let now = NIODeadline.now().uptimeNanoseconds
        // Past the deadline one more message goes: the last, marked (receivers know from it that
        // they have everything this sender sent).
        let pastDeadline = markerOnly || count == nil && now >= sendDeadline
        var allowed = min(limit, pastDeadline ? 1 : Self.pullMessagesMax)
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
        guard settings.view.senderRank(ofMemberRank: settings.memberRank) != nil, expected.indices.contains(ownOrigin)
        else { return 0 }
        return sent - min(sent, expected[ownOrigin])
    }

    private func delivered(_ delivery: Delivery) {
        let now = NIODeadline.now().uptimeNanoseconds
        let (sentAt, sequence, intact, last) = BenchPayload.read(delivery.payload)
        if !intact { corrupt += 1 }
        if last { lastDelivered.insert(delivery.sender.rawValue) }
        // By the sender's first-view rank (its id - 1): sender ranks change with views.
        let origin = DeliveryLog.origin(of: delivery.sender)
        guard expected.indices.contains(origin) else {
            corrupt += 1
            return
        }
        if sequence != expected[origin] { fifoViolations += 1 }
        expected[origin] = sequence + 1
        digest.combine(UInt64(origin))
        digest.combine(sequence)
        delivered += 1
        deliveredBytes += UInt64(delivery.payload.count)
        if origin != ownOrigin { deliveredBytesFromOthers += UInt64(delivery.payload.count) }
        lastDeliveryAt = now
        if now > sentAt { _ = latency.record((now - sentAt) / 1_000) }
        log?.append(
            DeliveryLogRecord(sender: delivery.sender, senderSequence: sequence, viewID: delivery.viewID.rawValue))
    }

    private func finalReport() -> MemberFinal {
        let seconds = Double(max(lastDeliveryAt, startedAt + 1) - startedAt) / 1e9
        return MemberFinal(
            rank: settings.memberRank, sent: sent, delivered: delivered, deliveredBytes: deliveredBytes,
            deliveredBytesFromOthers: deliveredBytesFromOthers, seconds: seconds,
            latencyMicroseconds: Percentiles(
                p50: latency.valueAtPercentile(50), p99: latency.valueAtPercentile(99),
                p999: latency.valueAtPercentile(99.9)),
            cpuSeconds: processCPUSeconds(), rssMegabytesMax: peakResidentMegabytes(), corrupt: corrupt,
            fifoViolations: fifoViolations, latencySamples: latency.totalCount, views: views,
            member: settings.view.members[settings.memberRank].rawValue, initialCounts: initialCounts,
            rdma: runtime?.rdmaStatistics, rowGapMaxMilliseconds: rowGapMaxMilliseconds)
    }
}

/// The stall watchdog's default bound (node and bench): 10 s, or 3 failure timeouts if longer,
/// so that a view change (detection, proposal, install) never looks like a stall.
func stallSecondsDefault(failureTimeout: Duration) -> Double {
    max(stallSecondsMin, stallFailureTimeouts * Double(failureTimeout.nanosecondsClamped) / 1e9)
}

/// The stall watchdog's default: at least this many seconds, and this many failure timeouts.
let stallSecondsMin: Double = 10
let stallFailureTimeouts: Double = 3
