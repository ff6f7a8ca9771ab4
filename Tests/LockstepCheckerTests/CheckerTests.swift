// The checker must catch every kind of broken promise; otherwise a passing simulation means
// nothing. Each test hands it logs with one planted fault.

import LockstepChecker
import LockstepCore
import Testing

@Suite("Delivery checker")
struct CheckerTests {
    let a = MemberID(1)
    let b = MemberID(2)

    /// a sent 3 messages, b sent 2.
    var sent: [MemberID: [SentRecord]] {
        [
            a: (0..<3).map { SentRecord(senderSequence: $0, payloadDigest: 100 + $0) },
            b: (0..<2).map { SentRecord(senderSequence: $0, payloadDigest: 200 + $0) },
        ]
    }

    func record(_ sender: MemberID, _ sequence: UInt64) -> DeliveredRecord {
        DeliveredRecord(sender: sender, senderSequence: sequence, payloadDigest: (sender == a ? 100 : 200) + sequence)
    }

    var goodLog: [DeliveredRecord] { [record(a, 0), record(b, 0), record(a, 1), record(b, 1), record(a, 2)] }

    func violations(
        _ first: [DeliveredRecord], _ second: [DeliveredRecord], quiesced: Bool = true
    ) -> [Violation.Property] {
        DeliveryChecker(sent: sent, delivered: [a: first, b: second])
            .check(totalOrder: true, quiesced: quiesced).map(\.property)
    }

    @Test func correctLogsPass() {
        #expect(violations(goodLog, goodLog).isEmpty)
    }

    @Test func creationIsCaught() {
        var log = goodLog
        log.append(record(b, 7))
        #expect(violations(log, goodLog).contains(.noCreation))
        var altered = goodLog
        altered[0].payloadDigest = 9
        #expect(violations(altered, goodLog).contains(.noCreation))
    }

    @Test func duplicationIsCaught() {
        var log = goodLog
        log.insert(record(a, 0), at: 2)
        #expect(violations(log, goodLog).contains(.noDuplication))
    }

    @Test func reorderingAcrossMembersIsCaught() {
        var log = goodLog
        log.swapAt(0, 1)
        #expect(violations(goodLog, log) == [.totalOrder])
    }

    @Test func fifoBreakIsCaught() {
        let log = [record(a, 1), record(b, 0), record(a, 0), record(b, 1), record(a, 2)]
        #expect(violations(log, log).contains(.fifo))
    }

    @Test func lossIsCaughtOnlyOnceQuiesced() {
        let short = Array(goodLog.prefix(3))
        #expect(violations(goodLog, short, quiesced: true) == [.completeness, .completeness])
        #expect(violations(goodLog, short, quiesced: false).isEmpty, "a prefix is fine while the run is going")
    }
}

/// The checks across views, on crafted histories: v1 = [a, b, c], v2 = [a, b] (c crashed in v1
/// or was removed), and for joins v2 = [a, b, d].
@Suite("Delivery checker across views")
struct ViewCheckerTests {
    let a = MemberID(1)
    let b = MemberID(2)
    let c = MemberID(3)
    let d = MemberID(4)

    /// a sent 3 messages, b 2, c 1.
    var sent: [MemberID: [SentRecord]] {
        [
            a: (0..<3).map { SentRecord(senderSequence: $0, payloadDigest: 100 + $0) },
            b: (0..<2).map { SentRecord(senderSequence: $0, payloadDigest: 200 + $0) },
            c: [SentRecord(senderSequence: 0, payloadDigest: 300)],
        ]
    }

    func record(_ sender: MemberID, _ sequence: UInt64, in viewID: UInt64) -> DeliveredRecord {
        DeliveredRecord(
            sender: sender, senderSequence: sequence, payloadDigest: 100 * sender.rawValue + sequence, viewID: viewID)
    }

    var v1: ViewRecord { ViewRecord(viewID: 1, members: [a, b, c], stateDigest: 0) }
    var v2: ViewRecord { ViewRecord(viewID: 2, members: [a, b], stateDigest: 7) }

    /// a and b went from v1 to v2; c stayed in v1 and crashed there.
    func membership(cRemoved: Bool = false) -> [MemberID: MemberHistory] {
        [
            a: MemberHistory(installs: [v1, v2]), b: MemberHistory(installs: [v1, v2]),
            c: MemberHistory(installs: [v1], removed: cRemoved, crashed: !cRemoved),
        ]
    }

