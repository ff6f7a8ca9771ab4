internal import CLockstepCRC32C
import Foundation

/// CRC32C (Castagnoli): the SSE 4.2 crc32 instruction where the CPU has it, slicing-by-8 tables
/// where it does not.
public enum CRC32C {
    public static var isHardwareAccelerated: Bool { lockstep_crc32c_is_hardware() != 0 }

    /// The checksum of `bytes`, extending `crc` (0 to start).
    public static func checksum(_ bytes: UnsafeRawBufferPointer, extending crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress else { return crc }
        return lockstep_crc32c(crc, base, bytes.count)
    }

    public static func checksum(_ bytes: some ContiguousBytes, extending crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, extending: crc) }
    }

    /// The table-driven code whatever the CPU (tests compare the two).
    public static func softwareChecksum(_ bytes: [UInt8], extending crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return crc }
            return lockstep_crc32c_software(crc, base, raw.count)
        }
    }
}

extension CRC32C {
    /// The checksum of one byte, extending `crc`: a record's kind, without an array for it.
    static func checksum(byte: UInt8, extending crc: UInt32 = 0) -> UInt32 {
        withUnsafeBytes(of: byte) { checksum($0, extending: crc) }
    }
}
