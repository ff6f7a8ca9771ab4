// The wedge watch: progress as the processes live it, not as the run ends. A fault run ends
// with operator sweeps that restart members stuck wedged, so a group that wedged for good can be
// rebuilt from new incarnations and still end in one view. The watch samples the group from the
// heal on and reports a connected majority of a view's members that stayed wedged in it, with no
// view installed anywhere, for longer than a bound. A process the sweep restarts stays counted
// as stuck in the view it was wedged in until it is back in service (active, not wedged), so the
// sweep cannot hide the wedge.

import LockstepChecker
import LockstepCore

struct WedgeWatch {
    /// How long a connected majority may stay wedged with no install anywhere, in nanoseconds.
    let boundNanoseconds: UInt64
    /// How often the group is sampled, in nanoseconds.
    let stepNanoseconds: UInt64
    /// Per process: the view it is stuck in, that view's size, and since when (clamped to the
    /// heal): wedged there, or restarted out of it and not back in service.
    private var stuck: [Int: (viewID: UInt64, viewSize: Int, since: UInt64)] = [:]
    private(set) var violations: [Violation] = []

    init(bound: Duration, step: Duration) {
        boundNanoseconds = bound.nanosecondsClamped
        stepNanoseconds = max(1, step.nanosecondsClamped)
    }

    /// What the watch reads of one process.
    struct ProcessSample: Equatable {
        var id: MemberID
        var status: SimulatedGroup.Status
        /// The current view and its size (active members only).
        var viewID: UInt64? = nil
        var viewSize = 0
        var wedged = false
        var wedgedAt: UInt64? = nil
    }

    /// Reads the group now (after the heal: every link is up, so `isDown` only reads the
    /// connections that broke for good, and changes nothing).
    mutating func sample(_ group: SimulatedGroup, healAt: UInt64) {
        let samples = group.processes.map { state in
            ProcessSample(
                id: state.id, status: state.status, viewID: state.core?.view.id.rawValue,
                viewSize: state.core?.view.members.count ?? 0, wedged: state.core?.isWedged ?? false,
                wedgedAt: state.wedgedAt)
        }
        sample(samples, now: group.now, lastInstallAt: group.lastInstallAt, healAt: healAt) { group.isDown($0, $1) }
    }

    /// One sample: `processes` by index, `isDown(a, b)` whether the connection from the
    /// incarnation in process a to the one in b is broken.
    mutating func sample(
        _ processes: [ProcessSample], now: UInt64, lastInstallAt: UInt64, healAt: UInt64,
        isDown: (Int, Int) -> Bool
    ) {
        for (process, state) in processes.enumerated() {
            switch state.status {
            case .active:
                guard state.wedged, let viewID = state.viewID else {
                    stuck[process] = nil
                    continue
                }
                if stuck[process]?.viewID != viewID {
                    stuck[process] = (viewID, state.viewSize, max(state.wedgedAt ?? now, healAt))
                }
            case .joining:
                break  // restarted out of its view (if it was stuck) and not back in service yet
            case .crashed, .removed, .dormant:
                stuck[process] = nil
            }
        }
        guard violations.isEmpty, lastInstallAt + boundNanoseconds <= now else { return }
        let long = stuck.filter { $0.value.since + boundNanoseconds <= now }.keys.sorted()
        let byView = Dictionary(grouping: long) { stuck[$0]?.viewID ?? 0 }
        for (viewID, stuckHere) in byView.sorted(by: { $0.key < $1.key }) {
            let connected = Self.connected(stuckHere, processes, isDown)
            let viewSize = stuckHere.compactMap { stuck[$0]?.viewSize }.max() ?? 0
            guard connected.count > viewSize / 2, let first = connected.first else { continue }
            let since = connected.compactMap { stuck[$0]?.since }.min() ?? now
            let members = connected.map { "\($0) (\(processes[$0].id), \(processes[$0].status))" }
            violations.append(
                Violation(
                    property: .wedgedMajority, member: processes[first].id,
                    detail: "processes \(members.joined(separator: ", ")), \(connected.count) of v\(viewID)'s "
                        + "\(viewSize) members, stuck in v\(viewID) (wedged, or restarted out of it) from "
                        + "\((since - healAt) / 1_000_000) ms after the heal to \((now - healAt) / 1_000_000) ms, "
                        + "with no view installed anywhere (bound \(boundNanoseconds / 1_000_000) ms)"))
            return
        }
    }

    /// The largest set found by dropping, one at a time, the process with the most broken
    /// connections to the others, until every two active ones are connected both ways (a
    /// joining process is a new incarnation: its connections are new).
    private static func connected(
        _ candidates: [Int], _ processes: [ProcessSample], _ isDown: (Int, Int) -> Bool
    ) -> [Int] {
        var set = candidates
        while true {
            let broken = set.map { a in
                set.filter { b in
                    a != b && processes[a].status == .active && processes[b].status == .active
                        && (isDown(a, b) || isDown(b, a))
                }.count
            }
            guard let worst = broken.indices.max(by: { broken[$0] < broken[$1] }), broken[worst] > 0 else { return set }
            set.remove(at: worst)
        }
    }
}
