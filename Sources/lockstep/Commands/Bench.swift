// `lockstep bench`: starts a group on this machine (3 processes over loopback TCP by default),
// measures a raw TCP baseline first, streams a sweep of message sizes, shows live progress,
// checks every member's delivery log, prints a table and writes a JSON report.

import ArgumentParser
import Foundation
import LockstepChecker
import LockstepCore
import LockstepRuntime
import LockstepSimulator
import Synchronization

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure replication throughput and latency on a local group, against a raw TCP baseline.")

    @Option(help: "Members in the group.")
    var members: Int = 3

    @Option(help: "Which members send: all, half or one.")
    var senders: SenderChoice = .all

    @Option(help: "Message sizes, comma-separated, with K/M suffixes (powers of 1024).")
    var size: String = "64,1K,64K,1M"

    @Flag(help: "Run the --size list as one workload of mixed sizes (message i has the i-th size, cyclically) instead of a sweep.")
    var mix = false

    @Option(help: "The window in messages (default 1024, as node and the library).")
    var window: Int?

    @Option(help: "The window in bytes (K/M suffixes; default 16M, as node and the library): a member's memory stays within about 64 MiB + senders x this.")
    var windowBytes: String?

    @Option(help: "Seconds without a delivery anywhere, while messages are outstanding, after which the run stops, prints every member's state and fails (default: 10, or 3 x the failure timeout if larger).")
    var stallTimeout: Double?

    @Flag(help: "Run the members in the network namespaces of tools/with-netns (run bench under it: tools/with-netns --members N --rate 1gbit -- lockstep bench --netns ...); the baseline is its iperf3 figure through the same shaping.")
    var netns = false

    @Option(help: "Seconds of sending per size.")
    var duration: Double = 5

    @Option(help: "Messages per sender per size (instead of --duration).")
    var count: Int?

    @Option(help: "Delivery mode: ordered or unordered.")
    var mode: DeliveryMode = .ordered

    @Option(help: "Transport: tcp, rdma, or auto (rdma when an RDMA device is present).")
    var transport: String = "tcp"

    @Flag(help: "Run the members as threads of this process instead of separate processes.")
    var inProcess = false

    @Option(help: "Report path (default: bench-results/<UTC time>-<commit>.json).")
    var output: String?

    @Option(help: "Payloads of at least this size travel in blocks through the relay ('off': never).")
    var relayThreshold: String = "1M"

    @Option(help: "Kill (SIGKILL) the highest-ranked member this many seconds into each size; report detection and installation of the new view (view_change_ms) and the survivors' throughput in the second after it against the second before the kill.")
    var killAfter: Double?

    @Option(help: "Seconds of the raw TCP baseline.")
    var baselineSeconds: Double = 2

    @Option(help: "With --kill-after: instead of killing the highest-ranked member, give it this environment variable (NAME=VALUE) from the start, and take it as the failed member at --kill-after. For fault injection, e.g. LOCKSTEP_EMULATED_RDMA_FAULT=rkey@500 under tools/with-emulated-rdma.")
    var faultEnvironment: String?

    @Option(help: "Address the members listen on (RDMA needs one of the device's; default 127.0.0.1, or $LOCKSTEP_RXE_ADDRESS, which tools/with-rxe-vm sets to rxe0's).")
    var host: String = ProcessInfo.processInfo.environment["LOCKSTEP_RXE_ADDRESS"] ?? "127.0.0.1"

    @Option(name: .customLong("failure-timeout-ms"), help: "Suspect a member not heard from for this many milliseconds (default 500; raise it on slow emulators).")
    var failureTimeoutMilliseconds: Int?

    @Option(help: "RDMA: bytes of each per-peer data ring (all members use the same).")
    var rdmaRingBytes: Int?

    @Option(help: "RDMA: row slots per peer (also the most unconsumed writes with immediate).")
    var rdmaRowSlots: Int?

    func validate() throws {
        guard (2...16).contains(members) else { throw ValidationError("--members must be in 2...16, got \(members)") }
        for name in transport.split(separator: ",") {
            if case .failure(let error) = TransportKind.choose(String(name)) { throw ValidationError(error.description) }
        }
        guard duration > 0, duration <= 3_600 else { throw ValidationError("--duration must be in (0, 3600] seconds") }
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        if let window, !(1...(1 << 22)).contains(window) { throw ValidationError("--window must be in 1...4194304") }
        if let windowBytes {
            guard let sizes = try? Self.parseSizes(windowBytes), sizes.count == 1, sizes[0] >= 1_024 else {
                throw ValidationError("--window-bytes '\(windowBytes)' is not a size like 16M (at least 1K)")
            }
        }
        if let stallTimeout, !(stallTimeout > 0 && stallTimeout <= 3_600) {
            throw ValidationError("--stall-timeout must be in (0, 3600] seconds")
        }
        if netns {
            guard let environment = NetnsEnvironment.current else {
                throw ValidationError("--netns: run bench under tools/with-netns (LOCKSTEP_NETNS_PREFIX and LOCKSTEP_NETNS_ADDRESSES are not set)")
            }
            guard environment.addresses.count >= members else {
                throw ValidationError("--netns: tools/with-netns made \(environment.addresses.count) namespaces for \(members) members")
            }
            guard !inProcess else { throw ValidationError("--netns needs member processes (not --in-process)") }
        }
        _ = try Self.parseSizes(size)
        if relayThreshold != "off" {
            guard let sizes = try? Self.parseSizes(relayThreshold), sizes.count == 1 else {
                throw ValidationError("--relay-threshold '\(relayThreshold)' is not a size like 64K, or off")
            }
        }
        if let killAfter {
            guard !inProcess else { throw ValidationError("--kill-after needs member processes (not --in-process)") }
            guard killAfter > 0, count != nil || killAfter < duration else {
                throw ValidationError("--kill-after must be positive and within --duration (\(duration) s)")
            }
        }
        guard baselineSeconds > 0, baselineSeconds <= 60 else { throw ValidationError("--baseline-seconds must be in (0, 60]") }
        if let faultEnvironment {
            guard killAfter != nil, !inProcess else { throw ValidationError("--fault-environment needs --kill-after (and member processes)") }
            guard faultEnvironment.contains("=") else { throw ValidationError("--fault-environment '\(faultEnvironment)': expected NAME=VALUE") }
        }
    }

    static func parseSizes(_ text: String) throws -> [Int] {
        try text.split(separator: ",").map { part in
            let token = part.trimmingCharacters(in: .whitespaces).uppercased()
            var multiplier = 1
            var digits = Substring(token)
            if token.hasSuffix("K") { multiplier = 1_024; digits = digits.dropLast() }
            if token.hasSuffix("M") { multiplier = 1_024 * 1_024; digits = digits.dropLast() }
            guard let value = Int(digits), value > 0 else { throw ValidationError("--size: '\(part)' is not a size like 64, 1K or 1M") }
            let bytes = value * multiplier
            guard bytes >= BenchPayload.headerBytes, bytes <= 256 * 1_024 * 1_024 else {
                throw ValidationError("--size: \(bytes) bytes is outside \(BenchPayload.headerBytes)...256M")
            }
            return bytes
        }
    }

    func run() async throws {
        // "auto" is decided once here, so every member uses the same transport. A list
        // ("rdma,tcp") runs every size on each, against one baseline, into one report.
        let transports = try transport.split(separator: ",").map { try TransportKind.choose(String($0)).get().rawValue }
        let sizes = try Self.parseSizes(size)
        let machine = MachineInfo.current()
        let device = transports.contains("rdma") ? (try? probeRDMADevice().get()).map { " (RDMA device \($0))" } ?? "" : ""
        Output.line("lockstep bench: \(members) members (\(inProcess ? "threads of one process" : "processes")), senders \(senders.rawValue), \(mode.rawValue), \(transports.joined(separator: " then "))\(device) on \(host), relay \(relayThreshold == "off" ? "off" : "from \(relayThreshold)"), commit \(machine.commit)")
        let raw: Double
        if netns, let environment = NetnsEnvironment.current {
            raw = environment.linkMegabytesPerSecond ?? 0
            Output.line("raw baseline: iperf3 through the shaped link (\(environment.rate)), measured by tools/with-netns in this run: \(format(raw, 1)) MB/s, rtt \(environment.rttMilliseconds.map { format($0, 2) } ?? "?") ms")
        } else {
            Output.line("raw baseline: one TCP stream between two processes, 1 MiB writes, \(baselineSeconds) s ...")
            raw = try await measureBaseline()
            Output.line("raw baseline: \(format(raw, 1)) MB/s")
        }
        var results: [BenchResult] = []
        for chosen in transports {
          for workload in mix ? [sizes] : sizes.map({ [$0] }) {
            let bytes = workload.max() ?? 0
            let window = self.window ?? Configuration().windowMessagesMax
            let windowBytesMax = try windowBytes.map { try Self.parseSizes($0)[0] } ?? Configuration().windowBytesMax
            Output.line("\(transports.count > 1 ? "\(chosen), " : "")size \(workload.map(sizeLabel).joined(separator: "+")), window \(window) messages / \(sizeLabel(windowBytesMax)): streaming \(count.map { "\($0) messages per sender" } ?? "for \(duration) s") ...")
            var one = self
            one.transport = chosen
            var result = try await one.runSize(sizes: workload, window: window, windowBytesMax: windowBytesMax)
            result.efficiency = raw > 0 ? result.megabytesPerSecond * Double(members - 1) / raw : 0
            if netns {
                // On shaped links the reference is the link itself: what each member receives
                // against what one stream gets through the same shaping.
                result.linkMegabytesPerSecond = raw
                result.ratioToLink = raw > 0 ? result.receivedFromOthersMegabytesPerSecond / raw : nil
            }
            results.append(result)
            Output.line("size \(sizeLabel(bytes)): \(format(result.messagesPerSecond, 0)) msg/s, \(format(result.megabytesPerSecond, 1)) MB/s, checker \(result.checker)")
            if let operations = result.rdmaOperations {
                Output.line("  RDMA on \(result.rdmaDevice ?? "?"): \(operations.dataWrites) data writes, \(operations.rowWrites) row writes, \(operations.creditWrites) credit writes, \(operations.receives) receives, \(format(Double(operations.bytesWritten) / 1e6, 1)) MB written, \(operations.errorCompletions) error completions")
            }
          }
        }
        let report = BenchReport(
            commit: machine.commit, createdAt: machine.now, machine: machine,
            baseline: Baseline(rawTcpMegabytesPerSecond: raw, seconds: baselineSeconds), results: results)
        Output.line("")
        Output.line(report.table())
        let path = output ?? "bench-results/\(machine.fileStamp)-\(machine.commit).json"
        try report.write(to: path)
        Output.line("report written to \(path)")
        if results.contains(where: { !$0.checker.hasPrefix("passed") }) {
            Output.line("the checker FAILED for at least one size (see above)")
            throw ExitCode.failure
        }
    }

    // MARK: - Baseline

    private func measureBaseline() async throws -> Double {
        let port = try RawTCP.freePort()
        let sink = try ChildProcess(arguments: ["raw-tcp-sink", "--port", "\(port)"], stderrPath: nil)
        try await sink.waitForLine { $0.contains("listening") }
        let fd = try RawTCP.connect(port: UInt16(port))
        let seconds = baselineSeconds
        await Task.detached { RawTCP.stream(to: fd, seconds: seconds) }.value
        let line = try await sink.waitForLine { $0.contains("\"baseline\"") }
        sink.waitUntilExit()
        struct BaselineLine: Decodable { var bytes: Double; var seconds: Double }
        let parsed = try JSONDecoder().decode(BaselineLine.self, from: Data(line.utf8))
        return parsed.seconds > 0 ? parsed.bytes / parsed.seconds / 1e6 : 0
    }

    // MARK: - One size

    private func runSize(sizes: [Int], window: Int, windowBytesMax: Int) async throws -> BenchResult {
        let bytes = sizes.max() ?? 0
        let sizeList = sizes.map(String.init).joined(separator: ",")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-bench-\(getpid())-\(bytes)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let namespaces = netns ? NetnsEnvironment.current : nil
        let ports = try (0..<members).map { _ in namespaces == nil ? try RawTCP.freePort() : 7_000 }
        let peers = (0..<members).map { rank in "\(namespaces?.addresses[rank] ?? host):\(ports[rank])" }.joined(separator: ",")
        let logPaths = (0..<members).map { directory.appendingPathComponent("member-\($0).log").path }
        let messageBytesMax = max(bytes, Configuration().messageBytesMax)

        var handles: [MemberHandle] = []
        var children: [ChildProcess] = []
        if inProcess {
            var inProcessMembers: [BenchMember] = []
            for rank in 0..<members {
                var options = try MemberOptions.parse([
                    "--rank", "\(rank)", "--peers", peers, "--senders", senders.rawValue, "--window", "\(window)",
                    "--window-bytes", "\(windowBytesMax)",
                    "--mode", mode.rawValue, "--message-bytes-max", "\(messageBytesMax)", "--relay-threshold", relayThreshold,
                    "--transport", transport,
                ])
                options.config = nil
                let member = BenchMember(
                    settings: try options.settings(), sizes: sizes, duration: duration, count: count, logPath: logPaths[rank])
                inProcessMembers.append(member)
                handles.append(InProcessMember(member: member))
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for member in inProcessMembers { group.addTask { try await member.start() } }
                try await group.waitForAll()
            }
        } else {
            for rank in 0..<members {
                var arguments = [
                    "node", "--rank", "\(rank)", "--peers", peers, "--senders", senders.rawValue, "--window", "\(window)",
                    "--window-bytes", "\(windowBytesMax)",
                    "--mode", mode.rawValue, "--message-bytes-max", "\(messageBytesMax)", "--size", sizeList,
                    "--duration", "\(duration)", "--log", logPaths[rank], "--relay-threshold", relayThreshold,
                    "--transport", transport, "--stop-on-eof",
                ]
                if let count { arguments += ["--count", "\(count)"] }
                if let failureTimeoutMilliseconds { arguments += ["--failure-timeout-ms", "\(failureTimeoutMilliseconds)"] }
                if let rdmaRingBytes { arguments += ["--rdma-ring-bytes", "\(rdmaRingBytes)"] }
                if let rdmaRowSlots { arguments += ["--rdma-row-slots", "\(rdmaRowSlots)"] }
                var environment: [String: String] = [:]
                if let faultEnvironment, rank == members - 1, let equals = faultEnvironment.firstIndex(of: "=") {
                    environment[String(faultEnvironment[..<equals])] = String(faultEnvironment[faultEnvironment.index(after: equals)...])
                }
                let child = try ChildProcess(
                    arguments: arguments, stderrPath: directory.appendingPathComponent("member-\(rank).err").path,
                    environment: environment, namespace: namespaces.map { "\($0.prefix)\(rank)" })
                children.append(child)
                handles.append(child)
            }
            for child in children { try await child.waitForLine { $0.contains("\"ready\"") } }
        }

        // Live progress until every member has delivered everything every sender sent.
        let start = ContinuousClock.now
        let limit = (count == nil ? duration : 600) + 60
        var lastTick = start
        var lastDelivered: UInt64 = 0
        var complete = false
        var kill: KillRecord? = nil
        var lastRate = 0.0
        // The stall watchdog: the slowest member's deliveries, and when they last moved.
        let failureTimeout = failureTimeoutMilliseconds.map { Duration.milliseconds($0) } ?? Configuration().failureTimeout
        let stallSeconds = stallTimeout ?? stallSecondsDefault(failureTimeout: failureTimeout)
        var watched: UInt64 = 0
        var watchedSince = ContinuousClock.now
        var stopReason: String? = nil
        while true {
            try await Task.sleep(for: .milliseconds(kill == nil ? 200 : 20))
            let progress = try await handles.asyncMap { try await $0.progress() }
            var everyone = progress.compactMap { $0 }
            if let killAfter, kill == nil, seconds(ContinuousClock.now - start) >= killAfter, let victim = children.last {
                let survivors = everyone.filter { $0.rank != members - 1 }
                kill = KillRecord(
                    rank: members - 1, atUptimeNanoseconds: monotonicNanoseconds(),
                    deliveredBefore: survivors.map(\.delivered).min() ?? 0, secondsBefore: seconds(ContinuousClock.now - start),
                    rateBefore: lastRate)
                if let faultEnvironment {
                    Output.line("  [\(sizeLabel(bytes))] member rank \(members - 1) runs with \(faultEnvironment): taken as the failed member at \(format(kill?.secondsBefore ?? 0, 1)) s (times below are from then; the fault may have struck earlier)")
                } else {
                    victim.kill()
                    Output.line("  [\(sizeLabel(bytes))] killed member rank \(members - 1) (SIGKILL) at \(format(kill?.secondsBefore ?? 0, 1)) s")
                }
            }
            if let record = kill {
                // The victim is gone: watch the survivors wedge, install the next view, and run
                // for a second in it.
                everyone = everyone.filter { $0.rank != record.rank }
                let now = monotonicNanoseconds()
                if kill?.detectionMilliseconds.isEmpty == true, everyone.count == members - 1,
                    everyone.allSatisfy({ $0.wedgedAtUptimeNanoseconds != nil })
                {
                    kill?.detectionMilliseconds = everyone.map {
                        Double(Int64(bitPattern: ($0.wedgedAtUptimeNanoseconds ?? 0) &- record.atUptimeNanoseconds)) / 1e6
                    }
                    Output.line("  [\(sizeLabel(bytes))] every survivor suspected member rank \(record.rank) and wedged: \(kill?.detectionMilliseconds.map { format($0, 0) }.joined(separator: ", ") ?? "") ms after the kill")
                }
                if kill?.installationMilliseconds.isEmpty == true, everyone.count == members - 1,
                    everyone.allSatisfy({ $0.currentView > 1 && $0.viewInstalledAtUptimeNanoseconds != nil })
                {
                    kill?.installationMilliseconds = everyone.map {
                        Double(Int64(bitPattern: ($0.viewInstalledAtUptimeNanoseconds ?? 0) &- record.atUptimeNanoseconds)) / 1e6
                    }
                    kill?.installedAtUptimeNanoseconds = now
                    kill?.deliveredAtInstall = everyone.map(\.delivered).min() ?? 0
                    Output.line("  [\(sizeLabel(bytes))] every survivor installed view \(everyone.map(\.currentView).max() ?? 0): \(kill?.installationMilliseconds.map { format($0, 0) }.joined(separator: ", ") ?? "") ms after the kill")
                }
                if let installedAt = kill?.installedAtUptimeNanoseconds, now - installedAt >= 1_000_000_000 {
                    let delivered = everyone.map(\.delivered).min() ?? 0
                    let atInstall = kill?.deliveredAtInstall ?? 0
                    kill?.rateAfter = Double(delivered - min(delivered, atInstall)) / (Double(now - installedAt) / 1e9)
                    Output.line("  [\(sizeLabel(bytes))] in the view after: \(format(kill?.rateAfter ?? 0, 0)) msg/s in its first second, \(format(record.rateBefore, 0)) msg/s in the second before the kill")
                    break
                }
                if seconds(ContinuousClock.now - start) > record.secondsBefore + 30 {
                    Output.line("  [\(sizeLabel(bytes))] the survivors did not all install a new view within 30 s of the kill")
                    break
                }
                continue
            }
            let sent = everyone.reduce(0) { $0 + $1.sent }
            let minimumDelivered = everyone.map(\.delivered).min() ?? 0
            if minimumDelivered != watched || everyone.count < members {
                watched = minimumDelivered
                watchedSince = ContinuousClock.now
            }
            if let removed = everyone.first(where: { $0.removed == true }) {
                stopReason = "member rank \(removed.rank) was removed from the group: the run cannot complete"
                Output.line("  [\(sizeLabel(bytes))] \(stopReason ?? "")")
                for member in everyone { Output.line("    member rank \(member.rank): \(member.stallSentence(seconds: 0))") }
                break
            }
            if ContinuousClock.now - watchedSince >= .milliseconds(Int64(stallSeconds * 1_000)) {
                stopReason = "stalled: no member delivered anything for \(format(stallSeconds, 1)) s"
                Output.line("  [\(sizeLabel(bytes))] \(stopReason ?? ""); every member's state:")
                for member in everyone { Output.line("    member rank \(member.rank): \(member.stallSentence(seconds: stallSeconds))") }
                if failureTimeoutMilliseconds == nil, everyone.contains(where: { $0.minority == true || $0.wedged == true }) {
                    Output.line("    (members suspected each other: on a slow machine or emulator raise --failure-timeout-ms)")
                }
                break
            }
            if everyone.count == members, everyone.allSatisfy(\.sendingDone), sent > 0,
                everyone.allSatisfy({ $0.delivered == sent })
            {
                complete = true
                break
            }
            let now = ContinuousClock.now
            if now - lastTick >= .seconds(1) {
                let interval = seconds(now - lastTick)
                let rate = Double(minimumDelivered - min(lastDelivered, minimumDelivered)) / interval
                lastRate = rate
                let rss = everyone.map(\.rssMegabytes).max() ?? 0
                let megabytes = Double(everyone.map(\.deliveredBytes).min() ?? 0) / 1e6
                Output.line("  [\(sizeLabel(bytes))] \(format(seconds(now - start), 1)) s: \(format(rate, 0)) msg/s, \(format(megabytes, 1)) MB delivered so far (slowest member), \(everyone.reduce(0) { $0 + $1.inFlight }) in flight, RSS \(format(rss, 1)) MB (largest member)")
                lastTick = now
                lastDelivered = minimumDelivered
            }
            if seconds(now - start) > limit {
                Output.line("  [\(sizeLabel(bytes))] no completion within \(Int(limit)) s: stopping the members")
                break
            }
        }
        var finals: [MemberFinal] = []
        for handle in handles {
            if let final = try await handle.finish() { finals.append(final) }
        }
        var checker = complete ? "passed" : "failed: the run did not complete (not every message was delivered everywhere)"
        if let stopReason { checker = "failed: \(stopReason)" }
        if let record = kill {
            // Safety only (the run is stopped mid-stream): no creation, no duplication, FIFO, one
            // order; the victim's log a prefix of the survivors'.
            // A member failed by --fault-environment is not killed: it stays up and reports too.
            let reporting = faultEnvironment == nil ? members - 1 : members
            checker = finals.count == reporting
                ? checkLogs(logPaths, finals: finals, quiesced: false)
                : "failed: \(reporting - finals.count) members that should be up did not report"
            if record.detectionMilliseconds.isEmpty { checker = "failed: not every survivor detected the failure" }
            if record.installationMilliseconds.isEmpty { checker = "failed: not every survivor installed a new view" }
        } else if finals.count != members {
            checker = "failed: \(members - finals.count) members did not report"
        } else if complete {
            checker = checkLogs(logPaths, finals: finals)
        }
        var result = BenchResult(
            transport: transport, members: members, senders: senders.rawValue, mode: mode.rawValue, sizeBytes: bytes, sizes: sizes,
            relayThreshold: relayThreshold,
            window: window, inProcess: inProcess, finals: finals, checker: checker)
        result.windowBytesMax = windowBytesMax
        if let record = kill {
            let sorted = record.detectionMilliseconds.sorted()
            let installed = record.installationMilliseconds.sorted()
            result.viewChangeMs = ViewChangeTimes(
                killedRank: record.rank, killAtSeconds: record.secondsBefore,
                detectionP50: sorted.isEmpty ? nil : sorted[sorted.count / 2], detectionMax: sorted.last,
                installationP50: installed.isEmpty ? nil : installed[installed.count / 2], installationMax: installed.last,
                note: "detection: kill to wedge; installation: kill to the new view, per survivor")
            result.messagesPerSecondBeforeKill = record.rateBefore
            result.messagesPerSecondAfterViewChange = record.rateAfter
        }
        return result
    }

    /// Runs the delivery checker over every member's log.
    private func checkLogs(_ paths: [String], finals: [MemberFinal], quiesced: Bool = true) -> String {
        var delivered: [MemberID: [DeliveredRecord]] = [:]
        for (rank, path) in paths.enumerated() {
            // Senders are keyed by origin (first-view rank) here.
            guard let records = readDeliveryLog(path, sender: { MemberID(UInt64($0)) }) else {
                return "failed: no delivery log from member \(rank)"
            }
            delivered[MemberID(UInt64(rank) + 1_000)] = records
        }
        var sent: [MemberID: [SentRecord]] = [:]
        for final in finals where final.sent > 0 {
            // Senders are the lowest ranks, so a sender's sender rank is its member rank.
            sent[MemberID(UInt64(final.rank))] = (0..<final.sent).map { SentRecord(senderSequence: $0, payloadDigest: 0) }
        }
        if !quiesced {
            // A killed member reports no count of what it sent: take the highest of its messages
            // anyone delivered (its payloads' content is still checked on delivery).
            var highest: [MemberID: UInt64] = [:]
            for records in delivered.values {
                for record in records where sent[record.sender] == nil {
                    highest[record.sender] = max(highest[record.sender] ?? 0, record.senderSequence)
                }
            }
            for (sender, top) in highest {
                sent[sender] = (0...top).map { SentRecord(senderSequence: $0, payloadDigest: 0) }
            }
        }
        let violations = DeliveryChecker(sent: sent, delivered: delivered).check(totalOrder: mode == .ordered, quiesced: quiesced)
        let corrupt = finals.reduce(0) { $0 + $1.corrupt }
        if corrupt > 0 { return "failed: \(corrupt) payloads arrived with other content than was sent" }
        if let first = violations.first { return "failed: \(violations.count) violations, first: \(first)" }
        let total = delivered.values.reduce(0) { $0 + $1.count }
        guard total > 0 else { return "failed: nothing was delivered" }
        return quiesced ? "passed" : "passed (safety only)"
    }

    private func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}

