// `lockstep storage-faults`: seeded storage-fault schedules against the log's own code on the
// simulated disk (crashes inside commits, torn writes, bit flips, full disks), each checked;
// progress every second, "N passed, F failed" at the end, exit 1 on any failure.

import ArgumentParser
import LockstepStorage

struct StorageFaults: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage-faults",
        abstract: "Run seeded storage-fault schedules against the durable log and check each recovery.")

    @Option(help: "How many seeds to run.")
    var seeds: Int = 10_000

    @Option(help: "The first seed; seeds run from here upwards.")
    var firstSeed: UInt64 = 1

    @Option(help: "Steps (commits, crashes, flips) per schedule.")
    var steps: Int = 40

    func validate() throws {
        guard seeds >= 1 else { throw ValidationError("--seeds must be at least 1, got \(seeds)") }
        guard (1...10_000).contains(steps) else { throw ValidationError("--steps must be in 1...10000, got \(steps)") }
        guard firstSeed <= UInt64.max - UInt64(seeds) else { throw ValidationError("--first-seed is too large") }
    }

    func run() throws {
        let stopwatch = Stopwatch()
        var nextProgress = 1.0
        var totals = StorageScheduleReport(seed: 0)
        var failures: [String] = []
        for seed in firstSeed..<(firstSeed + UInt64(seeds)) {
            let report = StorageFaultSchedule.run(seed: seed, steps: steps)
            totals.commits += report.commits
            totals.crashes += report.crashes
            totals.bitFlips += report.bitFlips
            totals.refusedCorruptions += report.refusedCorruptions
            totals.diskFullStops += report.diskFullStops
            totals.recoveries += report.recoveries
            if let violation = report.violation { failures.append(violation) }
            if stopwatch.elapsedSeconds >= nextProgress {
                Output.line("  \(seed - firstSeed + 1) of \(seeds) schedules, \(failures.count) failed")
                nextProgress += 1
            }
        }
        Output.line(
            "\(totals.commits) commits, \(totals.crashes) crashes, \(totals.recoveries) recoveries, "
                + "\(totals.bitFlips) bit flips (\(totals.refusedCorruptions) refused), "
                + "\(totals.diskFullStops) full-disk stops")
        for failure in failures.prefix(20) { Output.line("FAILED \(failure)") }
        Output.line("\(seeds - failures.count) passed, \(failures.count) failed")
        if !failures.isEmpty { throw ExitCode.failure }
    }
}
