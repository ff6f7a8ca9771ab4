// Observation: what tests, the random simulation and failure reports read from a group, by
// process index. Nothing here changes the run.

import LockstepChecker
import LockstepCore

extension SimulatedGroup {
    public var processCount: Int { processes.count }
    public func status(_ process: Int) -> Status { processes[process].status }
    /// The core of the member in `process` (its current view). Only for a process that has one.
    public func core(_ process: Int) -> OrderingCore {
        guard let core = processes[process].core else {
            preconditionFailure("process \(process) has no core (\(processes[process].status))")
        }
        return core
    }
    public func hasCore(_ process: Int) -> Bool { processes[process].core != nil }
    /// Whether `process` holds a live incarnation (active, or joining).
    public func isRunning(_ process: Int) -> Bool { processes[process].isLive }
    /// The current incarnation in `process`.
    public func memberID(_ process: Int) -> MemberID { processes[process].id }
    /// What the current incarnation in `process` delivered.
    public func deliveries(_ process: Int) -> [DeliveredRecord] { history(process)?.delivered ?? [] }
    public func sentRecords(_ process: Int) -> [SentRecord] { history(process)?.sent ?? [] }
    public func appState(_ process: Int) -> AppState { processes[process].app }
    /// The views the current incarnation in `process` installed (its first view included).
    public func installedViews(_ process: Int) -> [ViewRecord] { history(process)?.installs ?? [] }
    /// Messages the application in `process` still holds back.
    public func backlog(_ process: Int) -> Int { processes[process].backlog }
    /// When the member in `process` wedged in its current view (virtual nanoseconds), if it did.
    public func wedgedAt(_ process: Int) -> UInt64? { processes[process].wedgedAt }
    /// Whether the member in `process` ever wedged.
    public func everWedged(_ process: Int) -> Bool { processes[process].everWedged }
    /// The member in `process` found itself in a minority (and stayed wedged).
    public func reportedMinority(_ process: Int) -> Bool { processes[process].minority }

    /// Messages the application submitted after its member wedged, in the current view (must stay 0).
    public func sentAfterWedging(_ process: Int) -> Int {
        processes[process].wedgedAt == nil ? 0 : sentRecords(process).count - processes[process].sentWhenWedged
    }

    /// Processes that crashed (and were not restarted).
    public var crashedProcesses: [Int] { processes.indices.filter { processes[$0].status == .crashed } }

    /// Processes with a live member in a view.
    public var activeProcesses: [Int] { processes.indices.filter { processes[$0].status == .active } }

    /// The latest view installed by any live member.
    public var newestViewID: UInt64 {
        processes.compactMap { $0.status == .active ? $0.core?.view.id.rawValue : nil }.max() ?? 0
    }

    /// One line per process: status, view, wedge, suspicions and the membership columns (for
    /// failure reports).
    public var processSummary: [String] {
        processes.indices.map { summary(of: $0) }
    }

    private func summary(of process: Int) -> String {
        let state = processes[process]
        var line = "process \(process) \(state.id) \(state.status)"
        guard let core = state.core else { return line }
        let row = core.ownRow
        // Proposal and commit numbers pack (round, leader) as round << 16 | leader.
        func round(_ number: UInt64) -> String { "\(number >> 16).\(number & 0xFFFF)" }
        line += " \(core.view.id) rank \(core.memberRank) leader \(core.leaderRank.map(String.init) ?? "-")"
        line += " wedged \(core.isWedged) suspects \(core.suspectedRanks) backlog \(state.backlog)"
        line += " proposal \(round(row.proposal.number)) commit \(round(row.commit.number))"
        line += " install \(row.installNumber)"
        line += " received \(row.received) delivered \(row.delivered) held \(state.member?.heldFrames ?? 0)"
        if state.minority { line += " MINORITY" }
        return line
    }

    /// A checker over everything every incarnation sent, delivered and installed.
    public var checker: DeliveryChecker {
        var sent: [MemberID: [SentRecord]] = [:]
        var delivered: [MemberID: [DeliveredRecord]] = [:]
        var membership: [MemberID: MemberHistory] = [:]
        for (id, history) in histories {
            sent[id] = history.sent
            delivered[id] = history.delivered
            // Live at the end: still the incarnation in its process, and active or joining. Any
            // other that did not learn of its removal crashed or was replaced by a restart.
            let live = processOfMember[id].map { processes[$0].id == id && processes[$0].isLive } ?? false
            membership[id] = MemberHistory(
                installs: history.installs, initialCounts: history.initialState?.counts ?? [:],
                removed: history.removed, crashed: !live && !history.removed)
        }
        return DeliveryChecker(sent: sent, delivered: delivered, membership: membership)
    }

    private func history(_ process: Int) -> History? { histories[processes[process].id] }
}
