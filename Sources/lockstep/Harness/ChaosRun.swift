// One run of `lockstep chaos`: member processes stream on loopback while faults drawn from the
// seed strike them (kill, pause, restart, join); then everyone is stopped, every delivery log
// checked and progress judged. Each step is a function; `Chaos.run` lists them.

import Foundation
import LockstepChecker
import LockstepCore
import LockstepSimulator

#if canImport(Glibc)
    import Glibc
#endif

struct ChaosRun {
    /// Faults start this long into the run, and end this long before its end.
    static let faultsStartSeconds = 2.0
    static let faultsEndBeforeEndSeconds = 8.0
    /// Seconds between two faults, drawn from this range.
    static let faultIntervalSeconds = 1.5...4.0
    /// The fault loop's step.
    static let tickMilliseconds = 50
    /// How often a status line is printed.
    static let statusIntervalSeconds = 1.0
    /// The run goes on this long past --duration (the members stop sending at --duration).
    static let drainSeconds = 1.0
    /// After the faults, time to settle before everyone is stopped.
    static let settleBeforeStopSeconds = 2
    /// A removal counts as under way for this many failure timeouts.
    static let removalTimeouts = 3.0
    /// Pauses: long ones (the member is removed) with this chance, lasting this many failure
    /// timeouts; short ones (nothing happens) up to this many.
    static let longPauseChance = 0.4
    static let longPauseTimeouts = 1.5...3.0
    static let shortPauseSecondsMin = 0.05
    static let shortPauseTimeoutsMax = 0.4
    /// A removal needs at least this many members up (so that three others remain).
    static let upForRemovalMin = 4
    /// Processes ever started, at most this many per first member.
    static let processesPerMemberMax = 3
    /// The progress baseline is sampled this long after the faults end (the removals they
    /// started have finished by then).
    static let settleTimeouts = 3.0
    static let settleExtraSeconds = 1.5
    /// The members' window, messages.
    static let windowMessages = 256
    /// Lines of a silent member's stderr shown.
    static let stderrTailLines = 8
    /// The newest view must keep at least this many members for progress to count.
    static let newestViewMembersMin = 3

    /// A process ever started: the first members, then joiners (restarts are joiners too: a new
    /// incarnation with a new id).
    struct Proc {
        enum State { case live, killed, paused }
        let id: UInt64
        let port: Int
        let child: ChildProcess
        /// Seconds into the run it started (0 for the first members).
        let startedAt: Double
        var state: State = .live
        var restarted = false
    }

    /// What the processes said when the run ended.
    struct Ended {
        var finals: [Int: MemberFinal] = [:]
        var lastProgress: [Int: MemberProgress] = [:]
    }

    let chaos: Chaos
    let kinds: Set<String>
    let directory: URL
    private var random: DeterministicRandom
    private var procs: [Proc] = []
    private var nextID: UInt64
    private let timeout: Double
    private let faultsEnd: Double
    private let settleAt: Double
    private var stopwatch = Stopwatch()
    private var nextFault = ChaosRun.faultsStartSeconds
    private var faultLog: [String] = []
    private var lastStatus = 0.0
    private var deliveredAtSettle: [Int: UInt64] = [:]
    // The premise of progress: every view change leaves a majority. At most one removal (a
    // kill, or a pause beyond the timeout) is under way at a time, and only while at least
    // three other members are up; a removal counts as under way for 3 x the timeout.
    private var removalUnderWayUntil = 0.0
    private var resumeAt: [Int: Double] = [:]

    init(chaos: Chaos, seed: UInt64, kinds: Set<String>) throws {
        self.chaos = chaos
        self.kinds = kinds
        random = DeterministicRandom(seed: seed)
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-chaos-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        nextID = UInt64(chaos.members) + 1
        timeout = Double(chaos.failureTimeoutMilliseconds) / 1_000
        faultsEnd = chaos.duration - Self.faultsEndBeforeEndSeconds
        settleAt = faultsEnd + Self.settleTimeouts * timeout + Self.settleExtraSeconds
    }

    func removeDirectory() {
        // A temporary folder left behind is harmless; the run's verdict stands either way.
        try? FileManager.default.removeItem(at: directory)
    }

