// One size of `lockstep bench` (or the --mix of all): start the members, watch their progress
// (live lines, the stall watchdog, --kill-after), stop them, check their delivery logs and sum
// up their figures. Each step is a function; `run` lists them.

import Foundation
import LockstepCore

struct BenchSizeRun {
    /// How often the members' progress is read; faster while a kill is followed.
    static let pollMilliseconds = 200
    static let killPollMilliseconds = 20
    /// With --count, the run's time limit before the grace below.
    static let countedRunSecondsMax: Double = 600
    /// Time past the sending time before a run that has not completed is stopped.
    static let completionGraceSeconds: Double = 60
    /// How long after a kill the survivors have to install a new view.
    static let newViewTimeoutSeconds: Double = 30
    /// How long the new view's rate is measured for, nanoseconds.
    static let rateAfterKillNanoseconds: UInt64 = 1_000_000_000
    /// How often a progress line is printed.
    static let progressLineInterval = Duration.seconds(1)

    let bench: Bench
    let sizes: [Int]
    let window: Int
    let windowBytesMax: Int
    /// Durable mode: the run's data directory (each member logs in member-<rank> under it; all
    /// removed after the run). nil: in memory.
    var dataDirectory: String? = nil

    /// The largest size (the one named in the lines).
    var bytes: Int { sizes.max() ?? 0 }
    private var label: String { "  [\(sizeLabel(bytes))]" }
    private var victimRank: Int { bench.members - 1 }

