import Foundation

/// A key name read by `allKeys`, kept so that the `nestedContainer(forKey:)`
/// call that follows does not read it a second time.
struct PeekedKey {
    var containerID: Int
    var name: String
    var isClaimed: Bool
}

/// Streaming reader shared by every container of one top-level decode. Every
/// read checks the bytes left first, so no input can make it read out of
/// bounds. It points into the caller's buffer and must not outlive the
/// `BinaryDecoder.decode` call.
final class DecoderCore: Decoder {
    let buffer: UnsafeBufferPointer<UInt8>
    var position = 0
    let depthMax: Int
    private var depth = 0
    private var containerIDNext = 0
    var peekedKey: PeekedKey?

    init(buffer: UnsafeBufferPointer<UInt8>, depthMax: Int) {
        self.buffer = buffer
        self.depthMax = depthMax
    }

    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    var remaining: Int { buffer.count - position }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedDecodingContainer<Key> {
        KeyedDecodingContainer(KeyedReader<Key>(core: self, id: newContainerID()))
    }

    func unkeyedContainer() throws(BinaryCodingError) -> any UnkeyedDecodingContainer {
        try UnkeyedReader(core: self)
    }

    func singleValueContainer() -> any SingleValueDecodingContainer {
        SingleValueReader(core: self)
    }

    func newContainerID() -> Int {
        containerIDNext += 1
        return containerIDNext
    }

    // MARK: Scalars

    @inline(__always) func readByte() throws(BinaryCodingError) -> UInt8 {
        guard position < buffer.count else { throw truncated(1) }
        let byte = buffer[position]
        position += 1
        return byte
    }

    func truncated(_ needed: Int) -> BinaryCodingError {
        BinaryCodingError(.truncated, "needs \(needed) more bytes at offset \(position), \(remaining) left")
    }

