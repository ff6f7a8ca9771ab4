// The wire codec: every frame type round-trips, and every kind of malformed input is refused
// with a clear error instead of a crash or an allocation of an attacker-chosen size.

import Foundation
import LockstepCore
import LockstepWire
import Testing

let limits = WireLimits(frameBytesMax: 1 << 20, messageBytesMax: 1 << 16, entriesMax: 512, sendersMax: 64)

func decode(_ bytes: [UInt8]) throws(WireError) -> (frame: Frame, bytes: Int)? {
    try Wire.decode(bytes, limits: limits)
}

func expectMalformed(_ bytes: [UInt8], _ code: WireError.Code, sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        let result = try decode(bytes)
        Issue.record("expected \(code), decoded \(String(describing: result))", sourceLocation: sourceLocation)
    } catch {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
    }
}

@Suite("Wire format")
struct WireTests {
    let batch = DataBatch(
        viewID: ViewID(3), senderRank: 2, firstIndex: 40,
        entries: [.message([1, 2, 3]), .nulls(5), .message([]), .message(Array(repeating: 9, count: 300)[...])])
    let row = Row(viewID: ViewID(3), received: [5, 0, 77], seq: 9, delivered: 8, suspected: [0b101])
    let hello = Hello(member: MemberID(11), viewID: ViewID(3), memberRank: 1, senderCount: 3, lane: .data)

    @Test("Every frame type round-trips, and the sizes match the layout in docs/WIRE.md")
    func roundTrip() throws {
        var membershipRow = row
        membershipRow.proposal = ViewChange(
            number: 3 << 16 | 1, removed: [0b100], joiners: [MemberID(9), MemberID(10)])
        membershipRow.commit = ViewChange(number: 2 << 16, removed: [0b100], joiners: [])
        membershipRow.trim = [4, 0, 70]
        membershipRow.installNumber = 2 << 16
        membershipRow.persisted = 41
        for frame in [Frame.message(.data(batch)), .message(.row(row)), .message(.row(membershipRow)), .hello(hello)] {
            let bytes = Wire.encode(frame)
            let decoded = try #require(try decode(bytes))
            #expect(decoded.frame == frame)
            #expect(decoded.bytes == bytes.count)
        }
        // Fixed fields, received, suspicion word, then install number and persisted, proposal, commit, trim.
        #expect(Wire.encode(.message(.row(row))).count == 12 + 32 + 3 * 8 + 8 + (16 + 16 + 16 + 8))
        #expect(Wire.encode(.hello(hello)).count == 12 + 28)
        #expect(Wire.encode(.message(.data(batch))).count == 12 + 24 + (5 + 3) + 9 + 5 + (5 + 300))
    }

