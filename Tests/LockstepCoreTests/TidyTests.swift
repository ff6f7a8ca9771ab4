// The house rules a machine can check (../shared/STYLE.md; `.swift-format` carries the layout):
// the core imports nothing (the package graph alone cannot forbid system modules), library code
// has no force unwrap, `try!` or `as!`, no source line passes 120 columns, and no function in
// Sources runs past 70 lines. Reads the sources as text: code is told from comments and string
// literals by a small scanner (`SwiftText`), enough for this code base's Swift.

import Foundation
import Testing

private let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// Swift files below `folder` (relative to the repository), with their paths relative to it.
private func swiftFiles(under folder: String) throws -> [(path: String, text: String)] {
    let base = repositoryRoot.appendingPathComponent(folder)
    guard let walker = FileManager.default.enumerator(atPath: base.path) else { return [] }
    var files: [(String, String)] = []
    while let relative = walker.nextObject() as? String {
        guard relative.hasSuffix(".swift"), !relative.contains(".build/") else { continue }
        let text = try String(contentsOf: base.appendingPathComponent(relative), encoding: .utf8)
        files.append(("\(folder)/\(relative)", text))
    }
    return files.sorted { $0.0 < $1.0 }
}

/// A source text with its comments and string literals blanked out (newlines kept, so line
/// numbers hold): what is left is code. Works on UTF-8 bytes (the tests run unoptimized, and
/// scanning Characters would take a minute of both cores).
enum SwiftText {
    static let slash = UInt8(ascii: "/"), star = UInt8(ascii: "*"), quote = UInt8(ascii: "\"")
    static let backslash = UInt8(ascii: "\\"), newline = UInt8(ascii: "\n")

    static func codeOnly(_ text: String) -> [UInt8] {
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            let next = index + 1 < bytes.count ? bytes[index + 1] : 0
            if byte == slash, next == slash {
                while index < bytes.count, bytes[index] != newline { index += 1 }
            } else if byte == slash, next == star {
                index = skipBlockComment(bytes, from: index, into: &out)
            } else if byte == quote {
                let multiline = next == quote && index + 2 < bytes.count && bytes[index + 2] == quote
                out.append(quote)
                index = skipString(bytes, from: index + (multiline ? 3 : 1), multiline: multiline, into: &out)
                out.append(quote)
            } else {
                out.append(byte)
                index += 1
            }
        }
        return out
    }

    private static func skipBlockComment(_ bytes: [UInt8], from start: Int, into out: inout [UInt8]) -> Int {
        var depth = 0
        var index = start
        while index < bytes.count {
            let next = index + 1 < bytes.count ? bytes[index + 1] : 0
            if bytes[index] == slash, next == star {
                depth += 1
                index += 2
            } else if bytes[index] == star, next == slash {
                depth -= 1
                index += 2
                if depth == 0 { return index }
            } else {
                if bytes[index] == newline { out.append(newline) }
                index += 1
            }
        }
        return index
    }

    /// Skips a string literal's body (interpolations included), returning the index after it.
    private static func skipString(
        _ bytes: [UInt8], from start: Int, multiline: Bool, into out: inout [UInt8]
    )
        -> Int
    {
        var index = start
        while index < bytes.count {
            let byte = bytes[index]
            if byte == backslash {
                index += 2
                continue
            }
            if byte == newline { out.append(newline) }
            if byte == quote {
                if !multiline { return index + 1 }
                if index + 2 < bytes.count, bytes[index + 1] == quote, bytes[index + 2] == quote { return index + 3 }
            }
            index += 1
        }
        return index
    }

    /// The code's lines, as byte arrays.
    static func codeLines(_ text: String) -> [ArraySlice<UInt8>] {
        codeOnly(text).split(separator: newline, omittingEmptySubsequences: false)
    }

    static func isIdentifier(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
            || byte == 0x5F || byte >= 0x80
    }
}

@Test("LockstepCore imports no module at all")
func coreImportsNothing() throws {
    let files = try swiftFiles(under: "Sources/LockstepCore")
    #expect(files.count >= 5, "expected the core's sources under \(repositoryRoot.path)/Sources/LockstepCore")
    for (path, text) in files {
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ")
            let isImport =
                words.first == "import" || (words.count > 1 && words[1] == "import" && words[0].hasPrefix("@"))
            #expect(!isImport, "\(path) imports: \(line)")
        }
    }
}

@Test("no source or test line passes 120 columns")
func linesFitInOneHundredTwentyColumns() throws {
    var long: [String] = []
    for folder in ["Sources", "Tests", "Benchmarks/Benchmarks", "tools"] {
        for (path, text) in try swiftFiles(under: folder) {
            for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
            where line.unicodeScalars.count > 120 {
                long.append("\(path):\(number + 1) (\(line.unicodeScalars.count) columns)")
            }
        }
    }
    #expect(long.isEmpty, "lines over 120 columns:\n\(long.joined(separator: "\n"))")
}

