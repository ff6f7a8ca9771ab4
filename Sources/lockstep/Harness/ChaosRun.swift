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
    /// Member ids of the whole run are at most this (the workload tracks origins, id - 1, below
    /// `BenchMember.originsMax`): first members, joiners, and the ids of rejoins.
    static let memberIDMax = UInt64(BenchMember.originsMax)
    /// A process the group removes while it runs (a long pause) rejoins as a new incarnation at
    /// most this many times (`lockstep node --rejoin-ids`), ids permitting; beyond, it exits.
    static let rejoinsPerProcessMax = 2

    /// A process ever started: the first members, then joiners (restarts are joiners too: a new
    /// incarnation with a new id).
    struct Proc {
        enum State { case live, killed, paused }
        let id: UInt64
        let port: Int
        let child: ChildProcess
        /// Seconds into the run it started (0 for the first members).
        let startedAt: Double
        /// The ids of its later incarnations (the group removed it and it rejoined).
        let rejoinIDs: [UInt64]
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
    /// Per process, the member (incarnation) it was at the settle time and what it had delivered.
    private var deliveredAtSettle: [Int: (member: UInt64?, delivered: UInt64)] = [:]
    /// Rejoin ids each process is given (ids of the run stay at most `memberIDMax`).
    private let rejoinsPerProcess: Int
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
        let processesMax = Self.processesPerMemberMax * chaos.members
        rejoinsPerProcess = min(Self.rejoinsPerProcessMax, max(0, Int(Self.memberIDMax) - processesMax) / processesMax)
        timeout = Double(chaos.failureTimeoutMilliseconds) / 1_000
        faultsEnd = chaos.duration - Self.faultsEndBeforeEndSeconds
        settleAt = faultsEnd + Self.settleTimeouts * timeout + Self.settleExtraSeconds
    }

    func removeDirectory() {
        // A temporary folder left behind is harmless; the run's verdict stands either way.
        try? FileManager.default.removeItem(at: directory)
    }

    /// Ids for the next process's later incarnations (none when ids run short: it exits if
    /// removed). They come after every id a process can start with (first members and joiners
    /// keep the ids they always had), `rejoinsPerProcess` for each process in start order.
    private func rejoinIDs(ofProcess index: Int) -> [UInt64] {
        let first = UInt64(Self.processesPerMemberMax * chaos.members + 1 + index * rejoinsPerProcess)
        let ids = (0..<UInt64(rejoinsPerProcess)).map { first + $0 }
        precondition(ids.allSatisfy { $0 <= Self.memberIDMax }, "rejoin ids \(ids) beyond \(Self.memberIDMax)")
        return ids
    }

    /// The arguments' rejoin part: the ids, or exit when removed.
    private func withRejoins(_ arguments: NodeArguments, _ ids: [UInt64]) -> NodeArguments {
        var arguments = arguments
        arguments.rejoinIDs = ids
        arguments.exitWhenRemoved = ids.isEmpty
        return arguments
    }

    private func path(_ index: Int, _ suffix: String) -> String {
        directory.appendingPathComponent("member-\(index).\(suffix)").path
    }

    /// The options every chaos member shares.
    private func configured(_ arguments: NodeArguments, index: Int) -> [String] {
        var arguments = arguments
        arguments.member.window = Self.windowMessages
        arguments.member.failureTimeoutMilliseconds = chaos.failureTimeoutMilliseconds
        if chaos.durable {
            arguments.member.durable = true
            arguments.member.dataDir = dataPath(index)
        }
        return arguments.command
    }

    /// Durable mode: where process `index` keeps its incarnations' logs (m<id> under it).
    func dataPath(_ index: Int) -> String { path(index, "data") }

    // MARK: - Start

    mutating func startFirstMembers() async throws {
        let ports = try (0..<chaos.members).map { _ in try RawTCP.freePort() }
        let peers = ports.map { "127.0.0.1:\($0)" }.joined(separator: ",")
        for rank in 0..<chaos.members {
            var arguments = try NodeArguments(
                rank: rank, peers: peers, sizes: [chaos.size], duration: chaos.duration, logPath: path(rank, "log"))
            arguments.member.senders = .all
            let rejoinIDs = rejoinIDs(ofProcess: rank)
            let child = try ChildProcess(
                arguments: configured(withRejoins(arguments, rejoinIDs), index: rank), stderrPath: path(rank, "err"))
            procs.append(
                Proc(id: UInt64(rank) + 1, port: ports[rank], child: child, startedAt: 0, rejoinIDs: rejoinIDs))
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
                        deliveredAtSettle[index] = (progress.member, progress.delivered)
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
        let up = try await membersUp()
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
        default:
            // The others in order: no draw from the seed, so schedules stay what they were.
            let others = up.filter { $0 != victim }
            line = try startJoiner(through: [victim] + others, now: now, restart: kind == "restart")
        }
        faultLog.append(line)
        Output.line("  \(line)")
    }

    /// The processes up: live (not killed, not paused) and in the newest view any of them
    /// reports. A member the group removed (after a long pause) keeps running outside it until
    /// it rejoins, and is not up: it can neither keep a majority nor let a joiner in; nor is a
    /// member still joining, or one a view behind.
    private func membersUp() async throws -> [Int] {
        var reports: [(index: Int, progress: MemberProgress)] = []
        for index in procs.indices where procs[index].state == .live {
            if let progress = try await procs[index].child.progress(), progress.currentView >= 1,
                progress.removed != true
            {
                reports.append((index, progress))
            }
        }
        let newest = reports.map(\.progress.currentView).max() ?? 0
        return reports.filter { $0.progress.currentView == newest }.map(\.index)
    }

    private mutating func kill(_ victim: Int, now: Double) -> String {
        procs[victim].child.kill()
        procs[victim].state = .killed
        removalUnderWayUntil = now + Self.removalTimeouts * timeout
        return "\(format(now, 1)) s: SIGKILL \(memberName(victim))"
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
        return "\(format(now, 1)) s: SIGSTOP \(memberName(victim)) for \(format(pause * 1_000, 0)) ms"
    }

    /// A process's member now: its latest incarnation's id.
    private func currentID(_ index: Int) -> UInt64 {
        procs[index].child.rejoins.last?.newMember ?? procs[index].id
    }

    private func memberName(_ index: Int) -> String { "m\(currentID(index))" }

    /// A restart (a killed process comes back as a new incarnation) or a join (a new process),
    /// through the first of the members `contacts` (members up, in order) that lets it in.
    private mutating func startJoiner(through contacts: [Int], now: Double, restart: Bool) throws -> String {
        var what = "new process"
        if restart, let dead = procs.indices.first(where: { procs[$0].state == .killed && !procs[$0].restarted }) {
            procs[dead].restarted = true
            what = "restart of \(memberName(dead))"
        }
        let index = procs.count
        let port = try RawTCP.freePort()
        let id = nextID
        nextID += 1
        let join = NodeArguments.Join(
            contacts: contacts.map { "127.0.0.1:\(procs[$0].port)" }, id: id, listen: "127.0.0.1:\(port)")
        let arguments = try NodeArguments(
            join: join, sizes: [chaos.size], duration: max(1, chaos.duration - now), logPath: path(index, "log"))
        let rejoinIDs = rejoinIDs(ofProcess: index)
        let child = try ChildProcess(
            arguments: configured(withRejoins(arguments, rejoinIDs), index: index), stderrPath: path(index, "err"))
        procs.append(Proc(id: id, port: port, child: child, startedAt: now, rejoinIDs: rejoinIDs))
        let through = contacts.map(memberName).joined(separator: ",")
        return "\(format(now, 1)) s: m\(id) joins through \(through) (\(what))"
    }

    private func printStatus(now: Double) async throws {
        var parts: [String] = []
        for (index, proc) in procs.enumerated() {
            if proc.state == .killed {
                parts.append("\(memberName(index)):killed")
            } else if let progress = try await proc.child.progress() {
                let paused = proc.state == .paused ? " paused" : ""
                let removed = progress.removed == true ? " removed" : ""
                // Between its `rejoining` line and its new incarnation's first progress line.
                let reported = progress.member ?? currentID(index)
                let joining = reported != currentID(index) ? ", rejoining as \(memberName(index))" : ""
                parts.append("m\(reported):v\(progress.currentView) \(progress.delivered)\(paused)\(removed)\(joining)")
            } else {
                parts.append("\(memberName(index)):joining")
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
        for proc in procs {
            for (id, final) in proc.child.finals.sorted(by: { $0.key < $1.key }) {
                let views = final.views.map { "v\($0.id)[\($0.members.map { "m\($0)" }.joined(separator: ","))]" }
                Output.line("  m\(id) installed \(views.joined(separator: " "))")
            }
        }
        return ended
    }

    // MARK: - Checks

    /// Runs and prints every check; returns how many failed.
    func check(_ ended: Ended) throws -> Int {
        var results: [(String, String?)] = [reportingCheck(ended)]
        let finals = procs.flatMap { $0.child.finals.values }
        let corrupt = finals.reduce(0) { $0 + $1.corrupt }
        results.append(
            ("payloads arrive intact", corrupt == 0 ? nil : "\(corrupt) payloads with other content than was sent"))
        let fifo = finals.reduce(0) { $0 + $1.fifoViolations }
        results.append(("per-sender FIFO at delivery", fifo == 0 ? nil : "\(fifo) out-of-order deliveries"))
        let violations = try LogChecks.chaosViolations(incarnations())
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
        if chaos.durable { results.append(durableCheck()) }
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
        let busiest = finals.map(\.delivered).max() ?? 0
        let rejoins = procs.reduce(0) { $0 + $1.child.rejoins.count }
        Output.line(
            "faults: \(faultLog.count) (\(kills) kills, \(joins) joins, \(rejoins) rejoins); newest view v\(newest); "
                + "deliveries: \(busiest) at the busiest member")
        Output.line("\(results.count - failed) passed, \(failed) failed")
        return failed
    }

    /// Every incarnation of every process for the checker: its member id, its delivery log and
    /// its final line if it printed one (a removed process that rejoined printed one per
    /// incarnation, and each incarnation writes its own log: `lockstep node` names it in its
    /// `rejoining` line).
    private func incarnations() -> [LogChecks.ChaosMember] {
        procs.indices.flatMap { index in
            let child = procs[index].child
            let first = LogChecks.ChaosMember(
                id: MemberID(procs[index].id), logPath: path(index, "log"), final: child.finals[procs[index].id])
            return [first]
                + child.rejoins.map {
                    LogChecks.ChaosMember(
                        id: MemberID($0.newMember), logPath: $0.log ?? "", final: child.finals[$0.newMember])
                }
        }
    }

    /// chaos --durable: every incarnation's durable log, killed ones included, recovers and
    /// agrees with its delivery log.
    private func durableCheck() -> (String, String?) {
        var problems: [String] = []
        var entries = 0
        var logs = 0
        for index in procs.indices {
            let child = procs[index].child
            let ids = [(procs[index].id, path(index, "log"))] + child.rejoins.map { ($0.newMember, $0.log ?? "") }
            for (id, logPath) in ids {
                let directory = "\(dataPath(index))/m\(id)"
                guard FileManager.default.fileExists(atPath: directory) else { continue }
                let (problem, count) = LogChecks.durableLogProblem(directory: directory, logPath: logPath)
                logs += 1
                entries += count
                if let problem { problems.append("m\(id): \(problem)") }
            }
        }
        Output.line("durable: \(logs) logs, \(entries) entries recovered")
        if logs == 0 { problems.append("no durable log was found") }
        return (
            "durable logs recover and agree with the delivery logs",
            problems.isEmpty ? nil : "\(problems.count) problems, first: \(problems[0])"
        )
    }

    /// Every process not killed (and started before the faults ended) reported; the silent ones'
    /// stderr is shown.
    private func reportingCheck(_ ended: Ended) -> (String, String?) {
        let missing = procs.indices.filter {
            procs[$0].state != .killed && ended.finals[$0] == nil && procs[$0].startedAt < faultsEnd
        }
        for index in missing {
            // Its own words: the tail of its stderr.
            Output.line("  stderr of \(memberName(index)), last lines:")
            for line in ChildProcess.stderrTail(path(index, "err"), count: Self.stderrTailLines) {
                Output.line("    \(line)")
            }
        }
        return (
            "every process not killed stays up and reports",
            missing.isEmpty ? nil : "no report from \(missing.map { memberName($0) })"
        )
    }

    /// Progress: the members of the newest view are all in it and delivered new messages after
    /// the faults ended. Returns the check and the newest view.
    private func progressCheck(_ ended: Ended) -> ((String, String?), UInt64) {
        let lastProgress = ended.lastProgress
        let newest = lastProgress.values.map(\.currentView).max() ?? 1
        let inNewest = lastProgress.filter { $0.value.currentView == newest }.map(\.key).sorted()
        // Only the same incarnation's counts compare (a rejoined member counts from 0 again).
        let stalled = inNewest.filter { index in
            guard let settled = deliveredAtSettle[index], let last = lastProgress[index],
                settled.member == last.member
            else { return false }
            return last.delivered <= settled.delivered
        }
        let problem: String?
        if inNewest.count < Self.newestViewMembersMin {
            problem = "only \(inNewest.count) members in the newest view"
        } else if !stalled.isEmpty {
            problem = "\(stalled.map { memberName($0) }) delivered nothing after \(format(settleAt, 1)) s"
        } else {
            problem = nil
        }
        // A group that stopped making progress says what each member waits for.
        for index in stalled {
            if let progress = lastProgress[index] {
                let seconds = stopwatch.elapsedSeconds - settleAt
                Output.line("  \(memberName(index)) stalled: \(progress.stallSentence(seconds: seconds))")
            }
        }
        let outside = lastProgress.filter { $0.value.currentView != newest }.map { memberName($0.key) }.sorted()
        if !outside.isEmpty {
            Output.line("  members outside the newest view (removed, not rejoined by the end): \(outside)")
        }
        let name =
            "progress: the newest view (v\(newest), \(inNewest.count) members) delivered new messages "
            + "after the faults"
        return ((name, problem), newest)
    }
}
