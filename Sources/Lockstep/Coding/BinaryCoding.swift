// Compact, deterministic binary encoding for Swift `Codable`.
//
// FORMAT (version 1). A decoder can be written from this description alone.
//
// The encoding of a value is the concatenation of the encodings of the parts
// its `encode(to:)` writes, in the order it writes them. Nothing describes
// the types: the reader must know the type it expects (like the writer did).
//
// Scalars
//   varint      unsigned LEB128: 7 bits per byte, least significant group
//               first, high bit set on every byte except the last. It must
//               be minimal (no trailing 0x00 group) and fit in 64 bits; the
//               decoder rejects anything else, so every value has exactly one
//               encoding.
//   UInt, UInt16, UInt32, UInt64
//               varint of the value.
//   Int, Int16, Int32, Int64
//               varint of the zigzag form: (n << 1) ^ (n >> 63), so that
//               small negative numbers are short (-1 -> 1, 1 -> 2).
//               Decoding a value outside the target type's range is an error.
//   UInt128, Int128
//               the same, widened: varint (at most 19 bytes, 128 bits) of the
//               value, or of the zigzag form (n << 1) ^ (n >> 127).
//   UInt8, Int8 exactly one raw byte (Int8 as two's complement). This is the
//               one exception to "integers are varints": it keeps every byte
//               one byte long, and makes an element-by-element `[UInt8]`
//               identical to the fast bulk form below.
//   Bool        one byte, 0 = false, 1 = true; any other byte is an error.
//   Float       4 bytes, the IEEE 754 bit pattern, little-endian.
//   Double      8 bytes, the IEEE 754 bit pattern, little-endian. The bits
//               are kept as they are: -0.0 and NaN payloads round-trip.
//   String      varint byte count, then that many bytes of UTF-8. Invalid
//               UTF-8 is an error.
//
// Optionals ("presence byte")
//   nil is the single byte 0; a present value is the byte 1 followed by the
//   value's encoding. This applies to `Optional` values encoded anywhere,
//   `encodeIfPresent`/`decodeIfPresent`, and `encodeNil`/`decodeNil` (which
//   write/read the byte 0; keyed and unkeyed `decodeNil` read a presence
//   byte and return false after consuming a 1; the single-value container's
//   `decodeNil`, which cannot throw, consumes the next byte only if it is 0).
//   `Int??` nests: .some(nil) is [1, 0]. Hand-written code that writes either
//   `encodeNil()` or a bare value cannot be decoded reliably (a bare value may
//   start with a 0 byte): encode an `Optional` instead.
//
// Keyed containers (structs, classes)
//   POSITIONAL: the fields are written in the order `encode(to:)` encodes
//   them, WITHOUT key names and without a field count. The decoder hands out
//   the next field whatever key `init(from:)` asks for. Consequences:
//   - adding, removing or reordering stored properties (or CodingKeys) is a
//     breaking format change: old bytes decode into the wrong fields or fail;
//     version the enclosing message instead;
//   - `contains(_:)` always answers true (absence is expressed with the
//     presence byte, not by a missing key);
//   - a field whose `encode` is skipped conditionally must use
//     `encodeIfPresent`, never an `if` around `encode`.
//   Exception, for enums: `nestedContainer(keyedBy:forKey:)` on a keyed
//   container writes the key's `stringValue` as a String before the nested
//   fields. Synthesized `Codable` for enums with or without associated values
//   encodes the case as exactly such a nested container (keyed by the case
//   name) and decodes it by asking `allKeys`; `allKeys` therefore reads that
//   String and answers the single key it names. So an enum case costs
//   1 + (case name length) bytes, and reordering cases is compatible while
//   renaming them is not. `allKeys` is only meaningful on a container whose
//   next entry is such a nested container (true for synthesized enums).
//   Why positional rather than a field count plus key names per container
//   (which would make `allKeys`, `contains` and field evolution work
//   everywhere): the names cost more than the data for small commands
//   (+23 bytes, +21%, on Lockstep's 108-byte command), and every member runs
//   the same code version anyway; the enum exception is the one place where
//   synthesized code cannot work without a name.
//   `nestedUnkeyedContainer(forKey:)`, `superEncoder()` and
//   `superEncoder(forKey:)` write nothing of their own: the nested or
//   superclass content follows inline.
//
// Unkeyed containers (arrays, custom sequences)
//   varint element count, then the elements. Every element must occupy at
//   least one byte (a value that encodes to nothing, such as an empty struct,
//   cannot be an array element: encoding throws `unsupported`); this lets the
//   decoder bound a count by the bytes left.
//   Fast bulk forms, same bytes as the element-wise form: `[UInt8]`,
//   `ArraySlice<UInt8>` and `Data` are a varint byte count followed by the
//   raw bytes.
//
// Dictionaries and sets (deterministic regardless of hash seed)
//   `Dictionary` (any key type): varint entry count, then for each entry the
//   key's encoding followed by the value's encoding. Entries are sorted by
//   the key's encoded bytes, compared as unsigned bytes lexicographically
//   (a shorter prefix first). `Set`: varint count, then the elements sorted
//   the same way. The decoder rejects entries that are not in strictly
//   ascending order, so duplicated or reordered keys are errors and every
//   dictionary/set has exactly one encoding.
//   These dedicated forms (and the Optional presence byte) are chosen where
//   a value enters the coder: the top-level call and every container's
//   `encode`/`decode`. Calling `value.encode(to: encoder)` directly on an
//   Optional, Dictionary or Set bypasses them and is not supported.
//
// Top level: the encoding of the one value, and nothing after it (trailing
// bytes are an error).
//
// Decoder limits: counts and byte lengths larger than the bytes remaining are
// `truncated` (checked before anything is allocated); value nesting deeper
// than `depthMax` levels is `tooDeep`. Every value other than a scalar or a
// bulk byte array (struct, enum, class, array, dictionary, set, optional)
// is one level. The encoder applies the same limit, so it never writes bytes
// a decoder with the same `depthMax` refuses.
//
// Implementation notes: encoding streams into one buffer (no intermediate
// tree); an unkeyed container's count is a placeholder byte patched when the
// value that opened it returns. `codingPath` is always empty while coding;
// the path is rebuilt as an error unwinds and reported in the error.

