// One test per protocol claim of the ordering core (in the spirit of etcd-io/raft's
// raft_paper_test.go). Each drives real cores by hand through DirectGroup.

import LockstepCore
import Testing

@Suite("Protocol claims")
struct ProtocolClaimTests {
    @Test("Total order: message i of sender rank r of S is delivered at global sequence i*S + r, everywhere")
    func totalOrderIsRoundRobin() throws {
        let group = try DirectGroup(memberCount: 3)
        try group.send(2, count: 3, first: 200)
        try group.send(0, count: 3, first: 0)
        try group.send(1, count: 3, first: 100)
        try group.settle()
        for rank in 0..<3 {
            let sequences = group.deliveries[rank].compactMap(\.globalSequence)
            #expect(sequences == sequences.sorted(), "member \(rank) delivered out of global order")
            for delivery in group.deliveries[rank] {
                #expect(delivery.globalSequence == delivery.index * 3 + UInt64(delivery.senderRank))
            }
        }
        #expect(group.delivered(0) == [[0], [100], [200], [1], [101], [201], [2], [102], [202]])
        #expect(group.delivered(1) == group.delivered(0))
        #expect(group.delivered(2) == group.delivered(0))
    }

    @Test(
        "A late sender's places are taken by nulls: its messages come after the others', in the same order everywhere")
    func lateSenderComesAfterNulls() throws {
        let group = try DirectGroup(memberCount: 3)
        try group.send(2, count: 3, first: 200)
        try group.send(0, count: 3, first: 0)
        try group.settle()
        try group.send(1, count: 3, first: 100)
        try group.settle()
        // Sender rank 1 was idle, so nulls took its indices 0-2 (global 1, 4, 7); its messages got
        // indices 3-5, after everything else, and sender ranks 0 and 2 filled around them.
        #expect(group.delivered(0) == [[0], [200], [1], [201], [2], [202], [100], [101], [102]])
        #expect(group.deliveries[0].suffix(3).map(\.index) == [3, 4, 5])
        #expect(group.delivered(1) == group.delivered(0))
        #expect(group.delivered(2) == group.delivered(0))
    }

    @Test("Per-sender FIFO: a sender's messages are delivered in the order it sent them")
    func fifoPerSender() throws {
        let group = try DirectGroup(memberCount: 3) { $0.batchMessagesMax = 2 }
        try group.send(1, count: 9, first: 10)
        try group.settle()
        for rank in 0..<3 {
            #expect(group.delivered(rank) == (10..<19).map { [UInt8($0)] })
            #expect(group.deliveries[rank].map(\.index) == Array(0..<9))
        }
    }

