// The simulated application: what it holds (`AppState`), and the payloads it sends, which carry
// their sender and sequence number so that a delivery log can be checked against what was sent.

import LockstepChecker
import LockstepCore

/// What a simulated application holds: how many messages of each sender it has delivered, and
/// a digest chained over every delivery. A joiner starts from the leader's copy (its snapshot).
public struct AppState: Sendable, Equatable {
    public var counts: [MemberID: UInt64] = [:]
    public var digest: UInt64 = StateDigest.offsetBasis
    public init() {}

    mutating func apply(_ record: DeliveredRecord) {
        counts[record.sender] = record.senderSequence + 1
        var chained = StateDigest(value: digest)
        for value in [record.sender.rawValue, record.senderSequence, record.payloadDigest] { chained.combine(value) }
        digest = chained.value
    }
}

/// The payloads simulated applications send: a 16-byte header (sender, sequence number, both
/// little-endian) and random filler, so that batches of different sizes are exercised.
enum ApplicationPayload {
    static let headerBytes = 16

    static func make(
        sender: MemberID, sequence: UInt64, fillerBytesMax: Int, using random: inout DeterministicRandom
    ) -> Payload {
        let filler = Int.random(in: 0...fillerBytesMax, using: &random)
        var bytes = [UInt8]()
        bytes.reserveCapacity(headerBytes + filler)
        withUnsafeBytes(of: sender.rawValue.littleEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: sequence.littleEndian) { bytes.append(contentsOf: $0) }
        for _ in 0..<filler { bytes.append(UInt8.random(in: 0...255, using: &random)) }
        return bytes[...]
    }

    /// An outside application's payload (`SimulatedApplicationHook`): the header, then its bytes.
    static func make(sender: MemberID, sequence: UInt64, body: [UInt8]) -> Payload {
        var bytes = [UInt8]()
        bytes.reserveCapacity(headerBytes + body.count)
        withUnsafeBytes(of: sender.rawValue.littleEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: sequence.littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: body)
        return bytes[...]
    }

    /// Reads the header back from a delivery.
    static func record(of delivery: Delivery) -> DeliveredRecord {
        let payload = delivery.payload
        var sender: UInt64 = 0
        var sequence: UInt64 = 0
        if payload.count >= headerBytes {
            let start = payload.startIndex
            for k in 0..<8 {
                sender |= UInt64(payload[start + k]) << (8 * UInt64(k))
                sequence |= UInt64(payload[start + 8 + k]) << (8 * UInt64(k))
            }
        }
        // A payload whose header disagrees with the core's sender shows up as created.
        let named = MemberID(sender)
        return DeliveredRecord(
            sender: named == delivery.sender ? named : MemberID(UInt64.max), senderSequence: sequence,
            payloadDigest: payloadDigest(payload), viewID: delivery.viewID.rawValue)
    }
}