/// A delivery log record: origin (the sender's first-view rank) u16, sequence u64, view u64.
let deliveryLogRecordBytes = 18

/// Reads a member's delivery log (nil if there is none); `sender` names the sender of an origin.
func readDeliveryLog(_ path: String, sender: (UInt16) -> MemberID) -> [DeliveredRecord]? {
    guard let data = FileManager.default.contents(atPath: path) else { return nil }
    var records: [DeliveredRecord] = []
    records.reserveCapacity(data.count / deliveryLogRecordBytes)
    data.withUnsafeBytes { raw in
        var offset = 0
        while offset + deliveryLogRecordBytes <= raw.count {
            let origin = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
            let sequence = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 2, as: UInt64.self))
            let view = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 10, as: UInt64.self))
            records.append(DeliveredRecord(sender: sender(origin), senderSequence: sequence, payloadDigest: 0, viewID: view))
            offset += deliveryLogRecordBytes
        }
    }
    return records
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
}

/// CLOCK_MONOTONIC in nanoseconds: the clock NIODeadline uses, shared by every process here.
func monotonicNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

func sizeLabel(_ bytes: Int) -> String {
    if bytes >= 1_024 * 1_024, bytes % (1_024 * 1_024) == 0 { return "\(bytes / (1_024 * 1_024)) MiB" }
    if bytes >= 1_024, bytes % 1_024 == 0 { return "\(bytes / 1_024) KiB" }
    return "\(bytes) B"
}

