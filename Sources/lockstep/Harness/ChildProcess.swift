// Members of bench and chaos: `lockstep node` child processes speaking JSON lines on stdout, or
// (bench --in-process) workload members running as threads of this process.

import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A member whose figures the harness reads.
protocol MemberHandle: Sendable {
    func progress() async throws -> MemberProgress?
    func finish() async throws -> MemberFinal?
}

struct InProcessMember: MemberHandle {
    let member: BenchMember
    func progress() async throws -> MemberProgress? { try await member.progress() }
    func finish() async throws -> MemberFinal? { try await member.finish() }
}

/// A child process that could not be started or did not answer.
struct ChildProcessError: Error, CustomStringConvertible {
    var description: String
}

/// A `lockstep` child process speaking JSON lines on stdout; closing its stdin stops it.
final class ChildProcess: MemberHandle, @unchecked Sendable {
    /// How long `waitForLine` waits for a line.
    static let answerTimeoutSeconds = 60
    /// How long `finish` waits for the final line after closing stdin.
    static let finishTimeoutSeconds = 30
    /// How long an exited child's last line may still take to be read from the pipe.
    static let drainTimeoutSeconds = 2
    /// The polling step of those waits.
    static let pollMilliseconds = 10
    /// Where `ip` (iproute2) may be, for --netns.
    static let ipPaths = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]

    private let process = Process()
    private let stdinPipe = Pipe()
    private let stdoutPipe = Pipe()
    private let state = Shared()

    /// The reader thread and the harness share this.
    final class Shared: Sendable {
        let mutex = Mutex(State())
        func withLock<T>(_ body: (inout State) -> T) -> T { mutex.withLock { body(&$0) } }
    }

    struct State {
        var partial = Data()
        var lines: [String] = []
        var progress: MemberProgress?
        /// Every final line, by member id: a process that the group removed and that rejoined
        /// reports once per incarnation.
        var finals: [UInt64: MemberFinal] = [:]
        /// The incarnations after the first, from its `rejoining` lines, in order.
        var rejoins: [RejoiningLine] = []

        /// The final line of the process's latest incarnation (nil until it printed it).
        var final: MemberFinal? {
            if let latest = rejoins.last { return finals[latest.newMember] }
            return finals.values.first
        }

        /// Takes in what the pipe gave: whole lines are kept, and the latest progress and the
        /// final line decoded.
        mutating func take(_ data: Data) {
            partial.append(data)
            while let newline = partial.firstIndex(of: 0x0A) {
                let line = String(decoding: partial[partial.startIndex..<newline], as: UTF8.self)
                partial.removeSubrange(partial.startIndex...newline)
                lines.append(line)
                let data = Data(line.utf8)
                let decoder = JSONLines.decoder()
                // A line that does not decode counts as no report (until the next good one): the
                // harness then says which member did not report, rather than stopping here.
                if line.contains("\"progress\"") {
                    progress = try? decoder.decode(MemberProgress.self, from: data)
                } else if line.contains("\"final\""), let final = try? decoder.decode(MemberFinal.self, from: data) {
                    finals[final.member] = final
                } else if line.contains("\"rejoining\""),
                    let rejoin = try? decoder.decode(RejoiningLine.self, from: data)
                {
                    rejoins.append(rejoin)
                }
            }
        }
    }

    /// Runs this `lockstep` binary with `arguments`; in network namespace `namespace` if given
    /// (through `ip netns exec`, which execs the binary: the child's pid is the member's).
    init(
        arguments: [String], stderrPath: String?, environment: [String: String] = [:], namespace: String? = nil
    ) throws {
        let binary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        if let namespace {
            guard let ip = Self.ipPaths.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
                throw ChildProcessError(description: "--netns: the ip command (iproute2) is not installed")
            }
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
            guard FileManager.default.createFile(atPath: stderrPath, contents: nil),
                let file = FileHandle(forWritingAtPath: stderrPath)
            else { throw ChildProcessError(description: "cannot create \(stderrPath) for a child's stderr") }
            process.standardError = file
        }
        let state = self.state
        stdoutPipe.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            state.withLock { $0.take(data) }
        }
        try process.run()
    }

    private var name: String { "child `lockstep \(process.arguments?.first ?? "")`" }

    /// Waits (up to `answerTimeoutSeconds`) for a stdout line that `matches`, and returns it.
    @discardableResult
    func waitForLine(_ matches: @escaping @Sendable (String) -> Bool) async throws -> String {
        for _ in 0..<(Self.answerTimeoutSeconds * 1_000 / Self.pollMilliseconds) {
            if let line = state.withLock({ $0.lines.first(where: matches) }) { return line }
            if !process.isRunning {
                if let line = try await afterExit({ $0.lines.first(where: matches) }) { return line }
                throw ChildProcessError(description: "\(name) exited with status \(process.terminationStatus)")
            }
            try await Task.sleep(for: .milliseconds(Self.pollMilliseconds))
        }
        throw ChildProcessError(description: "\(name) did not answer within \(Self.answerTimeoutSeconds) s")
    }

    /// The child exited: what it printed last may still be in the pipe, not yet read (under load
    /// the reader runs late; the baseline's sink prints its line and exits at once). Gives the
    /// reader `drainTimeoutSeconds` to take it in; returns what `found` finds, if anything.
    private func afterExit<T>(_ found: (inout State) -> T?) async throws -> T? {
        for _ in 0..<(Self.drainTimeoutSeconds * 1_000 / Self.pollMilliseconds) {
            if let value = state.withLock({ found(&$0) }) { return value }
            try await Task.sleep(for: .milliseconds(Self.pollMilliseconds))
        }
        return nil
    }

    func progress() async throws -> MemberProgress? { state.withLock { $0.progress } }

    /// Every final line so far, by member id (one per incarnation that ended).
    var finals: [UInt64: MemberFinal] { state.withLock { $0.finals } }

    /// The incarnations after the first (`rejoining` lines), in order.
    var rejoins: [RejoiningLine] { state.withLock { $0.rejoins } }

    func finish() async throws -> MemberFinal? {
        // A child that already exited has closed its end: the close fails, and that is fine.
        try? stdinPipe.fileHandleForWriting.close()
        for _ in 0..<(Self.finishTimeoutSeconds * 1_000 / Self.pollMilliseconds) {
            if let final = state.withLock({ $0.final }) {
                waitUntilExit()
                return final
            }
            if !process.isRunning {
                if let final = try await afterExit({ $0.final }) { return final }
                break
            }
            try await Task.sleep(for: .milliseconds(Self.pollMilliseconds))
        }
        if process.isRunning { process.terminate() }
        return state.withLock { $0.final }
    }

    /// Sends `signal` (SIGSTOP, SIGCONT...) to the child.
    func signal(_ signal: Int32) {
        Glibc.kill(process.processIdentifier, signal)
    }

    /// SIGKILL, as a crash.
    func kill() {
        Glibc.kill(process.processIdentifier, SIGKILL)
    }

    func waitUntilExit() {
        process.waitUntilExit()
        stdoutPipe.fileHandleForReading.readabilityHandler = nil
    }

    /// The last `count` lines the child wrote to its stderr file, for a report about it.
    static func stderrTail(_ path: String, count: Int) -> [Substring] {
        // A missing file means the child wrote nothing: no lines to show.
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return Array(text.split(separator: "\n").suffix(count))
    }
}
