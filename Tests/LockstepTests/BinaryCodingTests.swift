import Foundation
import Testing

@testable import Lockstep

// MARK: - Fixtures

struct Scalars: Codable, Equatable {
    var int: Int
    var int8: Int8
    var int16: Int16
    var int32: Int32
    var int64: Int64
    var uint: UInt
    var uint8: UInt8
    var uint16: UInt16
    var uint32: UInt32
    var uint64: UInt64
    var bool: Bool
    var float: Float
    var double: Double
    var string: String
}

struct Inner: Codable, Equatable {
    var name: String
    var tags: [String]
    var weight: Double
}

struct Outer: Codable, Equatable {
    var id: UInt64
    var inner: Inner
    var inners: [Inner]
    var maybe: Inner?
    var flags: [Bool]
}

struct WithOptionals: Codable, Equatable {
    var a: Int?
    var b: String?
    var c: Int??
    var d: [Int?]
    var e: Inner?
}

enum Op: Codable, Equatable {
    case put
    case delete
    case compareAndSwap
}

enum Shape: Codable, Equatable {
    case empty
    case circle(radius: Double)
    case rect(Double, Double)
    case labeled(String, inner: Inner?, [Int])
}

enum RawOp: String, Codable {
    case get, set
}

struct Node: Codable, Equatable {
    var children: [Node]
}

struct Empty: Codable, Equatable {}

class Animal: Codable {
    var legs: Int
    init(legs: Int) { self.legs = legs }
    enum CodingKeys: String, CodingKey { case legs }
}

final class Dog: Animal {
    var name: String
    init(legs: Int, name: String) {
        self.name = name
        super.init(legs: legs)
    }
    enum DogKeys: String, CodingKey { case name }
    required init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: DogKeys.self)
        name = try container.decode(String.self, forKey: .name)
        try super.init(from: container.superDecoder())
    }
    override func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: DogKeys.self)
        try container.encode(name, forKey: .name)
        try super.encode(to: container.superEncoder())
    }
}

/// Deterministic xorshift so the fuzz inputs are the same on every run.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
}

func roundTrip<T: Codable & Equatable>(_ value: T) throws -> T {
    let bytes = try BinaryEncoder().encode(value)
    return try BinaryDecoder().decode(T.self, from: bytes)
}

func decodeError<T: Decodable>(_ type: T.Type, _ bytes: [UInt8], depthMax: Int = 64) -> BinaryCodingError? {
    var decoder = BinaryDecoder()
    decoder.depthMax = depthMax
    do {
        _ = try decoder.decode(type, from: bytes)
        return nil
    } catch {
        return error
    }
}

let sampleOuter = Outer(
    id: 300,
    inner: Inner(name: "héllo", tags: ["a", "bc"], weight: 1.5),
    inners: [Inner(name: "", tags: [], weight: -0.0), Inner(name: "🦊", tags: ["x"], weight: 3)],
    maybe: Inner(name: "m", tags: [], weight: 0),
    flags: [true, false, true]
)

// MARK: - Round trips

@Test func scalarEdgesRoundTrip() throws {
    for value in [
        Scalars(
            int: .min, int8: .min, int16: .min, int32: .min, int64: .min, uint: 0, uint8: 0, uint16: 0,
            uint32: 0, uint64: 0, bool: false, float: -.infinity, double: -0.0, string: ""),
        Scalars(
            int: .max, int8: .max, int16: .max, int32: .max, int64: .max, uint: .max, uint8: .max,
            uint16: .max, uint32: .max, uint64: .max, bool: true, float: .greatestFiniteMagnitude,
            double: .leastNonzeroMagnitude, string: "日本語 🦊 e\u{301}"),
        Scalars(
            int: -1, int8: -1, int16: 0, int32: 1, int64: -64, uint: 127, uint8: 128, uint16: 128,
            uint32: 16383, uint64: 16384, bool: true, float: 0.1, double: .pi, string: "a"),
    ] {
        #expect(try roundTrip(value) == value)
    }
}

