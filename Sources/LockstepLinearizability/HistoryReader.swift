// JSON-lines history reader.
//
// Schema: one JSON object per line; blank lines are skipped.
//
//   {"client":3,"op":"put","key":"k","value":"v","call":123,"return":456,"output":"ok"}
//   {"client":1,"op":"get","key":"k","call":130,"return":140,"output":{"value":"v"}}
//   {"client":1,"op":"get","key":"k","call":150,"return":160,"output":{"value":null}}
//   {"client":2,"op":"delete","key":"k","call":170,"return":180,"output":"ok"}
//   {"client":4,"op":"cas","key":"k","expected":null,"new":"w","call":190,"return":200,"output":{"swapped":true}}
//
//   client   integer, required
//   op       "put" | "get" | "delete" | "cas", required
//   key      string, required
//   value    string, required for put
//   expected string or null (null: key must be absent), required for cas
//   new      string, required for cas
//   call     integer nanoseconds, required
//   return   integer nanoseconds; missing or null: no answer (pending)
//   output   "ok" (put, delete) | {"value": string|null} (get) |
//            {"swapped": bool} (cas); missing or null: unknown (accepts any).
//            Ignored for pending operations.

import Foundation

public enum HistoryReadError: Error, Equatable, CustomStringConvertible {
    case invalidJSON(line: Int, detail: String)
    case missingField(line: Int, field: String)
    case unknownOperation(line: Int, name: String)
    case invalidOutput(line: Int, detail: String)
    case returnBeforeCall(line: Int)
    case unreadableFile(path: String, detail: String)

    public var description: String {
        switch self {
        case .invalidJSON(let line, let detail): return "line \(line): invalid JSON: \(detail)"
        case .missingField(let line, let field): return "line \(line): missing field \"\(field)\""
        case .unknownOperation(let line, let name): return "line \(line): unknown op \"\(name)\""
        case .invalidOutput(let line, let detail): return "line \(line): invalid output: \(detail)"
        case .returnBeforeCall(let line): return "line \(line): return is before call"
        case .unreadableFile(let path, let detail): return "\(path): \(detail)"
        }
    }
}

private struct RawOperation: Decodable {
    var client: Int
    var op: String
    var key: String
    var value: String?
    var expectedPresent: Bool
    var expected: String?
    var new: String?
    var call: UInt64
    var returned: UInt64?
    var output: RawOutput?

    enum CodingKeys: String, CodingKey {
        case client, op, key, value, expected, new, call, output
        case returned = "return"
    }

    init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        client = try container.decode(Int.self, forKey: .client)
        op = try container.decode(String.self, forKey: .op)
        key = try container.decode(String.self, forKey: .key)
        value = try container.decodeIfPresent(String.self, forKey: .value)
        // null is meaningful for cas ("expect absent"), so presence is tracked
        // separately from the value.
        expectedPresent = container.contains(.expected)
        expected = try container.decodeIfPresent(String.self, forKey: .expected)
        new = try container.decodeIfPresent(String.self, forKey: .new)
        call = try container.decode(UInt64.self, forKey: .call)
        returned = try container.decodeIfPresent(UInt64.self, forKey: .returned)
        output = try container.decodeIfPresent(RawOutput.self, forKey: .output)
    }
}

private enum RawOutput: Decodable {
    case ok
    case value(String?)
    case swapped(Bool)
    case other(String)

    enum CodingKeys: String, CodingKey { case value, swapped }

    init(from decoder: Decoder) throws {
        if let text = try? decoder.singleValueContainer().decode(String.self) {
            self = text == "ok" ? .ok : .other("\"\(text)\"")
            return
        }
        let container = try decoder.container(keyedBy: CodingKeys.self)
        if container.contains(.value) {
            self = .value(try container.decodeIfPresent(String.self, forKey: .value))
        } else if let swapped = try container.decodeIfPresent(Bool.self, forKey: .swapped) {
            self = .swapped(swapped)
        } else {
            self = .other("object without \"value\" or \"swapped\"")
        }
    }
}

/// Parses a JSON-lines history (schema in this file's header).
public func readHistory(text: String) throws(HistoryReadError) -> [Operation] {
    let decoder = JSONDecoder()
    var operations: [Operation] = []
    for (offset, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        let lineNumber = offset + 1
        guard !line.allSatisfy(\.isWhitespace) else { continue }
        let raw: RawOperation
        do {
            raw = try decoder.decode(RawOperation.self, from: Data(line.utf8))
        } catch {
            throw .invalidJSON(line: lineNumber, detail: describe(error))
        }
        operations.append(try convert(raw, line: lineNumber))
    }
    return operations
}

/// Reads and parses a JSON-lines history file.
public func readHistory(path: String) throws(HistoryReadError) -> [Operation] {
    let data: Data
    do {
        data = try Data(contentsOf: URL(fileURLWithPath: path))
    } catch {
        throw .unreadableFile(path: path, detail: error.localizedDescription)
    }
    guard let text = String(data: data, encoding: .utf8) else {
        throw .unreadableFile(path: path, detail: "not UTF-8")
    }
    return try readHistory(text: text)
}

private func convert(_ raw: RawOperation, line: Int) throws(HistoryReadError) -> Operation {
    let input: KVInput
    switch raw.op {
    case "put":
        guard let value = raw.value else { throw .missingField(line: line, field: "value") }
        input = .put(key: raw.key, value: value)
    case "get":
        input = .get(key: raw.key)
    case "delete":
        input = .delete(key: raw.key)
    case "cas":
        guard raw.expectedPresent else { throw .missingField(line: line, field: "expected") }
        guard let new = raw.new else { throw .missingField(line: line, field: "new") }
        input = .compareAndSet(key: raw.key, expected: raw.expected, new: new)
    default:
        throw .unknownOperation(line: line, name: raw.op)
    }
    if let returned = raw.returned, returned < raw.call {
        throw .returnBeforeCall(line: line)
    }
    var output: KVOutput?
    if let rawOutput = raw.output {
        switch (input, rawOutput) {
        case (.put, .ok), (.delete, .ok): output = .ok
        case (.get, .value(let value)): output = .value(value)
        case (.compareAndSet, .swapped(let swapped)): output = .swapped(swapped)
        case (_, .other(let detail)): throw .invalidOutput(line: line, detail: detail)
        default: throw .invalidOutput(line: line, detail: "output does not match op \"\(raw.op)\"")
        }
    }
    return Operation(client: raw.client, input: input, call: raw.call, returned: raw.returned, output: output)
}

private func describe(_ error: Error) -> String {
    switch error {
    case DecodingError.keyNotFound(let key, _): return "missing field \"\(key.stringValue)\""
    case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context),
        DecodingError.dataCorrupted(let context):
        let path = context.codingPath.map(\.stringValue).joined(separator: ".")
        return path.isEmpty ? context.debugDescription : "\(path): \(context.debugDescription)"
    default: return "\(error)"
    }
}