    /// Everything: a#0 a#1 c#0 in v1, then b#0 a#2 b#1 in v2.
    var fullLog: [DeliveredRecord] {
        [record(a, 0, in: 1), record(a, 1, in: 1), record(c, 0, in: 1)]
            + [record(b, 0, in: 2), record(a, 2, in: 2), record(b, 1, in: 2)]
    }

    func check(
        _ delivered: [MemberID: [DeliveredRecord]], membership: [MemberID: MemberHistory]? = nil,
        ordered: Bool = true, quiesced: Bool = true
    ) -> [Violation] {
        DeliveryChecker(sent: sent, delivered: delivered, membership: membership ?? self.membership())
            .check(totalOrder: ordered, quiesced: quiesced)
    }

    func properties(_ violations: [Violation]) -> [Violation.Property] { violations.map(\.property) }

    @Test func correctHistoriesPass() {
        let cLog = Array(fullLog.prefix(2))  // c crashed after delivering two in v1
        for ordered in [true, false] {
            #expect(check([a: fullLog, b: fullLog, c: cLog], ordered: ordered).isEmpty)
        }
    }

    @Test func uniformAgreementBindsMoversToWhatACrashedMemberDelivered() {
        // c delivered c#0 in v1 and crashed; a and b both moved on to v2 without it. They agree
        // with each other, so virtual synchrony between movers alone does not see it.
        let moverLog = Array(fullLog.prefix(2)) + fullLog.suffix(3)
        let violations = check([a: moverLog, b: moverLog, c: Array(fullLog.prefix(3))], quiesced: false)
        #expect(properties(violations) == [.uniformAgreement, .uniformAgreement])
        #expect(violations.first?.member == a)
        #expect(violations.first?.detail.contains("installed v2 from v1") == true)
        #expect(violations.first?.detail.contains("m3#0 (delivered by m3)") == true)
    }

    @Test func uniformAgreementBindsMoversToWhatARemovedMemberDelivered() {
        let bLog = Array(fullLog.prefix(2)) + fullLog.suffix(3)
        let violations = check(
            [a: fullLog, b: bLog, c: Array(fullLog.prefix(3))], membership: membership(cRemoved: true),
            quiesced: false)
        #expect(properties(violations) == [.uniformAgreement])
        #expect(violations.first?.member == b)
    }

    @Test func uniformAgreementIsNotPromisedInUnorderedMode() {
        // Unordered mode delivers on receipt: beyond the ragged trim, members that move on may
        // have delivered different sets (docs/MEMBERSHIP.md, 10).
        let moverLog = Array(fullLog.prefix(2)) + fullLog.suffix(3)
        #expect(check([a: moverLog, b: moverLog, c: Array(fullLog.prefix(3))], ordered: false).isEmpty)
    }

    @Test func lossInTheFinalViewIsCaught() {
        // b ends live in v2 without b#1, which a delivered there.
        let bLog = Array(fullLog.dropLast())
        for ordered in [true, false] {
            let violations = check([a: fullLog, b: bLog, c: []], ordered: ordered)
            #expect(properties(violations) == [.noLoss], "ordered: \(ordered)")
            #expect(violations.first?.member == b)
            #expect(violations.first?.detail.contains("final view v2") == true)
        }
        #expect(check([a: fullLog, b: bLog, c: []], quiesced: false).isEmpty, "no completeness before quiescence")
    }

    @Test func unorderedLossOfASurvivingSendersMessageIsCaught() {
        // Unordered: b moved from v1 to v2 and never got a#1 (a delivered it in v1), though a
        // is in v2 and re-sends what lies beyond the trim until every member holds it.
        let bLog = [record(a, 0, in: 1), record(c, 0, in: 1)] + fullLog.suffix(3)
        let violations = check([a: fullLog, b: bLog, c: []], ordered: false)
        // The gap before a#2 is a FIFO break too.
        #expect(properties(violations) == [.fifo, .noLoss])
        #expect(violations.last?.member == b)
        #expect(violations.last?.detail.contains("holding the first 1 messages of m1") == true)
    }