@Test func knownEncodings() throws {
    let encoder = BinaryEncoder()
    #expect(try encoder.encode(0) == [0])
    #expect(try encoder.encode(-1) == [1])
    #expect(try encoder.encode(1) == [2])
    #expect(try encoder.encode(UInt64(300)) == [0xAC, 0x02])
    #expect(try encoder.encode(UInt64.max) == [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])
    #expect(try encoder.encode(Int.min) == [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])
    #expect(try encoder.encode(true) == [1])
    #expect(try encoder.encode("hé") == [3, 0x68, 0xC3, 0xA9])
    #expect(try encoder.encode(1.0 as Double) == [0, 0, 0, 0, 0, 0, 0xF0, 0x3F])
    #expect(try encoder.encode([UInt8(200), 1]) == [2, 200, 1])
    #expect(try encoder.encode(ContiguousArray<UInt8>([200, 1])) == [2, 200, 1])
    #expect(try encoder.encode(Int?.none) == [0])
    #expect(try encoder.encode(Int??.some(nil)) == [1, 0])
    #expect(try encoder.encode(Op.put) == [3, 0x70, 0x75, 0x74])
}

@Test func floatBitPatternsRoundTrip() throws {
    let signalingNaN = Double(bitPattern: 0x7FF4_0000_0000_0001)
    let decoded = try roundTrip([signalingNaN, -0.0, Double.nan].map(\.bitPattern))  // sanity on UInt64 path
    #expect(decoded == [signalingNaN, -0.0, Double.nan].map(\.bitPattern))
    let bytes = try BinaryEncoder().encode([signalingNaN, -0.0])
    let doubles = try BinaryDecoder().decode([Double].self, from: bytes)
    #expect(doubles.map(\.bitPattern) == [signalingNaN.bitPattern, (-0.0).bitPattern])
    let floatNaN = Float(bitPattern: 0x7FC0_1234)
    let float = try BinaryDecoder().decode(Float.self, from: try BinaryEncoder().encode(floatNaN))
    #expect(float.bitPattern == floatNaN.bitPattern)
}

@Test func nestedStructsRoundTrip() throws {
    #expect(try roundTrip(sampleOuter) == sampleOuter)
    var noMaybe = sampleOuter
    noMaybe.maybe = nil
    #expect(try roundTrip(noMaybe) == noMaybe)
}

@Test func optionalsRoundTrip() throws {
    let cases = [
        WithOptionals(a: nil, b: nil, c: nil, d: [], e: nil),
        WithOptionals(a: 0, b: "", c: .some(nil), d: [nil, 0, nil], e: Inner(name: "n", tags: [], weight: 1)),
        WithOptionals(a: -5, b: "x", c: .some(.some(7)), d: [1], e: nil),
    ]
    for value in cases {
        #expect(try roundTrip(value) == value)
    }
    // The three states of Int?? must stay distinct.
    let encodings = try cases.map { try BinaryEncoder().encode($0.c) }
    #expect(Set(encodings).count == 3)
}

@Test func enumsRoundTrip() throws {
    for op in [Op.put, .delete, .compareAndSwap] {
        #expect(try roundTrip(op) == op)
    }
    let shapes: [Shape] = [
        .empty, .circle(radius: 2), .rect(1, -1),
        .labeled("l", inner: nil, []), .labeled("", inner: Inner(name: "i", tags: ["t"], weight: 0), [1, 2, 3]),
    ]
    #expect(try roundTrip(shapes) == shapes)
    let raw = try BinaryDecoder().decode([RawOp].self, from: try BinaryEncoder().encode([RawOp.get, .set]))
    #expect(raw == [.get, .set])
}

