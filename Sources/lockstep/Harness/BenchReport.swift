// The JSON report of `lockstep bench` (schema "lockstep-bench/1") and its table.

import Foundation
import LockstepRuntime

struct MachineInfo: Codable, Sendable {
    var cores: Int
    var memoryGibibytes: Double
    var kernel: String
    var swift: String
    var commit: String
    var now: String
    var fileStamp: String

    static func current() -> MachineInfo {
        var name = utsname()
        uname(&name)
        let kernel = withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        let date = Date()
        let stamp = DateFormatter()
        stamp.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        stamp.timeZone = TimeZone(identifier: "UTC")
        var commit = run("git", ["rev-parse", "--short", "HEAD"]) ?? "unknown"
        if let status = run("git", ["status", "--porcelain", "--untracked-files=no"]), !status.isEmpty {
            commit += "-dirty"
        }
        return MachineInfo(
            cores: System.coreCount, memoryGibibytes: Double(ProcessInfo.processInfo.physicalMemory) / Double(1 << 30),
            kernel: kernel, swift: swiftVersion, commit: commit, now: formatter.string(from: date),
            fileStamp: stamp.string(from: date))
    }

    private static var swiftVersion: String {
        #if compiler(>=6.3)
            return "6.3+"
        #else
            return "6.x"
        #endif
    }

    private static func run(_ command: String, _ arguments: [String]) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [command] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        // No git (or no env): the caller reports "unknown", which is all there is to say.
        guard (try? process.run()) != nil else { return nil }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

struct Baseline: Codable, Sendable {
    var rawTcpMegabytesPerSecond: Double
    var seconds: Double
}

struct BenchResult: Codable, Sendable {
    var transport: String
    var members: Int
    var senders: String
    var mode: String
    /// The message size (the largest, for a mixed workload).
    var sizeBytes: Int
    /// Every size of the workload (one, unless --mix). Absent in reports older than --mix.
    var sizes: [Int]?
    var window: Int
    /// The window in bytes (absent in older reports).
    var windowBytesMax: Int?
    /// The slowest receiver's payload bytes per second from the other members (MB = 10^6 bytes):
    /// what a link carries into it. Members that are the only sender are not receivers.
    var receivedFromOthersMegabytesPerSecond: Double = 0
    /// With --netns: the shaped link's iperf3 rate in the same run, and the figure above against it.
    var linkMegabytesPerSecond: Double?
    var ratioToLink: Double?
    /// The longest gap between two rows from one peer at any member, ms: the heartbeat interval
    /// (100 ms) plus the longest a row waited behind anything.
    var rowGapMaxMs: Double?
    /// Payloads of at least this size went through the relay ("off": none). Absent in older reports.
    var relayThreshold: String?
    var inProcess: Bool
    /// Minimum over members: messages delivered per second of the run.
    var messagesPerSecond: Double
    /// Minimum over members, MB = 10^6 bytes.
    var megabytesPerSecond: Double
    var efficiency: Double = 0
    /// The worst member's percentiles.
    var latencyUs: Percentiles
    var cpuSeconds: [Double]
    var rssMegabytesMax: Double
    var rssMegabytesPerMember: [Double]
    var deliveredPerMember: [UInt64]
    var secondsPerMember: [Double]
    var checker: String
    /// With --kill-after: failure detection and view change times.
    var viewChangeMs: ViewChangeTimes?
    /// With --kill-after: the slowest survivor's delivery rate in the second before the kill
    /// and in the first second of the new view.
    var messagesPerSecondBeforeKill: Double?
    var messagesPerSecondAfterViewChange: Double?
    /// On RDMA: the device ("emulated" under tools/with-emulated-rdma, "rxe0" under Soft-RoCE, or
    /// the NIC's name), and the RDMA operations the members completed, summed (proof that the
    /// RDMA path carried the run).
    var rdmaDevice: String?
    var rdmaOperations: RDMAOperationCounts?
    /// With --durable: the logs' figures, the raw write+fdatasync floor and the in-memory run of
    /// the same workload, all from this run (nil in memory).
    var durable: DurableBenchFigures?