/// The places in `text` that force, in code only (not comments or strings): (line number, what,
/// the line). A postfix `!` after a name, `)`, `]` or `?` is a force unwrap (or an implicitly
/// unwrapped type); after the word `try` or `as` it is `try!` or `as!`. `!=` is not.
func forcings(in text: String) -> [(Int, String, String)] {
    var found: [(Int, String, String)] = []
    for (number, line) in SwiftText.codeLines(text).enumerated() {
        let bytes = Array(line)
        for index in bytes.indices.dropFirst() where bytes[index] == UInt8(ascii: "!") {
            let before = bytes[index - 1]
            let after = index + 1 < bytes.count ? bytes[index + 1] : 0
            guard after != UInt8(ascii: "="),
                SwiftText.isIdentifier(before) || before == UInt8(ascii: ")") || before == UInt8(ascii: "]")
                    || before == UInt8(ascii: "?")
            else { continue }
            var wordStart = index - 1
            while wordStart > 0, SwiftText.isIdentifier(bytes[wordStart - 1]) { wordStart -= 1 }
            let word = String(decoding: bytes[wordStart..<index], as: UTF8.self)
            let what = word == "try" ? "try!" : word == "as" ? "as!" : "force unwrap"
            let code = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespaces)
            found.append((number + 1, what, code))
        }
    }
    return found
}

@Test("library code has no force unwrap, try! or as!")
func libraryCodeDoesNotForce() throws {
    var found: [String] = []
    for (path, text) in try swiftFiles(under: "Sources") {
        for (line, what, code) in forcings(in: text) { found.append("\(path):\(line): \(what): \(code)") }
    }
    #expect(found.isEmpty, "forcing in library code:\n\(found.joined(separator: "\n"))")
}

@Test("the tidy scanner tells code from comments and strings")
func tidyScannerSeesOnlyCode() {
    let text = """
        let a = b! // c!
        let s = "not! \\(x)" /* d! */
        let t = u != v
        let w = try! f()
        """
    let found = forcings(in: text)
    #expect(found.map(\.0) == [1, 4] && found.map(\.1) == ["force unwrap", "try!"], "\(found)")
}

/// Functions (and initializers) in `text` with their first line and length in lines, from the
/// line of `func`/`init` to the line of its closing brace.
func functionLengths(in text: String) -> [(name: String, line: Int, lines: Int)] {
    let lines = SwiftText.codeLines(text).map { String(decoding: $0, as: UTF8.self) }
    var result: [(String, Int, Int)] = []
    for (start, line) in lines.enumerated() {
        guard let name = declaredFunction(in: line), let end = closingLine(of: lines, from: start) else { continue }
        result.append((name, start + 1, end - start + 1))
    }
    return result
}

/// The function or initializer a line declares, if any: `func name` or `init(`.
private func declaredFunction(in line: String) -> String? {
    let words = line.split(whereSeparator: { $0 == " " || $0 == "(" || $0 == "<" })
    if let index = words.firstIndex(of: "func"), index + 1 < words.count { return "func \(words[index + 1])" }
    let trimmed = line.trimmingCharacters(in: .whitespaces)
    let initializer = words.contains { $0 == "init" || $0 == "init?" }
    if initializer
        && (trimmed.hasPrefix("init") || trimmed.contains(" init(") || trimmed.contains(" init?(")
            || trimmed.contains(" init<"))
    {
        return "init"
    }
    return nil
}

/// The line of the brace that closes the body opened at or after `start` (nil: a declaration
/// without a body, as in a protocol: the next declaration or the type's end comes first).
private func closingLine(of lines: [String], from start: Int) -> Int? {
    let nextDeclaration = ["func ", "var ", "let ", "init", "static ", "mutating ", "public ", "@", "}", "case "]
    var depth = 0
    var opened = false
    for index in start..<lines.count {
        let trimmed = lines[index].trimmingCharacters(in: .whitespaces)
        if !opened, index > start, nextDeclaration.contains(where: { trimmed.hasPrefix($0) }) { return nil }
        for byte in lines[index].utf8 {
            if byte == UInt8(ascii: "{") {
                depth += 1
                opened = true
            } else if byte == UInt8(ascii: "}") {
                depth -= 1
                if opened && depth == 0 { return index }
            }
        }
    }
    return nil
}

@Test("no function in Sources runs past 70 lines")
func functionsAreShort() throws {
    var long: [String] = []
    for (path, text) in try swiftFiles(under: "Sources") {
        for function in functionLengths(in: text) where function.lines > 70 {
            long.append("\(path):\(function.line): \(function.name) is \(function.lines) lines")
        }
    }
    #expect(long.isEmpty, "functions over 70 lines:\n\(long.joined(separator: "\n"))")
}

@Test("the function-length check measures from the declaration to its closing brace")
func functionLengthsAreMeasured() {
    let body = (0..<75).map { "    let x\($0) = \"}\" // {" }.joined(separator: "\n")
    let text = "protocol P {\n    func required()\n}\nfunc long() {\n\(body)\n}\ninit(a: Int) { }\n"
    let lengths = functionLengths(in: text)
    #expect(lengths.map(\.name) == ["func long", "init"], "\(lengths)")
    #expect(lengths.first?.lines == 77, "\(lengths)")
}
