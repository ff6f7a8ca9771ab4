// Helpers for the TCP tests: free loopback ports, a raw socket that plays a peer, and a group of
// in-process members.

import Foundation
import LockstepChecker
import LockstepCore
import LockstepRuntime
import LockstepWire
import Logging
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A free port on 127.0.0.1 (bound, then released).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    _ = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A blocking TCP client socket, to play a peer byte by byte.
final class RawPeer {
    let fd: Int32

    /// Connects, retrying while the member is not listening yet. Waits with Task.sleep: a
    /// blocking wait would hold one of the few cooperative threads the member needs to start.
    static func connecting(port: Int) async throws -> RawPeer {
        for _ in 0..<1_500 {
            if let peer = try? RawPeer(port: port, attempts: 1) { return peer }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestError("cannot connect to \(port) within 30 s")
    }

    init(port: Int, attempts: Int = 100) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        // Every blocking call on this socket has a bound: a test can never hang in a read or a
        // write that no time limit can interrupt.
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var connected: Int32 = -1
        for attempt in 0..<attempts {
            if attempt > 0 { usleep(20_000) }
            connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            if connected == 0 { break }
        }
        // On failure deinit closes the socket (a class whose stored properties are all set
        // gets deinit even when its init throws); closing here too closed a reused descriptor.
        guard connected == 0 else { throw TestError("cannot connect to \(port)") }
    }

    func send(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if written <= 0 { return }
                offset += written
            }
        }
    }

    /// Reads until the other side closes (true), or 5 s pass without data or 20 s in all (false).
    func waitForClose() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count == 0 { return true }
            if count < 0 { return errno == ECONNRESET }
        }
        return false
    }

    deinit { close(fd) }
}

struct TestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Deliveries collected from an event loop callback.
final class DeliveryLog: Sendable {
    private let records = Mutex<[Delivery]>([])
    func append(_ delivery: Delivery) { records.withLock { $0.append(delivery) } }
    var all: [Delivery] { records.withLock { $0 } }
    var count: Int { records.withLock { $0.count } }
}

func waitUntil(seconds: Double = 30, _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1_000))
    while !condition() {
        if ContinuousClock.now > deadline { throw TestError("condition not met within \(seconds) s") }
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// Quiet unless `LOCKSTEP_TEST_LOG_LEVEL` (trace, debug, info, warning, error) asks for more.
func testLogger() -> Logger {
    var logger = Logger(label: "test")
    let level = ProcessInfo.processInfo.environment["LOCKSTEP_TEST_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:))
    logger.logLevel = level ?? .critical
    return logger
}

/// The `lockstep` executable built next to the tests.
func lockstepExecutable() throws -> URL {
    let candidates = [
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("lockstep"),
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
            .appendingPathComponent(".build/debug/lockstep"),
    ]
    for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
    throw TestError("the lockstep executable was not built (looked in \(candidates.map(\.path)))")
}

/// Runs `lockstep` with `arguments` and returns its exit status and output.
func runLockstep(_ arguments: [String]) async throws -> (status: Int32, output: String) {
    try await runProcess(try lockstepExecutable(), arguments)
}

/// Runs a program to its end and returns its exit status and output (stdout and stderr). The
/// blocking read and wait happen on a thread of their own: not on the cooperative pool the
/// tests run on, nor on Dispatch's global queues (which share that pool's threads on Linux).
///
/// Nothing outlives the test: Foundation starts the program as the leader of a process group of
/// its own, and when `timeoutSeconds` pass or the test's task is cancelled (its time limit) the
/// whole group is killed. The members bench and chaos start lead groups of their own; they stop
/// when their parent is gone (their stdin closes, and they run with --stop-on-eof). The output
/// then ends with a line that says so, and the status is that of the SIGKILL.
func runProcess(
    _ executable: URL, _ arguments: [String], environment: [String: String] = [:], directory: URL? = nil,
    timeoutSeconds: Double = 240
) async throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    if !environment.isEmpty {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    if let directory { process.currentDirectoryURL = directory }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let pid = process.processIdentifier
    let timedOut = Atomic<Bool>(false)
    let leadsGroup = getpgid(pid) == pid
    let killAll: @Sendable () -> Void = {
        if leadsGroup { _ = kill(-pid, SIGKILL) }
        _ = kill(pid, SIGKILL)
    }
    let watchdog = Thread {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            if !process.isRunning { return }
            usleep(50_000)
        }
        timedOut.store(true, ordering: .relaxed)
        killAll()
    }
    watchdog.start()
    return await withTaskCancellationHandler {
        await withCheckedContinuation { continuation in
            let waiter = Thread {
                let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                process.waitUntilExit()
                let note =
                    timedOut.load(ordering: .relaxed)
                    ? "\n[test support: killed after \(timeoutSeconds) s, with every process it started]" : ""
                continuation.resume(returning: (process.terminationStatus, text + note))
            }
            waiter.start()
        }
    } onCancel: {
        killAll()
    }
}

/// Starts an in-process group over loopback: one runtime per member of `view`, each delivering
/// into its own log, settings adjusted by `adjust` (ranks in order).
func startGroup(
    view: View, configuration: Configuration, on group: MultiThreadedEventLoopGroup, logs: [DeliveryLog],
    adjust: @escaping @Sendable (inout RuntimeSettings) -> Void = { _ in }
) async throws -> [MemberRuntime] {
    let ports = try view.members.indices.map { _ in try freePort() }
    let addresses = ports.map { PeerAddress(host: "127.0.0.1", port: $0) }
    return try await withThrowingTaskGroup(of: (Int, MemberRuntime).self) { tasks in
        for rank in view.members.indices {
            var settings = RuntimeSettings(
                configuration: configuration, view: view, memberRank: rank, addresses: addresses)
            adjust(&settings)
            let log = logs[rank]
            let finalSettings = settings
            tasks.addTask {
                (
                    rank,
                    try await MemberRuntime.start(
                        settings: finalSettings, eventLoop: group.next(), logger: testLogger()
                    ) { log.append($0) }
                )
            }
        }
        var result: [MemberRuntime?] = Array(repeating: nil, count: view.memberCount)
        for try await (rank, runtime) in tasks { result[rank] = runtime }
        return result.compactMap { $0 }
    }
}