    @Test("Relayed entries and relay blocks round-trip")
    func relayFrames() throws {
        let big = Array(repeating: UInt8(7), count: 500)[...]
        let message = Message.data(
            DataBatch(
                viewID: ViewID(3), senderRank: 1, firstIndex: 10, entries: [.message([1]), .nulls(2), .message(big)]))
        let bytes = Array(repeating: UInt8(0), count: Wire.encodedBytes(message, relayingFrom: 100))
        var encoded = bytes
        encoded.withUnsafeMutableBytes { _ = Wire.encode(message, relayingFrom: 100, into: $0) }
        #expect(encoded.count == 12 + 24 + 6 + 9 + 5, "the relayed payload's bytes are not in the frame")
        let decoded = try #require(try decode(encoded))
        guard case .relayedData(let batch, let relayed) = decoded.frame else {
            Issue.record("expected relayed data, got \(decoded.frame)")
            return
        }
        #expect(relayed == [RelayedEntry(position: 2, index: 13, bytes: 500)])
        #expect(batch.entries[0] == .message([1]))
        #expect(Wire.encode(decoded.frame) == encoded)

        let block = Block(
            viewID: ViewID(1), originMemberRank: 2, index: 13, totalBytes: 500, offset: 100, bytes: big[0..<50])
        let blockBytes = Wire.encode(.block(block))
        #expect(
            try decode(blockBytes)?.frame
                == .block(
                    Block(
                        viewID: ViewID(1), originMemberRank: 2, index: 13, totalBytes: 500, offset: 100,
                        bytes: Array(big[0..<50])[...])))
    }

    @Test("A block that would run past its message is refused")
    func badBlock() {
        let block = Block(
            viewID: ViewID(1), originMemberRank: 2, index: 0, totalBytes: 10, offset: 5,
            bytes: Array(repeating: 1, count: 8)[...])
        expectMalformed(Wire.encode(.block(block)), .badBlock)
    }

    @Test("The header is fixed-layout little-endian: magic, version, type, reserved, length")
    func headerLayout() {
        let bytes = Wire.encode(.message(.row(row)))
        #expect(Array(bytes[0..<12]) == [0x54, 0x53, 0x4B, 0x4C, 5, 3, 0, 0, 120, 0, 0, 0])
    }

    @Test("Bytes split anywhere decode once complete, never before")
    func incremental() throws {
        let bytes = Wire.encode(.message(.data(batch))) + Wire.encode(.message(.row(row)))
        let first = Wire.encode(.message(.data(batch))).count
        for cut in 0..<first {
            #expect(try decode(Array(bytes[0..<cut])) == nil)
        }
        let decoded = try #require(try decode(bytes))
        #expect(decoded.bytes == first)
        #expect(try decode(Array(bytes[first...]))?.frame == .message(.row(row)))
    }

    @Test func badMagic() {
        var bytes = Wire.encode(.message(.row(row)))
        bytes[0] ^= 0xFF
        expectMalformed(bytes, .badMagic)
    }

    @Test func badVersion() {
        var bytes = Wire.encode(.message(.row(row)))
        bytes[4] = 9
        expectMalformed(bytes, .badVersion)
    }

    @Test func unknownType() {
        var bytes = Wire.encode(.message(.row(row)))
        bytes[5] = 9
        expectMalformed(bytes, .unknownFrameType)
    }

    @Test("An impossible length is refused from the header alone, before any body arrives")
    func impossibleLength() {
        var bytes = Array(Wire.encode(.message(.row(row)))[0..<12])
        bytes[8] = 0xFF; bytes[9] = 0xFF; bytes[10] = 0xFF; bytes[11] = 0x7F
        expectMalformed(bytes, .frameTooLarge)
    }

    @Test("A body that ends inside an entry is truncated, whatever the declared length says")
    func truncatedEntries() {
        // Declare one entry fewer bytes than it needs by shortening the frame and its length.
        var bytes = Wire.encode(.message(.data(batch)))
        bytes.removeLast(10)
        let body = UInt32(bytes.count - 12)
        withUnsafeBytes(of: body.littleEndian) { for k in 0..<4 { bytes[8 + k] = $0[k] } }
        expectMalformed(bytes, .truncatedBody)
    }

    @Test func trailingBytesInARow() {
        var bytes = Wire.encode(.message(.row(row)))
        bytes.append(0)
        bytes[8] += 1
        expectMalformed(bytes, .trailingBytes)
    }

    @Test func tooManySenders() {
        var bytes = Wire.encode(.message(.row(row)))
        bytes[12 + 24] = 200  // sender count
        expectMalformed(bytes, .tooManySenders)
    }

    @Test func tooManyEntries() {
        var bytes = Wire.encode(.message(.data(batch)))
        bytes[12 + 12] = 0xFF; bytes[12 + 13] = 0xFF  // entry count 65535
        expectMalformed(bytes, .tooManyEntries)
    }

    @Test func oversizedMessage() {
        var bytes = Wire.encode(.message(.data(batch)))
        bytes[12 + 24 + 1 + 2] = 0x10  // first entry's length becomes 0x100003 bytes
        expectMalformed(bytes, .messageTooLarge)
    }

    @Test func unknownEntryKind() {
        var bytes = Wire.encode(.message(.data(batch)))
        bytes[12 + 24] = 7
        expectMalformed(bytes, .unknownEntryKind)
    }

    @Test("Random garbage never crashes the decoder")
    func garbage() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            var bytes = (0..<Int.random(in: 0..<80, using: &generator)).map { _ in
                UInt8.random(in: 0...255, using: &generator)
            }
            if Bool.random(using: &generator), bytes.count >= 12 {
                // A valid header over garbage reaches the body decoders.
                let header = Wire.encode(.message(.row(row)))[0..<12]
                bytes.replaceSubrange(0..<12, with: header)
                bytes[5] = UInt8.random(in: 1...3, using: &generator)
                let body = UInt32(bytes.count - 12)
                withUnsafeBytes(of: body.littleEndian) { for k in 0..<4 { bytes[8 + k] = $0[k] } }
            }
            _ = try? decode(bytes)
        }
    }

    @Test("Past fuzzer findings (Tests/LockstepWireTests/FuzzRegressions) decode or fail cleanly")
    func fuzzRegressions() throws {
        let directory = try #require(Bundle.module.url(forResource: "FuzzRegressions", withExtension: nil))
        let files = try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
        #expect(!files.isEmpty)
        for file in files {
            let bytes = [UInt8](try Data(contentsOf: file))
            var rest = bytes[...]
            // Decode frame after frame, as a connection would, until an error or the end.
            while let result = try? Wire.decode(Array(rest), limits: limits) {
                if case .hello = result.frame {
                } else {
                    // Whatever decodes must re-encode to the same bytes.
                    #expect(Wire.encode(result.frame) == Array(rest.prefix(result.bytes)), "\(file.lastPathComponent)")
                }
                rest = rest.dropFirst(result.bytes)
            }
        }
    }
}
