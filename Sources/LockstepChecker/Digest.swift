// The one digest of the project: FNV-1a, 64 bits. Payload digests (a checker compares content
// without keeping it) and state digests (an application chains every delivery into one word, and
// members that installed a view with equal digests had delivered the same messages: the
// checker's virtual-synchrony evidence) are both built from it.

/// A 64-bit FNV-1a digest, chained one word at a time.
///
///     var digest = StateDigest()
///     digest.combine(sender)
///     digest.combine(sequence)
///     let word = digest.value
public struct StateDigest: Sendable, Hashable {
    /// FNV-1a's offset basis: the digest of nothing.
    public static let offsetBasis: UInt64 = 0xcbf2_9ce4_8422_2325
    /// FNV-1a's 64-bit prime.
    public static let prime: UInt64 = 0x0000_0100_0000_01B3

    public private(set) var value: UInt64

    /// A digest of nothing, or one resumed from `value` (a joiner's snapshot).
    public init(value: UInt64 = StateDigest.offsetBasis) {
        self.value = value
    }

    /// Chains one word (FNV-1a's step, over the whole word at once).
    public mutating func combine(_ word: UInt64) {
        value = (value ^ word) &* Self.prime
    }
}

/// FNV-1a over the bytes: a cheap, stable digest for comparing payloads in logs.
public func payloadDigest(_ bytes: some Collection<UInt8>) -> UInt64 {
    var digest = StateDigest()
    for byte in bytes { digest.combine(UInt64(byte)) }
    return digest.value
}
