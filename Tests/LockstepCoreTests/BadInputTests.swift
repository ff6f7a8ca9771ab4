// Bad input from a peer gets a typed error and costs nothing else: the member keeps what it
// delivered and keeps working.

import LockstepCore
import Testing

@Suite("Bad input from peers")
struct BadInputTests {
    /// A 2-member group where member 1 has already delivered two messages of member 0.
    private func warmGroup() throws -> DirectGroup {
        let group = try DirectGroup(memberCount: 2, senders: [0]) { $0.windowMessagesMax = 8 }
        try group.send(0, count: 2)
        try group.settle()
        #expect(group.deliveries[1].count == 2)
        return group
    }

    private func expectRejected(_ message: Message, from: Int = 0, code: CoreError.Code) throws {
        let group = try warmGroup()
        let before = group.cores[1].ownRow
        #expect(throws: CoreError.self) { try group.cores[1].handle(.received(message, fromMemberRank: from)) }
        do {
            try group.cores[1].handle(.received(message, fromMemberRank: from))
        } catch {
            #expect(error.code == code, "\(error)")
            #expect(error.isProtocolViolation)
        }
        #expect(group.cores[1].ownRow == before, "a rejected message must not move the counters")
        // The member is still fine: the next honest message is delivered.
        try group.send(0, [42])
        try group.settle()
        #expect(group.delivered(1).last == [42])
        #expect(group.deliveries[1].count == 3)
    }

    private func batch(first: UInt64, _ entries: [BatchEntry], view: UInt64 = 7, sender: Int = 0) -> Message {
        .data(DataBatch(viewID: ViewID(view), senderRank: sender, firstIndex: first, entries: entries))
    }

    @Test func gapInASendersMessages() throws {
        try expectRejected(batch(first: 5, [.message([1])]), code: .gap)
    }

    @Test func senderOverrunsTheWindow() throws {
        try expectRejected(batch(first: 2, Array(repeating: .message([1]), count: 9)), code: .windowOverrun)
    }

    @Test func hugeNullRunOverrunsTheWindow() throws {
        try expectRejected(batch(first: 2, [.nulls(UInt64.max)]), code: .windowOverrun)
    }

    @Test func emptyNullRun() throws {
        try expectRejected(batch(first: 2, [.nulls(0)]), code: .emptyNullRun)
    }

    @Test func batchClaimingAnotherSender() throws {
        try expectRejected(batch(first: 2, [.message([1])], sender: 1), code: .senderMismatch)
    }

    @Test func messageFromAnUnknownMember() throws {
        try expectRejected(batch(first: 2, [.message([1])]), from: 9, code: .unknownMember)
    }

    @Test func messageFromAFutureView() throws {
        try expectRejected(batch(first: 2, [.message([1])], view: 8), code: .viewFromTheFuture)
    }

    @Test func rowOfTheWrongShape() throws {
        try expectRejected(
            .row(Row(viewID: ViewID(7), received: [1, 2, 3], seq: 0, delivered: 0)), code: .malformedRow)
    }

    @Test func oversizedMessageFromAPeer() throws {
        let group = try DirectGroup(memberCount: 2, senders: [0]) { $0.messageBytesMax = 2 }
        #expect(throws: CoreError(.messageTooLarge, "sender rank 0 index 0: 3 bytes")) {
            try group.cores[1].handle(
                .received(
                    .data(DataBatch(viewID: ViewID(7), senderRank: 0, firstIndex: 0, entries: [.message([1, 2, 3])])),
                    fromMemberRank: 0))
        }
    }

    @Test("A refused batch leaves no message behind: places it touched are empty afterwards")
    func refusedBatchIsUndone() throws {
        let group = try DirectGroup(memberCount: 2, senders: [0]) {
            $0.windowMessagesMax = 8
            $0.deliveryMode = .unordered  // delivers whatever a place holds, at once
        }
        let overrun = batch(first: 0, Array(repeating: .message([66]), count: 9))
        #expect(throws: CoreError.self) { try group.cores[1].handle(.received(overrun, fromMemberRank: 0)) }
        // The same places now arrive as nulls: if the refused messages had stayed, they would
        // be delivered here.
        try group.cores[1].handle(.received(batch(first: 0, [.nulls(8)]), fromMemberRank: 0))
        group.poll(1)
        #expect(group.deliveries[1].isEmpty)
        #expect(group.cores[1].ownRow.received == [8])
    }

    @Test("A message of an earlier view is ignored and counted, not an error")
    func staleViewIsIgnored() throws {
        let group = try warmGroup()
        try group.cores[1].handle(.received(batch(first: 0, [.message([1])], view: 6), fromMemberRank: 0))
        #expect(group.cores[1].statistics.staleViewMessagesIgnored == 1)
        #expect(group.cores[1].ownRow.received == [2])
    }

    @Test("A batch that repeats messages already held keeps the originals and adds the new ones")
    func overlappingBatch() throws {
        let group = try warmGroup()
        try group.cores[1].handle(.received(batch(first: 1, [.message([99]), .message([2])]), fromMemberRank: 0))
        group.poll(1)
        #expect(group.cores[1].ownRow.received == [3])
        #expect(group.delivered(1) == [[0], [1]], "not stable until member 0 holds index 2 as well")
    }
}

