// A load generator for kv-server: closed-loop HTTP/1.1 keep-alive clients, a mix of PUTs and
// linearizable GETs (and CAS) over a key space, for a fixed time. Prints ops/s, p50/p99 latency and
// error counts, next to a raw baseline measured in the same run (--baseline: the same load against
// an in-process Hummingbird endpoint that answers 204 without replication), and with --history
// writes every operation as a JSON line for the linearizability checker.

import ArgumentParser
import Foundation

@main
struct LoadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kv-load",
        abstract: "Load for kv-server, with a raw baseline and a history for the linearizability checker."
    )

    @Option(help: "kv-server HTTP addresses, http://host:port,... (client i starts at target i mod n).")
    var targets: String = ""

    @Option(help: "Concurrent clients, each one keep-alive connection with one request in flight.")
    var clients = 100

    @Option(help: "How long to run, in seconds.")
    var seconds = 10.0

    @Option(help: "Fraction of operations that are PUTs.")
    var puts = 0.5

    @Option(help: "Fraction of operations that are compare-and-sets (the rest are GETs).")
    var cas = 0.0

    @Option(help: "Size of the key space (keys k0...k(N-1)).")
    var keys = 1_000

    @Option(help: "Consistency of the GETs: linearizable or local (a history is only linearizable with the first).")
    var consistency = "linearizable"

    @Option(help: "How long one request may take before it counts as failed (pending), in seconds.")
    var timeoutSeconds = 5.0

    @Option(help: "Write every operation as a JSON line to this file.")
    var history: String?

    @Flag(help: "Also run the same load against an in-process endpoint that answers 204, without replication.")
    var baseline = false

    @Option(help: "The baseline endpoint's port (on 127.0.0.1).")
    var baselinePort = 8199

    @Option(help: "Seed of the clients' choices (keys, operations).")
    var seed: UInt64 = 1

    mutating func validate() throws {
        guard !targetList.isEmpty || baseline else { throw ValidationError("give --targets, or --baseline") }
        for target in targetList where URL(string: target)?.host == nil {
            throw ValidationError("--targets: not an http://host:port address: \(target)")
        }
        guard (1...10_000).contains(clients) else { throw ValidationError("--clients must be 1...10000") }
        guard seconds > 0, seconds <= 3_600 else { throw ValidationError("--seconds must be in (0, 3600]") }
        guard puts >= 0, cas >= 0, puts + cas <= 1 else { throw ValidationError("--puts + --cas must be in [0, 1]") }
        guard keys >= 1 else { throw ValidationError("--keys must be at least 1") }
        guard ["linearizable", "local"].contains(consistency) else {
            throw ValidationError("--consistency must be linearizable or local")
        }
        guard timeoutSeconds > 0 else { throw ValidationError("--timeout-seconds must be above zero") }
    }

    var targetList: [String] {
        targets.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    func run() async throws {
        let plan = LoadPlan(
            clients: clients, duration: .milliseconds(Int64(seconds * 1_000)), putFraction: puts,
            casFraction: cas, keys: keys, consistency: consistency,
            requestTimeout: .milliseconds(Int64(timeoutSeconds * 1_000)), seed: seed)
        var rows: [(String, LoadResult)] = []
        if !targetList.isEmpty {
            let result = try await LoadRunner(plan: plan, targets: targetList, recordHistory: history != nil).run()
            if let history {
                try result.writeHistory(to: history)
                print("history: \(result.history.count) operations in \(history)")
            }
            rows.append(("replicated", result))
        }
        if baseline {
            let result = try await BaselineServer.measure(plan: plan, port: baselinePort)
            rows.append(("baseline", result))
        }
        print(LoadResult.table(rows, plan: plan))
    }
}