    private func path(_ index: Int, _ suffix: String) -> String {
        directory.appendingPathComponent("member-\(index).\(suffix)").path
    }

    /// The options every chaos member shares.
    private func configured(_ arguments: NodeArguments) -> [String] {
        var arguments = arguments
        arguments.member.window = Self.windowMessages
        arguments.member.failureTimeoutMilliseconds = chaos.failureTimeoutMilliseconds
        return arguments.command
    }

    // MARK: - Start

    mutating func startFirstMembers() async throws {
        let ports = try (0..<chaos.members).map { _ in try RawTCP.freePort() }
        let peers = ports.map { "127.0.0.1:\($0)" }.joined(separator: ",")
        for rank in 0..<chaos.members {
            var arguments = try NodeArguments(
                rank: rank, peers: peers, sizes: [chaos.size], duration: chaos.duration, logPath: path(rank, "log"))
            arguments.member.senders = .all
            let child = try ChildProcess(arguments: configured(arguments), stderrPath: path(rank, "err"))
            procs.append(Proc(id: UInt64(rank) + 1, port: ports[rank], child: child, startedAt: 0))
        }
        for proc in procs { try await proc.child.waitForLine { $0.contains("\"ready\"") } }
        stopwatch = Stopwatch()
    }

    // MARK: - Faults

    /// Streams until the end of --duration (and a little more), with faults from the seed.
    mutating func injectFaults() async throws {
        while stopwatch.elapsedSeconds < chaos.duration + Self.drainSeconds {
            try await Task.sleep(for: .milliseconds(Self.tickMilliseconds))
            let now = stopwatch.elapsedSeconds
            for (index, at) in resumeAt where at <= now {
                procs[index].child.signal(SIGCONT)
                procs[index].state = .live
                resumeAt[index] = nil
            }
            if now >= nextFault && now < faultsEnd { try await strike(now: now) }
            if deliveredAtSettle.isEmpty && now >= settleAt {
                for index in procs.indices where procs[index].state != .killed {
                    if let progress = try await procs[index].child.progress() {
                        deliveredAtSettle[index] = progress.delivered
                    }
                }
            }
            if now - lastStatus >= Self.statusIntervalSeconds {
                lastStatus = now
                try await printStatus(now: now)
            }
        }
    }

    /// Draws the next fault and its victim among the members up, and applies it.
    private mutating func strike(now: Double) async throws {
        nextFault = now + Double.random(in: Self.faultIntervalSeconds, using: &random)
        // Up: live, or joined and reporting progress.
        var up: [Int] = []
        for index in procs.indices where procs[index].state == .live {
            // Not a member removed from the group (after a long pause): it refuses joins.
            if let progress = try await procs[index].child.progress(), progress.currentView >= 1,
                progress.removed != true
            {
                up.append(index)
            }
        }
        let canRemove = now >= removalUnderWayUntil && up.count >= Self.upForRemovalMin
        var choices: [String] = []
        if kinds.contains("kill") && canRemove { choices.append("kill") }
        if kinds.contains("pause") && !up.isEmpty { choices.append("pause") }
        if kinds.contains("restart") && procs.contains(where: { $0.state == .killed && !$0.restarted })
            && up.count >= 1
        {
            choices.append("restart")
        }
        if kinds.contains("join") && procs.count < Self.processesPerMemberMax * chaos.members && !up.isEmpty {
            choices.append("join")
        }
        guard let kind = choices.randomElement(using: &random), let victim = up.randomElement(using: &random)
        else { return }
        let line: String
        switch kind {
        case "kill": line = kill(victim, now: now)
        case "pause": line = pause(victim, now: now, canRemove: canRemove)
        default: line = try startJoiner(through: victim, now: now, restart: kind == "restart")
        }
        faultLog.append(line)
        Output.line("  \(line)")
    }

    private mutating func kill(_ victim: Int, now: Double) -> String {
        procs[victim].child.kill()
        procs[victim].state = .killed
        removalUnderWayUntil = now + Self.removalTimeouts * timeout
        return "\(format(now, 1)) s: SIGKILL m\(procs[victim].id)"
    }