    func readVarint() throws(BinaryCodingError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try readByte()
            if shift == 63 && byte > 1 {
                throw BinaryCodingError(.invalidValue, "varint exceeds 64 bits")
            }
            result |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 {
                if byte == 0 && shift > 0 {
                    throw BinaryCodingError(.invalidValue, "varint is not minimal")
                }
                return result
            }
            shift += 7
        }
    }

    func readWideVarint() throws(BinaryCodingError) -> UInt128 {
        var result: UInt128 = 0
        var shift: UInt128 = 0
        while true {
            let byte = try readByte()
            if shift == 126 && byte > 3 {
                throw BinaryCodingError(.invalidValue, "varint exceeds 128 bits")
            }
            result |= UInt128(byte & 0x7F) << shift
            if byte < 0x80 {
                if byte == 0 && shift > 0 {
                    throw BinaryCodingError(.invalidValue, "varint is not minimal")
                }
                return result
            }
            shift += 7
        }
    }

    func readWideSigned() throws(BinaryCodingError) -> Int128 {
        let zigzag = try readWideVarint()
        return Int128(bitPattern: (zigzag >> 1) ^ (0 &- (zigzag & 1)))
    }

    func readSigned() throws(BinaryCodingError) -> Int64 {
        let zigzag = try readVarint()
        return Int64(bitPattern: (zigzag >> 1) ^ (0 &- (zigzag & 1)))
    }

    func readUnsigned<T: FixedWidthInteger & UnsignedInteger>(_ type: T.Type) throws(BinaryCodingError) -> T {
        let value = try readVarint()
        guard let narrowed = T(exactly: value) else {
            throw BinaryCodingError(.invalidValue, "\(value) does not fit in \(T.self)")
        }
        return narrowed
    }

    func readSigned<T: FixedWidthInteger & SignedInteger>(_ type: T.Type) throws(BinaryCodingError) -> T {
        let value = try readSigned()
        guard let narrowed = T(exactly: value) else {
            throw BinaryCodingError(.invalidValue, "\(value) does not fit in \(T.self)")
        }
        return narrowed
    }

    func readBool() throws(BinaryCodingError) -> Bool {
        switch try readByte() {
        case 0: return false
        case 1: return true
        case let byte: throw BinaryCodingError(.invalidValue, "Bool byte is \(byte), not 0 or 1")
        }
    }

    /// Reads a presence byte: true when a value follows.
    func readPresence() throws(BinaryCodingError) -> Bool {
        switch try readByte() {
        case 0: return false
        case 1: return true
        case let byte: throw BinaryCodingError(.invalidValue, "presence byte is \(byte), not 0 or 1")
        }
    }

    private func readFixed<T: FixedWidthInteger>(_ type: T.Type) throws(BinaryCodingError) -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { throw truncated(size) }
        // `remaining >= size` above: the buffer is not empty, so it has a base address.
        guard let base = buffer.baseAddress else { throw truncated(size) }
        let raw = UnsafeRawPointer(base).loadUnaligned(fromByteOffset: position, as: T.self)
        position += size
        return T(littleEndian: raw)
    }

    func readFloat() throws(BinaryCodingError) -> Float { Float(bitPattern: try readFixed(UInt32.self)) }
    func readDouble() throws(BinaryCodingError) -> Double { Double(bitPattern: try readFixed(UInt64.self)) }

    /// Reads a varint count and rejects it, before anything is allocated, if
    /// the input cannot hold that many elements of at least one byte each.
    func readCount() throws(BinaryCodingError) -> Int {
        let count = try readVarint()
        guard count <= UInt64(remaining) else {
            throw BinaryCodingError(.truncated, "count \(count) exceeds the \(remaining) bytes left")
        }
        return Int(count)
    }

    func readBytes() throws(BinaryCodingError) -> UnsafeBufferPointer<UInt8> {
        let count = try readCount()
        let bytes = UnsafeBufferPointer(rebasing: buffer[position..<position + count])
        position += count
        return bytes
    }

    func readString() throws(BinaryCodingError) -> String {
        let start = position
        let utf8 = try readBytes()
        // `String(decoding:)` is the fast specialized path; it repairs invalid
        // input with U+FFFD, which changes the bytes, so comparing them back
        // is an exact validity check (`String(validating:)` is unspecialized
        // and several times slower here).
        var string = String(decoding: utf8, as: UTF8.self)
        let isValid = string.withUTF8 { decoded in
            guard decoded.count == utf8.count else { return false }
            guard let decodedBase = decoded.baseAddress, let utf8Base = utf8.baseAddress else { return utf8.isEmpty }
            return memcmp(decodedBase, utf8Base, utf8.count) == 0
        }
        guard isValid else {
            position = start
            throw BinaryCodingError(.invalidValue, "String is not valid UTF-8")
        }
        return string
    }

    // MARK: Values

    /// Decodes any value; the mirror of `EncoderCore.encodeValue`.
    func decodeValue<T: Decodable>(_ type: T.Type) throws(BinaryCodingError) -> T {
        if T.self == String.self { return unsafeBitCast(try readString(), to: T.self) }
        if T.self == Int.self { return unsafeBitCast(try readSigned(Int.self), to: T.self) }
        if T.self == UInt64.self { return unsafeBitCast(try readVarint(), to: T.self) }
        if T.self == UInt8.self { return unsafeBitCast(try readByte(), to: T.self) }
        if T.self == Bool.self { return unsafeBitCast(try readBool(), to: T.self) }
        if T.self == Double.self { return unsafeBitCast(try readDouble(), to: T.self) }
        if T.self == [UInt8].self { return unsafeBitCast(Array(try readBytes()), to: T.self) }
        if T.self == Data.self { return unsafeBitCast(Data(buffer: try readBytes()), to: T.self) }
        if T.self == ArraySlice<UInt8>.self {
            return unsafeBitCast(ArraySlice(try readBytes()), to: T.self)
        }
        if T.self == Int64.self { return unsafeBitCast(try readSigned(), to: T.self) }
        if T.self == UInt.self { return unsafeBitCast(try readUnsigned(UInt.self), to: T.self) }
        if T.self == Int32.self { return unsafeBitCast(try readSigned(Int32.self), to: T.self) }
        if T.self == UInt32.self { return unsafeBitCast(try readUnsigned(UInt32.self), to: T.self) }
        if T.self == Int16.self { return unsafeBitCast(try readSigned(Int16.self), to: T.self) }
        if T.self == UInt16.self { return unsafeBitCast(try readUnsigned(UInt16.self), to: T.self) }
        if T.self == Int8.self { return unsafeBitCast(Int8(bitPattern: try readByte()), to: T.self) }
        if T.self == Float.self { return unsafeBitCast(try readFloat(), to: T.self) }
        if T.self == Int128.self { return unsafeBitCast(try readWideSigned(), to: T.self) }
        if T.self == UInt128.self { return unsafeBitCast(try readWideVarint(), to: T.self) }

        depth += 1
        defer { depth -= 1 }
        guard depth <= depthMax else {
            throw BinaryCodingError(.tooDeep, "values nested deeper than \(depthMax) levels")
        }
        if let special = T.self as? any BinaryDecodingSpecialized.Type {
            guard let value = try special.decodeSpecialized(from: self) as? T else {
                preconditionFailure("\(special) decodes a value of another type than \(T.self)")
            }
            return value
        }
        do {
            return try T(from: self)
        } catch {
            throw BinaryCodingError.wrapping(error)
        }
    }

    /// Decodes a dictionary or set body written by `EncoderCore.encodeSorted`,
    /// requiring strictly ascending key bytes so each value has one encoding.
    func decodeSorted<Key: Decodable>(
        _ keyType: Key.Type,
        readEntry: (_ key: Key) throws(BinaryCodingError) -> Void
    ) throws(BinaryCodingError) {
        let count = try readCount()
        var previousKey: UnsafeBufferPointer<UInt8>? = nil
        for index in 0..<count {
            let start = position
            let key: Key
            do {
                key = try decodeValue(Key.self)
            } catch {
                throw error.within("[key \(index)]")
            }
            let keyBytes = UnsafeBufferPointer(rebasing: buffer[start..<position])
            if let previousKey, compareBytes(previousKey, keyBytes) >= 0 {
                throw BinaryCodingError(.invalidValue, "keys are not in strictly ascending order").within(
                    "[key \(index)]")
            }
            previousKey = keyBytes
            try readEntry(key)
            guard position > start else {
                throw BinaryCodingError(.invalidValue, "entry \(index) occupies zero bytes")
            }
        }
    }
}

