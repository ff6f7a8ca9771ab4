// The `lockstep` command line: one binary for everything a user runs.

import ArgumentParser

@main
struct Lockstep: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lockstep",
        abstract: "Lockstep: pipelined atomic multicast with virtually synchronous membership.",
        discussion: """
            Implemented so far: the ordering core and its deterministic simulator ('simulate').
            Transports, 'bench', 'node', membership changes and durability are not built yet;
            see README.md.
            """,
        subcommands: [Bench.self, Node.self, Report.self, Simulate.self, RawTCPSink.self]
    )
}
