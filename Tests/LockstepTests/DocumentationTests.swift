// The configuration reference (Lockstep.docc) lists exactly GroupConfiguration's fields.

import Foundation
import LockstepCore
import LockstepRuntime
import Testing

@testable import Lockstep

@Suite("Documentation")
struct DocumentationTests {
    @Test("The configuration reference lists every GroupConfiguration field, and no other")
    func configurationReference() throws {
        let configuration = GroupConfiguration.bootstrap(
            members: [.init(id: MemberID(1), address: PeerAddress(host: "127.0.0.1", port: 1))], me: MemberID(1))
        let fields = Mirror(reflecting: configuration).children.compactMap(\.label)
        #expect(fields == GroupConfiguration.fieldNames, "fieldNames is out of step with the type")
        let reference = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources/Lockstep/Lockstep.docc/ConfigurationReference.md")
        let text = try String(contentsOf: reference, encoding: .utf8)
        let documented = text.split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("| `") else { return nil }
            return line.dropFirst(3).split(separator: "`").first.map(String.init)
        }
        #expect(documented == fields)
    }
}