// MARK: - Types with a dedicated encoding

/// The decoding side of `BinaryEncodingSpecialized`.
protocol BinaryDecodingSpecialized {
    static func decodeSpecialized(from core: DecoderCore) throws(BinaryCodingError) -> Self
}

extension Optional: BinaryDecodingSpecialized where Wrapped: Decodable {
    static func decodeSpecialized(from core: DecoderCore) throws(BinaryCodingError) -> Self {
        try core.readPresence() ? try core.decodeValue(Wrapped.self) : nil
    }
}

extension Dictionary: BinaryDecodingSpecialized where Key: Decodable, Value: Decodable {
    static func decodeSpecialized(from core: DecoderCore) throws(BinaryCodingError) -> Self {
        var result: [Key: Value] = [:]
        try core.decodeSorted(Key.self) { (key) throws(BinaryCodingError) in
            let value: Value
            do throws(BinaryCodingError) {
                value = try core.decodeValue(Value.self)
            } catch {
                throw error.within("[value]")
            }
            // Distinct key bytes can still be equal keys (0.0 and -0.0).
            guard result.updateValue(value, forKey: key) == nil else {
                throw BinaryCodingError(.invalidValue, "duplicate dictionary key")
            }
        }
        return result
    }
}

extension Set: BinaryDecodingSpecialized where Element: Decodable {
    static func decodeSpecialized(from core: DecoderCore) throws(BinaryCodingError) -> Self {
        var result = Set<Element>()
        try core.decodeSorted(Element.self) { (element) throws(BinaryCodingError) in
            guard result.insert(element).inserted else {
                throw BinaryCodingError(.invalidValue, "duplicate set element")
            }
        }
        return result
    }
}

// MARK: - Containers

