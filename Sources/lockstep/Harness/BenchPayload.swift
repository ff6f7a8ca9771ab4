// The benchmark's payload format, shared by the sending and the receiving side of the workload.

import LockstepCore

/// The benchmark payload: send time (uptime ns) and the sender's message number, then filler
/// derived from both so the receiver can check the content without a copy of what was sent.
enum BenchPayload {
    static let headerBytes = 16
    /// Set in the send-time word of a sender's last message (uptimes never reach bit 63): a
    /// receiver that delivered it has everything that sender sent.
    static let lastFlag: UInt64 = 1 << 63

    static func make(size: Int, sequence: UInt64, now: UInt64, last: Bool = false) -> Payload {
        let stamp = last ? now | lastFlag : now
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            raw.storeBytes(of: stamp.littleEndian, toByteOffset: 0, as: UInt64.self)
            raw.storeBytes(of: sequence.littleEndian, toByteOffset: 8, as: UInt64.self)
            let fill = filler(sequence)
            for k in headerBytes..<size { buffer[k] = fill }
            count = size
        }
        return bytes[...]
    }

    static func filler(_ sequence: UInt64) -> UInt8 { UInt8(truncatingIfNeeded: sequence &* 31 &+ 7) }

    /// (send time, sequence, content intact, the sender's last message).
    static func read(_ payload: Payload) -> (UInt64, UInt64, Bool, Bool) {
        guard payload.count >= headerBytes else { return (0, 0, false, false) }
        return payload.withUnsafeBytes { raw in
            let stamp = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
            let sent = stamp & ~lastFlag
            let sequence = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            // Checking the first and last filler bytes catches misplaced or mixed payloads cheaply.
            let fill = filler(sequence)
            let intact = raw.count == headerBytes || (raw[headerBytes] == fill && raw[raw.count - 1] == fill)
            return (sent, sequence, intact, stamp & lastFlag != 0)
        }
    }
}
