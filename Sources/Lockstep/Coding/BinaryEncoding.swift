import Foundation

/// An unkeyed container whose element count is not known yet. A one-byte
/// placeholder is written where the count goes; it is patched (and widened
/// if the count needs more than one varint byte) when the value that opened
/// the container finishes encoding.
struct OpenUnkeyedContainer {
    var countOffset: Int
    var count: Int
    /// Distinguishes this container from a later one reusing the same stack slot.
    var serial: Int
}

/// Streaming writer shared by every container of one top-level encode.
final class EncoderCore: Encoder {
    // Appended to on every field; the containers reach it through a class
    // reference, and dynamic exclusivity checks would otherwise cost per write.
    @exclusivity(unchecked) var bytes: [UInt8] = []
    @exclusivity(unchecked) var openUnkeyed: [OpenUnkeyedContainer] = []
    private var serialNext = 0
    private let depthMax: Int
    private var depth = 0

    init(depthMax: Int) {
        self.depthMax = depthMax
    }

    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(KeyedWriter<Key>(core: self))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        openUnkeyedContainer()
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleValueWriter(core: self)
    }

    func openUnkeyedContainer() -> UnkeyedWriter {
        serialNext += 1
        openUnkeyed.append(OpenUnkeyedContainer(countOffset: bytes.count, count: 0, serial: serialNext))
        bytes.append(0)
        return UnkeyedWriter(core: self, slot: openUnkeyed.count - 1, serial: serialNext)
    }

    /// Writes the counts of the unkeyed containers opened since `base`, newest
    /// first: newer containers start later in the buffer, so widening one
    /// never moves the placeholder of an older one.
    func closeUnkeyed(downTo base: Int) throws(BinaryCodingError) {
        while openUnkeyed.count > base {
            let container = openUnkeyed.removeLast()
            let contentByteCount = bytes.count - container.countOffset - 1
            guard contentByteCount >= container.count else {
                throw BinaryCodingError(.unsupported, "unkeyed container has elements that encode to zero bytes")
            }
            if container.count < 0x80 {
                bytes[container.countOffset] = UInt8(container.count)
            } else {
                var varint: [UInt8] = []
                appendVarint(UInt64(container.count), to: &varint)
                bytes[container.countOffset] = varint[0]
                bytes.insert(contentsOf: varint[1...], at: container.countOffset + 1)
            }
        }
    }

    // MARK: Scalars

    @inline(__always) func writeVarint(_ value: UInt64) {
        appendVarint(value, to: &bytes)
    }

    @inline(__always) func writeSigned(_ value: Int64) {
        appendVarint(UInt64(bitPattern: (value << 1) ^ (value >> 63)), to: &bytes)
    }

    func writeVarint(_ value: UInt128) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    func writeSigned(_ value: Int128) {
        writeVarint(UInt128(bitPattern: (value << 1) ^ (value >> 127)))
    }

    @inline(__always) func writeBool(_ value: Bool) { bytes.append(value ? 1 : 0) }

    @inline(__always) func writeFloat(_ value: Float) {
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    @inline(__always) func writeDouble(_ value: Double) {
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    func writeString(_ value: String) {
        let utf8 = value.utf8
        writeVarint(UInt64(utf8.count))
        if utf8.withContiguousStorageIfAvailable({ bytes.append(contentsOf: $0) }) == nil {
            bytes.append(contentsOf: utf8)
        }
    }

    func writeRaw(_ raw: UnsafeRawBufferPointer) {
        writeVarint(UInt64(raw.count))
        bytes.append(contentsOf: raw)
    }

    // MARK: Values

    /// Encodes any value. Scalars and bulk byte types are recognized here, at
    /// the generic entry, because generic callers such as `Array.encode(to:)`
    /// reach us through the generic `encode<T>` requirement, never the typed
    /// overloads.
    func encodeValue<T: Encodable>(_ value: T) throws(BinaryCodingError) {
        if T.self == String.self { writeString(unsafeBitCast(value, to: String.self)); return }
        if T.self == Int.self { writeSigned(Int64(unsafeBitCast(value, to: Int.self))); return }
        if T.self == UInt64.self { writeVarint(unsafeBitCast(value, to: UInt64.self)); return }
        if T.self == UInt8.self { bytes.append(unsafeBitCast(value, to: UInt8.self)); return }
        if T.self == Bool.self { writeBool(unsafeBitCast(value, to: Bool.self)); return }
        if T.self == Double.self { writeDouble(unsafeBitCast(value, to: Double.self)); return }
        if T.self == [UInt8].self {
            unsafeBitCast(value, to: [UInt8].self).withUnsafeBytes { writeRaw($0) }
            return
        }
        if T.self == Data.self {
            unsafeBitCast(value, to: Data.self).withUnsafeBytes { writeRaw($0) }
            return
        }
        if T.self == ArraySlice<UInt8>.self {
            unsafeBitCast(value, to: ArraySlice<UInt8>.self).withUnsafeBytes { writeRaw($0) }
            return
        }
        if T.self == Int64.self { writeSigned(unsafeBitCast(value, to: Int64.self)); return }
        if T.self == UInt.self { writeVarint(UInt64(unsafeBitCast(value, to: UInt.self))); return }
        if T.self == Int32.self { writeSigned(Int64(unsafeBitCast(value, to: Int32.self))); return }
        if T.self == UInt32.self { writeVarint(UInt64(unsafeBitCast(value, to: UInt32.self))); return }
        if T.self == Int16.self { writeSigned(Int64(unsafeBitCast(value, to: Int16.self))); return }
        if T.self == UInt16.self { writeVarint(UInt64(unsafeBitCast(value, to: UInt16.self))); return }
        if T.self == Int8.self { bytes.append(UInt8(bitPattern: unsafeBitCast(value, to: Int8.self))); return }
        if T.self == Float.self { writeFloat(unsafeBitCast(value, to: Float.self)); return }
        if T.self == Int128.self { writeSigned(unsafeBitCast(value, to: Int128.self)); return }
        if T.self == UInt128.self { writeVarint(unsafeBitCast(value, to: UInt128.self)); return }
        let start = bytes.count
        let unkeyedBase = openUnkeyed.count
        do throws(BinaryCodingError) {
            // Counted exactly where the decoder counts, so both agree on depth.
            depth += 1
            defer { depth -= 1 }
            guard depth <= depthMax else {
                throw BinaryCodingError(.tooDeep, "values nested deeper than \(depthMax) levels")
            }
            if let special = value as? any BinaryEncodingSpecialized {
                try special.encodeSpecialized(into: self)
                return
            }
            do {
                try value.encode(to: self)
            } catch {
                throw BinaryCodingError.wrapping(error)
            }
            try closeUnkeyed(downTo: unkeyedBase)
        } catch {
            // Leave the stream as if the value had never been started, so a
            // caller that swallows the error (`try?`) still gets consistent
            // bytes and no stale placeholder gets patched later.
            openUnkeyed.removeSubrange(unkeyedBase...)
            bytes.removeSubrange(start...)
            throw error
        }
    }

    /// Encodes a dictionary or set body: count, then entries sorted by the
    /// bytes of their keys, so the output never depends on the hash seed.
    func encodeSorted<Key: Encodable>(
        count: Int,
        keys: some Sequence<Key>,
        writeRest: (_ entryIndex: Int) throws(BinaryCodingError) -> Void
    ) throws(BinaryCodingError) {
        var keyBytes: [UInt8] = []
        var keyRanges: [(range: Range<Int>, entryIndex: Int)] = []
        keyRanges.reserveCapacity(count)
        swap(&bytes, &keyBytes)
        do {
            for (entryIndex, key) in keys.enumerated() {
                let start = bytes.count
                try encodeValue(key)
                keyRanges.append((start..<bytes.count, entryIndex))
            }
        } catch {
            swap(&bytes, &keyBytes)
            throw error
        }
        swap(&bytes, &keyBytes)

        keyBytes.withUnsafeBufferPointer { all in
            keyRanges.sort { left, right in
                compareBytes(
                    UnsafeBufferPointer(rebasing: all[left.range]),
                    UnsafeBufferPointer(rebasing: all[right.range])) < 0
            }
        }
        writeVarint(UInt64(count))
        var previous: Range<Int>? = nil
        for (range, entryIndex) in keyRanges {
            let isDuplicate = previous.map { keyBytes[$0].elementsEqual(keyBytes[range]) } ?? false
            guard !isDuplicate else {
                throw BinaryCodingError(.invalidValue, "two distinct keys have the same encoding")
            }
            let start = bytes.count
            bytes.append(contentsOf: keyBytes[range])
            try writeRest(entryIndex)
            guard bytes.count > start else {
                throw BinaryCodingError(.unsupported, "dictionary or set entry encodes to zero bytes")
            }
            previous = range
        }
    }
}

@inline(__always) func appendVarint(_ value: UInt64, to bytes: inout [UInt8]) {
    var rest = value
    while rest >= 0x80 {
        bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
        rest >>= 7
    }
    bytes.append(UInt8(rest))
}

/// memcmp order with the shorter of two equal prefixes first.
func compareBytes(_ left: UnsafeBufferPointer<UInt8>, _ right: UnsafeBufferPointer<UInt8>) -> Int {
    let common = min(left.count, right.count)
    if common > 0, let l = left.baseAddress, let r = right.baseAddress {
        let result = memcmp(l, r, common)
        if result != 0 { return Int(result) }
    }
    return left.count - right.count
}

// MARK: - Types with a dedicated encoding

/// Types whose `Codable` implementation does not fit the format: `Optional`
/// (needs a presence byte), `Dictionary` and `Set` (iteration order depends
/// on the per-process hash seed).
protocol BinaryEncodingSpecialized {
    func encodeSpecialized(into core: EncoderCore) throws(BinaryCodingError)
}

extension Optional: BinaryEncodingSpecialized where Wrapped: Encodable {
    func encodeSpecialized(into core: EncoderCore) throws(BinaryCodingError) {
        if let wrapped = self {
            core.bytes.append(1)
            try core.encodeValue(wrapped)
        } else {
            core.bytes.append(0)
        }
    }
}

extension Dictionary: BinaryEncodingSpecialized where Key: Encodable, Value: Encodable {
    func encodeSpecialized(into core: EncoderCore) throws(BinaryCodingError) {
        let values = Array(self.values)
        try core.encodeSorted(count: count, keys: keys) { (entryIndex) throws(BinaryCodingError) in
            do throws(BinaryCodingError) {
                try core.encodeValue(values[entryIndex])
            } catch {
                throw error.within("[value]")
            }
        }
    }
}

extension Set: BinaryEncodingSpecialized where Element: Encodable {
    func encodeSpecialized(into core: EncoderCore) throws(BinaryCodingError) {
        try core.encodeSorted(count: count, keys: self) { (_) throws(BinaryCodingError) in }
    }
}

// MARK: - Containers

struct KeyedWriter<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let core: EncoderCore
    var codingPath: [any CodingKey] { [] }

    mutating func encodeNil(forKey key: Key) { core.bytes.append(0) }
    mutating func encode(_ value: Bool, forKey key: Key) { core.writeBool(value) }
    mutating func encode(_ value: String, forKey key: Key) { core.writeString(value) }
    mutating func encode(_ value: Double, forKey key: Key) { core.writeDouble(value) }
    mutating func encode(_ value: Float, forKey key: Key) { core.writeFloat(value) }
    mutating func encode(_ value: Int, forKey key: Key) { core.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int8, forKey key: Key) { core.bytes.append(UInt8(bitPattern: value)) }
    mutating func encode(_ value: Int16, forKey key: Key) { core.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int32, forKey key: Key) { core.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int64, forKey key: Key) { core.writeSigned(value) }
    mutating func encode(_ value: UInt, forKey key: Key) { core.writeVarint(UInt64(value)) }
    mutating func encode(_ value: UInt8, forKey key: Key) { core.bytes.append(value) }
    mutating func encode(_ value: UInt16, forKey key: Key) { core.writeVarint(UInt64(value)) }
    mutating func encode(_ value: UInt32, forKey key: Key) { core.writeVarint(UInt64(value)) }
    mutating func encode(_ value: UInt64, forKey key: Key) { core.writeVarint(value) }
    mutating func encode(_ value: Int128, forKey key: Key) { core.writeSigned(value) }
    mutating func encode(_ value: UInt128, forKey key: Key) { core.writeVarint(value) }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws(BinaryCodingError) {
        do {
            try core.encodeValue(value)
        } catch {
            throw error.within(key.stringValue)
        }
    }

    // The default `encodeIfPresent` writes nothing for nil, which a positional
    // format cannot tell apart from the next field: always write a presence byte.
    mutating func encodeIfPresent(_ value: Bool?, forKey key: Key) {
        if let value { present(); core.writeBool(value) } else { absent() }
    }
    mutating func encodeIfPresent(_ value: String?, forKey key: Key) {
        if let value { present(); core.writeString(value) } else { absent() }
    }
    mutating func encodeIfPresent(_ value: Double?, forKey key: Key) {
        if let value { present(); core.writeDouble(value) } else { absent() }
    }
    mutating func encodeIfPresent(_ value: Float?, forKey key: Key) {
        if let value { present(); core.writeFloat(value) } else { absent() }
    }
    mutating func encodeIfPresent(_ value: Int?, forKey key: Key) {
        if let value { present(); core.writeSigned(Int64(value)) } else { absent() }
    }
    mutating func encodeIfPresent(_ value: Int8?, forKey key: Key) {
        if let value { present(); core.bytes.append(UInt8(bitPattern: value)) } else { absent() }
    }
    mutating func encodeIfPresent(_ value: Int16?, forKey key: Key) {
        if let value { present(); core.writeSigned(Int64(value)) } else { absent() }
    }
    mutating func encodeIfPresent(_ value: Int32?, forKey key: Key) {
        if let value { present(); core.writeSigned(Int64(value)) } else { absent() }
    }
    mutating func encodeIfPresent(_ value: Int64?, forKey key: Key) {
        if let value { present(); core.writeSigned(value) } else { absent() }
    }
    mutating func encodeIfPresent(_ value: UInt?, forKey key: Key) {
        if let value { present(); core.writeVarint(UInt64(value)) } else { absent() }
    }
    mutating func encodeIfPresent(_ value: UInt8?, forKey key: Key) {
        if let value { present(); core.bytes.append(value) } else { absent() }
    }
    mutating func encodeIfPresent(_ value: UInt16?, forKey key: Key) {
        if let value { present(); core.writeVarint(UInt64(value)) } else { absent() }
    }
    mutating func encodeIfPresent(_ value: UInt32?, forKey key: Key) {
        if let value { present(); core.writeVarint(UInt64(value)) } else { absent() }
    }
    mutating func encodeIfPresent(_ value: UInt64?, forKey key: Key) {
        if let value { present(); core.writeVarint(value) } else { absent() }
    }
    mutating func encodeIfPresent(_ value: Int128?, forKey key: Key) {
        if let value { present(); core.writeSigned(value) } else { absent() }
    }
    mutating func encodeIfPresent(_ value: UInt128?, forKey key: Key) {
        if let value { present(); core.writeVarint(value) } else { absent() }
    }

    mutating func encodeIfPresent<T: Encodable>(_ value: T?, forKey key: Key) throws(BinaryCodingError) {
        do {
            try value.encodeSpecialized(into: core)
        } catch {
            throw error.within(key.stringValue)
        }
    }

    @inline(__always) private func present() { core.bytes.append(1) }
    @inline(__always) private func absent() { core.bytes.append(0) }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type, forKey key: Key
    ) -> KeyedEncodingContainer<NestedKey> {
        // The key name lets a synthesized enum decoder find its case via `allKeys`.
        core.writeString(key.stringValue)
        return KeyedEncodingContainer(KeyedWriter<NestedKey>(core: core))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        core.openUnkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder { core }
    mutating func superEncoder(forKey key: Key) -> any Encoder { core }
}

