// Hostile peers against the member shell (Sources/LockstepSimulator/HostilePeers.swift): frames
// that decode fine but say impossible things must be refused with typed errors, never stop the
// process. tools/fuzz-member searches for inputs that trap; each one it found is a named test
// here, and a seeded random sweep runs with every `swift test`.

import LockstepCore
import LockstepSimulator
import Testing

@Suite("Hostile peers against the member shell")
struct HostilePeerTests {
    /// Hex of one fuzzer input.
    private static func bytes(_ hex: String) -> [UInt8] {
        var result: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            result.append(UInt8(hex[index..<next], radix: 16) ?? 0)
            index = next
        }
        return result
    }

    @Test(
        """
        tools/fuzz-member's first finding: a row whose installed commit names joiners and a trim no honest \
        member sends made the member trap while installing; it is refused and the member stays up
        """
    )
    func commitWithImpossibleJoinersAndTrim() {
        let outcome = HostilePeers.play(
            Self.bytes(
                "64696301ffffff0000190900b2b2b2b2537472696e67b2b2b2b2b2b2b2b2b2b2b2b2b2b2f6f6f6ff0000190900f6"
                    + "fafafafaffffffff6c7449"))
        #expect(outcome.events > 0)
    }

    @Test(
        """
        3,000 seeded scripts of hostile frames (impossible counters, trims, joiner lists, proposal numbers, \
        views from the future and the past) never stop the member, and it refuses many of them with typed errors
        """
    )
    func randomHostileScripts() {
        var random = DeterministicRandom(seed: 0x4057_11E5)
        var refused = 0
        for _ in 0..<3_000 {
            let length = Int.random(in: 2...400, using: &random)
            let script = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
            refused += HostilePeers.play(script).refused
        }
        #expect(refused > 1_000)
    }
}