    @Test("Null fill: an idle sender takes its places with nulls, so the others are delivered; nulls never are")
    func idleSenderIsFilledWithNulls() throws {
        let group = try DirectGroup(memberCount: 3)
        try group.send(2, count: 5, first: 50)  // sender ranks 0 and 1 never send
        try group.settle()
        for rank in 0..<3 { #expect(group.delivered(rank) == (50..<55).map { [UInt8($0)] }) }
        #expect(group.cores[0].statistics.nullsCreated == 5)  // places 0, 3, 6, 9, 12
        #expect(group.cores[1].statistics.nullsCreated == 5)
        #expect(group.cores[2].statistics.nullsCreated == 0)
        // Nulls travel as counts: one batch entry for a run, not one per null.
        let nullBatches = group.lastEffects.flatMap { $0 }.compactMap { effect -> DataBatch? in
            if case .sendData(let batch) = effect { return batch }
            return nil
        }
        #expect(nullBatches.allSatisfy { $0.entries.count <= 1 })
    }

    @Test("Window: a sender has at most `window` messages beyond the group's delivered minimum")
    func windowBackPressure() throws {
        let group = try DirectGroup(memberCount: 3, senders: [0]) { $0.windowMessagesMax = 4 }
        #expect(group.cores[0].sendCapacity == 4)
        try group.send(0, count: 4)
        #expect(group.cores[0].sendCapacity == 0)
        #expect(throws: CoreError.self) { try group.send(0, [9]) }
        do {
            try group.send(0, [9])
        } catch {
            #expect(error.code == .windowFull)
            #expect(!error.isProtocolViolation)
        }
        // Everyone receives and delivers, but until member 0 hears that, the window stays shut.
        try group.settle(holding: [.init(from: 1, to: 0), .init(from: 2, to: 0)])
        #expect(group.cores[0].sendCapacity == 0)
        try group.flush(from: 1, to: 0)
        #expect(group.cores[0].sendCapacity == 0, "member 2 has not reported delivery yet")
        try group.flush(from: 2, to: 0)
        #expect(group.cores[0].sendCapacity == 4)
        try group.send(0, count: 4)
        try group.settle()
        for rank in 0..<3 { #expect(group.deliveries[rank].count == 8) }
    }

    @Test(
        """
            Window in bytes: a sender's messages in flight carry at most windowBytesMax payload bytes; a larger \
            message goes alone into an empty window; delivery releases the bytes
            """
    )
    func windowBytesBackPressure() throws {
        let group = try DirectGroup(memberCount: 3, senders: [0]) { $0.windowBytesMax = 1_024 }
        let kilobyte = [UInt8](repeating: 1, count: 400)
        try group.send(0, kilobyte)
        try group.send(0, kilobyte)
        #expect(group.cores[0].windowBytesInFlight == 800)
        #expect(group.cores[0].sendCapacityBytes == 224)
        do {
            try group.send(0, kilobyte)
            Issue.record("a third 400-byte message passed a 1024-byte window")
        } catch {
            #expect(error.code == .windowFull)
        }
        // The message count still admits more; the bytes do not.
        #expect(group.cores[0].sendCapacity > 0)
        try group.settle()
        #expect(group.cores[0].windowBytesInFlight == 0, "delivered everywhere: the bytes left the window")
        // Into an empty window, a message above windowBytesMax still goes, alone.
        let large = [UInt8](repeating: 2, count: 5_000)
        try group.send(0, large)
        #expect(group.cores[0].sendCapacityBytes == 0)
        #expect(throws: CoreError.self) { try group.send(0, [3]) }
        try group.settle()
        for rank in 0..<3 { #expect(group.deliveries[rank].map(\.payload.count) == [400, 400, 5_000]) }
        #expect(group.cores[0].sendCapacityBytes == Int.max, "an empty window admits any one message")
    }

    @Test("Stability needs every member: nothing is delivered until the last member holds it")
    func stabilityNeedsEveryMember() throws {
        let group = try DirectGroup(memberCount: 3, senders: [0])
        try group.send(0, count: 3)
        // Member 2 receives nothing.
        let cutOff: Set<DirectGroup.Link> = [
            .init(from: 0, to: 2), .init(from: 1, to: 2), .init(from: 2, to: 0), .init(from: 2, to: 1),
        ]
        try group.settle(holding: cutOff)
        #expect(group.cores[1].ownRow.received == [3])
        #expect(group.cores[0].stabilityFrontier == 0)
        for rank in 0..<3 { #expect(group.deliveries[rank].isEmpty) }
        try group.settle()
        for rank in 0..<3 { #expect(group.deliveries[rank].count == 3) }
        #expect(group.cores[0].stabilityFrontier == 3)
    }

    @Test("Unordered mode: delivered on receipt, per-sender FIFO, before stability, with no global sequence")
    func unorderedDeliversOnReceipt() throws {
        let group = try DirectGroup(memberCount: 3) { $0.deliveryMode = .unordered }
        try group.send(1, count: 3, first: 10)
        group.poll(1)
        #expect(group.delivered(1) == [[10], [11], [12]], "the sender delivers its own at once")
        try group.flush(from: 1, to: 2)
        #expect(group.delivered(2) == [[10], [11], [12]])
        #expect(group.deliveries[0].isEmpty, "member 0 has received nothing yet")
        #expect(group.deliveries[2].allSatisfy { $0.globalSequence == nil })
        #expect(group.cores[0].statistics.nullsCreated == 0, "no nulls in unordered mode")
    }

    @Test("Rows are batched: one row update covers a whole batch of messages")
    func rowUpdatesAreBatched() throws {
        let group = try DirectGroup(memberCount: 2, senders: [0])
        try group.send(0, count: 100)
        group.poll(0)
        let effects = try {
            try group.flush(from: 0, to: 1)
            return group.lastEffects[1]
        }()
        let rows = effects.filter { if case .sendRow = $0 { return true } else { return false } }
        #expect(rows.count == 1)
        #expect(group.cores[1].ownRow.received == [100])
    }

    @Test("Rows apply idempotently: a stale or repeated row changes nothing")
    func rowsAreIdempotent() throws {
        let group = try DirectGroup(memberCount: 2)
        try group.send(0, count: 5)
        try group.settle()
        let current = group.cores[0].row(ofMemberRank: 1)
        let stale = Row(viewID: group.view.id, received: [1, 0], seq: 1, delivered: 0, suspected: [0])
        try group.cores[0].handle(.received(.row(stale), fromMemberRank: 1))
        try group.cores[0].handle(.received(.row(current), fromMemberRank: 1))
        #expect(group.cores[0].row(ofMemberRank: 1) == current)
    }

    @Test("A quiet member still sends its row every heartbeat interval, and asks for the timer")
    func heartbeatRow() throws {
        let group = try DirectGroup(memberCount: 2) { $0.heartbeatInterval = .milliseconds(10) }
        group.poll(0)
        #expect(group.poll(0).isEmpty, "nothing changed, no heartbeat due")
        try group.cores[0].handle(.tick(Timestamp(nanoseconds: 10_000_000)))
        let effects = group.poll(0)
        #expect(effects.contains { if case .sendRow = $0 { return true } else { return false } })
        #expect(effects.contains(.armTimer(at: Timestamp(nanoseconds: 20_000_000))))
    }

    @Test("Every message and row carries the view id")
    func viewIDOnEverything() throws {
        let group = try DirectGroup(memberCount: 2)
        try group.send(0, count: 2)
        for effect in group.poll(0) {
            switch effect {
            case .sendData(let batch): #expect(batch.viewID == group.view.id)
            case .sendRow(let row): #expect(row.viewID == group.view.id)
            case .deliver(let delivery): #expect(delivery.viewID == group.view.id)
            case .armTimer, .wedged, .installView, .removed, .minority, .raggedTrim: break
            }
        }
    }

    @Test("A single-member group delivers its own messages at once")
    func singleMember() throws {
        let group = try DirectGroup(memberCount: 1)
        try group.send(0, count: 3)
        let effects = group.poll(0)
        #expect(group.delivered(0) == [[0], [1], [2]])
        #expect(!effects.contains { if case .sendData = $0 { return true } else { return false } })
    }

    @Test("A member that is not a sender cannot send")
    func nonSenderCannotSend() throws {
        let group = try DirectGroup(memberCount: 2, senders: [0])
        #expect(group.cores[1].sendCapacity == 0)
        #expect(throws: CoreError(.notASender, "member rank 1 is not a sender in v7")) { try group.send(1, [1]) }
    }

    @Test("A message larger than messageBytesMax is refused, and nothing else changes")
    func oversizedSend() throws {
        let group = try DirectGroup(memberCount: 2) { $0.messageBytesMax = 4 }
        #expect(throws: CoreError.self) { try group.send(0, [1, 2, 3, 4, 5]) }
        try group.send(0, [1, 2, 3, 4])
        try group.settle()
        #expect(group.delivered(1) == [[1, 2, 3, 4]])
    }

    // Failure detection (the first step of membership): suspicion and wedging.

    private func tickAll(_ group: DirectGroup, _ milliseconds: UInt64, except silent: Int? = nil) throws {
        for rank in group.cores.indices where rank != silent {
            try group.cores[rank].handle(.tick(Timestamp(nanoseconds: milliseconds * 1_000_000)))
        }
    }

    @Test(
        """
            A member silent for longer than failureTimeout is suspected; the suspicion spreads through the rows and \
            every member wedges
            """
    )
    func silenceRaisesSuspicionAndWedges() throws {
        let group = try DirectGroup(memberCount: 3) {
            $0.heartbeatInterval = .milliseconds(10)
            $0.failureTimeout = .milliseconds(50)
        }
        try tickAll(group, 1)  // the clock starts
        try group.settle()
        try tickAll(group, 40)
        try group.settle()
        #expect(group.cores.allSatisfy { !$0.isWedged }, "40 ms of silence is below the timeout")
        // Member 2 goes silent (hold everything it sends); the others keep hearing each other.
        let fromTwo: Set<DirectGroup.Link> = [.init(from: 2, to: 0), .init(from: 2, to: 1)]
        for step in 5...12 {
            try tickAll(group, UInt64(step) * 10, except: 2)
            try group.settle(holding: fromTwo)
        }
        // Members 0 and 1 suspected member 2, wedged, and (this shell moves messages instantly)
        // already ran the whole view change: a view of two, member 2 removed.
        #expect(group.cores[0].statistics.suspicionsRaised + group.cores[1].statistics.suspicionsRaised >= 1)
        for rank in 0..<2 {
            #expect(group.cores[rank].view.id.rawValue == group.view.id.rawValue + 1)
            #expect(group.cores[rank].view.members == [MemberID(1), MemberID(2)])
            #expect(!group.cores[rank].isWedged)
        }
        #expect(group.cores[0].statistics.proposalsMade >= 1 && group.cores[0].statistics.commitsMade >= 1)
        // Member 2 never timed anyone out; it reads the leader's install and learns it is out.
        try group.flush(from: 0, to: 2)
        #expect(group.cores[2].isRemoved)
        #expect(group.cores[2].statistics.suspicionsRaised == 0)
        // A removed member sends nothing new.
        #expect(group.cores[2].sendCapacity == 0)
        #expect(throws: CoreError.self) { try group.send(2, [1]) }
    }

    @Test("A failed link raises a suspicion at once")
    func linkFailureRaisesSuspicion() throws {
        let group = try DirectGroup(memberCount: 3)
        try group.cores[1].handle(.linkFailed(memberRank: 0))
        #expect(group.cores[1].suspectedRanks == [0])
        let effects = group.poll(1)
        #expect(effects.contains(.wedged(suspectedRanks: [0])))
        #expect(!group.poll(1).contains(.wedged(suspectedRanks: [0])), "reported once")
        #expect(throws: CoreError.self) { try group.cores[1].handle(.linkFailed(memberRank: 7)) }
    }

    @Test("Messages sent before a failure are delivered by every survivor, through the ragged trim")
    func wedgeKeepsWhatIsStable() throws {
        let group = try DirectGroup(memberCount: 3, senders: [0])
        try group.send(0, count: 4)
        group.poll(0)
        try group.flush(from: 0, to: 1)
        try group.flush(from: 0, to: 2)
        // Member 1 loses its link to member 2 before anything is stable anywhere.
        try group.cores[1].handle(.linkFailed(memberRank: 2))
        try group.settle()
        for rank in 0..<2 {
            #expect(group.cores[rank].view.id.rawValue == group.view.id.rawValue + 1)
            #expect(group.deliveries[rank].count == 4)
        }
    }

    @Test("A member that was stalled itself does not blame its peers for the silence")
    func ownStallIsNotPeersSilence() throws {
        let group = try DirectGroup(memberCount: 2) {
            $0.heartbeatInterval = .milliseconds(10)
            $0.failureTimeout = .milliseconds(50)
        }
        try group.cores[0].handle(.tick(Timestamp(nanoseconds: 1_000_000)))
        // Member 0's thread is starved for 2 s; its next tick must not suspect member 1.
        try group.cores[0].handle(.tick(Timestamp(nanoseconds: 2_001_000_000)))
        #expect(!group.cores[0].isWedged)
        #expect(group.cores[0].statistics.localStalls == 1)
        // But if member 1 then stays silent past the timeout, it is suspected.
        for step in 1...8 {
            try group.cores[0].handle(.tick(Timestamp(nanoseconds: 2_001_000_000 + UInt64(step) * 10_000_000)))
        }
        #expect(group.cores[0].suspectedRanks == [1])
    }

    /// Regression (issue 10, item 5): stalls shorter than half the failure timeout were not
    /// credited, so a receiver starved for 200 ms and a sender starved for 200 ms added up to a
    /// false suspicion on a loaded machine.
    @Test(
        """
            A shorter stall of this member (a late tick) is credited: the peer's silence is shortened by the tick's \
            lateness, and a silent peer is still suspected after
            """
    )
    func shortStallIsCredited() throws {
        func tick(_ group: DirectGroup, _ milliseconds: UInt64) throws {
            try group.cores[0].handle(.tick(Timestamp(nanoseconds: milliseconds * 1_000_000)))
        }
        let group = try DirectGroup(memberCount: 2) {
            $0.heartbeatInterval = .milliseconds(100)
            $0.failureTimeout = .milliseconds(500)
        }
        // Member 1 is last heard at the first tick (0 ms of the clock: 1 ms).
        for milliseconds: UInt64 in [1, 101, 201] { try tick(group, milliseconds) }
        // Member 0 is starved: its next tick comes 250 ms after the last (150 ms late, below the
        // 250 ms that counts as a full stall).
        try tick(group, 451)
        #expect(group.cores[0].statistics.localStalls == 0)
        // 650 ms of silence, 150 of them this member's own: not suspected yet.
        for milliseconds: UInt64 in [551, 651] { try tick(group, milliseconds) }
        #expect(!group.cores[0].isWedged, "the late tick's 150 ms are not member 1's silence")
        // Past 500 ms of silence net of the stall, member 1 is suspected.
        for milliseconds: UInt64 in [751, 851] { try tick(group, milliseconds) }
        #expect(group.cores[0].suspectedRanks == [1])
    }

    // Membership rules for reading rows (docs/MEMBERSHIP.md): each test fails if its rule goes.

    private func row(_ group: DirectGroup, suspecting ranks: [Int]) -> Row {
        var row = group.cores[0].row(ofMemberRank: 4)
        row.viewID = group.view.id
        row.suspected = [ranks.reduce(UInt64(0)) { $0 | 1 << UInt64($1) }]
        return row
    }

    @Test("A member whose row suspects a majority is the one cut off: it is suspected, its suspicions are not adopted")
    func isolatedMemberIsSuspectedNotBelieved() throws {
        let group = try DirectGroup(memberCount: 5)
        try group.cores[0].handle(.received(.row(row(group, suspecting: [0, 1, 2])), fromMemberRank: 4))
        #expect(group.cores[0].suspectedRanks == [4])
    }

    @Test("A suspicion from a member not cut off is adopted, even of oneself")
    func suspicionOfOneselfIsAdopted() throws {
        let group = try DirectGroup(memberCount: 5)
        try group.cores[0].handle(.received(.row(row(group, suspecting: [0])), fromMemberRank: 4))
        #expect(group.cores[0].suspectedRanks == [0])
        #expect(group.cores[0].leaderRank == 1, "a member that suspects itself does not lead")
    }

    @Test("Rows of a suspected member are ignored entirely")
    func suspectedMembersRowsAreIgnored() throws {
        let group = try DirectGroup(memberCount: 5)
        try group.cores[0].handle(.linkFailed(memberRank: 4))
        try group.cores[0].handle(.received(.row(row(group, suspecting: [2])), fromMemberRank: 4))
        #expect(group.cores[0].suspectedRanks == [4])
        #expect(group.cores[0].statistics.rowsFromSuspectsIgnored == 1)
    }
}