struct UnkeyedWriter: UnkeyedEncodingContainer {
    let core: EncoderCore
    let slot: Int
    let serial: Int
    var codingPath: [any CodingKey] { [] }

    var count: Int {
        isOpen ? core.openUnkeyed[slot].count : 0
    }

    private var isOpen: Bool {
        slot < core.openUnkeyed.count && core.openUnkeyed[slot].serial == serial
    }

    /// Counts one more element; refuses a container whose count was already
    /// written because the value that opened it has finished encoding.
    @inline(__always) private func countElement() throws(BinaryCodingError) {
        guard isOpen else {
            throw BinaryCodingError(.unsupported, "unkeyed container used after its value finished encoding")
        }
        core.openUnkeyed[slot].count += 1
    }

    mutating func encodeNil() throws(BinaryCodingError) { try countElement(); core.bytes.append(0) }
    mutating func encode(_ value: Bool) throws(BinaryCodingError) { try countElement(); core.writeBool(value) }
    mutating func encode(_ value: String) throws(BinaryCodingError) { try countElement(); core.writeString(value) }
    mutating func encode(_ value: Double) throws(BinaryCodingError) { try countElement(); core.writeDouble(value) }
    mutating func encode(_ value: Float) throws(BinaryCodingError) { try countElement(); core.writeFloat(value) }
    mutating func encode(_ value: Int) throws(BinaryCodingError) { try countElement(); core.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int8) throws(BinaryCodingError) {
        try countElement(); core.bytes.append(UInt8(bitPattern: value))
    }
    mutating func encode(_ value: Int16) throws(BinaryCodingError) {
        try countElement(); core.writeSigned(Int64(value))
    }
    mutating func encode(_ value: Int32) throws(BinaryCodingError) {
        try countElement(); core.writeSigned(Int64(value))
    }
    mutating func encode(_ value: Int64) throws(BinaryCodingError) { try countElement(); core.writeSigned(value) }
    mutating func encode(_ value: UInt) throws(BinaryCodingError) {
        try countElement(); core.writeVarint(UInt64(value))
    }
    mutating func encode(_ value: UInt8) throws(BinaryCodingError) { try countElement(); core.bytes.append(value) }
    mutating func encode(_ value: UInt16) throws(BinaryCodingError) {
        try countElement(); core.writeVarint(UInt64(value))
    }
    mutating func encode(_ value: UInt32) throws(BinaryCodingError) {
        try countElement(); core.writeVarint(UInt64(value))
    }
    mutating func encode(_ value: UInt64) throws(BinaryCodingError) { try countElement(); core.writeVarint(value) }
    mutating func encode(_ value: Int128) throws(BinaryCodingError) { try countElement(); core.writeSigned(value) }
    mutating func encode(_ value: UInt128) throws(BinaryCodingError) { try countElement(); core.writeVarint(value) }