@Test func unknownEnumCaseIsInvalid() throws {
    var bytes: [UInt8] = [4]
    bytes += Array("nope".utf8)
    #expect(decodeError(Op.self, bytes)?.code == .invalidValue)
    #expect(decodeError(RawOp.self, [4] + Array("nope".utf8))?.code == .invalidValue)
}

@Test func arraysOfStructsRoundTrip() throws {
    let many = (0..<300).map { Inner(name: "n\($0)", tags: Array(repeating: "t", count: $0 % 4), weight: Double($0)) }
    #expect(try roundTrip(many) == many)
    // 300 elements needs a two-byte count: exercises widening the placeholder.
    let bytes = try BinaryEncoder().encode(many)
    #expect(Array(bytes.prefix(2)) == [0xAC, 0x02])
    let nested = [[[1, 2], []], [], [Array(0..<200)]]
    #expect(try roundTrip(nested) == nested)
}

@Test func dictionariesAreDeterministic() throws {
    let pairs = (0..<500).map { ("key-\($0)", [UInt8]("value-\($0)".utf8)) }
    var forward: [String: [UInt8]] = [:]
    for (key, value) in pairs { forward[key] = value }
    var backward: [String: [UInt8]] = [:]
    backward.reserveCapacity(2000)
    for (key, value) in pairs.reversed() { backward[key] = value }
    #expect(Array(forward.keys) != Array(backward.keys), "fixture should iterate differently")
    let forwardBytes = try BinaryEncoder().encode(forward)
    let backwardBytes = try BinaryEncoder().encode(backward)
    let isSame = forwardBytes == backwardBytes  // a Bool, so a failure does not dump 10 KB of bytes
    #expect(isSame)
    #expect(try BinaryDecoder().decode([String: [UInt8]].self, from: forwardBytes) == forward)

    let intKeyed = Dictionary(uniqueKeysWithValues: (-50..<50).map { ($0, "v\($0)") })
    #expect(try roundTrip(intKeyed) == intKeyed)
    let enumKeyed: [RawOp: [Int]] = [.get: [1], .set: []]
    #expect(try roundTrip(enumKeyed) == enumKeyed)
    let set = Set((0..<100).map { "s\($0)" })
    var otherSet = Set<String>(minimumCapacity: 1000)
    for element in set.sorted().reversed() { otherSet.insert(element) }
    #expect(try BinaryEncoder().encode(set) == BinaryEncoder().encode(otherSet))
    #expect(try roundTrip(set) == set)
}

@Test func dictionaryKeysMustBeAscending() throws {
    // {"b": 1, "a": 2} written in the wrong order.
    let misordered: [UInt8] = [2, 1, 0x62, 2, 1, 0x61, 4]
    #expect(decodeError([String: Int].self, misordered)?.code == .invalidValue)
    let duplicated: [UInt8] = [2, 1, 0x61, 2, 1, 0x61, 4]
    #expect(decodeError([String: Int].self, duplicated)?.code == .invalidValue)
    #expect(try BinaryDecoder().decode([String: Int].self, from: [2, 1, 0x61, 4, 1, 0x62, 2]) == ["a": 2, "b": 1])
}

@Test func classesWithSuperEncoderRoundTrip() throws {
    let dog = Dog(legs: 3, name: "Rex")
    let bytes = try BinaryEncoder().encode(dog)
    #expect(bytes == [3, 0x52, 0x65, 0x78, 6])
    let decoded = try BinaryDecoder().decode(Dog.self, from: bytes)
    #expect(decoded.name == "Rex")
    #expect(decoded.legs == 3)
}

@Test func emptyArrayElementsAreUnsupported() throws {
    #expect(try roundTrip(Empty()) == Empty())
    #expect(throws: BinaryCodingError.self) { try BinaryEncoder().encode([Empty()]) }
    do {
        _ = try BinaryEncoder().encode([Empty()])
    } catch {
        #expect(error.code == .unsupported)
        #expect(error.codingPath == ["[0]"])
    }
}

