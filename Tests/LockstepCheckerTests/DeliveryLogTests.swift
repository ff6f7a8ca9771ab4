// The delivery log reads back exactly what was written, and a damaged log is refused with an
// error that says what is wrong, never a crash or a silently shorter log.

import Foundation
import LockstepChecker
import LockstepCore
import Testing

@Suite("Delivery log (checker input)")
struct DeliveryLogTests {
    let records = [
        DeliveryLogRecord(sender: MemberID(1), senderSequence: 0, viewID: 1),
        DeliveryLogRecord(sender: MemberID(3), senderSequence: 41, viewID: 2),
        DeliveryLogRecord(sender: MemberID(65_536), senderSequence: UInt64.max, viewID: UInt64.max),
    ]

    func temporaryPath(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-\(getpid())-\(name).log").path
    }

    @Test("What the writer writes, the reader reads")
    func roundTrip() throws {
        let path = temporaryPath("round-trip")
        defer { try? FileManager.default.removeItem(atPath: path) }  // a leftover file harms no one
        let writer = try DeliveryLogWriter(path: path)
        for record in records { writer.append(record) }
        try writer.close()
        #expect(try DeliveryLog.read(path: path) == records)
        let senders = try DeliveryLog.read(path: path).map(\.delivered.sender)
        #expect(senders == [MemberID(1), MemberID(3), MemberID(65_536)])
    }

    @Test("Senders are keyed by member id: origin = id - 1")
    func senderKeying() {
        #expect(DeliveryLog.origin(of: MemberID(1)) == 0)
        #expect(DeliveryLog.sender(ofOrigin: 4) == MemberID(5))
        var bytes: [UInt8] = []
        DeliveryLog.encode(records[1], into: &bytes)
        #expect(bytes.count == DeliveryLog.recordBytes)
        #expect(bytes[0] == 2 && bytes[1] == 0)
    }

    @Test("A log cut inside a record is an error, unless the member may have been killed mid-write")
    func truncated() throws {
        var bytes: [UInt8] = []
        for record in records { DeliveryLog.encode(record, into: &bytes) }
        let cut = Data(bytes.dropLast(5))
        #expect(throws: DeliveryLogError.truncated(path: "cut", byteCount: cut.count)) {
            try DeliveryLog.decode(cut, path: "cut")
        }
        #expect(try DeliveryLog.decode(cut, path: "cut", tail: .mayBeTorn) == Array(records.prefix(2)))
        let message = DeliveryLogError.truncated(path: "cut", byteCount: cut.count).description
        #expect(message.contains("ends inside a record"))
    }

    @Test("A record in view 0 and a missing log are errors that say so")
    func malformed() {
        var bytes: [UInt8] = []
        DeliveryLog.encode(records[0], into: &bytes)
        bytes += [UInt8](repeating: 0, count: DeliveryLog.recordBytes)
        #expect(throws: DeliveryLogError.noView(path: "zeros", position: 1)) {
            try DeliveryLog.decode(Data(bytes), path: "zeros")
        }
        #expect(throws: DeliveryLogError.missing(path: "/nonexistent/member-0.log")) {
            try DeliveryLog.read(path: "/nonexistent/member-0.log")
        }
    }

    @Test("One digest: FNV-1a, as the state digests in node's reports and the payload digests")
    func digest() {
        #expect(payloadDigest(Array("a".utf8)) == 0xaf63_dc4c_8601_ec8c)
        var digest = StateDigest()
        digest.combine(0)
        digest.combine(7)
        #expect(digest.value == ((StateDigest.offsetBasis &* StateDigest.prime) ^ 7) &* StateDigest.prime)
    }
}
