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