@Suite("Configuration and views")
struct ConfigurationTests {
    @Test("The defaults are valid")
    func defaultsValidate() throws {
        try Configuration().validate()
    }

    static func badConfigurations() -> [(String, Configuration)] {
        func with(_ change: (inout Configuration) -> Void) -> Configuration {
            var configuration = Configuration()
            change(&configuration)
            return configuration
        }
        return [
            ("windowMessagesMax", with { $0.windowMessagesMax = 0 }),
            ("windowMessagesMax", with { $0.windowMessagesMax = 1 << 23 }),
            ("windowBytesMax", with { $0.windowBytesMax = 1_000 }),
            ("messageBytesMax", with { $0.messageBytesMax = 0 }),
            ("batchMessagesMax", with { $0.batchMessagesMax = -3 }),
            ("batchBytesMax", with { $0.batchBytesMax = 0 }),
            ("membersMax", with { $0.membersMax = 0 }),
            ("heartbeatInterval", with { $0.heartbeatInterval = .zero }),
            ("heartbeatInterval", with { $0.heartbeatInterval = .seconds(7_200) }),
            ("failureTimeout", with { $0.failureTimeout = .milliseconds(200) }),
            ("failureTimeout", with { $0.failureTimeout = .seconds(7_200) }),
        ]
    }

    @Test("Each bad value is rejected with its field named", arguments: badConfigurations())
    func badValuesAreRejected(field: String, configuration: Configuration) {
        do {
            try configuration.validate()
            Issue.record("\(field) should have been rejected")
        } catch {
            #expect(error.field == field)
            #expect(error.description.contains(field))
            #expect(error.reason.contains("got"), "the reason should show the value: \(error.reason)")
        }
    }

    @Test("A core refuses an invalid configuration")
    func coreValidates() throws {
        var configuration = Configuration()
        configuration.windowMessagesMax = 0
        let view = try View(id: ViewID(1), members: [MemberID(1)])
        #expect(throws: CoreSetupError.self) {
            try OrderingCore(configuration: configuration, view: view, memberRank: 0)
        }
    }

    @Test("Malformed views are rejected")
    func badViews() throws {
        #expect(throws: ViewError.self) { try View(id: ViewID(1), members: []) }
        #expect(throws: ViewError.self) { try View(id: ViewID(1), members: [MemberID(1), MemberID(1)]) }
        #expect(throws: ViewError.self) { try View(id: ViewID(1), members: [MemberID(1)], senders: [MemberID(2)]) }
        #expect(throws: ViewError.self) { try View(id: ViewID(1), members: [MemberID(1)], senders: []) }
        let view = try View(
            id: ViewID(1), members: [MemberID(5), MemberID(3), MemberID(9)], senders: [MemberID(9), MemberID(5)])
        #expect(view.senderMemberRanks == [0, 2], "senders are ordered by member rank")
        #expect(view.senderRank(ofMemberRank: 2) == 1)
        #expect(throws: CoreSetupError.self) {
            try OrderingCore(configuration: Configuration(), view: view, memberRank: 3)
        }
    }
}