    init(
        transport: String, members: Int, senders: String, mode: String, sizeBytes: Int, sizes: [Int],
        relayThreshold: String, window: Int, inProcess: Bool,
        finals: [MemberFinal], checker: String
    ) {
        self.transport = transport
        self.members = members
        self.senders = senders
        self.mode = mode
        self.sizeBytes = sizeBytes
        self.sizes = sizes
        self.relayThreshold = relayThreshold
        self.window = window
        self.inProcess = inProcess
        let sorted = finals.sorted { $0.rank < $1.rank }
        messagesPerSecond = sorted.map { Double($0.delivered) / max($0.seconds, 1e-9) }.min() ?? 0
        megabytesPerSecond = sorted.map { Double($0.deliveredBytes) / max($0.seconds, 1e-9) / 1e6 }.min() ?? 0
        let receivers = sorted.filter { !(senders == "one" && $0.rank == 0) }
        receivedFromOthersMegabytesPerSecond =
            receivers.map {
                Double($0.deliveredBytesFromOthers ?? 0) / max($0.seconds, 1e-9) / 1e6
            }.min() ?? 0
        latencyUs = Percentiles(
            p50: sorted.map(\.latencyMicroseconds.p50).max() ?? 0,
            p99: sorted.map(\.latencyMicroseconds.p99).max() ?? 0,
            p999: sorted.map(\.latencyMicroseconds.p999).max() ?? 0)
        cpuSeconds = sorted.map(\.cpuSeconds)
        rssMegabytesPerMember = sorted.map(\.rssMegabytesMax)
        rssMegabytesMax = rssMegabytesPerMember.max() ?? 0
        deliveredPerMember = sorted.map(\.delivered)
        secondsPerMember = sorted.map(\.seconds)
        self.checker = checker
        rowGapMaxMs = sorted.compactMap(\.rowGapMaxMilliseconds).max()
        let rdma = sorted.compactMap(\.rdma)
        if let first = rdma.first {
            rdmaDevice = first.device
            func sum(_ field: KeyPath<RDMAStatistics, UInt64>) -> UInt64 { rdma.reduce(0) { $0 + $1[keyPath: field] } }
            rdmaOperations = RDMAOperationCounts(
                dataWrites: sum(\.dataWrites), rowWrites: sum(\.rowWrites), creditWrites: sum(\.creditWrites),
                receives: sum(\.receives), bytesWritten: sum(\.bytesWritten), errorCompletions: sum(\.errorCompletions))
        }
    }
}

/// What `bench --durable` measured of the members' logs, next to its two baselines from the same
/// run: the same workload in memory, and raw sequential write + fdatasync of the logs' mean
/// group-commit size, by as many writers at once as there are members, in the same directory.
struct DurableBenchFigures: Codable, Sendable {
    var dataDirectory: String
    var fileSystem: String
    /// Group commits per second and bytes per group commit, the mean over members.
    var fsyncsPerSecond: Double
    var bytesPerFsync: Double
    /// Log bytes written per second, all members together (MB = 10^6 bytes).
    var logMegabytesPerSecond: Double
    /// Mean time of one write + fdatasync in the log, ms.
    var syncMillisecondsMean: Double
    /// The raw floor, all writers together, and the logs against it.
    var rawMegabytesPerSecond: Double = 0
    var rawFsyncsPerSecond: Double = 0
    var ofRaw: Double = 0
    /// The same workload in memory, in this run, and durable throughput against it.
    var inMemoryMegabytesPerSecond: Double = 0
    var ofInMemory: Double = 0
    /// The least persistence frontier any member reported at its end (global sequences).
    var persistenceFrontierMin: UInt64
    /// Each member's log figures, by rank.
    var perMember: [DurableLogStatistics] = []

    init(finals: [MemberFinal], dataDirectory: String) {
        self.dataDirectory = dataDirectory
        fileSystem = RawDisk.fileSystem(of: dataDirectory)
        let logs = finals.compactMap { final in final.durable.map { (final.seconds, $0) } }
        let count = Double(max(logs.count, 1))
        fsyncsPerSecond = logs.reduce(0) { $0 + Double($1.1.commits) / max($1.0, 1e-9) } / count
        bytesPerFsync = logs.reduce(0) { $0 + Double($1.1.bytes) / Double(max($1.1.commits, 1)) } / count
        logMegabytesPerSecond = logs.reduce(0) { $0 + Double($1.1.bytes) / max($1.0, 1e-9) } / 1e6
        syncMillisecondsMean =
            logs.reduce(0) { $0 + Double($1.1.syncNanoseconds) / Double(max($1.1.commits, 1)) } / count / 1e6
        persistenceFrontierMin = logs.map(\.1.persistenceFrontier).min() ?? 0
        perMember = logs.map(\.1)
    }
}

/// RDMA operations of a run, over all members.
struct RDMAOperationCounts: Codable, Sendable {
    var dataWrites: UInt64
    var rowWrites: UInt64
    var creditWrites: UInt64
    var receives: UInt64
    var bytesWritten: UInt64
    var errorCompletions: UInt64
}

/// What `--kill-after` measured, milliseconds from the kill.
struct ViewChangeTimes: Codable, Sendable {
    var killedRank: Int
    var killAtSeconds: Double
    /// From the kill until a survivor suspected the victim and wedged.
    var detectionP50: Double?
    var detectionMax: Double?
    /// From the kill until a survivor installed the next view.
    var installationP50: Double?
    var installationMax: Double?
    var note: String
}

struct BenchReport: Codable, Sendable {
    var schema = "lockstep-bench/1"
    var commit: String
    var createdAt: String
    var machine: MachineInfo
    var baseline: Baseline
    var results: [BenchResult]

