// Helpers for the embedding API's tests: free loopback ports, a group of in-process members of
// one machine, and waits with bounds.

import Foundation
import LockstepCore
import LockstepRuntime
import Logging

@testable import Lockstep

#if canImport(Glibc)
    import Glibc
#endif

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

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

func loopback() throws -> PeerAddress { PeerAddress(host: "127.0.0.1", port: try freePort()) }

/// Quiet unless `LOCKSTEP_TEST_LOG_LEVEL` asks for more.
func testLogger() -> Logger {
    var logger = Logger(label: "test")
    let level = ProcessInfo.processInfo.environment["LOCKSTEP_TEST_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:))
    logger.logLevel = level ?? .critical
    return logger
}

/// A protocol configuration for tests on a busy machine: a failure timeout that a loaded CI
/// machine does not trip by accident.
func testProtocol() -> Configuration {
    var configuration = Configuration()
    configuration.failureTimeout = .seconds(2)
    configuration.heartbeatInterval = .milliseconds(100)
    return configuration
}

/// `count` members of a first view on loopback, each running in a task; `stop` leaves them all.
final class TestGroup<Machine: ReplicatedStateMachine>: @unchecked Sendable {
    let members: [ReplicatedGroup<Machine>]
    let addresses: [PeerAddress]
    var runs: [Task<Void, Error>] = []

    init(count: Int, initialState: Machine, adjust: (inout GroupConfiguration) -> Void = { _ in }) throws {
        let addresses = try (0..<count).map { _ in try loopback() }
        let list = addresses.enumerated().map {
            GroupConfiguration.Member(id: MemberID(UInt64($0.offset + 1)), address: $0.element)
        }
        self.addresses = addresses
        members = try list.map { member in
            var configuration = GroupConfiguration.bootstrap(members: list, me: member.id)
            configuration.protocolConfiguration = testProtocol()
            adjust(&configuration)
            return try ReplicatedGroup(configuration: configuration, initialState: initialState, logger: testLogger())
        }
        runs = members.map { member in Task { try await member.run() } }
    }

    /// A joiner through the first members' addresses, not started.
    func joiner(
        initialState: Machine, adjust: (inout GroupConfiguration) -> Void = { _ in }
    ) throws -> ReplicatedGroup<Machine> {
        var configuration = GroupConfiguration.join(contacts: addresses, listen: try loopback())
        configuration.protocolConfiguration = testProtocol()
        adjust(&configuration)
        return try ReplicatedGroup(configuration: configuration, initialState: initialState, logger: testLogger())
    }

    /// Starts a joiner through the first members' addresses.
    func join(
        initialState: Machine, adjust: (inout GroupConfiguration) -> Void = { _ in }
    ) throws -> (ReplicatedGroup<Machine>, Task<Void, Error>) {
        let joiner = try joiner(initialState: initialState, adjust: adjust)
        return (joiner, Task { try await joiner.run() })
    }

    /// Closes every member at once (leaving one by one would leave the last ones without a
    /// majority to remove them).
    func stop() async {
        await withTaskGroup(of: Void.self) { tasks in
            for member in members { tasks.addTask { await member.close() } }
        }
        for run in runs { _ = try? await run.value }
    }
}

/// Waits for `condition`, at most `seconds`.
func waitUntil(seconds: Double = 30, _ what: String, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1_000))
    while try await !condition() {
        if ContinuousClock.now > deadline { throw TestFailure("\(what): not within \(seconds) s") }
        try await Task.sleep(for: .milliseconds(20))
    }
}

/// The process's peak resident set (VmHWM), in bytes.
func peakResidentBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kilobytes = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
        return kilobytes * 1_024
    }
    return 0
}

/// The counter of the getting-started guide.
struct Counter: ReplicatedStateMachine, Codable, Equatable {
    var total = 0
    mutating func apply(_ amount: Int, entry: EntryInfo) -> Int {
        total += amount
        return total
    }
}