    private mutating func pause(_ victim: Int, now: Double, canRemove: Bool) -> String {
        let long = canRemove && random.chance(Self.longPauseChance)
        let pause =
            long
            ? Double.random(
                in: (timeout * Self.longPauseTimeouts.lowerBound)...(timeout * Self.longPauseTimeouts.upperBound),
                using: &random)
            : Double.random(in: Self.shortPauseSecondsMin...(timeout * Self.shortPauseTimeoutsMax), using: &random)
        if long { removalUnderWayUntil = now + pause + Self.removalTimeouts * timeout }
        procs[victim].child.signal(SIGSTOP)
        procs[victim].state = .paused
        resumeAt[victim] = now + pause
        return "\(format(now, 1)) s: SIGSTOP m\(procs[victim].id) for \(format(pause * 1_000, 0)) ms"
    }

    /// A restart (a killed process comes back as a new incarnation) or a join (a new process),
    /// through the member `contact`.
    private mutating func startJoiner(through contact: Int, now: Double, restart: Bool) throws -> String {
        var what = "new process"
        if restart, let dead = procs.indices.first(where: { procs[$0].state == .killed && !procs[$0].restarted }) {
            procs[dead].restarted = true
            what = "restart of m\(procs[dead].id)"
        }
        let index = procs.count
        let port = try RawTCP.freePort()
        let id = nextID
        nextID += 1
        let join = NodeArguments.Join(contact: "127.0.0.1:\(procs[contact].port)", id: id, listen: "127.0.0.1:\(port)")
        let arguments = try NodeArguments(
            join: join, sizes: [chaos.size], duration: max(1, chaos.duration - now), logPath: path(index, "log"))
        let child = try ChildProcess(arguments: configured(arguments), stderrPath: path(index, "err"))
        procs.append(Proc(id: id, port: port, child: child, startedAt: now))
        return "\(format(now, 1)) s: m\(id) joins through m\(procs[contact].id) (\(what))"
    }

    private func printStatus(now: Double) async throws {
        var parts: [String] = []
        for proc in procs {
            if proc.state == .killed {
                parts.append("m\(proc.id):killed")
            } else if let progress = try await proc.child.progress() {
                let paused = proc.state == .paused ? " paused" : ""
                parts.append("m\(proc.id):v\(progress.currentView) \(progress.delivered)\(paused)")
            } else {
                parts.append("m\(proc.id):joining")
            }
        }
        Output.line("  \(format(now, 0)) s: \(parts.joined(separator: ", "))")
    }

    // MARK: - Stop

    /// Resumes the paused, lets the group settle, reads everyone's progress, then stops them.
    mutating func stopEveryone() async throws -> Ended {
        for (index, _) in resumeAt { procs[index].child.signal(SIGCONT) }
        try await Task.sleep(for: .seconds(Self.settleBeforeStopSeconds))
        var ended = Ended()
        // Progress of everyone first: stopping members one by one makes the rest change views.
        for index in procs.indices where procs[index].state != .killed {
            ended.lastProgress[index] = try await procs[index].child.progress()
        }
        for index in procs.indices where procs[index].state != .killed {
            if let final = try await procs[index].child.finish() { ended.finals[index] = final }
        }
        for proc in procs where proc.state == .killed { proc.child.waitUntilExit() }
        for (index, final) in ended.finals.sorted(by: { $0.key < $1.key }) {
            let views = final.views.map { "v\($0.id)[\($0.members.map { "m\($0)" }.joined(separator: ","))]" }
            Output.line("  m\(procs[index].id) installed \(views.joined(separator: " "))")
        }
        return ended
    }

    // MARK: - Checks