struct KeyedReader<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let core: DecoderCore
    let id: Int
    var codingPath: [any CodingKey] { [] }

    /// Positional: the keys are not stored, so this can only answer for a
    /// container whose next entry is a nested keyed container (which stores
    /// its key name), the shape synthesized enum `Codable` uses.
    var allKeys: [Key] {
        if let peeked = core.peekedKey, peeked.containerID == id {
            return Key(stringValue: peeked.name).map { [$0] } ?? []
        }
        guard let name = try? core.readString() else { return [] }
        core.peekedKey = PeekedKey(containerID: id, name: name, isClaimed: false)
        return Key(stringValue: name).map { [$0] } ?? []
    }

    /// Absence is encoded with a presence byte, so every key is "there".
    func contains(_ key: Key) -> Bool { true }

    @inline(__always) private func read<T>(
        _ key: Key, _ body: () throws(BinaryCodingError) -> T
    ) throws(BinaryCodingError) -> T {
        do {
            return try body()
        } catch {
            throw error.within(key.stringValue)
        }
    }

    // Reads a presence byte, so the default `decodeIfPresent` (contains, then
    // decodeNil, then decode) reads exactly what `encodeIfPresent` wrote.
    func decodeNil(forKey key: Key) throws(BinaryCodingError) -> Bool {
        try read(key) { () throws(BinaryCodingError) in try !core.readPresence() }
    }
    func decode(_ type: Bool.Type, forKey key: Key) throws(BinaryCodingError) -> Bool { try read(key, core.readBool) }
    func decode(_ type: String.Type, forKey key: Key) throws(BinaryCodingError) -> String {
        try read(key, core.readString)
    }
    func decode(_ type: Double.Type, forKey key: Key) throws(BinaryCodingError) -> Double {
        try read(key, core.readDouble)
    }
    func decode(_ type: Float.Type, forKey key: Key) throws(BinaryCodingError) -> Float {
        try read(key, core.readFloat)
    }
    func decode(_ type: Int.Type, forKey key: Key) throws(BinaryCodingError) -> Int {
        try read(key) { () throws(BinaryCodingError) in try core.readSigned(Int.self) }
    }
    func decode(_ type: Int8.Type, forKey key: Key) throws(BinaryCodingError) -> Int8 {
        try read(key) { () throws(BinaryCodingError) in Int8(bitPattern: try core.readByte()) }
    }
    func decode(_ type: Int16.Type, forKey key: Key) throws(BinaryCodingError) -> Int16 {
        try read(key) { () throws(BinaryCodingError) in try core.readSigned(Int16.self) }
    }
    func decode(_ type: Int32.Type, forKey key: Key) throws(BinaryCodingError) -> Int32 {
        try read(key) { () throws(BinaryCodingError) in try core.readSigned(Int32.self) }
    }
    func decode(_ type: Int64.Type, forKey key: Key) throws(BinaryCodingError) -> Int64 {
        try read(key) { () throws(BinaryCodingError) in try core.readSigned() }
    }
    func decode(_ type: UInt.Type, forKey key: Key) throws(BinaryCodingError) -> UInt {
        try read(key) { () throws(BinaryCodingError) in try core.readUnsigned(UInt.self) }
    }
    func decode(_ type: UInt8.Type, forKey key: Key) throws(BinaryCodingError) -> UInt8 { try read(key, core.readByte) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws(BinaryCodingError) -> UInt16 {
        try read(key) { () throws(BinaryCodingError) in try core.readUnsigned(UInt16.self) }
    }
    func decode(_ type: UInt32.Type, forKey key: Key) throws(BinaryCodingError) -> UInt32 {
        try read(key) { () throws(BinaryCodingError) in try core.readUnsigned(UInt32.self) }
    }
    func decode(_ type: UInt64.Type, forKey key: Key) throws(BinaryCodingError) -> UInt64 {
        try read(key, core.readVarint)
    }
    func decode(_ type: Int128.Type, forKey key: Key) throws(BinaryCodingError) -> Int128 {
        try read(key, core.readWideSigned)
    }
    func decode(_ type: UInt128.Type, forKey key: Key) throws(BinaryCodingError) -> UInt128 {
        try read(key, core.readWideVarint)
    }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws(BinaryCodingError) -> T {
        try read(key) { () throws(BinaryCodingError) in try core.decodeValue(T.self) }
    }

    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws(BinaryCodingError) -> T? {
        try read(key) { () throws(BinaryCodingError) in try core.readPresence() ? try core.decodeValue(T.self) : nil }
    }

    func nestedContainer<NestedKey: CodingKey>(
        keyedBy type: NestedKey.Type, forKey key: Key
    ) throws(BinaryCodingError) -> KeyedDecodingContainer<NestedKey> {
        let name: String
        if let peeked = core.peekedKey, peeked.containerID == id, !peeked.isClaimed {
            name = peeked.name
            core.peekedKey?.isClaimed = true
        } else {
            name = try read(key, core.readString)
        }
        guard name == key.stringValue else {
            throw BinaryCodingError(.invalidValue, "expected nested key \"\(key.stringValue)\", found \"\(name)\"")
        }
        return KeyedDecodingContainer(KeyedReader<NestedKey>(core: core, id: core.newContainerID()))
    }

    func nestedUnkeyedContainer(forKey key: Key) throws(BinaryCodingError) -> any UnkeyedDecodingContainer {
        try read(key) { () throws(BinaryCodingError) in try UnkeyedReader(core: core) }
    }

    func superDecoder() -> any Decoder { core }
    func superDecoder(forKey key: Key) -> any Decoder { core }
}

