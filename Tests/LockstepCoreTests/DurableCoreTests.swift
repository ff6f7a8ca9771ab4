// Durable mode in the core: the row's `persisted` counter, the persistence frontier, and a
// window that counts from it (what waits for a disk holds the window as delivery does).

import LockstepCore
import Testing

@Suite("Durable core")
struct DurableCoreTests {
    private func durableGroup(window: Int = 4) throws -> DirectGroup {
        try DirectGroup(memberCount: 3, senders: [0]) {
            $0.durable = true
            $0.windowMessagesMax = window
        }
    }

    /// Every member reports its log durable through `delivered` of the view, then rows settle.
    private func persistAll(_ group: DirectGroup, upTo: UInt64? = nil) throws {
        for rank in group.cores.indices {
            let delivered = group.cores[rank].ownRow.delivered
            try group.cores[rank].handle(.persisted(upTo: upTo ?? delivered, viewID: group.view.id))
        }
        try group.settle()
    }

    @Test("Delivered everywhere is not enough: the window reopens only once every member's log holds it")
    func windowWaitsForThePersistenceFrontier() throws {
        let group = try durableGroup()
        try group.send(0, count: 4)
        try group.settle()
        #expect(group.delivered(1).count == 4 && group.delivered(2).count == 4)
        #expect(group.cores[0].sendCapacity == 0, "delivered, not persisted: the window stays shut")
        #expect(group.cores[0].persistenceFrontier == 0)
        // Two members have it on disk; the third's log is behind.
        for rank in 0..<2 { try group.cores[rank].handle(.persisted(upTo: 4, viewID: group.view.id)) }
        try group.settle()
        #expect(group.cores[0].sendCapacity == 0, "one member's log is behind: the window stays shut")
        #expect(group.cores[0].membersWithViewStartPersisted.count == 2)
        try persistAll(group)
        #expect(group.cores[0].persistenceFrontier == 4)
        #expect(group.cores[0].membersWithViewStartPersisted == group.view.members)
        #expect(group.cores[0].sendCapacity == 4)
        #expect(group.cores.allSatisfy { $0.ownRow.persisted == 5 }, "1 for the view's start, then 4 sequences")
    }

    @Test("A report for another view, or one that goes back, changes nothing")
    func staleReportsAreIgnored() throws {
        let group = try durableGroup()
        try group.send(0, count: 2)
        try group.settle()
        try persistAll(group)
        let before = group.cores[1].ownRow.persisted
        try group.cores[1].handle(.persisted(upTo: 1, viewID: group.view.id))
        try group.cores[1].handle(.persisted(upTo: 2, viewID: ViewID(3)))
        #expect(group.cores[1].ownRow.persisted == before)
    }

    @Test("A row that claims more persisted than delivered is refused as malformed")
    func persistedBeyondDeliveredIsMalformed() throws {
        let group = try durableGroup()
        var row = group.cores[1].ownRow
        row.persisted = row.delivered + 2
        #expect(throws: CoreError.self) { try group.cores[0].handle(.received(.row(row), fromMemberRank: 1)) }
        #expect(group.cores[0].row(ofMemberRank: 1).persisted == 0)
    }

    @Test("In memory the window counts from delivery, and persisted stays 0")
    func inMemoryIgnoresPersistence() throws {
        let group = try DirectGroup(memberCount: 3, senders: [0]) { $0.windowMessagesMax = 4 }
        try group.send(0, count: 4)
        try group.settle()
        #expect(group.cores[0].sendCapacity == 4)
        try group.cores[0].handle(.persisted(upTo: 4, viewID: group.view.id))
        #expect(group.cores[0].ownRow.persisted == 0)
    }

    @Test("Durable mode needs ordered delivery")
    func durableNeedsOrdered() {
        var configuration = Configuration()
        configuration.durable = true
        configuration.deliveryMode = .unordered
        #expect(throws: ConfigurationError.self) { try configuration.validate() }
    }
}
