// The wedge watch on crafted samples: a connected majority of a view stuck past the bound with
// no install anywhere is reported, whether its members stay wedged or the operator's sweep
// restarts them; a minority, a broken connection, or a recent install is not.

import LockstepChecker
import LockstepCore
import Testing

@testable import LockstepSimulator

@Suite("Wedge watch")
struct WedgeWatchTests {
    typealias Sample = WedgeWatch.ProcessSample
    let healAt: UInt64 = 100
    /// 1 µs bound, sampled every 100 ns.
    func watch() -> WedgeWatch { WedgeWatch(bound: .nanoseconds(1_000), step: .nanoseconds(100)) }

    func active(_ id: UInt64, wedgedAt: UInt64? = nil, view: UInt64 = 2) -> Sample {
        Sample(
            id: MemberID(id), status: .active, viewID: view, viewSize: 3, wedged: wedgedAt != nil, wedgedAt: wedgedAt)
    }

    func joining(_ id: UInt64) -> Sample { Sample(id: MemberID(id), status: .joining) }

    /// Samples each (time, processes) in turn, links up unless `down` says otherwise.
    func run(
        _ samples: [(UInt64, [Sample])], lastInstallAt: UInt64 = 50,
        down: @escaping (Int, Int) -> Bool = { _, _ in false }
    ) -> [Violation] {
        var watch = watch()
        for (now, processes) in samples {
            watch.sample(processes, now: now, lastInstallAt: lastInstallAt, healAt: healAt, isDown: down)
        }
        return watch.violations
    }

    @Test func aGroupInServicePasses() {
        let fine = [active(1), active(2), active(3)]
        #expect(run([(200, fine), (1_500, fine), (3_000, fine)]).isEmpty)
        // Wedged briefly, then a new view: not stuck.
        let wedged = [active(1, wedgedAt: 150), active(2, wedgedAt: 150), active(3, wedgedAt: 150)]
        #expect(run([(200, wedged), (600, fine.map { var s = $0; s.viewID = 3; return s }), (3_000, fine)]).isEmpty)
    }

    @Test func aConnectedMajorityWedgedPastTheBoundIsReported() {
        let stuck = [active(1, wedgedAt: 150), active(2, wedgedAt: 150), active(3)]
        let violations = run([(200, stuck), (1_200, stuck)])
        #expect(violations.map(\.property) == [.wedgedMajority])
        #expect(violations.first?.member == MemberID(1))
        #expect(violations.first?.detail.contains("2 of v2's 3 members") == true)
        #expect(run([(200, stuck), (1_100, stuck)]).isEmpty, "not past the bound yet")
    }

    @Test func theSweepDoesNotHideAWedge() {
        // Processes 0 and 1 wedge in v2; the sweep restarts them (new incarnations, joining)
        // and nobody installs a view: they are still out of service for the watch.
        let wedged = [active(1, wedgedAt: 150), active(2, wedgedAt: 150), active(3)]
        let restarted = [joining(4), joining(5), active(3)]
        let violations = run([(200, wedged), (600, restarted), (1_300, restarted)])
        #expect(violations.map(\.property) == [.wedgedMajority])
        #expect(violations.first?.detail.contains("joining") == true)
        // Back in service in v3 before the bound: fine.
        let back = [active(4, view: 3), active(5, view: 3), active(3, view: 3)]
        #expect(run([(200, wedged), (600, restarted), (900, back), (1_300, back)]).isEmpty)
    }

    @Test func aMinorityABrokenConnectionOrARecentInstallIsNotAWedge() {
        let minority = [active(1, wedgedAt: 150), active(2), active(3)]
        #expect(run([(200, minority), (2_000, minority)]).isEmpty)
        let majority = [active(1, wedgedAt: 150), active(2, wedgedAt: 150), active(3)]
        #expect(run([(200, majority), (2_000, majority)], down: { $0 == 0 && $1 == 1 }).isEmpty)
        #expect(run([(200, majority), (2_000, majority)], lastInstallAt: 1_500).isEmpty)
    }

    @Test func aWedgeBeforeTheHealCountsFromTheHeal() {
        let stuck = [active(1, wedgedAt: 10), active(2, wedgedAt: 10), active(3)]
        #expect(run([(100, stuck), (1_050, stuck)]).isEmpty)
        #expect(run([(100, stuck), (1_100, stuck)]).map(\.property) == [.wedgedMajority])
    }
}