    /// Runs and prints every check; returns how many failed.
    func check(_ ended: Ended) throws -> Int {
        var results: [(String, String?)] = [reportingCheck(ended)]
        let corrupt = ended.finals.values.reduce(0) { $0 + $1.corrupt }
        results.append(
            ("payloads arrive intact", corrupt == 0 ? nil : "\(corrupt) payloads with other content than was sent"))
        let fifo = ended.finals.values.reduce(0) { $0 + $1.fifoViolations }
        results.append(("per-sender FIFO at delivery", fifo == 0 ? nil : "\(fifo) out-of-order deliveries"))
        let members = procs.indices.map {
            LogChecks.ChaosMember(id: MemberID(procs[$0].id), logPath: path($0, "log"), final: ended.finals[$0])
        }
        let violations = try LogChecks.chaosViolations(members)
        // Every property the checker knows (a new one is never left out), but those chaos cannot
        // check: completeness and no loss need a quiesced run, the wedge watch the simulator.
        let unchecked: [Violation.Property] = [.completeness, .noLoss, .wedgedMajority]
        for property in Violation.Property.allCases where !unchecked.contains(property) {
            let found = violations.filter { $0.property == property }
            results.append(
                ("checker: \(property.rawValue)", found.first.map { "\(found.count) violations, first: \($0)" }))
        }
        let (progress, newest) = progressCheck(ended)
        results.append(progress)
        var failed = 0
        for (name, problem) in results {
            if let problem {
                failed += 1
                Output.line("check \(name): FAILED: \(problem)")
            } else {
                Output.line("check \(name): passed")
            }
        }
        let joins = procs.count - chaos.members
        let kills = procs.filter { $0.state == .killed }.count
        let busiest = ended.finals.values.map(\.delivered).max() ?? 0
        Output.line(
            "faults: \(faultLog.count) (\(kills) kills, \(joins) joins); newest view v\(newest); "
                + "deliveries: \(busiest) at the busiest member")
        Output.line("\(results.count - failed) passed, \(failed) failed")
        return failed
    }

    /// Every process not killed (and started before the faults ended) reported; the silent ones'
    /// stderr is shown.
    private func reportingCheck(_ ended: Ended) -> (String, String?) {
        let missing = procs.indices.filter {
            procs[$0].state != .killed && ended.finals[$0] == nil && procs[$0].startedAt < faultsEnd
        }
        for index in missing {
            // Its own words: the tail of its stderr.
            Output.line("  stderr of m\(procs[index].id), last lines:")
            for line in ChildProcess.stderrTail(path(index, "err"), count: Self.stderrTailLines) {
                Output.line("    \(line)")
            }
        }
        return (
            "every process not killed stays up and reports",
            missing.isEmpty ? nil : "no report from \(missing.map { "m\(procs[$0].id)" })"
        )
    }

    /// Progress: the members of the newest view are all in it and delivered new messages after
    /// the faults ended. Returns the check and the newest view.
    private func progressCheck(_ ended: Ended) -> ((String, String?), UInt64) {
        let lastProgress = ended.lastProgress
        let newest = lastProgress.values.map(\.currentView).max() ?? 1
        let inNewest = lastProgress.filter { $0.value.currentView == newest }.map(\.key).sorted()
        let stalled = inNewest.filter { index in
            (lastProgress[index]?.delivered ?? 0) <= (deliveredAtSettle[index] ?? 0) && deliveredAtSettle[index] != nil
        }
        let problem: String?
        if inNewest.count < Self.newestViewMembersMin {
            problem = "only \(inNewest.count) members in the newest view"
        } else if !stalled.isEmpty {
            problem = "\(stalled.map { "m\(procs[$0].id)" }) delivered nothing after \(format(settleAt, 1)) s"
        } else {
            problem = nil
        }
        // A group that stopped making progress says what each member waits for.
        for index in stalled {
            if let progress = lastProgress[index] {
                let seconds = stopwatch.elapsedSeconds - settleAt
                Output.line("  m\(procs[index].id) stalled: \(progress.stallSentence(seconds: seconds))")
            }
        }
        let outside = lastProgress.filter { $0.value.currentView != newest }.map { "m\(procs[$0.key].id)" }.sorted()
        if !outside.isEmpty {
            Output.line("  members outside the newest view (removed after a long pause, as designed): \(outside)")
        }
        let name =
            "progress: the newest view (v\(newest), \(inNewest.count) members) delivered new messages "
            + "after the faults"
        return ((name, problem), newest)
    }
}
