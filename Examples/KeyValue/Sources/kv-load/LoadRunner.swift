// The clients: each one a loop of one request at a time on a keep-alive connection, until the
// deadline. A client whose request failed or timed out leaves that operation pending in the
// history and goes on under a new client id (the checker may place a pending operation anywhere
// after its call, so the same id must not call again), at the next target.

import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

struct LoadPlan: Sendable {
    var clients: Int
    var duration: Duration
    var putFraction: Double
    var casFraction: Double
    var keys: Int
    var consistency: String
    var requestTimeout: Duration
    var seed: UInt64
}

/// One operation as the checker reads it (HistoryReader's schema in LockstepLinearizability).
struct HistoryEntry: Sendable {
    enum Operation: Sendable {
        case put(value: String)
        case get
        case cas(expected: String?, new: String)
    }
    enum Output: Sendable {
        case ok
        case value(String?)
        case swapped(Bool)
    }
    var client: Int
    var operation: Operation
    var key: String
    /// Nanoseconds since the run's origin, on one monotonic clock.
    var call: Int64
    /// nil: no answer (failed or timed out): pending.
    var returned: Int64?
    var output: Output?

    var jsonLine: String {
        var fields = ["\"client\":\(client)"]
        switch operation {
        case .put(let value): fields += ["\"op\":\"put\"", "\"key\":\(json(key))", "\"value\":\(json(value))"]
        case .get: fields += ["\"op\":\"get\"", "\"key\":\(json(key))"]
        case .cas(let expected, let new):
            fields += ["\"op\":\"cas\"", "\"key\":\(json(key))", "\"expected\":\(json(expected))", "\"new\":\(json(new))"]
        }
        fields.append("\"call\":\(call)")
        if let returned, let output {
            fields.append("\"return\":\(returned)")
            switch output {
            case .ok: fields.append("\"output\":\"ok\"")
            case .value(let value): fields.append("\"output\":{\"value\":\(json(value))}")
            case .swapped(let swapped): fields.append("\"output\":{\"swapped\":\(swapped)}")
            }
        }
        return "{" + fields.joined(separator: ",") + "}"
    }
}

/// A JSON string literal (or null).
func json(_ string: String?) -> String {
    guard let string else { return "null" }
    var out = "\""
    for scalar in string.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}

/// What the clients measured.
struct LoadResult: Sendable {
    var operations = 0
    var succeeded = 0
    /// Latencies of the operations that succeeded, in nanoseconds.
    var latencies: [Int64] = []
    /// By kind: "http 503", "http 429", "timeout", "connect"...
    var errors: [String: Int] = [:]
    var history: [HistoryEntry] = []
    var elapsed: Duration = .zero

    mutating func merge(_ other: LoadResult) {
        operations += other.operations
        succeeded += other.succeeded
        latencies += other.latencies
        errors.merge(other.errors, uniquingKeysWith: +)
        history += other.history
    }

    func writeHistory(to path: String) throws {
        let sorted = history.sorted { $0.call < $1.call }
        let text = sorted.map(\.jsonLine).joined(separator: "\n") + "\n"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    var opsPerSecond: Double {
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return seconds > 0 ? Double(succeeded) / seconds : 0
    }

    func percentile(_ p: Double, of sorted: [Int64]) -> String {
        guard !sorted.isEmpty else { return "-" }
        let index = min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)
        return String(format: "%.2f ms", Double(sorted[max(0, index)]) / 1e6)
    }

    static func table(_ rows: [(String, LoadResult)], plan: LoadPlan) -> String {
        let mix = String(
            format: "%d clients, %.0f%% put, %.0f%% cas, %.0f%% %@ get, %d keys",
            plan.clients, plan.putFraction * 100, plan.casFraction * 100,
            (1 - plan.putFraction - plan.casFraction) * 100, plan.consistency, plan.keys)
        let kinds = Set(rows.flatMap { $0.1.errors.keys }).sorted()
        let labelWidth = max(14, (kinds.map(\.count).max() ?? 0) + 4)
        var lines = [mix, pad("", labelWidth) + rows.map { pad($0.0, 18) }.joined()]
        let sorted = rows.map { $0.1.latencies.sorted() }
        func line(_ name: String, _ value: (Int, LoadResult) -> String) {
            lines.append(pad(name, labelWidth) + rows.enumerated().map { pad(value($0.offset, $0.element.1), 18) }.joined())
        }
        line("ops/s") { String(format: "%.0f", $1.opsPerSecond) }
        line("p50") { $1.percentile(0.50, of: sorted[$0]) }
        line("p99") { $1.percentile(0.99, of: sorted[$0]) }
        line("succeeded") { "\($1.succeeded)" }
        line("errors") { "\($1.operations - $1.succeeded)" }
        for kind in kinds { line("  " + kind) { "\($1.errors[kind] ?? 0)" } }
        return lines.joined(separator: "\n")
    }

    static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
    }
}

/// A small deterministic generator per client (SplitMix64), so a seed replays the same choices.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

struct LoadRunner: Sendable {
    let plan: LoadPlan
    let targets: [String]
    let recordHistory: Bool
    /// A GET answering 204 (the baseline endpoint) counts as a success.
    var acceptNoContentForGet = false

