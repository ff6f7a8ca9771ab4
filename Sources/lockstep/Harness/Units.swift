// Sizes and figures as the command line reads and prints them.

import ArgumentParser
import Foundation

/// The largest message size a --size list may name.
let messageSizeBytesMax = 256 * 1_024 * 1_024

/// A comma-separated list of sizes with K/M suffixes (powers of 1024), each within
/// `BenchPayload.headerBytes...messageSizeBytesMax`.
func parseSizes(_ text: String) throws -> [Int] {
    try text.split(separator: ",").map { part in
        let token = part.trimmingCharacters(in: .whitespaces).uppercased()
        var multiplier = 1
        var digits = Substring(token)
        if token.hasSuffix("K") {
            multiplier = 1_024
            digits = digits.dropLast()
        }
        if token.hasSuffix("M") {
            multiplier = 1_024 * 1_024
            digits = digits.dropLast()
        }
        guard let value = Int(digits), value > 0 else {
            throw ValidationError("--size: '\(part)' is not a size like 64, 1K or 1M")
        }
        let bytes = value * multiplier
        guard bytes >= BenchPayload.headerBytes, bytes <= messageSizeBytesMax else {
            throw ValidationError("--size: \(bytes) bytes is outside \(BenchPayload.headerBytes)...256M")
        }
        return bytes
    }
}

/// One size like 16M (`flag` names it in the error), at least `bytesMin`.
func parseSize(_ text: String, flag: String, example: String, bytesMin: Int = 1) throws -> Int {
    // The list parser's own error is about --size; this one names the flag.
    guard let sizes = try? parseSizes(text), sizes.count == 1, sizes[0] >= bytesMin else {
        throw ValidationError("\(flag) '\(text)' is not a size like \(example)")
    }
    return sizes[0]
}

func sizeLabel(_ bytes: Int) -> String {
    if bytes >= 1_024 * 1_024, bytes % (1_024 * 1_024) == 0 { return "\(bytes / (1_024 * 1_024)) MiB" }
    if bytes >= 1_024, bytes % 1_024 == 0 { return "\(bytes / 1_024) KiB" }
    return "\(bytes) B"
}

func format(_ value: Double, _ decimals: Int) -> String {
    String(format: "%.\(decimals)f", value)
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        result.reserveCapacity(count)
        for element in self { result.append(try await transform(element)) }
        return result
    }
}
