// `lockstep bench-log`: the durable log alone, on a real file system, next to its raw baseline
// from the same run. Group commits of --size records, appended as fast as the log takes them:
// records/s, fsyncs/s and bytes per fsync; then sequential write + fdatasync of the same batch
// sizes in the same directory (the raw floor). Then recovery of --recovery-mib of log, timed
// next to a raw sequential read of the same files.
//
// This measures the storage layer alone; `bench --durable` measures it under a group.

import ArgumentParser
import Foundation
import LockstepStorage
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

struct BenchLog: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-log",
        abstract: "Measure the durable log (group commit, recovery) against raw write+fdatasync and read.")

    @Option(help: "Directory for the log and the baseline's file (on the file system to measure).")
    var dataDir: String

    @Option(help: "Record size, with a K/M suffix.")
    var size: String = "1K"

    @Option(help: "Seconds of appending (and of the baseline).")
    var seconds: Double = 5

    @Option(help: "MiB of log to write and recover (0: skip recovery).")
    var recoveryMib: Int = 1_024

    @Option(help: "Write a JSON report here.")
    var output: String?

    func validate() throws {
        guard seconds > 0, seconds <= 3_600 else { throw ValidationError("--seconds must be in (0, 3600]") }
        guard (0...65_536).contains(recoveryMib) else { throw ValidationError("--recovery-mib must be in 0...65536") }
        _ = try parseSize(size, flag: "--size", example: "1K")
    }

    func run() throws {
        let recordBytes = try parseSize(size, flag: "--size", example: "1K")
        let root = URL(fileURLWithPath: dataDir)
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let logPath = root.appendingPathComponent("bench-log").path
        try? FileManager.default.removeItem(atPath: logPath)
        defer { try? FileManager.default.removeItem(atPath: logPath) }
        Output.line("crc32c: \(CRC32C.isHardwareAccelerated ? "SSE 4.2 instruction" : "tables (no SSE 4.2)")")
        let log = try appendRun(path: logPath, recordBytes: recordBytes)
        let raw = try rawWriteRun(
            path: root.appendingPathComponent("bench-raw").path, batchBytes: max(log.bytesPerSync, Double(recordBytes)))
        let ratio = log.bytesPerSecond / max(raw.bytesPerSecond, 1)
        let logFigures = String(
            format: "log: %.0f records/s, %.1f MB/s, %.0f fsyncs/s, %.0f bytes/fsync", log.recordsPerSecond,
            log.bytesPerSecond / 1e6, log.syncsPerSecond, log.bytesPerSync)
        let rawFigures = String(
            format: "raw write+fdatasync of the same batches: %.1f MB/s, %.0f fsyncs/s", raw.bytesPerSecond / 1e6,
            raw.syncsPerSecond)
        Output.line("\(logFigures) | \(rawFigures) | log/raw \(String(format: "%.2f", ratio))")
        var report: [String: Any] = [:]
        report["data_dir"] = dataDir
        report["record_bytes"] = recordBytes
        report["log"] = log.json
        report["raw"] = raw.json
        report["log_over_raw"] = ratio
        if recoveryMib > 0 {
            report["recovery"] = try recoveryRun(path: logPath, recordBytes: recordBytes)
        }
        if let output {
            let data = try JSONSerialization.data(withJSONObject: report, options: [.prettyPrinted, .sortedKeys])
            try data.write(to: URL(fileURLWithPath: output))
            Output.line("report: \(output)")
        }
    }

    struct Rate {
        var seconds: Double
        var records: Int
        var bytes: Int
        var syncs: Int
        var recordsPerSecond: Double { Double(records) / seconds }
        var bytesPerSecond: Double { Double(bytes) / seconds }
        var syncsPerSecond: Double { Double(syncs) / seconds }
        var bytesPerSync: Double { Double(bytes) / Double(max(syncs, 1)) }
        var json: [String: Double] {
            var figures: [String: Double] = [:]
            figures["seconds"] = seconds
            figures["records"] = Double(records)
            figures["bytes"] = Double(bytes)
            figures["fsyncs"] = Double(syncs)
            figures["records_per_second"] = recordsPerSecond
            figures["bytes_per_second"] = bytesPerSecond
            figures["fsyncs_per_second"] = syncsPerSecond
            figures["bytes_per_fsync"] = bytesPerSync
            return figures
        }
    }

    /// Appends records of `recordBytes` for `seconds`, as fast as the log takes them.
    private func appendRun(path: String, recordBytes: Int) throws -> Rate {
        let settings = LogSettings()
        let appender = try LogAppender(
            directory: try PosixLogDirectory(path: path), settings: settings, recovered: RecoveredLog())
        let log = GroupCommitLog(appender: appender, onPersisted: { _ in }, onFailure: { _ in })
        let body = [UInt8](repeating: 0x5A, count: recordBytes)
        let stopwatch = Stopwatch()
        var appended = 0
        var nextProgress = 1.0
        while stopwatch.elapsedSeconds < seconds {
            if try log.offer(kind: .entry, body: body) {
                appended += 1
            } else {
                usleep(50)
            }
            if stopwatch.elapsedSeconds >= nextProgress {
                Output.line("  appending: \(appended) records, \(log.persisted) durable")
                nextProgress += 1
            }
        }
        try log.close()
        let elapsed = stopwatch.elapsedSeconds
        let statistics = log.statistics
        return Rate(seconds: elapsed, records: statistics.records, bytes: statistics.bytes, syncs: statistics.commits)
    }

    /// Sequential write + fdatasync of `batchBytes` at a time for `seconds`: the raw floor.
    private func rawWriteRun(path: String, batchBytes: Double) throws -> Rate {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let raw = try RawDisk.writeAndSync(
            directory: directory, writers: 1, batchBytes: Int(batchBytes.rounded()), seconds: seconds)
        return Rate(seconds: raw.seconds, records: raw.syncs, bytes: raw.bytes, syncs: raw.syncs)
    }

    /// Writes `recoveryMib` of log in large groups, then times recovery and a raw sequential
    /// read of the same files (the page cache dropped before each, where the system allows).
    private func recoveryRun(path: String, recordBytes: Int) throws -> [String: Double] {
        try? FileManager.default.removeItem(atPath: path)
        let settings = LogSettings()
        let appender = try LogAppender(
            directory: try PosixLogDirectory(path: path), settings: settings, recovered: RecoveredLog())
        let body = [UInt8](repeating: 0xA5, count: recordBytes)
        let group = Array(repeating: (kind: LogRecordKind.entry, body: body), count: max(1, (4 << 20) / recordBytes))
        let target = recoveryMib << 20
        var written = 0
        while written < target {
            try appender.commit(group)
            written += group.count * recordBytes
        }
        Output.line("  recovery: wrote \(written >> 20) MiB of log")
        let coldRecovery = dropPageCache()
        let stopwatch = Stopwatch()
        // (The visitor counts nothing: the recovered log says how many records it handed over.)
        let recovered = try LogRecovery.recover(try PosixLogDirectory(path: path), settings: settings) { _ in }
        let records = recovered.records
        let recoverySeconds = stopwatch.elapsedSeconds
        let coldRead = dropPageCache()
        let (readBytes, readSeconds) = try rawRead(directory: path)
        let recoveryRate = Double(recovered.bytesRead) / recoverySeconds / 1e6
        let readRate = Double(readBytes) / readSeconds / 1e6
        let cache = coldRecovery && coldRead ? "cold" : "warm"
        let recoveryFigures = String(format: "%.2f s, %.0f MB/s", recoverySeconds, recoveryRate)
        let readFigures = String(format: "%.2f s, %.0f MB/s", readSeconds, readRate)
        Output.line(
            "recovery of \(recovered.bytesRead >> 20) MiB (\(records) records): \(recoveryFigures) | raw sequential "
                + "read: \(readFigures) | \(cache) cache")
        var figures: [String: Double] = [:]
        figures["log_bytes"] = Double(recovered.bytesRead)
        figures["records"] = Double(records)
        figures["recovery_seconds"] = recoverySeconds
        figures["raw_read_seconds"] = readSeconds
        figures["raw_read_bytes"] = Double(readBytes)
        figures["cold_cache"] = coldRecovery && coldRead ? 1 : 0
        return figures
    }

    private func rawRead(directory: String) throws -> (Int, Double) {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        var buffer = [UInt8](repeating: 0, count: 4 << 20)
        let stopwatch = Stopwatch()
        var total = 0
        for name in names {
            let descriptor = open("\(directory)/\(name)", O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { continue }
            defer { close(descriptor) }
            while true {
                let got = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
                if got <= 0 { break }
                total += got
            }
        }
        return (total, stopwatch.elapsedSeconds)
    }

    /// Drops the page cache (root only); false when it could not, so figures say "warm".
    private func dropPageCache() -> Bool {
        sync()
        guard let handle = FileHandle(forWritingAtPath: "/proc/sys/vm/drop_caches") else { return false }
        defer { try? handle.close() }
        return (try? handle.write(contentsOf: Data("3\n".utf8))) != nil
    }
}