@Test func encodeIntoAppendsAndRestoresOnFailure() throws {
    var bytes: [UInt8] = [9, 9]
    try BinaryEncoder().encode(UInt64(1), into: &bytes)
    #expect(bytes == [9, 9, 1])
    #expect(throws: BinaryCodingError.self) { try BinaryEncoder().encode([Empty()], into: &bytes) }
    #expect(bytes == [9, 9, 1])
}

@Test func largeByteArrayRoundTrip() throws {
    let size = 64 << 20
    var big = [UInt8](repeating: 0, count: size)
    for index in stride(from: 0, to: size, by: 4093) { big[index] = UInt8(truncatingIfNeeded: index) }
    let bytes = try BinaryEncoder().encode(big)
    #expect(bytes.count == size + 4)
    let decoded = try BinaryDecoder().decode([UInt8].self, from: bytes)
    #expect(decoded == big)
    let data = try BinaryDecoder().decode(Data.self, from: bytes)
    #expect(data.count == size)
}

@Test func decodesFromSlicesAndCollections() throws {
    let bytes = [0xEE] + (try BinaryEncoder().encode(sampleOuter))
    #expect(try BinaryDecoder().decode(Outer.self, from: bytes[1...]) == sampleOuter)
    #expect(try BinaryDecoder().decode(Outer.self, from: Data(bytes.dropFirst())) == sampleOuter)
    #expect(try BinaryDecoder().decode(Outer.self, from: bytes.dropFirst().reversed().reversed()) == sampleOuter)
}

// MARK: - Malformed input

@Test func everyTruncationFails() throws {
    let full = try BinaryEncoder().encode(sampleOuter)
    for length in 0..<full.count {
        let error = decodeError(Outer.self, Array(full.prefix(length)))
        #expect(error != nil, "prefix of \(length) bytes decoded")
        #expect(
            error?.code == .truncated || error?.code == .invalidValue, "prefix \(length): \(String(describing: error))")
    }
    let shapes = try BinaryEncoder().encode([Shape.labeled("ab", inner: Inner(name: "c", tags: ["d"], weight: 1), [5])])
    for length in 0..<shapes.count {
        #expect(decodeError([Shape].self, Array(shapes.prefix(length))) != nil, "prefix of \(length) bytes decoded")
    }
}

@Test func trailingBytesRejected() throws {
    let error = decodeError(UInt64.self, [1, 0])
    #expect(error?.code == .trailingBytes)
}

@Test func hugeLengthPrefixDoesNotAllocate() throws {
    let hugeCount: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]
    #expect(decodeError([UInt8].self, hugeCount)?.code == .truncated)
    #expect(decodeError(String.self, hugeCount)?.code == .truncated)
    #expect(decodeError([Inner].self, hugeCount)?.code == .truncated)
    #expect(decodeError([String: Int].self, hugeCount)?.code == .truncated)
    #expect(decodeError(Data.self, hugeCount + [1, 2, 3])?.code == .truncated)
}

@Test func invalidScalarsRejected() throws {
    #expect(decodeError(Bool.self, [2])?.code == .invalidValue)
    #expect(decodeError([Bool].self, [1, 2])?.code == .invalidValue)
    #expect(decodeError(Int?.self, [2, 0])?.code == .invalidValue)
    #expect(decodeError(String.self, [2, 0xC3, 0x28])?.code == .invalidValue)
    #expect(decodeError(UInt64.self, [0x80, 0x00])?.code == .invalidValue, "overlong varint")
    #expect(decodeError(UInt64.self, Array(repeating: 0xFF, count: 9) + [0x02])?.code == .invalidValue)
    #expect(decodeError(UInt8.self, [])?.code == .truncated)
    #expect(decodeError(UInt16.self, [0x80, 0x80, 0x04])?.code == .invalidValue, "65536 overflows UInt16")
    #expect(decodeError(Int8.self, [0x80]) == nil)
}

