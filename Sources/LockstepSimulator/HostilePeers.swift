// Hostile peers for the member shell: a byte string (a fuzzer's input, tools/fuzz-member, or
// seeded random bytes in a test) is read as a script of frames that decode fine but say
// impossible things (rows with counters, trims, joiner lists and proposal numbers no honest
// member sends, batches beyond the window, views from the future or the past, link failures and
// joins of strangers) played against one member. The member must refuse what it cannot take
// with a typed error and go on: a precondition that fires here is a way for a peer to stop the
// process, and a bug.

import LockstepCore

public enum HostilePeers {
    public struct Outcome: Sendable, Equatable {
        public var events = 0
        /// Events the member refused with a typed error (`CoreError`).
        public var refused = 0
        public var effects = 0
    }

    /// Plays `bytes` against the member at rank 1 of a view of 4 (ordered or unordered, by the
    /// first byte). Never traps unless the member does.
    public static func play(_ bytes: [UInt8]) -> Outcome {
        var script = ByteScript(bytes: bytes)
        var configuration = Configuration()
        configuration.deliveryMode = script.byte() % 2 == 0 ? .ordered : .unordered
        configuration.windowMessagesMax = Int(script.byte() % 8) + 1
        configuration.membersMax = 8
        let ids = (1...4).map { MemberID(UInt64($0)) }
        guard let view = try? View(id: ViewID(5), members: ids),
            var member = try? Member<Message>(configuration: configuration, view: view, memberRank: 1)
        else { preconditionFailure("the hostile-peer harness could not build its member") }
        var outcome = Outcome()
        var effects: [MemberEffect] = []
        var now: UInt64 = 1
        while !script.isAtEnd {
            outcome.events += 1
            do {
                try step(&member, &script, &now, &effects)
            } catch {
                outcome.refused += 1
            }
        }
        effects.removeAll()
        member.poll(into: &effects)
        outcome.effects += effects.count
        return outcome
    }

    private static func step(
        _ member: inout Member<Message>, _ script: inout ByteScript, _ now: inout UInt64,
        _ effects: inout [MemberEffect]
    ) throws(CoreError) {
        let view = member.view
        let peer = MemberID(UInt64(script.byte() % 6))  // m0 and m5 are strangers
        switch script.byte() % 8 {
        case 0: try member.receive(.data(batch(&script, view: view)), from: peer)
        case 1: try member.receive(.row(row(&script, view: view)), from: peer)
        case 2:
            now += script.small() * 10_000_000
            member.tick(Timestamp(nanoseconds: now))
        case 3: try member.send(Array(repeating: script.byte(), count: Int(script.byte()))[...])
        case 4: member.linkFailed(peer)
        case 5: _ = member.requestJoin(MemberID(script.small()))
        case 6:
            effects.removeAll(keepingCapacity: true)
            member.poll(into: &effects)
            if member.hasHeldTrafficToReplay {
                for (from, message) in member.takeHeldTraffic() { try member.receive(message, from: from) }
            }
        default: member.heard(peer)
        }
    }

    private static func viewID(_ script: inout ByteScript, _ view: View) -> ViewID {
        switch script.byte() % 4 {
        case 0: return ViewID(view.id.rawValue + 1)
        case 1: return ViewID(view.id.rawValue &- 1)
        case 2: return ViewID(script.large())
        default: return view.id
        }
    }

    private static func batch(_ script: inout ByteScript, view: View) -> DataBatch {
        var entries: [BatchEntry] = []
        for _ in 0..<(script.byte() % 5) {
            if script.byte() % 3 == 0 {
                entries.append(.nulls(script.byte() % 2 == 0 ? script.small() : script.large()))
            } else {
                entries.append(.message(Array(repeating: 7, count: Int(script.byte() % 16))[...]))
            }
        }
        let first = script.byte() % 2 == 0 ? script.small() : script.large()
        return DataBatch(
            viewID: viewID(&script, view), senderRank: Int(script.byte() % 6), firstIndex: first, entries: entries)
    }

    private static func counters(_ script: inout ByteScript, count: Int) -> [UInt64] {
        let length = script.byte() % 4 == 0 ? Int(script.byte() % 7) : count
        return (0..<length).map { _ in script.byte() % 4 == 0 ? script.large() : script.small() }
    }

    private static func change(_ script: inout ByteScript) -> ViewChange {
        let number = script.byte() % 3 == 0 ? 0 : script.small() << 16 | UInt64(script.byte() % 6)
        let removed = (0..<(script.byte() % 3)).map { _ in script.large() }
        let joiners = (0..<(script.byte() % 4)).map { _ in MemberID(script.small()) }
        return ViewChange(number: number, removed: removed, joiners: joiners)
    }

    private static func row(_ script: inout ByteScript, view: View) -> Row {
        var row = Row(
            viewID: viewID(&script, view), received: counters(&script, count: view.senderCount),
            seq: script.large(), delivered: script.small(), suspected: counters(&script, count: 1))
        if script.byte() % 2 == 0 { row.proposal = change(&script) }
        if script.byte() % 2 == 0 {
            row.commit = change(&script)
            row.trim = counters(&script, count: view.senderCount)
        }
        switch script.byte() % 3 {
        case 0: row.installNumber = row.commit.number
        case 1: row.installNumber = script.large()
        default: break
        }
        return row
    }
}

/// Reads a byte string as small decisions; past its end every byte reads as 0.
private struct ByteScript {
    let bytes: [UInt8]
    private var at = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    var isAtEnd: Bool { at >= bytes.count }

    mutating func byte() -> UInt8 {
        guard at < bytes.count else { return 0 }
        defer { at += 1 }
        return bytes[at]
    }

    /// 0...15: counts, indices and rounds near the member's own.
    mutating func small() -> UInt64 { UInt64(byte() % 16) }

    /// Anything, edges included.
    mutating func large() -> UInt64 {
        switch byte() % 4 {
        case 0: return UInt64.max
        case 1: return UInt64.max - UInt64(byte())
        case 2: return 1 << UInt64(byte() % 64)
        default: return UInt64(byte()) << 24 | UInt64(byte())
        }
    }
}
