// The `lockstep` command line: one binary for everything a user runs.

import ArgumentParser

@main
struct Lockstep: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lockstep",
        abstract: "Lockstep: pipelined atomic multicast with virtually synchronous membership.",
        discussion: """
            Built: the ordering core with view changes and its deterministic simulator ('simulate'),
            TCP members ('node'), benchmarks ('bench', 'report') and fault injection on real
            processes ('chaos'). Not built: joins over TCP, durability, RDMA; see README.md.
            """,
        subcommands: [Bench.self, Chaos.self, Node.self, Report.self, Simulate.self, RawTCPSink.self]
    )
}