    mutating func encode<T: Encodable>(_ value: T) throws(BinaryCodingError) {
        let index = count
        guard isOpen else {
            throw BinaryCodingError(.unsupported, "unkeyed container used after its value finished encoding")
        }
        let start = core.bytes.count
        do {
            try core.encodeValue(value)
        } catch {
            throw error.within("[\(index)]")
        }
        // The decoder bounds element counts by the bytes left, which only
        // holds if no element is empty.
        guard core.bytes.count > start else {
            throw BinaryCodingError(.unsupported, "array element encodes to zero bytes").within("[\(index)]")
        }
        // Counted only once written, so a swallowed failure leaves the count right.
        core.openUnkeyed[slot].count += 1
    }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type
    ) -> KeyedEncodingContainer<NestedKey> {
        if isOpen { core.openUnkeyed[slot].count += 1 }
        return KeyedEncodingContainer(KeyedWriter<NestedKey>(core: core))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        if isOpen { core.openUnkeyed[slot].count += 1 }
        return core.openUnkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder {
        if isOpen { core.openUnkeyed[slot].count += 1 }
        return core
    }
}

struct SingleValueWriter: SingleValueEncodingContainer {
    let core: EncoderCore
    var codingPath: [any CodingKey] { [] }

    mutating func encodeNil() { core.bytes.append(0) }
    mutating func encode(_ value: Bool) { core.writeBool(value) }
    mutating func encode(_ value: String) { core.writeString(value) }
    mutating func encode(_ value: Double) { core.writeDouble(value) }
    mutating func encode(_ value: Float) { core.writeFloat(value) }
    mutating func encode(_ value: Int) { core.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int8) { core.bytes.append(UInt8(bitPattern: value)) }
    mutating func encode(_ value: Int16) { core.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int32) { core.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int64) { core.writeSigned(value) }
    mutating func encode(_ value: UInt) { core.writeVarint(UInt64(value)) }
    mutating func encode(_ value: UInt8) { core.bytes.append(value) }
    mutating func encode(_ value: UInt16) { core.writeVarint(UInt64(value)) }
    mutating func encode(_ value: UInt32) { core.writeVarint(UInt64(value)) }
    mutating func encode(_ value: UInt64) { core.writeVarint(value) }
    mutating func encode(_ value: Int128) { core.writeSigned(value) }
    mutating func encode(_ value: UInt128) { core.writeVarint(value) }
    mutating func encode<T: Encodable>(_ value: T) throws(BinaryCodingError) { try core.encodeValue(value) }
}
