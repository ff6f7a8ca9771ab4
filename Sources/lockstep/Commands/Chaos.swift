// `lockstep chaos`: real member processes on loopback stream while, from one seed, members are
// killed (SIGKILL), paused (SIGSTOP/SIGCONT), killed members restarted (as new incarnations,
// joining through a live member) and new members added; then the delivery checker reads every
// process's log (no creation, no duplication, FIFO, one order per view, the same views
// everywhere, virtual synchrony by state digests, joiners from their snapshots) and progress
// is checked (the newest view's members deliver new messages after the faults). Ends with
// "N passed, F failed".

import ArgumentParser
import Foundation
import Glibc
import LockstepChecker
import LockstepCore
import LockstepSimulator

struct Chaos: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Kill and pause member processes at random while they stream, then check every delivery log.",
        discussion: """
            Faults: kill (SIGKILL a member; the others install a view without it), pause (SIGSTOP a
            member, then SIGCONT: short pauses, under 0.4 x the failure timeout, cost nothing; long
            ones, 1.5-3 x, get the member removed, and it says so when it resumes), restart (a killed
            member comes back as a new incarnation that joins), join (a new member joins). One
            removal at a time, and only while at least three other members are up.
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

    @Option(name: .customLong("failure-timeout-ms"), help: "Suspect a member not heard from for this many milliseconds.")
    var failureTimeoutMilliseconds = 500

    func validate() throws {
        guard (3...16).contains(members) else { throw ValidationError("--members must be in 3...16, got \(members)") }
        guard duration >= 12 else { throw ValidationError("--duration must be at least 12 s, got \(duration)") }
        guard size >= 16 else { throw ValidationError("--size must be at least 16 bytes, got \(size)") }
        let kinds = faults.split(separator: ",").map(String.init)
        guard !kinds.isEmpty, kinds.allSatisfy({ ["kill", "pause", "restart", "join"].contains($0) }) else {
            throw ValidationError("--faults takes a comma-separated list of kill, pause, restart, join; got '\(faults)'")
        }
    }

    func run() async throws {
        let seed = self.seed ?? UInt64.random(in: 1...999_999)
        var random = DeterministicRandom(seed: seed)
        let kinds = Set(faults.split(separator: ",").map(String.init))
        let ports = try (0..<members).map { _ in try RawTCP.freePort() }
        let peers = ports.map { "127.0.0.1:\($0)" }.joined(separator: ",")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-chaos-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        Output.line("lockstep chaos: \(members) members, \(format(duration, 0)) s, faults \(kinds.sorted().joined(separator: ",")), seed \(seed)")
        Output.line("replay: swift run -c release lockstep chaos --members \(members) --duration \(format(duration, 0)) --seed \(seed) --faults \(faults)")

        // Every process ever started: the first members, then joiners (restarts are joiners too:
        // a new incarnation with a new id).
        var procs: [Proc] = []
        func logPath(_ index: Int) -> String { directory.appendingPathComponent("member-\(index).log").path }
        for rank in 0..<members {
            let arguments = [
                "node", "--rank", "\(rank)", "--peers", peers, "--senders", "all", "--window", "256", "--size", "\(size)",
                "--duration", "\(duration)", "--log", logPath(rank), "--failure-timeout-ms", "\(failureTimeoutMilliseconds)", "--stop-on-eof",
            ]
            let child = try ChildProcess(arguments: arguments, stderrPath: directory.appendingPathComponent("member-\(rank).err").path)
            procs.append(Proc(id: UInt64(rank) + 1, port: ports[rank], child: child, logPath: logPath(rank), state: .live, startedAt: 0))
        }
        for proc in procs { try await proc.child.waitForLine { $0.contains("\"ready\"") } }
        var nextID = UInt64(members) + 1

        let timeout = Double(failureTimeoutMilliseconds) / 1000
        let start = ContinuousClock.now
        func elapsed() -> Double {
            let d = ContinuousClock.now - start
            return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
        }
        var nextFault = 2.0
        let faultsEnd = duration - 8
        var faultLog: [String] = []
        var lastReport = 0.0
        var deliveredAtSettle: [Int: UInt64] = [:]
        let settleAt = faultsEnd + 3 * timeout + 1.5
        // The premise of progress: every view change leaves a majority. At most one removal (a
        // kill, or a pause beyond the timeout) is under way at a time, and only while at least
        // three other members are up; a removal counts as under way for 3 x the timeout.
        var removalUnderWayUntil = 0.0
        var resumeAt: [Int: Double] = [:]
        while elapsed() < duration + 1 {
            try await Task.sleep(for: .milliseconds(50))
            let now = elapsed()
            for (index, at) in resumeAt where at <= now {
                procs[index].child.signal(SIGCONT)
                procs[index].state = .live
                resumeAt[index] = nil
            }
            if now >= nextFault && now < faultsEnd {
                nextFault = now + Double.random(in: 1.5...4, using: &random)
                // Up: live, or joined and reporting progress.
                var up: [Int] = []
                for index in procs.indices where procs[index].state == .live {
                    // Not a member removed from the group (after a long pause): it refuses joins.
                    if let progress = try await procs[index].child.progress(), progress.currentView >= 1, progress.removed != true {
                        up.append(index)
                    }
                }
                let canRemove = now >= removalUnderWayUntil && up.count >= 4
                var choices: [String] = []
                if kinds.contains("kill") && canRemove { choices.append("kill") }
                if kinds.contains("pause") && !up.isEmpty { choices.append("pause") }
                if kinds.contains("restart") && procs.contains(where: { $0.state == .killed && !$0.restarted }) && up.count >= 1 {
                    choices.append("restart")
                }
                if kinds.contains("join") && procs.count < 3 * members && !up.isEmpty { choices.append("join") }
                if let kind = choices.randomElement(using: &random), let victim = up.randomElement(using: &random) {
                    switch kind {
                    case "kill":
                        procs[victim].child.kill()
                        procs[victim].state = .killed
                        removalUnderWayUntil = now + 3 * timeout
                        faultLog.append("\(format(now, 1)) s: SIGKILL m\(procs[victim].id)")
                    case "pause":
                        let long = canRemove && random.chance(0.4)
                        let pause = long
                            ? Double.random(in: (timeout * 1.5)...(timeout * 3), using: &random)
                            : Double.random(in: 0.05...(timeout * 0.4), using: &random)
                        if long { removalUnderWayUntil = now + pause + 3 * timeout }
                        procs[victim].child.signal(SIGSTOP)
                        procs[victim].state = .paused
                        resumeAt[victim] = now + pause
                        faultLog.append("\(format(now, 1)) s: SIGSTOP m\(procs[victim].id) for \(format(pause * 1000, 0)) ms")
                    default:
                        // restart (a killed process comes back as a new incarnation) or join (a new process).
                        var what = "new process"
                        if kind == "restart", let dead = procs.indices.first(where: { procs[$0].state == .killed && !procs[$0].restarted }) {
                            procs[dead].restarted = true
                            what = "restart of m\(procs[dead].id)"
                        }
                        let index = procs.count
                        let port = try RawTCP.freePort()
                        let id = nextID
                        nextID += 1
                        let arguments = [
                            "node", "--join", "127.0.0.1:\(procs[victim].port)", "--id", "\(id)", "--listen", "127.0.0.1:\(port)",
                            "--window", "256", "--size", "\(size)", "--duration", "\(max(1, duration - now))", "--log", logPath(index),
                            "--failure-timeout-ms", "\(failureTimeoutMilliseconds)", "--stop-on-eof",
                        ]
                        let child = try ChildProcess(arguments: arguments, stderrPath: directory.appendingPathComponent("member-\(index).err").path)
                        procs.append(Proc(id: id, port: port, child: child, logPath: logPath(index), state: .live, startedAt: now))
                        faultLog.append("\(format(now, 1)) s: m\(id) joins through m\(procs[victim].id) (\(what))")
                    }
                    Output.line("  \(faultLog.last!)")
                }
            }
            if deliveredAtSettle.isEmpty && now >= settleAt {
                for index in procs.indices where procs[index].state != .killed {
                    if let progress = try await procs[index].child.progress() { deliveredAtSettle[index] = progress.delivered }
                }
            }
            if now - lastReport >= 1 {
                lastReport = now
                var parts: [String] = []
                for proc in procs {
                    if proc.state == .killed {
                        parts.append("m\(proc.id):killed")
                    } else if let progress = try await proc.child.progress() {
                        parts.append("m\(proc.id):v\(progress.currentView) \(progress.delivered)\(proc.state == .paused ? " paused" : "")")
                    } else {
                        parts.append("m\(proc.id):joining")
                    }
                }
                Output.line("  \(format(now, 0)) s: \(parts.joined(separator: ", "))")
            }
        }
        for (index, _) in resumeAt { procs[index].child.signal(SIGCONT) }
        try await Task.sleep(for: .seconds(2))
        var finals: [Int: MemberFinal] = [:]
        var lastProgress: [Int: MemberProgress] = [:]
        // Progress of everyone first: stopping members one by one makes the rest change views.
        for index in procs.indices where procs[index].state != .killed {
            lastProgress[index] = try await procs[index].child.progress()
        }
        for index in procs.indices where procs[index].state != .killed {
            if let final = try await procs[index].child.finish() { finals[index] = final }
        }
        for proc in procs where proc.state == .killed { proc.child.waitUntilExit() }
        for index in finals.keys.sorted() {
            let views = finals[index]!.views.map { "v\($0.id)[\($0.members.map { "m\($0)" }.joined(separator: ","))]" }
            Output.line("  m\(procs[index].id) installed \(views.joined(separator: " "))")
        }

        // The checks.
        var results: [(String, String?)] = []
        let missing = procs.indices.filter { procs[$0].state != .killed && finals[$0] == nil && procs[$0].startedAt < faultsEnd }
        results.append(("every process not killed stays up and reports", missing.isEmpty ? nil : "no report from \(missing.map { "m\(procs[$0].id)" })"))
        for index in missing {
            // Its own words: the tail of its stderr.
            let path = directory.appendingPathComponent("member-\(index).err").path
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            Output.line("  stderr of m\(procs[index].id), last lines:")
            for line in text.split(separator: "\n").suffix(8) { Output.line("    \(line)") }
        }
        let corrupt = finals.values.reduce(0) { $0 + $1.corrupt }
        results.append(("payloads arrive intact", corrupt == 0 ? nil : "\(corrupt) payloads with other content than was sent"))
        let fifo = finals.values.reduce(0) { $0 + $1.fifoViolations }
        results.append(("per-sender FIFO at delivery", fifo == 0 ? nil : "\(fifo) out-of-order deliveries"))
        let violations = checkLogs(procs, finals: finals)
        for property in ["no creation", "no duplication", "per-sender FIFO", "same total order", "same sequence of views", "virtual synchrony", "nothing delivered outside the member's views"] {
            let found = violations.filter { $0.property.rawValue == property }
            results.append(("checker: \(property)", found.isEmpty ? nil : "\(found.count) violations, first: \(found[0])"))
        }
        // Progress: the members of the newest view are all in it and delivered new messages after
        // the faults ended.
        let newest = lastProgress.values.map(\.currentView).max() ?? 1
        let inNewest = lastProgress.filter { $0.value.currentView == newest }.map(\.key).sorted()
        let stalled = inNewest.filter { index in (lastProgress[index]?.delivered ?? 0) <= (deliveredAtSettle[index] ?? 0) && deliveredAtSettle[index] != nil }
        results.append((
            "progress: the newest view (v\(newest), \(inNewest.count) members) delivered new messages after the faults",
            inNewest.count >= 3 ? (stalled.isEmpty ? nil : "\(stalled.map { "m\(procs[$0].id)" }) delivered nothing after \(format(settleAt, 1)) s") : "only \(inNewest.count) members in the newest view"))
        // A group that stopped making progress says what each member waits for.
        for index in stalled {
            if let progress = lastProgress[index] {
                Output.line("  m\(procs[index].id) stalled: \(progress.stallSentence(seconds: elapsed() - settleAt))")
            }
        }
        let outside = lastProgress.filter { $0.value.currentView != newest }.map { "m\(procs[$0.key].id)" }.sorted()
        if !outside.isEmpty {
            Output.line("  members outside the newest view (removed after a long pause, as designed): \(outside)")
        }
        var failed = 0
        for (name, problem) in results {
            if let problem {
                failed += 1
                Output.line("check \(name): FAILED: \(problem)")
            } else {
                Output.line("check \(name): passed")
            }
        }
        let joins = procs.count - members
        Output.line("faults: \(faultLog.count) (\(procs.filter { $0.state == .killed }.count) kills, \(joins) joins); newest view v\(newest); deliveries: \(finals.values.map(\.delivered).max() ?? 0) at the busiest member")
        Output.line("\(results.count - failed) passed, \(failed) failed")
        if failed > 0 { throw ExitCode(1) }
    }

    struct Proc {
        enum State { case live, killed, paused }
        var id: UInt64
        var port: Int
        var child: ChildProcess
        var logPath: String
        var state: State
        var startedAt: Double
        var restarted = false
    }

    /// Reads every log (origin = sender id - 1, sequence, view) and runs the checker with each
    /// member's views and, for joiners, the snapshot it started from.
    private func checkLogs(_ procs: [Proc], finals: [Int: MemberFinal]) -> [Violation] {
        var delivered: [MemberID: [DeliveredRecord]] = [:]
        var membership: [MemberID: MemberHistory] = [:]
        var highest: [MemberID: UInt64] = [:]
        for (index, proc) in procs.enumerated() {
            let member = MemberID(proc.id)
            // Senders are keyed by member id (origin + 1) here, like the views' members.
            let records = readDeliveryLog(proc.logPath, sender: { MemberID(UInt64($0) + 1) }) ?? []
            for record in records { highest[record.sender] = max(highest[record.sender] ?? 0, record.senderSequence + 1) }
            delivered[member] = records
            if let final = finals[index] {
                var counts: [MemberID: UInt64] = [:]
                for (origin, count) in final.initialCounts.enumerated() where count > 0 { counts[MemberID(UInt64(origin) + 1)] = count }
                membership[member] = MemberHistory(
                    installs: final.views.map { ViewRecord(viewID: $0.id, members: $0.members.map(MemberID.init), stateDigest: $0.stateDigest) },
                    initialCounts: counts)
            }
        }
        // A killed member reports nothing and lost the tail of its log (the unflushed buffer): it
        // installed the views its log covers, as the members that reported them saw them; a killed
        // joiner's snapshot is taken to end just before its first delivery of each sender.
        var known: [UInt64: ViewRecord] = [:]
        for history in membership.values { for record in history.installs { known[record.viewID] = record } }
        for (index, proc) in procs.enumerated() where finals[index] == nil {
            let member = MemberID(proc.id)
            let log = delivered[member] ?? []
            let first = log.first?.viewID ?? 1
            let reached = log.map(\.viewID).max() ?? first
            var counts: [MemberID: UInt64] = [:]
            for record in log where counts[record.sender] == nil { counts[record.sender] = record.senderSequence }
            let installs = (first...max(first, reached)).compactMap { known[$0] }.filter { $0.members.contains(member) }
            membership[member] = MemberHistory(installs: installs, initialCounts: first == 1 ? [:] : counts)
        }
        var sent: [MemberID: [SentRecord]] = [:]
        for (index, proc) in procs.enumerated() {
            let member = MemberID(proc.id)
            let count = max(finals[index]?.sent ?? 0, highest[member] ?? 0)
            sent[member] = (0..<count).map { SentRecord(senderSequence: $0, payloadDigest: 0) }
        }
        return DeliveryChecker(sent: sent, delivered: delivered, membership: membership)
            .check(totalOrder: true, quiesced: false, violationsMax: 100)
    }
}