@Test func errorsNameTheCodingPath() throws {
    var bytes = try BinaryEncoder().encode(sampleOuter)
    // The last byte is flags[2]; make it an invalid Bool.
    bytes[bytes.count - 1] = 7
    let error = try #require(decodeError(Outer.self, bytes))
    #expect(error.code == .invalidValue)
    #expect(error.codingPath == ["flags", "[2]"])
    #expect(error.description.contains("flags[2]"))
}

@Test func depthBombIsTooDeep() throws {
    // Node { children: [Node] } nested 1000 deep: each level is the count 1.
    let bomb = [UInt8](repeating: 1, count: 1000) + [0]
    #expect(decodeError(Node.self, bomb)?.code == .tooDeep)
    var node = Node(children: [])
    for _ in 0..<100 { node = Node(children: [node]) }
    do {
        _ = try BinaryEncoder().encode(node)
        Issue.record("encoder accepted a value the default decoder rejects")
    } catch {
        #expect(error.code == .tooDeep)
    }
    var deepEncoder = BinaryEncoder()
    deepEncoder.depthMax = 300
    let bytes = try deepEncoder.encode(node)
    #expect(decodeError(Node.self, bytes)?.code == .tooDeep)
    #expect(decodeError(Node.self, bytes, depthMax: 300) == nil)
}

@Test func randomBytesNeverTrap() throws {
    var generator = SeededGenerator(state: 0x9E37_79B9_7F4A_7C15)
    let valid = try BinaryEncoder().encode(sampleOuter)
    var decodedCount = 0
    for round in 0..<10_000 {
        var bytes: [UInt8]
        if round % 2 == 0 {
            bytes = (0..<Int.random(in: 0..<64, using: &generator)).map { _ in
                UInt8.random(in: 0...255, using: &generator)
            }
        } else {
            // Mutations of a valid encoding reach deeper into the decoder.
            bytes = valid
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            }
        }
        if (try? BinaryDecoder().decode(Outer.self, from: bytes)) != nil { decodedCount += 1 }
        _ = try? BinaryDecoder().decode([Shape].self, from: bytes)
        _ = try? BinaryDecoder().decode([String: [Int?]].self, from: bytes)
        _ = try? BinaryDecoder().decode(Node.self, from: bytes)
        _ = try? BinaryDecoder().decode(Wide.self, from: bytes)
        _ = try? BinaryDecoder().decode(Set<Int?>.self, from: bytes)
    }
    #expect(decodedCount < 10_000)
}

/// Swallows a failed element the way lenient hand-written code might.
struct Lenient: Encodable {
    func encode(to encoder: any Encoder) throws {
        var container = encoder.unkeyedContainer()
        try? container.encode(Empty())
        try? container.encode([Empty()])
        try container.encode(7)
    }
}

@Test func swallowedElementErrorsLeaveConsistentBytes() throws {
    let bytes = try BinaryEncoder().encode(Lenient())
    #expect(bytes == [1, 14])
    #expect(try BinaryDecoder().decode([Int].self, from: bytes) == [7])
}

struct Wide: Codable, Equatable {
    var signed: Int128
    var unsigned: UInt128
    var maybe: Int128?
    var list: [UInt128]
}

@Test func wideIntegersRoundTrip() throws {
    for value in [
        Wide(signed: .min, unsigned: .max, maybe: nil, list: [0, .max]),
        Wide(signed: .max, unsigned: 0, maybe: -1, list: []),
        Wide(signed: 0, unsigned: 1 << 100, maybe: .min, list: [127, 128]),
    ] {
        #expect(try roundTrip(value) == value)
    }
    #expect(try BinaryEncoder().encode(Int128(-1)) == [1])
    #expect(try BinaryEncoder().encode(UInt128.max).count == 19)
    #expect(decodeError(UInt128.self, Array(repeating: 0xFF, count: 18) + [0x04])?.code == .invalidValue)
}