    func write(to path: String) throws {
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try JSONLines.encoder().encode(self).write(to: url)
    }

    /// The result table, as printed at the end of a run (and as Markdown by `lockstep report`).
    func table(markdown: Bool = false) -> String {
        // Several transports in one report: a column says which.
        let transports = results.map(\.transport).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        let perRow = transports.count > 1
        // On shaped links (--netns) the link is the reference: what the slowest receiver gets
        // from the others, against it.
        let shaped = results.contains { $0.ratioToLink != nil }
        // Durable runs (--durable): their logs against the raw floor and the in-memory run.
        let durable = results.contains { $0.durable != nil }
        let header =
            (perRow ? ["transport"] : []) + [
                "size", "senders", "mode", "window", "msg/s", "MB/s", "efficiency",
            ] + (shaped ? ["from others MB/s", "of link"] : [])
            + (durable ? ["fsyncs/s", "KiB/fsync", "of raw fsync", "of in-memory"] : []) + [
                "p50 us", "p99 us", "p999 us", "CPU s (per member)", "RSS MB max", "row gap ms", "checker",
            ]
        let rows = results.map { r in
            let linkCells = [
                format(r.receivedFromOthersMegabytesPerSecond, 1), r.ratioToLink.map { format($0, 2) } ?? "-",
            ]
            let durableCells =
                r.durable.map {
                    [
                        format($0.fsyncsPerSecond, 0), format($0.bytesPerFsync / 1_024, 1), format($0.ofRaw, 2),
                        format($0.ofInMemory, 2),
                    ]
                } ?? ["-", "-", "-", "-"]
            return (perRow ? [r.transport] : []) + [
                (r.sizes ?? [r.sizeBytes]).map(sizeLabel).joined(separator: "+"), r.senders, r.mode, "\(r.window)",
                format(r.messagesPerSecond, 0), format(r.megabytesPerSecond, 1), format(r.efficiency, 2),
            ] + (shaped ? linkCells : []) + (durable ? durableCells : []) + [
                "\(r.latencyUs.p50)", "\(r.latencyUs.p99)",
                "\(r.latencyUs.p999)", r.cpuSeconds.map { format($0, 1) }.joined(separator: "/"),
                format(r.rssMegabytesMax, 1), r.rowGapMaxMs.map { format($0, 0) } ?? "-", r.checker,
            ]
        }
        var lines: [String] = []
        let group = results.first.map {
            "\($0.members) members, \(transports.joined(separator: " and "))"
                + ($0.inProcess ? ", in one process" : ", one process each")
        }
        let title =
            "raw TCP baseline \(format(baseline.rawTcpMegabytesPerSecond, 1)) MB/s; \(group ?? ""); "
            + "commit \(commit); \(machine.cores) cores"
        if markdown {
            lines.append(title)
            lines.append("")
            lines.append("| " + header.joined(separator: " | ") + " |")
            lines.append("|" + header.map { _ in "---" }.joined(separator: "|") + "|")
            for row in rows { lines.append("| " + row.joined(separator: " | ") + " |") }
        } else {
            let widths = header.indices.map { column in
                ([header[column]] + rows.map { $0[column] }).map(\.count).max() ?? 0
            }
            func line(_ cells: [String]) -> String {
                cells.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }
                    .joined(separator: "  ")
            }
            lines.append(title)
            lines.append(line(header))
            for row in rows { lines.append(line(row)) }
        }
        return lines.joined(separator: "\n")
    }
}