    func run() async throws -> BenchResult {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("lockstep-bench-\(getpid())-\(bytes)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // A temporary folder left behind is harmless; its removal failing must not fail the run.
        defer { try? FileManager.default.removeItem(at: directory) }
        defer { if let dataDirectory { try? FileManager.default.removeItem(atPath: dataDirectory) } }
        let logPaths = (0..<bench.members).map { directory.appendingPathComponent("member-\($0).log").path }
        let started = try await startMembers(logPaths: logPaths, directory: directory)
        var watch = SizeWatch(run: self)
        try await watch.follow(started.handles, victim: started.children.last)
        var finals: [MemberFinal] = []
        for handle in started.handles {
            if let final = try await handle.finish() { finals.append(final) }
        }
        let checker = verdict(watch: watch, finals: finals, logPaths: logPaths)
        return result(finals: finals, checker: checker, kill: watch.kill)
    }

    // MARK: - Members

    /// The members' `lockstep node` arguments (less the binary), rank by rank.
    private func nodeArguments(logPaths: [String]) throws -> [NodeArguments] {
        let namespaces = bench.netns ? NetnsEnvironment.current : nil
        let ports = try (0..<bench.members).map { _ in
            namespaces == nil ? try RawTCP.freePort() : NetnsEnvironment.memberPort
        }
        let peers = (0..<bench.members).map { rank in "\(namespaces?.addresses[rank] ?? bench.host):\(ports[rank])" }
            .joined(separator: ",")
        return try (0..<bench.members).map { rank in
            var arguments = try NodeArguments(
                rank: rank, peers: peers, sizes: sizes, duration: bench.duration, count: bench.count,
                logPath: logPaths[rank])
            arguments.member.senders = bench.senders
            arguments.member.window = window
            arguments.member.windowBytes = "\(windowBytesMax)"
            arguments.member.mode = bench.mode
            arguments.member.messageBytesMax = max(bytes, Configuration().messageBytesMax)
            arguments.member.relayThreshold = bench.relayThreshold
            arguments.member.transport = bench.transport
            arguments.member.failureTimeoutMilliseconds = bench.failureTimeoutMilliseconds
            arguments.member.rdmaRingBytes = bench.rdmaRingBytes
            arguments.member.rdmaRowSlots = bench.rdmaRowSlots
            if let dataDirectory {
                arguments.member.durable = true
                arguments.member.dataDir = "\(dataDirectory)/member-\(rank)"
            }
            return arguments
        }
    }

    private func startMembers(
        logPaths: [String], directory: URL
    ) async throws -> (handles: [MemberHandle], children: [ChildProcess]) {
        let arguments = try nodeArguments(logPaths: logPaths)
        if bench.inProcess { return (try await startInProcess(arguments), []) }
        let children = try arguments.enumerated().map { rank, arguments in
            try ChildProcess(
                arguments: arguments.command,
                stderrPath: directory.appendingPathComponent("member-\(rank).err").path,
                environment: rank == victimRank ? faultEnvironment : [:],
                namespace: bench.netns ? NetnsEnvironment.current.map { "\($0.prefix)\(rank)" } : nil)
        }
        for child in children { try await child.waitForLine { $0.contains("\"ready\"") } }
        return (children, children)
    }

    /// --fault-environment NAME=VALUE, for the highest-ranked member.
    private var faultEnvironment: [String: String] {
        guard let text = bench.faultEnvironment, let equals = text.firstIndex(of: "=") else { return [:] }
        return [String(text[..<equals]): String(text[text.index(after: equals)...])]
    }

    private func startInProcess(_ arguments: [NodeArguments]) async throws -> [MemberHandle] {
        let members = try arguments.map { arguments in
            try BenchMember(
                settings: try arguments.member.settings(), sizes: sizes, duration: bench.duration, count: bench.count,
                logPath: arguments.logPath)
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for member in members { group.addTask { try await member.start() } }
            try await group.waitForAll()
        }
        return members.map(InProcessMember.init)
    }

    // MARK: - Verdict and figures

    private func verdict(watch: SizeWatch, finals: [MemberFinal], logPaths: [String]) -> String {
        let totalOrder = bench.mode == .ordered
        if let record = watch.kill {
            // Safety only (the run is stopped mid-stream): no creation, no duplication, FIFO, one
            // order; the victim's log a prefix of the survivors'.
            // A member failed by --fault-environment is not killed: it stays up and reports too.
            let reporting = bench.faultEnvironment == nil ? bench.members - 1 : bench.members
            var checker =
                finals.count == reporting
                ? LogChecks.benchVerdict(logPaths: logPaths, finals: finals, totalOrder: totalOrder, quiesced: false)
                : "failed: \(reporting - finals.count) members that should be up did not report"
            if record.detectionMilliseconds.isEmpty { checker = "failed: not every survivor detected the failure" }
            if record.installationMilliseconds.isEmpty { checker = "failed: not every survivor installed a new view" }
            return checker
        }
        if finals.count != bench.members { return "failed: \(bench.members - finals.count) members did not report" }
        if let stopReason = watch.stopReason { return "failed: \(stopReason)" }
        guard watch.complete else {
            return "failed: the run did not complete (not every message was delivered everywhere)"
        }
        return LogChecks.benchVerdict(logPaths: logPaths, finals: finals, totalOrder: totalOrder, quiesced: true)
    }

    private func result(finals: [MemberFinal], checker: String, kill: KillRecord?) -> BenchResult {
        var result = BenchResult(
            transport: bench.transport, members: bench.members, senders: bench.senders.rawValue,
            mode: bench.mode.rawValue, sizeBytes: bytes, sizes: sizes, relayThreshold: bench.relayThreshold,
            window: window, inProcess: bench.inProcess, finals: finals, checker: checker)
        result.windowBytesMax = windowBytesMax
        if let dataDirectory { result.durable = DurableBenchFigures(finals: finals, dataDirectory: dataDirectory) }
        if let record = kill {
            let sorted = record.detectionMilliseconds.sorted()
            let installed = record.installationMilliseconds.sorted()
            result.viewChangeMs = ViewChangeTimes(
                killedRank: record.rank, killAtSeconds: record.secondsBefore,
                detectionP50: sorted.isEmpty ? nil : sorted[sorted.count / 2], detectionMax: sorted.last,
                installationP50: installed.isEmpty ? nil : installed[installed.count / 2],
                installationMax: installed.last,
                note: "detection: kill to wedge; installation: kill to the new view, per survivor")
            result.messagesPerSecondBeforeKill = record.rateBefore
            result.messagesPerSecondAfterViewChange = record.rateAfter
        }
        return result
    }

    // MARK: - Watching the members

    /// The members' progress while a size runs: live lines, the stall watchdog, completion, and
    /// with --kill-after the kill and what the survivors did.
    struct SizeWatch {
        let run: BenchSizeRun
        let stopwatch = Stopwatch()
        private(set) var complete = false
        private(set) var kill: KillRecord?
        private(set) var stopReason: String?
        private var lastTick = ContinuousClock.now
        private var lastDelivered: UInt64 = 0
        private var lastRate = 0.0
        /// The stall watchdog: the slowest member's deliveries, and when they last moved.
        private var watched: UInt64 = 0
        private var watchedSince = ContinuousClock.now

        init(run: BenchSizeRun) { self.run = run }

        private var bench: Bench { run.bench }
        private var label: String { run.label }

        /// Reads progress until the run completes, stops, or (after a kill) the new view ran a second.
        mutating func follow(_ handles: [MemberHandle], victim: ChildProcess?) async throws {
            let limit =
                (bench.count == nil ? bench.duration : BenchSizeRun.countedRunSecondsMax)
                + BenchSizeRun.completionGraceSeconds
            let failureTimeout =
                bench.failureTimeoutMilliseconds.map { Duration.milliseconds($0) }
                ?? Configuration().failureTimeout
            let stallSeconds = bench.stallTimeout ?? stallSecondsDefault(failureTimeout: failureTimeout)
            while true {
                let poll = kill == nil ? BenchSizeRun.pollMilliseconds : BenchSizeRun.killPollMilliseconds
                try await Task.sleep(for: .milliseconds(poll))
                let everyone = try await handles.asyncMap { try await $0.progress() }.compactMap { $0 }
                if let killAfter = bench.killAfter, kill == nil, stopwatch.elapsedSeconds >= killAfter,
                    let victim
                {
                    killVictim(victim, everyone: everyone)
                }
                if kill != nil {
                    if followKill(everyone.filter { $0.rank != run.victimRank }) { return }
                    continue
                }
                if stopped(everyone, stallSeconds: stallSeconds) { return }
                printProgress(everyone)
                if stopwatch.elapsedSeconds > limit {
                    Output.line("\(label) no completion within \(Int(limit)) s: stopping the members")
                    return
                }
            }
        }

        /// --kill-after: kills the highest-ranked member (or, with --fault-environment, takes it
        /// as failed) and starts the record of what the survivors do.
        private mutating func killVictim(_ victim: ChildProcess, everyone: [MemberProgress]) {
            let survivors = everyone.filter { $0.rank != run.victimRank }
            let record = KillRecord(
                rank: run.victimRank, atUptimeNanoseconds: monotonicNanoseconds(),
                deliveredBefore: survivors.map(\.delivered).min() ?? 0, secondsBefore: stopwatch.elapsedSeconds,
                rateBefore: lastRate)
            kill = record
            let at = format(record.secondsBefore, 1)
            if let faultEnvironment = bench.faultEnvironment {
                Output.line(
                    "\(label) member rank \(record.rank) runs with \(faultEnvironment): taken as the failed member at "
                        + "\(at) s (times below are from then; the fault may have struck earlier)")
            } else {
                victim.kill()
                Output.line("\(label) killed member rank \(record.rank) (SIGKILL) at \(at) s")
            }
        }

        /// After the kill: the survivors wedge, install the next view, and run a second in it.
        /// Returns whether the run is over.
        private mutating func followKill(_ survivors: [MemberProgress]) -> Bool {
            guard var record = kill else { return false }
            defer { kill = record }
            let now = monotonicNanoseconds()
            let allSurvivors = survivors.count == bench.members - 1
            if record.detectionMilliseconds.isEmpty, allSurvivors,
                survivors.allSatisfy({ $0.wedgedAtUptimeNanoseconds != nil })
            {
                record.detectionMilliseconds = survivors.map {
                    record.milliseconds(until: $0.wedgedAtUptimeNanoseconds ?? 0)
                }
                Output.line(
                    "\(label) every survivor suspected member rank \(record.rank) and wedged: "
                        + "\(Self.list(record.detectionMilliseconds)) ms after the kill")
            }
            if record.installationMilliseconds.isEmpty, allSurvivors,
                survivors.allSatisfy({ $0.currentView > 1 && $0.viewInstalledAtUptimeNanoseconds != nil })
            {
                record.installationMilliseconds = survivors.map {
                    record.milliseconds(until: $0.viewInstalledAtUptimeNanoseconds ?? 0)
                }
                record.installedAtUptimeNanoseconds = now
                record.deliveredAtInstall = survivors.map(\.delivered).min() ?? 0
                Output.line(
                    "\(label) every survivor installed view \(survivors.map(\.currentView).max() ?? 0): "
                        + "\(Self.list(record.installationMilliseconds)) ms after the kill")
            }
            if let installedAt = record.installedAtUptimeNanoseconds,
                now - installedAt >= BenchSizeRun.rateAfterKillNanoseconds
            {
                let delivered = survivors.map(\.delivered).min() ?? 0
                let rateAfter =
                    Double(delivered - min(delivered, record.deliveredAtInstall))
                    / (Double(now - installedAt) / 1e9)
                record.rateAfter = rateAfter
                Output.line(
                    "\(label) in the view after: \(format(rateAfter, 0)) msg/s in its first second, "
                        + "\(format(record.rateBefore, 0)) msg/s in the second before the kill")
                return true
            }
            if stopwatch.elapsedSeconds > record.secondsBefore + BenchSizeRun.newViewTimeoutSeconds {
                let seconds = Int(BenchSizeRun.newViewTimeoutSeconds)
                Output.line("\(label) the survivors did not all install a new view within \(seconds) s of the kill")
                return true
            }
            return false
        }

        private static func list(_ milliseconds: [Double]) -> String {
            milliseconds.map { format($0, 0) }.joined(separator: ", ")
        }

        /// Without a kill: whether the run is over (complete, a member removed, or stalled).
        private mutating func stopped(_ everyone: [MemberProgress], stallSeconds: Double) -> Bool {
            let sent = everyone.reduce(0) { $0 + $1.sent }
            let minimumDelivered = everyone.map(\.delivered).min() ?? 0
            if minimumDelivered != watched || everyone.count < bench.members {
                watched = minimumDelivered
                watchedSince = ContinuousClock.now
            }
            if let removed = everyone.first(where: { $0.removed == true }) {
                let reason = "member rank \(removed.rank) was removed from the group: the run cannot complete"
                stopReason = reason
                Output.line("\(label) \(reason)")
                for member in everyone {
                    Output.line("    member rank \(member.rank): \(member.stallSentence(seconds: 0))")
                }
                return true
            }
            if ContinuousClock.now - watchedSince >= .milliseconds(Int64(stallSeconds * 1_000)) {
                let reason = "stalled: no member delivered anything for \(format(stallSeconds, 1)) s"
                stopReason = reason
                Output.line("\(label) \(reason); every member's state:")
                for member in everyone {
                    Output.line("    member rank \(member.rank): \(member.stallSentence(seconds: stallSeconds))")
                }
                if bench.failureTimeoutMilliseconds == nil,
                    everyone.contains(where: { $0.minority == true || $0.wedged == true })
                {
                    Output.line(
                        "    (members suspected each other: on a slow machine or emulator raise --failure-timeout-ms)")
                }
                return true
            }
            if everyone.count == bench.members, everyone.allSatisfy(\.sendingDone), sent > 0,
                everyone.allSatisfy({ $0.delivered == sent })
            {
                complete = true
                return true
            }
            return false
        }

        /// A progress line every second: the slowest member's rate and deliveries.
        private mutating func printProgress(_ everyone: [MemberProgress]) {
            let now = ContinuousClock.now
            guard now - lastTick >= BenchSizeRun.progressLineInterval else { return }
            let minimumDelivered = everyone.map(\.delivered).min() ?? 0
            let rate = Double(minimumDelivered - min(lastDelivered, minimumDelivered)) / (now - lastTick).inSeconds
            lastRate = rate
            let rss = everyone.map(\.rssMegabytes).max() ?? 0
            let megabytes = Double(everyone.map(\.deliveredBytes).min() ?? 0) / 1e6
            let inFlight = everyone.reduce(0) { $0 + $1.inFlight }
            Output.line(
                "\(label) \(format(stopwatch.elapsedSeconds, 1)) s: \(format(rate, 0)) msg/s, "
                    + "\(format(megabytes, 1)) MB delivered so far (slowest member), \(inFlight) in flight, "
                    + "RSS \(format(rss, 1)) MB (largest member)")
            lastTick = now
            lastDelivered = minimumDelivered
        }
    }
}

/// A member killed by `--kill-after`, and what the survivors did.
struct KillRecord {
    var rank: Int
    var atUptimeNanoseconds: UInt64
    var deliveredBefore: UInt64
    var secondsBefore: Double
    /// The slowest survivor's delivery rate over the last progress second before the kill.
    var rateBefore: Double
    var detectionMilliseconds: [Double] = []
    var installationMilliseconds: [Double] = []
    var installedAtUptimeNanoseconds: UInt64? = nil
    var deliveredAtInstall: UInt64 = 0
    var rateAfter: Double? = nil

    /// Milliseconds from the kill to `uptimeNanoseconds` (negative if before it).
    func milliseconds(until uptimeNanoseconds: UInt64) -> Double {
        Double(Int64(bitPattern: uptimeNanoseconds &- atUptimeNanoseconds)) / 1e6
    }
}
