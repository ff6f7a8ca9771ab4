// Three members of a replicated counter in one process, over TCP on loopback: the README's
// embedding example, as an outside package writes it.
import Lockstep
import LockstepTesting
import ServiceLifecycle

struct Counter: ReplicatedStateMachine, Codable {
    var total = 0
    mutating func apply(_ amount: Int, entry: EntryInfo) -> Int {
        total += amount
        return total
    }
}

let ports = [7401, 7402, 7403]
let peers = ports.enumerated().map {
    GroupConfiguration.Member(
        id: MemberID(UInt64($0.offset + 1)), address: PeerAddress(host: "127.0.0.1", port: $0.element))
}
let groups = try peers.map { peer in
    try ReplicatedGroup(configuration: .bootstrap(members: peers, me: peer.id), initialState: Counter())
}
let runs = groups.map { group in Task { try await group.run() } }

let result = try await groups[0].submit(5)  // applied on every member, in one order
print("response \(result.response) at position \(result.position)")
_ = try await groups[1].submit(2)
let now = try await groups[2].state(.linearizable)  // includes every write completed anywhere
print("linearizable read: \(now.total)")
guard now.total == 7 else { fatalError("expected 7, read \(now.total)") }
for group in groups { await group.close() }
for run in runs { _ = try? await run.value }
print("dependent fixture: ok")
