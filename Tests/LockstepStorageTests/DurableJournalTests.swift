// The durable journal (what a durable member logs, and its progress marks), sans IO.

import LockstepCore
import LockstepStorage
import Testing

@Suite("Durable journal")
struct DurableJournalTests {
    private func delivery(_ index: UInt64, bytes: Int, view: ViewID = ViewID(1)) -> Delivery {
        Delivery(
            viewID: view, sender: MemberID(1), senderRank: 0, index: index, globalSequence: index,
            payload: [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: bytes)[...])
    }

    @Test(
        """
        Regression (found by the full-disk test): a record is cut before the delivery that would take it past \
        entriesBytesMax, so no record passes recordBytes(messageBytesMax:); every delivery is decoded back, in order
        """)
    func recordsStayWithinTheirBound() throws {
        var journal = DurableJournal()
        let messageBytesMax = 40_000
        var sent: [Delivery] = []
        for index in 0..<50 {
            let one = delivery(UInt64(index), bytes: index % 3 == 0 ? messageBytesMax : 700)
            sent.append(one)
            journal.logDelivery(one)
        }
        journal.endPoll(viewID: ViewID(1), delivered: 50)
        let records = journal.takeRecords()
        #expect(records.count > 1)
        let bound = DurableJournal.recordBytes(messageBytesMax: messageBytesMax)
        #expect(records.allSatisfy { $0.body.count <= bound }, "\(records.map(\.body.count).max() ?? 0) > \(bound)")
        var decoded: [Delivery] = []
        for (index, record) in records.enumerated() {
            let logRecord = LogRecord(index: UInt64(index), kind: record.kind, body: record.body)
            guard case .entries(_, let deliveries) = try DurableRecords.decode(logRecord) else {
                Issue.record("record \(index) is not an entries record")
                continue
            }
            decoded += deliveries
        }
        #expect(decoded == sent)
    }

    @Test("Marks come out once their records are durable, and a poll of nulls only moves the mark without a record")
    func marksFollowDurableRecords() {
        var journal = DurableJournal()
        journal.logView(try! View(id: ViewID(1), members: [MemberID(1)]))
        journal.logDelivery(delivery(0, bytes: 10))
        journal.endPoll(viewID: ViewID(1), delivered: 1)
        journal.endPoll(viewID: ViewID(1), delivered: 4)  // nulls: no record
        #expect(journal.takeRecords().count == 2)
        #expect(journal.takeDurableMarks(durableRecords: 1).map(\.upTo) == [0])
        #expect(journal.takeDurableMarks(durableRecords: 2).map(\.upTo) == [1, 4])
        #expect(!journal.hasWork)
    }

    @Test("A hostile entries body is refused as corrupt, never trusted and never a trap")
    func hostileBodiesAreCorrupt() {
        let bodies: [[UInt8]] = [
            [], [1, 0, 0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF],
            [1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0] + [UInt8](repeating: 0, count: 28) + [0xFF, 0xFF, 0xFF, 0x7F],
        ]
        for body in bodies {
            #expect(throws: StorageError.self) {
                try DurableRecords.decode(LogRecord(index: 0, kind: .entry, body: body))
            }
            #expect(throws: StorageError.self) {
                try DurableRecords.decode(LogRecord(index: 0, kind: .view, body: body))
            }
        }
    }
}
