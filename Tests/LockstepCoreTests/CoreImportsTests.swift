// The core must never do IO. Its target has no dependencies in Package.swift; this test also
// fails if any core source file imports a module (Foundation, Glibc, Dispatch, NIO...), which
// the package graph alone cannot forbid for system modules.

import Foundation
import Testing

@Test("LockstepCore imports no module at all")
func coreImportsNothing() throws {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    let coreDirectory = root.appendingPathComponent("Sources/LockstepCore")
    let files = try FileManager.default.contentsOfDirectory(atPath: coreDirectory.path).filter { $0.hasSuffix(".swift") }
    #expect(files.count >= 5, "expected the core's sources in \(coreDirectory.path)")
    for file in files {
        let text = try String(contentsOf: coreDirectory.appendingPathComponent(file), encoding: .utf8)
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ")
            let isImport = words.first == "import" || (words.count > 1 && words[1] == "import" && words[0].hasPrefix("@"))
            #expect(!isImport, "\(file) imports: \(line)")
        }
    }
}
