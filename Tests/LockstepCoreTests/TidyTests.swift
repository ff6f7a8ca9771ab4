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
/// numbers hold): what is left is code.
enum SwiftText {
    static func codeOnly(_ text: String) -> String {
        var out: [Character] = []
        out.reserveCapacity(text.count)
        let chars = Array(text)
        var index = 0
        func at(_ offset: Int) -> Character? { index + offset < chars.count ? chars[index + offset] : nil }
        while index < chars.count {
            let char = chars[index]
            if char == "/", at(1) == "/" {
                while index < chars.count, chars[index] != "\n" { index += 1 }
            } else if char == "/", at(1) == "*" {
                index = skipBlockComment(chars, from: index, into: &out)
            } else if char == "\"" {
                let multiline = at(1) == "\"" && at(2) == "\""
                out.append("\"")
                index = skipString(chars, from: index + (multiline ? 3 : 1), multiline: multiline, into: &out)
                out.append("\"")
            } else {
                out.append(char)
                index += 1
            }
        }
        return String(out)
    }

    private static func skipBlockComment(_ chars: [Character], from start: Int, into out: inout [Character]) -> Int {
        var depth = 0
        var index = start
        while index < chars.count {
            if chars[index] == "/", index + 1 < chars.count, chars[index + 1] == "*" {
                depth += 1
                index += 2
            } else if chars[index] == "*", index + 1 < chars.count, chars[index + 1] == "/" {
                depth -= 1
                index += 2
                if depth == 0 { return index }
            } else {
                if chars[index] == "\n" { out.append("\n") }
                index += 1
            }
        }
        return index
    }

    /// Skips a string literal's body (interpolations included), returning the index after it.
    private static func skipString(_ chars: [Character], from start: Int, multiline: Bool, into out: inout [Character])
        -> Int
    {
        var index = start
        while index < chars.count {
            let char = chars[index]
            if char == "\\" {
                index += 2
                continue
            }
            if char == "\n" { out.append("\n") }
            if char == "\"" {
                if !multiline { return index + 1 }
                if index + 2 < chars.count, chars[index + 1] == "\"", chars[index + 2] == "\"" { return index + 3 }
            }
            index += 1
        }
        return index
    }
}

@Test("LockstepCore imports no module at all")
func coreImportsNothing() throws {
    let files = try swiftFiles(under: "Sources/LockstepCore")
    #expect(files.count >= 5, "expected the core's sources under \(repositoryRoot.path)/Sources/LockstepCore")
    for (path, text) in files {
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ")
            let isImport = words.first == "import" || (words.count > 1 && words[1] == "import" && words[0].hasPrefix("@"))
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
            where line.count > 120 {
                long.append("\(path):\(number + 1) (\(line.count) columns)")
            }
        }
    }
    #expect(long.isEmpty, "lines over 120 columns:\n\(long.joined(separator: "\n"))")
}

/// Postfix `!` after a name, `)`, `]` or `?` (a force unwrap or an implicitly unwrapped type), and
/// the forcing forms of `try` and `as`; in code only, not in comments or strings.
private let forcingPatterns: [(String, NSRegularExpression)] = [
    ("force unwrap", try! NSRegularExpression(pattern: #"[\w\)\]\?]!(?!=)"#)),
    ("try!", try! NSRegularExpression(pattern: #"\btry!"#)),
    ("as!", try! NSRegularExpression(pattern: #"\bas!"#)),
]

/// The places in `text` that force: (line number, what, the line).
func forcings(in text: String) -> [(Int, String, String)] {
    let code = SwiftText.codeOnly(text)
    var found: [(Int, String, String)] = []
    for (number, line) in code.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        let line = String(line)
        let range = NSRange(line.startIndex..., in: line)
        for (what, pattern) in forcingPatterns where pattern.firstMatch(in: line, range: range) != nil {
            found.append((number + 1, what, line.trimmingCharacters(in: .whitespaces)))
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
    #expect(found.map(\.0) == [1, 4, 4], "\(found)")
}

/// Functions (and initializers) in `text` with their first line and length in lines, from the
/// line of `func`/`init` to the line of its closing brace.
func functionLengths(in text: String) -> [(name: String, line: Int, lines: Int)] {
    let lines = SwiftText.codeOnly(text).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    let declaration = try! NSRegularExpression(pattern: #"\b(func\s+[^\s(<]+|init[?!]?\s*[(<])"#)
    var result: [(String, Int, Int)] = []
    for (start, line) in lines.enumerated() {
        let range = NSRange(line.startIndex..., in: line)
        guard let match = declaration.firstMatch(in: line, range: range), let name = Range(match.range, in: line)
        else { continue }
        guard let end = closingLine(of: lines, from: start) else { continue }
        result.append((String(line[name]), start + 1, end - start + 1))
    }
    return result
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
        for char in lines[index] {
            if char == "{" {
                depth += 1
                opened = true
            } else if char == "}" {
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
