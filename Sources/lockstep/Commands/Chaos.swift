// `lockstep chaos`: real member processes on loopback stream while, from one seed, members are
// killed (SIGKILL), paused (SIGSTOP/SIGCONT), killed members restarted (as new incarnations,
// joining through the members up, several contacts each) and new members added; a member
// removed after a long pause rejoins by itself as a new incarnation; then the delivery checker reads every
// process's log (no creation, no duplication, FIFO, one order per view, the same views
// everywhere, virtual synchrony by state digests, joiners from their snapshots) and progress
// is checked (the newest view's members deliver new messages after the faults). Ends with
// "N passed, F failed". The run itself is `ChaosRun` (Harness/ChaosRun.swift).

import ArgumentParser

struct Chaos: AsyncParsableCommand {
    /// The fault kinds --faults may name.
    static let faultKinds = ["kill", "pause", "restart", "join"]
    static let membersRange = 3...16
    /// The shortest run: faults from 2 s until 8 s before the end, and some time between.
    static let durationSecondsMin: Double = 12
    static let seedsDrawnFrom: ClosedRange<UInt64> = 1...999_999

    static let configuration = CommandConfiguration(
        abstract: "Kill and pause member processes at random while they stream, then check every delivery log.",
        discussion: """
            Faults: kill (SIGKILL a member; the others install a view without it), pause (SIGSTOP a
            member, then SIGCONT: short pauses, under 0.4 x the failure timeout, cost nothing; long
            ones, 1.5-3 x, get the member removed, and it rejoins as a new incarnation when it resumes),
            restart (a killed member comes back as a new incarnation that joins), join (a new member
            joins, through every member up). One removal at a time, and only while at least three
            other members are up: live, and in the newest view any member reports.
            """)

    @Option(help: "Member processes.")
    var members = 5

    @Option(help: "Seconds of streaming; faults happen from 2 s until 8 s before the end.")
    var duration: Double = 30

    @Option(help: "Seed of the fault schedule (default: random, printed).")
    var seed: UInt64?

    @Option(help: "Which faults, comma-separated: kill, pause, restart, join.")
    var faults = "kill,pause,restart,join"

    @Option(help: "Payload bytes per message.")
    var size = 256

    @Option(
        name: .customLong("failure-timeout-ms"),
        help: "Suspect a member not heard from for this many milliseconds.")
    var failureTimeoutMilliseconds = 500

    @Flag(
        help: """
            Durable mode: every incarnation logs on disk; checked after the run: every log, killed ones included, \
            recovers and agrees with its incarnation's delivery log. (Restarting from the logs is not built: a \
            restart is a new incarnation with a fresh log.)
            """)
    var durable = false

    func validate() throws {
        guard Self.membersRange.contains(members) else {
            throw ValidationError("--members must be in \(Self.membersRange), got \(members)")
        }
        guard duration >= Self.durationSecondsMin else {
            throw ValidationError("--duration must be at least \(Int(Self.durationSecondsMin)) s, got \(duration)")
        }
        guard size >= BenchPayload.headerBytes else {
            throw ValidationError("--size must be at least \(BenchPayload.headerBytes) bytes, got \(size)")
        }
        let kinds = faults.split(separator: ",").map(String.init)
        guard !kinds.isEmpty, kinds.allSatisfy({ Self.faultKinds.contains($0) }) else {
            throw ValidationError(
                "--faults takes a comma-separated list of kill, pause, restart, join; got '\(faults)'")
        }
    }

    func run() async throws {
        let seed = self.seed ?? UInt64.random(in: Self.seedsDrawnFrom)
        let kinds = Set(faults.split(separator: ",").map(String.init))
        Output.line(
            "lockstep chaos: \(members) members, \(format(duration, 0)) s, "
                + "faults \(kinds.sorted().joined(separator: ",")), seed \(seed)")
        Output.line(
            "replay: swift run -c release lockstep chaos --members \(members) --duration \(format(duration, 0)) "
                + "--seed \(seed) --faults \(faults)\(durable ? " --durable" : "")")
        var run = try ChaosRun(chaos: self, seed: seed, kinds: kinds)
        defer { run.removeDirectory() }
        try await run.startFirstMembers()
        try await run.injectFaults()
        let ended = try await run.stopEveryone()
        let failed = try run.check(ended)
        if failed > 0 { throw ExitCode(1) }
    }
}