struct UnkeyedReader: UnkeyedDecodingContainer {
    let core: DecoderCore
    let elementCount: Int
    var currentIndex = 0
    var codingPath: [any CodingKey] { [] }
    var count: Int? { elementCount }
    var isAtEnd: Bool { currentIndex >= elementCount }

    init(core: DecoderCore) throws(BinaryCodingError) {
        self.core = core
        elementCount = try core.readCount()
    }

    /// Runs `body` for the next element, naming it in errors.
    @inline(__always) private mutating func next<T>(
        _ body: () throws(BinaryCodingError) -> T
    ) throws(BinaryCodingError) -> T {
        guard currentIndex < elementCount else {
            throw BinaryCodingError(.invalidValue, "read past the \(elementCount) elements").within("[\(currentIndex)]")
        }
        do {
            let value = try body()
            currentIndex += 1
            return value
        } catch {
            throw error.within("[\(currentIndex)]")
        }
    }

    /// Reads a presence byte; 0 is a nil element, 1 means the element's value follows.
    mutating func decodeNil() throws(BinaryCodingError) -> Bool {
        guard currentIndex < elementCount else {
            throw BinaryCodingError(.invalidValue, "read past the \(elementCount) elements").within("[\(currentIndex)]")
        }
        let isPresent: Bool
        do {
            isPresent = try core.readPresence()
        } catch {
            throw error.within("[\(currentIndex)]")
        }
        if !isPresent { currentIndex += 1 }
        return !isPresent
    }

    mutating func decode(_ type: Bool.Type) throws(BinaryCodingError) -> Bool { try next(core.readBool) }
    mutating func decode(_ type: String.Type) throws(BinaryCodingError) -> String { try next(core.readString) }
    mutating func decode(_ type: Double.Type) throws(BinaryCodingError) -> Double { try next(core.readDouble) }
    mutating func decode(_ type: Float.Type) throws(BinaryCodingError) -> Float { try next(core.readFloat) }
    mutating func decode(_ type: Int.Type) throws(BinaryCodingError) -> Int {
        let core = core; return try next { () throws(BinaryCodingError) in try core.readSigned(Int.self) }
    }
    mutating func decode(_ type: Int8.Type) throws(BinaryCodingError) -> Int8 {
        let core = core; return try next { () throws(BinaryCodingError) in Int8(bitPattern: try core.readByte()) }
    }
    mutating func decode(_ type: Int16.Type) throws(BinaryCodingError) -> Int16 {
        let core = core; return try next { () throws(BinaryCodingError) in try core.readSigned(Int16.self) }
    }
    mutating func decode(_ type: Int32.Type) throws(BinaryCodingError) -> Int32 {
        let core = core; return try next { () throws(BinaryCodingError) in try core.readSigned(Int32.self) }
    }
    mutating func decode(_ type: Int64.Type) throws(BinaryCodingError) -> Int64 {
        let core = core; return try next { () throws(BinaryCodingError) in try core.readSigned() }
    }
    mutating func decode(_ type: UInt.Type) throws(BinaryCodingError) -> UInt {
        let core = core; return try next { () throws(BinaryCodingError) in try core.readUnsigned(UInt.self) }
    }
    mutating func decode(_ type: UInt8.Type) throws(BinaryCodingError) -> UInt8 { try next(core.readByte) }
    mutating func decode(_ type: UInt16.Type) throws(BinaryCodingError) -> UInt16 {
        let core = core; return try next { () throws(BinaryCodingError) in try core.readUnsigned(UInt16.self) }
    }
    mutating func decode(_ type: UInt32.Type) throws(BinaryCodingError) -> UInt32 {
        let core = core; return try next { () throws(BinaryCodingError) in try core.readUnsigned(UInt32.self) }
    }
    mutating func decode(_ type: UInt64.Type) throws(BinaryCodingError) -> UInt64 { try next(core.readVarint) }
    mutating func decode(_ type: Int128.Type) throws(BinaryCodingError) -> Int128 { try next(core.readWideSigned) }
    mutating func decode(_ type: UInt128.Type) throws(BinaryCodingError) -> UInt128 { try next(core.readWideVarint) }

