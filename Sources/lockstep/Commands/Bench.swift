// `lockstep bench`: starts a group on this machine (3 processes over loopback TCP by default),
// measures a raw TCP baseline first, streams a sweep of message sizes, shows live progress,
// checks every member's delivery log, prints a table and writes a JSON report. One size's run
// is `BenchSizeRun` (Harness/BenchSizeRun.swift).

import ArgumentParser
import Foundation
import LockstepCore
import LockstepRuntime

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure replication throughput and latency on a local group, against a raw TCP baseline.")

    /// Limits of the flags.
    static let membersRange = 2...16
    static let windowMessagesRange = 1...(1 << 22)
    static let windowBytesMin = 1_024
    static let durationSecondsMax: Double = 3_600
    static let baselineSecondsMax: Double = 60

    @Option(help: "Members in the group.")
    var members: Int = 3

    @Option(help: "Which members send: all, half or one.")
    var senders: SenderChoice = .all

    @Option(help: "Message sizes, comma-separated, with K/M suffixes (powers of 1024).")
    var size: String = "64,1K,64K,1M"

    @Flag(
        help: """
            Run the --size list as one workload of mixed sizes (message i has the i-th size, cyclically) instead of a \
            sweep.
            """)
    var mix = false

    @Option(help: "The window in messages (default 1024, as node and the library).")
    var window: Int?

    @Option(
        help: """
            The window in bytes (K/M suffixes; default 16M, as node and the library): a member's memory stays within \
            about 64 MiB + senders x this.
            """)
    var windowBytes: String?

    @Option(
        help: """
            Seconds without a delivery anywhere, while messages are outstanding, after which the run stops, prints \
            every \
            member's state and fails (default: 10, or 3 x the failure timeout if larger).
            """)
    var stallTimeout: Double?

    @Flag(
        help: """
            Run the members in the network namespaces of tools/with-netns (run bench under it: tools/with-netns \
            --members N --rate 1gbit -- lockstep bench --netns ...); the baseline is its iperf3 figure through the \
            same \
            shaping.
            """)
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

    @Option(
        help: """
            Kill (SIGKILL) the highest-ranked member this many seconds into each size; report detection and \
            installation \
            of the new view (view_change_ms) and the survivors' throughput in the second after it against the second \
            before the kill.
            """)
    var killAfter: Double?

    @Option(help: "Seconds of the raw TCP baseline.")
    var baselineSeconds: Double = 2

    @Option(
        help: """
            With --kill-after: instead of killing the highest-ranked member, give it this environment variable \
            (NAME=VALUE) from the start, and take it as the failed member at --kill-after. For fault injection, e.g. \
            LOCKSTEP_EMULATED_RDMA_FAULT=rkey@500 under tools/with-emulated-rdma.
            """)
    var faultEnvironment: String?

    @Option(
        help: """
            Address the members listen on (RDMA needs one of the device's; default 127.0.0.1, or \
            $LOCKSTEP_RXE_ADDRESS, \
            which tools/with-rxe-vm sets to rxe0's).
            """)
    var host: String = ProcessInfo.processInfo.environment["LOCKSTEP_RXE_ADDRESS"] ?? "127.0.0.1"

    @Option(
        name: .customLong("failure-timeout-ms"),
        help: """
            Suspect a member not heard from for this many milliseconds (default 500; raise it on slow emulators).
            """)
    var failureTimeoutMilliseconds: Int?

    @Flag(
        help: """
            Durable mode: run each workload in memory, then durable (every member logs in --data-dir), then raw \
            write+fdatasync of the logs' mean group-commit size by as many writers as members in the same \
            directory; report fsyncs/s, bytes per fsync, and the durable run against both baselines.
            """)
    var durable = false

    @Option(
        help:
            "With --durable: the directory for the members' logs and the raw baseline (on the file system to measure).")
    var dataDir: String?

    @Option(help: "RDMA: bytes of each per-peer data ring (all members use the same).")
    var rdmaRingBytes: Int?

    @Option(help: "RDMA: row slots per peer (also the most unconsumed writes with immediate).")
    var rdmaRowSlots: Int?

    func validate() throws {
        guard Self.membersRange.contains(members) else {
            throw ValidationError("--members must be in \(Self.membersRange), got \(members)")
        }
        for name in transport.split(separator: ",") {
            if case .failure(let error) = TransportKind.choose(String(name)) {
                throw ValidationError(error.description)
            }
        }
        guard duration > 0, duration <= Self.durationSecondsMax else {
            throw ValidationError("--duration must be in (0, \(Int(Self.durationSecondsMax))] seconds")
        }
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        if let window, !Self.windowMessagesRange.contains(window) {
            throw ValidationError("--window must be in \(Self.windowMessagesRange)")
        }
        if let windowBytes {
            _ = try parseSize(
                windowBytes, flag: "--window-bytes", example: "16M (at least 1K)", bytesMin: Self.windowBytesMin)
        }
        if let stallTimeout, !(stallTimeout > 0 && stallTimeout <= Self.durationSecondsMax) {
            throw ValidationError("--stall-timeout must be in (0, \(Int(Self.durationSecondsMax))] seconds")
        }
        if netns { try validateNetns() }
        guard durable == (dataDir != nil) else {
            throw ValidationError(durable ? "--durable needs --data-dir PATH" : "--data-dir needs --durable")
        }
        if durable, mode != .ordered { throw ValidationError("--durable needs --mode ordered") }
        _ = try parseSizes(size)
        if relayThreshold != "off" {
            _ = try parseSize(relayThreshold, flag: "--relay-threshold", example: "64K, or off")
        }
        if let killAfter {
            guard !inProcess else { throw ValidationError("--kill-after needs member processes (not --in-process)") }
            guard killAfter > 0, count != nil || killAfter < duration else {
                throw ValidationError("--kill-after must be positive and within --duration (\(duration) s)")
            }
        }
        guard baselineSeconds > 0, baselineSeconds <= Self.baselineSecondsMax else {
            throw ValidationError("--baseline-seconds must be in (0, \(Int(Self.baselineSecondsMax))]")
        }
        if let faultEnvironment {
            guard killAfter != nil, !inProcess else {
                throw ValidationError("--fault-environment needs --kill-after (and member processes)")
            }
            guard faultEnvironment.contains("=") else {
                throw ValidationError("--fault-environment '\(faultEnvironment)': expected NAME=VALUE")
            }
        }
    }

    private func validateNetns() throws {
        guard let environment = NetnsEnvironment.current else {
            throw ValidationError(
                "--netns: run bench under tools/with-netns "
                    + "(LOCKSTEP_NETNS_PREFIX and LOCKSTEP_NETNS_ADDRESSES are not set)")
        }
        guard environment.addresses.count >= members else {
            throw ValidationError(
                "--netns: tools/with-netns made \(environment.addresses.count) namespaces for \(members) members")
        }
        guard !inProcess else { throw ValidationError("--netns needs member processes (not --in-process)") }
    }

    func run() async throws {
        // "auto" is decided once here, so every member uses the same transport. A list
        // ("rdma,tcp") runs every size on each, against one baseline, into one report.
        let transports = try transport.split(separator: ",").map { try TransportKind.choose(String($0)).get().rawValue }
        let sizes = try parseSizes(size)
        let machine = MachineInfo.current()
        printHeader(transports: transports, commit: machine.commit)
        let raw = try await baseline()
        var results: [BenchResult] = []
        for chosen in transports {
            for workload in mix ? [sizes] : sizes.map({ [$0] }) {
                let memory = try await runWorkload(
                    workload, transport: chosen, showTransport: transports.count > 1, raw: raw)
                results.append(memory)
                if durable {
                    results.append(
                        try await runDurable(
                            workload, transport: chosen, showTransport: transports.count > 1, raw: raw,
                            memory: memory))
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

    private func printHeader(transports: [String], commit: String) {
        // No RDMA device: the header says nothing about one (the run then fails with the reason).
        let probed = transports.contains("rdma") ? try? probeRDMADevice().get() : nil
        let device = probed.map { " (RDMA device \($0))" } ?? ""
        let processes = inProcess ? "threads of one process" : "processes"
        let relay = relayThreshold == "off" ? "off" : "from \(relayThreshold)"
        Output.line(
            "lockstep bench: \(members) members (\(processes)), senders \(senders.rawValue), \(mode.rawValue), "
                + "\(transports.joined(separator: " then "))\(device) on \(host), relay \(relay), commit \(commit)")
    }

    /// The raw baseline, MB/s: the shaped link's iperf3 figure under --netns, else one TCP stream.
    private func baseline() async throws -> Double {
        if netns, let environment = NetnsEnvironment.current {
            let raw = environment.linkMegabytesPerSecond ?? 0
            let rtt = environment.rttMilliseconds.map { format($0, 2) } ?? "?"
            Output.line(
                "raw baseline: iperf3 through the shaped link (\(environment.rate)), measured by tools/with-netns in "
                    + "this run: \(format(raw, 1)) MB/s, rtt \(rtt) ms")
            return raw
        }
        Output.line("raw baseline: one TCP stream between two processes, 1 MiB writes, \(baselineSeconds) s ...")
        let raw = try await RawTCP.measureBaseline(seconds: baselineSeconds)
        Output.line("raw baseline: \(format(raw, 1)) MB/s")
        return raw
    }

    /// The durable run of a workload, after its in-memory run (`memory`), then the raw floor of
    /// write+fdatasync at the logs' mean group-commit size in the same directory.
    private func runDurable(
        _ workload: [Int], transport chosen: String, showTransport: Bool, raw: Double, memory: BenchResult
    ) async throws -> BenchResult {
        guard let dataDir else { throw ValidationError("--durable needs --data-dir PATH") }
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        let runDirectory = "\(dataDir)/lockstep-bench-\(getpid())-\(workload.max() ?? 0)"
        Output.line("durable: the same workload, every member logging under \(runDirectory) ...")
        var result = try await runWorkload(
            workload, transport: chosen, showTransport: showTransport, raw: raw, dataDirectory: runDirectory)
        result.mode += ", durable"
        guard var figures = result.durable else { return result }
        Output.line(
            "raw baseline: write+fdatasync of \(Int(figures.bytesPerFsync)) bytes by \(members) writers at once in "
                + "\(dataDir) (\(figures.fileSystem)), \(baselineSeconds) s ...")
        let floor = try RawDisk.writeAndSync(
            directory: dataDir, writers: members, batchBytes: Int(figures.bytesPerFsync.rounded()),
            seconds: baselineSeconds)
        figures.rawMegabytesPerSecond = floor.bytesPerSecond / 1e6
        figures.rawFsyncsPerSecond = floor.syncsPerSecond
        figures.ofRaw = figures.logMegabytesPerSecond / max(figures.rawMegabytesPerSecond, 1e-9)
        figures.inMemoryMegabytesPerSecond = memory.megabytesPerSecond
        figures.ofInMemory = result.megabytesPerSecond / max(memory.megabytesPerSecond, 1e-9)
        result.durable = figures
        Output.line(
            "durable: \(format(result.megabytesPerSecond, 1)) MB/s delivered (\(format(figures.ofInMemory, 2)) of in "
                + "memory, \(format(memory.megabytesPerSecond, 1))); logs \(format(figures.logMegabytesPerSecond, 1)) "
                + "MB/s, \(format(figures.fsyncsPerSecond, 0)) fsyncs/s per member, "
                + "\(format(figures.bytesPerFsync / 1_024, 1)) KiB per fsync, "
                + "\(format(figures.syncMillisecondsMean, 2)) ms per sync; "
                + "raw floor \(format(figures.rawMegabytesPerSecond, 1)) MB/s, "
                + "\(format(floor.syncsPerSecond, 0)) fsyncs/s: logs at \(format(figures.ofRaw, 2)) of it")
        return result
    }

    /// One workload (one size, or the --mix of all) on one transport, with its lines.
    private func runWorkload(
        _ workload: [Int], transport chosen: String, showTransport: Bool, raw: Double, dataDirectory: String? = nil
    ) async throws -> BenchResult {
        let bytes = workload.max() ?? 0
        let window = self.window ?? Configuration().windowMessagesMax
        let windowBytesMax = try windowBytes.map { try parseSizes($0)[0] } ?? Configuration().windowBytesMax
        let streaming = count.map { "\($0) messages per sender" } ?? "for \(duration) s"
        Output.line(
            "\(showTransport ? "\(chosen), " : "")size \(workload.map(sizeLabel).joined(separator: "+")), "
                + "window \(window) messages / \(sizeLabel(windowBytesMax)): streaming \(streaming) ...")
        var one = self
        one.transport = chosen
        var result = try await BenchSizeRun(
            bench: one, sizes: workload, window: window, windowBytesMax: windowBytesMax, dataDirectory: dataDirectory
        ).run()
        result.efficiency = raw > 0 ? result.megabytesPerSecond * Double(members - 1) / raw : 0
        if netns {
            // On shaped links the reference is the link itself: what each member receives
            // against what one stream gets through the same shaping.
            result.linkMegabytesPerSecond = raw
            result.ratioToLink = raw > 0 ? result.receivedFromOthersMegabytesPerSecond / raw : nil
        }
        Output.line(
            "size \(sizeLabel(bytes)): \(format(result.messagesPerSecond, 0)) msg/s, "
                + "\(format(result.megabytesPerSecond, 1)) MB/s, checker \(result.checker)")
        if let operations = result.rdmaOperations {
            Output.line(
                "  RDMA on \(result.rdmaDevice ?? "?"): \(operations.dataWrites) data writes, "
                    + "\(operations.rowWrites) row writes, \(operations.creditWrites) credit writes, "
                    + "\(operations.receives) receives, "
                    + "\(format(Double(operations.bytesWritten) / 1e6, 1)) MB written, "
                    + "\(operations.errorCompletions) error completions")
        }
        return result
    }
}