    @Test func unorderedReSendsMayLandInALaterViewAtSomeMembers() {
        // Unordered: b delivered a#1 in v1 on receipt; a, beyond the trim, re-sent it in v2,
        // where a delivered it. Both hold it: no loss. (Ordered mode has no such freedom.)
        let aLog = [record(a, 0, in: 1), record(c, 0, in: 1), record(a, 1, in: 2)] + fullLog.suffix(3)
        #expect(check([a: aLog, b: fullLog, c: []], ordered: false).isEmpty)
        #expect(properties(check([a: aLog, b: fullLog, c: []], ordered: true)).contains(.uniformAgreement))
    }

    @Test func unorderedLossOfARemovedSendersMessageIsAllowed() {
        // c crashed: what it sent and only a delivered, b may never get (nobody re-sends it).
        let bLog = Array(fullLog.prefix(2)) + fullLog.suffix(3)
        #expect(check([a: fullLog, b: bLog, c: []], ordered: false).isEmpty)
        #expect(properties(check([a: fullLog, b: bLog, c: []], ordered: true)) == [.uniformAgreement])
    }

    @Test func sentButDeliveredNowhereIsCaught() {
        // Nobody delivered b#1, which b (in the final view) sent.
        let log = Array(fullLog.dropLast())
        for ordered in [true, false] {
            let violations = check([a: log, b: log, c: []], ordered: ordered)
            #expect(properties(violations) == [.completeness, .completeness])
            #expect(violations.map(\.member) == [a, b])
        }
    }

    @Test func onlyLiveMembersOfTheFinalViewAreBound() {
        var history = membership()
        history[b]?.crashed = true
        let bLog = Array(fullLog.prefix(4))
        #expect(check([a: fullLog, b: bLog, c: []], membership: history).isEmpty)
        // A live member of the final view that never installed it is incomplete.
        history[b] = MemberHistory(installs: [v1])
        let violations = check([a: fullLog, b: Array(fullLog.prefix(3)), c: []], membership: history)
        #expect(properties(violations).contains(.completeness))
        #expect(violations.first { $0.property == .completeness }?.member == b)
    }

    @Test func aMessageReSentInANewViewIsDeliveredOnce() {
        // a#1 delivered by b in v1, and again (re-sent) in v2.
        var bLog = fullLog
        bLog.insert(record(a, 1, in: 2), at: 3)
        for ordered in [true, false] {
            let violations = check([a: fullLog, b: bLog, c: []], ordered: ordered, quiesced: false)
            #expect(violations.map(\.property).contains(.noDuplication), "ordered: \(ordered)")
            #expect(violations.first { $0.property == .noDuplication }?.detail.contains("(v2): m1#1") == true)
        }
    }

    /// d joins v2 with a snapshot holding a#0 and a#1 (and c#0).
    func joinHistories() -> [MemberID: MemberHistory] {
        let joined = ViewRecord(viewID: 2, members: [a, b, d], stateDigest: 7)
        return [
            a: MemberHistory(installs: [v1, joined]), b: MemberHistory(installs: [v1, joined]),
            c: MemberHistory(installs: [v1], crashed: true),
            d: MemberHistory(installs: [joined], initialCounts: [a: 2, c: 1]),
        ]
    }

    @Test func aJoinerDeliversNothingItsSnapshotHolds() {
        let joinerLog = Array(fullLog.suffix(3))
        for ordered in [true, false] {
            #expect(check([a: fullLog, b: fullLog, c: [], d: joinerLog], membership: joinHistories()).isEmpty)
            let violations = check(
                [a: fullLog, b: fullLog, c: [], d: [record(a, 1, in: 2)] + joinerLog], membership: joinHistories(),
                ordered: ordered, quiesced: false)
            #expect(properties(violations).contains(.snapshotDuplication), "ordered: \(ordered)")
            #expect(!properties(violations).contains(.noDuplication))
        }
    }

    @Test func aLateMessageIsAFIFOBreakNotADuplicate() {
        let log = [record(a, 1, in: 1), record(a, 0, in: 1)]
        let violations = DeliveryChecker(sent: sent, delivered: [a: log]).check(totalOrder: false, quiesced: false)
        #expect(properties(violations) == [.fifo])
        let repeated = log + [record(a, 0, in: 1)]
        let again = DeliveryChecker(sent: sent, delivered: [a: repeated]).check(totalOrder: false, quiesced: false)
        #expect(properties(again) == [.fifo, .noDuplication])
    }
}