    mutating func decode<T: Decodable>(_ type: T.Type) throws(BinaryCodingError) -> T {
        let core = core
        return try next { () throws(BinaryCodingError) in
            let start = core.position
            let value = try core.decodeValue(T.self)
            // Mirrors the encoder's rule; keeps decoding work linear in the input.
            guard core.position > start else {
                throw BinaryCodingError(.invalidValue, "element occupies zero bytes")
            }
            return value
        }
    }

    mutating func decodeIfPresent<T: Decodable>(_ type: T.Type) throws(BinaryCodingError) -> T? {
        let core = core
        return try next { () throws(BinaryCodingError) in
            try core.readPresence() ? try core.decodeValue(T.self) : nil
        }
    }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy type: NestedKey.Type
    ) throws(BinaryCodingError) -> KeyedDecodingContainer<NestedKey> {
        let core = core
        return try next { () throws(BinaryCodingError) in
            KeyedDecodingContainer(KeyedReader<NestedKey>(core: core, id: core.newContainerID()))
        }
    }

    mutating func nestedUnkeyedContainer() throws(BinaryCodingError) -> any UnkeyedDecodingContainer {
        let core = core
        return try next { () throws(BinaryCodingError) in try UnkeyedReader(core: core) }
    }

    mutating func superDecoder() throws(BinaryCodingError) -> any Decoder {
        let core = core
        return try next { () throws(BinaryCodingError) in core }
    }
}

struct SingleValueReader: SingleValueDecodingContainer {
    let core: DecoderCore
    var codingPath: [any CodingKey] { [] }

    func decodeNil() -> Bool {
        // Non-throwing requirement: peek a presence byte and consume it only
        // when it says nil, so a following `decode` sees the same bytes either way.
        guard core.position < core.buffer.count, core.buffer[core.position] == 0 else { return false }
        core.position += 1
        return true
    }
    func decode(_ type: Bool.Type) throws(BinaryCodingError) -> Bool { try core.readBool() }
    func decode(_ type: String.Type) throws(BinaryCodingError) -> String { try core.readString() }
    func decode(_ type: Double.Type) throws(BinaryCodingError) -> Double { try core.readDouble() }
    func decode(_ type: Float.Type) throws(BinaryCodingError) -> Float { try core.readFloat() }
    func decode(_ type: Int.Type) throws(BinaryCodingError) -> Int { try core.readSigned(Int.self) }
    func decode(_ type: Int8.Type) throws(BinaryCodingError) -> Int8 { Int8(bitPattern: try core.readByte()) }
    func decode(_ type: Int16.Type) throws(BinaryCodingError) -> Int16 { try core.readSigned(Int16.self) }
    func decode(_ type: Int32.Type) throws(BinaryCodingError) -> Int32 { try core.readSigned(Int32.self) }
    func decode(_ type: Int64.Type) throws(BinaryCodingError) -> Int64 { try core.readSigned() }
    func decode(_ type: UInt.Type) throws(BinaryCodingError) -> UInt { try core.readUnsigned(UInt.self) }
    func decode(_ type: UInt8.Type) throws(BinaryCodingError) -> UInt8 { try core.readByte() }
    func decode(_ type: UInt16.Type) throws(BinaryCodingError) -> UInt16 { try core.readUnsigned(UInt16.self) }
    func decode(_ type: UInt32.Type) throws(BinaryCodingError) -> UInt32 { try core.readUnsigned(UInt32.self) }
    func decode(_ type: UInt64.Type) throws(BinaryCodingError) -> UInt64 { try core.readVarint() }
    func decode(_ type: Int128.Type) throws(BinaryCodingError) -> Int128 { try core.readWideSigned() }
    func decode(_ type: UInt128.Type) throws(BinaryCodingError) -> UInt128 { try core.readWideVarint() }
    func decode<T: Decodable>(_ type: T.Type) throws(BinaryCodingError) -> T { try core.decodeValue(T.self) }
}