func format(_ value: Double, _ decimals: Int) -> String {
    String(format: "%.\(decimals)f", value)
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        result.reserveCapacity(count)
        for element in self { result.append(try await transform(element)) }
        return result
    }
}

// MARK: - Members: child processes or in-process threads

protocol MemberHandle: Sendable {
    func progress() async throws -> MemberProgress?
    func finish() async throws -> MemberFinal?
}

struct InProcessMember: MemberHandle {
    let member: BenchMember
    func progress() async throws -> MemberProgress? { try await member.progress() }
    func finish() async throws -> MemberFinal? { try await member.finish() }
}

/// A `lockstep` child process speaking JSON lines on stdout; closing its stdin stops it.
final class ChildProcess: MemberHandle, @unchecked Sendable {
    private let process = Process()
    private let stdinPipe = Pipe()
    private let stdoutPipe = Pipe()
    private let state = Shared()

    /// The reader thread and the bench share this.
    final class Shared: Sendable {
        let mutex = Mutex(State())
        func withLock<T>(_ body: (inout State) -> T) -> T { mutex.withLock { body(&$0) } }
    }

    struct State {
        var partial = Data()
        var lines: [String] = []
        var progress: MemberProgress?
        var final: MemberFinal?
    }

    /// Runs this `lockstep` binary with `arguments`; in network namespace `namespace` if given
    /// (through `ip netns exec`, which execs the binary: the child's pid is the member's).
    init(arguments: [String], stderrPath: String?, environment: [String: String] = [:], namespace: String? = nil) throws {
        let binary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        if let namespace {
            let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first { FileManager.default.isExecutableFile(atPath: $0) }
            guard let ip else { throw RawTCPError("--netns: the ip command (iproute2) is not installed") }
            process.executableURL = URL(fileURLWithPath: ip)
            process.arguments = ["netns", "exec", namespace, binary.path] + arguments
        } else {
            process.executableURL = binary
            process.arguments = arguments
        }
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.standardInput = stdinPipe
        process.standardOutput = stdoutPipe
        if let stderrPath {
            if FileManager.default.createFile(atPath: stderrPath, contents: nil) {
                process.standardError = FileHandle(forWritingAtPath: stderrPath)
            }
        }
        let state = self.state
        stdoutPipe.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            state.withLock { state in
                state.partial.append(data)
                while let newline = state.partial.firstIndex(of: 0x0A) {
                    let line = String(decoding: state.partial[state.partial.startIndex..<newline], as: UTF8.self)
                    state.partial.removeSubrange(state.partial.startIndex...newline)
                    state.lines.append(line)
                    let data = Data(line.utf8)
                    let decoder = BenchReport.decoder()
                    if line.contains("\"progress\"") {
                        state.progress = try? decoder.decode(MemberProgress.self, from: data)
                    } else if line.contains("\"final\"") {
                        state.final = try? decoder.decode(MemberFinal.self, from: data)
                    }
                }
            }
        }
        try process.run()
    }

    /// Waits (up to 60 s) for a stdout line that `matches`, and returns it.
    @discardableResult
    func waitForLine(_ matches: @escaping @Sendable (String) -> Bool) async throws -> String {
        for _ in 0..<6_000 {
            if let line = state.withLock({ $0.lines.first(where: matches) }) { return line }
            if !process.isRunning, state.withLock({ $0.lines.first(where: matches) }) == nil {
                throw RawTCPError("child `lockstep \(process.arguments?.first ?? "")` exited with status \(process.terminationStatus)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw RawTCPError("child `lockstep \(process.arguments?.first ?? "")` did not answer within 60 s")
    }

    func progress() async throws -> MemberProgress? { state.withLock { $0.progress } }

    func finish() async throws -> MemberFinal? {
        try? stdinPipe.fileHandleForWriting.close()
        for _ in 0..<3_000 {
            if let final = state.withLock({ $0.final }) {
                waitUntilExit()
                return final
            }
            if !process.isRunning {
                // It exited: its last line may still be in the pipe, not yet read (a race that
                // shows under load). Give the reader up to 2 s to take it in.
                for _ in 0..<200 {
                    if let final = state.withLock({ $0.final }) { return final }
                    try await Task.sleep(for: .milliseconds(10))
                }
                break
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        if process.isRunning { process.terminate() }
        return state.withLock { $0.final }
    }

    /// SIGKILL, as a crash.
    /// Sends `signal` (SIGSTOP, SIGCONT...) to the child.
    func signal(_ signal: Int32) {
        Glibc.kill(process.processIdentifier, signal)
    }

    func kill() {
        Glibc.kill(process.processIdentifier, SIGKILL)
    }

    func waitUntilExit() {
        process.waitUntilExit()
        stdoutPipe.fileHandleForReading.readabilityHandler = nil
    }
}

/// The network namespaces `tools/with-netns` made for this run, from its environment variables:
/// member k runs in `prefix + k` at `addresses[k]`; the link's iperf3 rate and round trip were
/// measured through the same shaping just before.
struct NetnsEnvironment {
    var prefix: String
    var addresses: [String]
    var rate: String
    var linkMegabytesPerSecond: Double?
    var rttMilliseconds: Double?

    static var current: NetnsEnvironment? {
        let environment = ProcessInfo.processInfo.environment
        guard let prefix = environment["LOCKSTEP_NETNS_PREFIX"], !prefix.isEmpty,
            let addresses = environment["LOCKSTEP_NETNS_ADDRESSES"]?.split(separator: ",").map(String.init), !addresses.isEmpty
        else { return nil }
        return NetnsEnvironment(
            prefix: prefix, addresses: addresses, rate: environment["LOCKSTEP_NETNS_RATE"] ?? "?",
            linkMegabytesPerSecond: environment["LOCKSTEP_NETNS_LINK_MBPS"].flatMap(Double.init),
            rttMilliseconds: environment["LOCKSTEP_NETNS_RTT_MS"].flatMap(Double.init))
    }
}
