// The raw floor of a durable log: sequential pwrite + fdatasync of one batch size, by as many
// writers at once as the group has members (each its own file, as each member has its own log),
// in the same directory, for a few seconds. `bench --durable` and `bench-log` report their logs
// against it.

import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

enum RawDisk {
    /// What the writers did together.
    struct Rate: Sendable {
        var seconds: Double
        var bytes: Int
        var syncs: Int
        var bytesPerSecond: Double { Double(bytes) / max(seconds, 1e-9) }
        var syncsPerSecond: Double { Double(syncs) / max(seconds, 1e-9) }
    }

    /// `writers` threads, each writing `batchBytes` then fdatasync, in a file of its own under
    /// `directory`, for `seconds`; the files are removed after.
    static func writeAndSync(directory: String, writers: Int, batchBytes: Int, seconds: Double) throws -> Rate {
        let totals = Mutex<(bytes: Int, syncs: Int, failure: String?)>((0, 0, nil))
        let batch = [UInt8](repeating: 0x5A, count: max(1, batchBytes))
        let started = Stopwatch()
        let done = DispatchGroup()
        for writer in 0..<writers {
            done.enter()
            let path = "\(directory)/raw-baseline-\(writer)"
            let thread = Thread {
                defer { done.leave() }
                let outcome = writeLoop(path: path, batch: batch, seconds: seconds)
                totals.withLock { totals in
                    totals.bytes += outcome.bytes
                    totals.syncs += outcome.syncs
                    if let failure = outcome.failure { totals.failure = failure }
                }
            }
            thread.start()
        }
        done.wait()
        let elapsed = started.elapsedSeconds
        let (bytes, syncs, failure) = totals.withLock { ($0.bytes, $0.syncs, $0.failure) }
        if let failure { throw RawDiskError(description: failure) }
        return Rate(seconds: elapsed, bytes: bytes, syncs: syncs)
    }

    private static func writeLoop(
        path: String, batch: [UInt8], seconds: Double
    ) -> (
        bytes: Int, syncs: Int, failure: String?
    ) {
        let descriptor = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { return (0, 0, "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer {
            close(descriptor)
            unlink(path)
        }
        let stopwatch = Stopwatch()
        var offset = 0
        var syncs = 0
        while stopwatch.elapsedSeconds < seconds {
            let written = batch.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, off_t(offset)) }
            guard written == batch.count, fdatasync(descriptor) == 0 else {
                return (offset, syncs, "raw write+fdatasync on \(path) failed: \(String(cString: strerror(errno)))")
            }
            offset += batch.count
            syncs += 1
        }
        return (offset, syncs, nil)
    }

    /// The file system `path` is on: the type of the longest mount point in /proc/mounts that
    /// holds it (for the report; "unknown" when it cannot tell).
    static func fileSystem(of path: String) -> String {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
        guard let mounts = try? String(contentsOfFile: "/proc/mounts", encoding: .utf8) else { return "unknown" }
        var best: (point: String, type: String)?
        for line in mounts.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 3 else { continue }
            let point = String(fields[1])
            let holds = point == "/" || absolute == point || absolute.hasPrefix(point + "/")
            if holds, point.count >= (best?.point.count ?? 0) { best = (point, String(fields[2])) }
        }
        return best.map { "\($0.type) at \($0.point)" } ?? "unknown"
    }
}

struct RawDiskError: Error, CustomStringConvertible {
    var description: String
}