    /// Runs every client to the deadline on one HTTPClient (its pool holds one connection per
    /// client, kept alive), then merges what they measured.
    func run() async throws -> LoadResult {
        var configuration = HTTPClient.Configuration()
        configuration.httpVersion = .http1Only
        configuration.connectionPool = .init(
            idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: plan.clients)
        configuration.timeout = .init(connect: .seconds(2))
        let http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        let clock = ContinuousClock()
        let origin = clock.now
        let deadline = origin.advanced(by: plan.duration)
        var total = LoadResult()
        await withTaskGroup(of: LoadResult.self) { tasks in
            for slot in 0..<plan.clients {
                tasks.addTask {
                    var client = Client(runner: self, http: http, slot: slot, origin: origin)
                    return await client.run(until: deadline)
                }
            }
            for await result in tasks { total.merge(result) }
        }
        total.elapsed = origin.duration(to: clock.now)
        try await http.shutdown()
        return total
    }
}

/// One closed-loop client.
struct Client {
    let runner: LoadRunner
    let http: HTTPClient
    let slot: Int
    let origin: ContinuousClock.Instant
    var result = LoadResult()

    init(runner: LoadRunner, http: HTTPClient, slot: Int, origin: ContinuousClock.Instant) {
        self.runner = runner
        self.http = http
        self.slot = slot
        self.origin = origin
    }

    enum Failure: Error {
        case status(UInt)
        case badBody
    }

    mutating func run(until deadline: ContinuousClock.Instant) async -> LoadResult {
        let plan = runner.plan
        var random = SplitMix64(state: plan.seed &* 1_000_003 &+ UInt64(slot))
        var incarnation = 0
        var target = slot % runner.targets.count
        var sequence = 0
        let clock = ContinuousClock()
        while clock.now < deadline {
            let key = "k\(Int.random(in: 0..<plan.keys, using: &random))"
            let draw = Double.random(in: 0..<1, using: &random)
            let operation: HistoryEntry.Operation
            sequence += 1
            let value = "c\(slot)-\(sequence)"
            if draw < plan.putFraction {
                operation = .put(value: value)
            } else if draw < plan.putFraction + plan.casFraction {
                let expected = Bool.random(using: &random) ? nil : "c\(Int.random(in: 0..<plan.clients, using: &random))-\(max(1, sequence - 1))"
                operation = .cas(expected: expected, new: value)
            } else {
                operation = .get
            }
            let client = slot + plan.clients * incarnation
            let start = clock.now
            result.operations += 1
            do {
                let output = try await execute(operation, key: key, base: runner.targets[target])
                let end = clock.now
                result.succeeded += 1
                result.latencies.append(nanoseconds(start.duration(to: end)))
                if runner.recordHistory {
                    result.history.append(
                        HistoryEntry(
                            client: client, operation: operation, key: key, call: stamp(start), returned: stamp(end),
                            output: output))
                }
            } catch {
                result.errors[Self.kind(of: error), default: 0] += 1
                if runner.recordHistory {
                    result.history.append(
                        HistoryEntry(client: client, operation: operation, key: key, call: stamp(start)))
                }
                // The outcome is unknown: a new id from here on, and the next member.
                incarnation += 1
                target = (target + 1) % runner.targets.count
                if case Failure.status = error {} else { try? await Task.sleep(for: .milliseconds(20)) }
            }
        }
        return result
    }

    func execute(_ operation: HistoryEntry.Operation, key: String, base: String) async throws -> HistoryEntry.Output {
        var request: HTTPClientRequest
        switch operation {
        case .put(let value):
            request = HTTPClientRequest(url: "\(base)/kv/\(key)")
            request.method = .PUT
            request.body = .bytes(ByteBuffer(string: value))
        case .get:
            request = HTTPClientRequest(url: "\(base)/kv/\(key)?consistency=\(runner.plan.consistency)")
            request.method = .GET
        case .cas(let expected, let new):
            request = HTTPClientRequest(url: "\(base)/kv/\(key)/cas")
            request.method = .POST
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: "{\"expected\":\(json(expected)),\"new\":\(json(new))}"))
        }
        let timeout = TimeAmount.nanoseconds(nanoseconds(runner.plan.requestTimeout))
        let response = try await http.execute(request, timeout: timeout)
        var body = try await response.body.collect(upTo: 1 << 20)
        let text = body.readString(length: body.readableBytes) ?? ""
        let status = response.status.code
        switch operation {
        case .put:
            guard status == 204 else { throw Failure.status(status) }
            return .ok
        case .get:
            if status == 200 { return .value(text) }
            if status == 404 || (status == 204 && runner.acceptNoContentForGet) { return .value(nil) }
            throw Failure.status(status)
        case .cas:
            if status == 204 && runner.acceptNoContentForGet { return .swapped(true) }
            guard status == 200 else { throw Failure.status(status) }
            if text.contains("\"swapped\":true") { return .swapped(true) }
            if text.contains("\"swapped\":false") { return .swapped(false) }
            throw Failure.badBody
        }
    }

    static func kind(of error: any Error) -> String {
        switch error {
        case Failure.status(let code): return "http \(code)"
        case Failure.badBody: return "bad body"
        case let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout:
            return "timeout"
        case let error as HTTPClientError: return "\(error)".replacingOccurrences(of: "HTTPClientError.", with: "client ")
        default: return "io \(type(of: error))"
        }
    }

    func stamp(_ instant: ContinuousClock.Instant) -> Int64 { nanoseconds(origin.duration(to: instant)) }
}

func nanoseconds(_ duration: Duration) -> Int64 {
    duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
}
