// The `lockstep` command line: one binary for everything a user runs. Each subcommand is a file
// of Commands/; what they share (member processes, node arguments, the benchmark workload, the
// delivery-log checks, reports) is in Harness/.

import ArgumentParser

@main
struct Lockstep: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lockstep",
        abstract: "Lockstep: pipelined atomic multicast with virtually synchronous membership.",
        discussion: """
            Built: the ordering core with view changes and its deterministic
            simulator ('simulate'), members over TCP or RDMA that joins add to a
            running group ('node'), benchmarks ('bench', 'report') and fault
            injection on real processes ('chaos'). Not built: durability; see
            README.md.
            """,
        subcommands: [
            Bench.self, BenchAPI.self, BenchLog.self, StorageFaults.self, Chaos.self, Node.self, Report.self,
            Simulate.self, RawTCPSink.self,
        ]
    )
}