import Foundation

/// Why a binary encode or decode failed.
public struct BinaryCodingError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable {
        /// The input ended before the value did, or a length exceeds the input.
        case truncated
        /// The top-level value was decoded but bytes are left over.
        case trailingBytes
        /// Bytes that no valid encoding contains (bad Bool, overlong varint,
        /// out-of-range integer, invalid UTF-8, unknown enum case, keys out of order).
        case invalidValue
        /// Values nested deeper than `BinaryDecoder.depthMax`.
        case tooDeep
        /// A `Codable` usage this format cannot represent.
        case unsupported
        /// An error thrown by a type's own `encode(to:)` / `init(from:)`.
        case custom
    }

    public var code: Code
    /// Where the failure happened, outermost first: field names and `[index]`.
    public var codingPath: [String]
    /// What went wrong, without the path.
    public var detail: String

    public init(_ code: Code, _ detail: String, codingPath: [String] = []) {
        self.code = code
        self.detail = detail
        self.codingPath = codingPath
    }

    /// The detail and the coding path, for humans.
    public var message: String {
        codingPath.isEmpty ? "\(detail) (at top level)" : "\(detail) (at \(pathDescription))"
    }

    public var description: String { "BinaryCodingError.\(code.rawValue): \(message)" }

    var pathDescription: String {
        var text = ""
        for component in codingPath {
            if !component.hasPrefix("["), !text.isEmpty { text += "." }
            text += component
        }
        return text
    }

    /// Adds an enclosing path component while the error unwinds; building the
    /// path only on failure keeps the success path free of bookkeeping.
    func within(_ component: String) -> BinaryCodingError {
        var copy = self
        copy.codingPath.insert(component, at: 0)
        return copy
    }

    static func wrapping(_ error: any Error) -> BinaryCodingError {
        switch error {
        case let error as BinaryCodingError:
            return error
        case let error as DecodingError:
            return BinaryCodingError(.invalidValue, "\(error)")
        case let error as EncodingError:
            return BinaryCodingError(.invalidValue, "\(error)")
        default:
            return BinaryCodingError(.custom, "\(error)")
        }
    }
}

/// Encodes `Encodable` values into the format described at the top of this file.
public struct BinaryEncoder: Sendable {
    /// Deepest value nesting written, in levels. Matches the decoder's
    /// default so a member never produces bytes the others refuse.
    public var depthMax = 64

    public init() {}

    public func encode<T: Encodable>(_ value: T) throws(BinaryCodingError) -> [UInt8] {
        var bytes: [UInt8] = []
        // Most commands fit; saves the first few regrowths.
        bytes.reserveCapacity(128)
        try encode(value, into: &bytes)
        return bytes
    }

    /// Appends the encoding of `value` to `bytes`. On failure `bytes` is left
    /// as it was.
    public func encode<T: Encodable>(_ value: T, into bytes: inout [UInt8]) throws(BinaryCodingError) {
        let originalCount = bytes.count
        let core = EncoderCore(depthMax: depthMax)
        // Swap instead of copying so the caller's buffer is appended to in place.
        swap(&core.bytes, &bytes)
        do {
            try core.encodeValue(value)
        } catch {
            swap(&core.bytes, &bytes)
            bytes.removeSubrange(originalCount...)
            throw error
        }
        swap(&core.bytes, &bytes)
    }
}

/// Decodes values written by `BinaryEncoder`. Never traps on malformed input.
public struct BinaryDecoder: Sendable {
    /// Deepest value nesting accepted, in levels; protects the stack from
    /// hostile input.
    public var depthMax = 64

    public init() {}

    public func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws(BinaryCodingError) -> T {
        try bytes.withUnsafeBufferPointer { (buffer) throws(BinaryCodingError) -> T in
            try decode(type, buffer: buffer)
        }
    }

    public func decode<T: Decodable>(_ type: T.Type, from bytes: ArraySlice<UInt8>) throws(BinaryCodingError) -> T {
        try bytes.withUnsafeBufferPointer { (buffer) throws(BinaryCodingError) -> T in
            try decode(type, buffer: buffer)
        }
    }

    public func decode<T: Decodable>(_ type: T.Type, from bytes: some Collection<UInt8>) throws(BinaryCodingError) -> T
    {
        do {
            if let result = try bytes.withContiguousStorageIfAvailable({ buffer in
                try decode(type, buffer: buffer)
            }) {
                return result
            }
        } catch {
            throw BinaryCodingError.wrapping(error)
        }
        let copy = Array(bytes)
        return try decode(type, from: copy)
    }

    private func decode<T: Decodable>(_ type: T.Type, buffer: UnsafeBufferPointer<UInt8>) throws(BinaryCodingError) -> T
    {
        let core = DecoderCore(buffer: buffer, depthMax: depthMax)
        let value = try core.decodeValue(type)
        guard core.position == buffer.count else {
            throw BinaryCodingError(.trailingBytes, "\(buffer.count - core.position) bytes after the value")
        }
        return value
    }
}
