// The user's machine as the simulator's application (`SimulatedApplicationHook`): one `Replica`
// per member incarnation, fed each delivery the moment its member delivers it, and the answers
// to the calls a LocalGroup waits for, matched by (sender, request) as ReplicatedGroup matches
// them. Every rule of what an entry is and how it is applied is Replica.swift's.

import Lockstep
import LockstepCore
import LockstepSimulator

final class LocalApplication<Machine: ReplicatedStateMachine>: SimulatedApplicationHook {
    enum Answer {
        case submitted(Submitted<Machine.Response>)
        case read(Machine)
        case refused(String)
    }

    /// The replica of each incarnation that has a state (a joiner from its restore on).
    var replicas: [MemberID: Replica<Machine>] = [:]
    /// The requests a caller waits for, by the incarnation that submitted them.
    var awaited: [UInt64: MemberID] = [:]
    var answers: [UInt64: Answer] = [:]
    /// What went wrong outside any call (a snapshot that failed, an entry that is none): `check()`
    /// reports each.
    var problems: [String] = []

    func delivered(_ delivery: Delivery, at process: Int, member: MemberID) {
        guard var replica = replicas.removeValue(forKey: member) else {
            problems.append("member \(process) (\(member)) delivered in \(delivery.viewID) without a state")
            return
        }
        let applied = replica.apply(delivery)
        replicas[member] = replica
        switch applied {
        case .command(let request, let sender, let entry, let response):
            answer(request, sender: sender, at: member, .submitted(Submitted(response: response, entry: entry)))
        case .read(let request, let sender):
            answer(request, sender: sender, at: member, .read(replica.machine))
        case .refused(let request, let sender, let reason):
            answer(request, sender: sender, at: member, .refused(reason))
        case .malformed(let sender, let reason):
            problems.append("member \(process) (\(member)) skipped a message from \(sender): \(reason)")
        }
    }

    /// The caller waiting for `request` is answered by its own member's apply only.
    private func answer(_ request: UInt64, sender: MemberID, at member: MemberID, _ answer: Answer) {
        guard sender == member, request != 0, awaited[request] == member else { return }
        answers[request] = answer
    }

    func installed(_ view: View, memberRank: Int, at process: Int, member: MemberID) {
        replicas[member]?.machine.viewInstalled(GroupView(view, memberRank: memberRank))
    }

    /// The welcoming member's replica now, through the machine's own `writeSnapshot`.
    func snapshot(at process: Int, member: MemberID) -> [UInt8] {
        guard let replica = replicas[member] else {
            problems.append("member \(process) (\(member)) welcomed a joiner without a state")
            return []
        }
        let written = runToCompletion { () async throws -> [UInt8] in
            let memory = MemorySnapshot()
            try await Replica.writeSnapshot(of: replica, to: memory)
            var bytes: [UInt8] = []
            while let chunk = try await memory.next() { bytes.append(contentsOf: chunk) }
            return bytes
        }
        switch written {
        case .success(let bytes): return bytes
        case .failure(let error):
            problems.append("member \(process) (\(member)) could not write its snapshot: \(error)")
            return []
        }
    }

    /// The joiner's replica, through the machine's own `restore`.
    func restore(_ snapshot: [UInt8], at process: Int, member: MemberID) {
        let restored = runToCompletion { () async throws -> Replica<Machine> in
            let memory = MemorySnapshot()
            try await memory.write(snapshot[...])
            return try await Replica<Machine>.restore(from: memory)
        }
        switch restored {
        case .success(let replica): replicas[member] = replica
        case .failure(let error):
            problems.append("joiner \(process) (\(member)) could not restore its snapshot: \(error)")
        }
    }
}
