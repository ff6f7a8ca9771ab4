// TEMPORARY: replaced by the binary coder.
import Foundation
public struct BinaryEncoder {
    public init() {}
    public func encode<T: Encodable>(_ value: T) throws -> [UInt8] { [UInt8](try JSONEncoder().encode(value)) }
    public func encode<T: Encodable>(_ value: T, into bytes: inout [UInt8]) throws { bytes += try encode(value) }
}
public struct BinaryDecoder {
    public init() {}
    public func decode<T: Decodable>(_ type: T.Type, from bytes: some Collection<UInt8>) throws -> T {
        try JSONDecoder().decode(type, from: Data(bytes))
    }
}
