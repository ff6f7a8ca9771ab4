// A hand-driven group for protocol-claim tests: cores joined by FIFO queues that move only when
// the test says so, so each test can hold a link, release it, and look at every counter.

import LockstepCore
import Testing

final class DirectGroup {
    var cores: [OrderingCore]
    /// queues[from][to]: messages sent on that link and not yet handed over.
    var queues: [[[Message]]]
    /// deliveries[rank]: what each member's application received, in order.
    var deliveries: [[Delivery]]
    var lastEffects: [[Effect]]
    let view: View

    init(memberCount: Int, senders: [Int]? = nil, configure: (inout Configuration) -> Void = { _ in }) throws {
        var configuration = Configuration()
        configure(&configuration)
        let ids = (1...memberCount).map { MemberID(UInt64($0)) }
        let view = try View(id: ViewID(7), members: ids, senders: senders.map { $0.map { ids[$0] } })
        self.view = view
        cores = try ids.indices.map { try OrderingCore(configuration: configuration, view: view, memberRank: $0) }
        queues = ids.map { _ in ids.map { _ in [] } }
        deliveries = ids.map { _ in [] }
        lastEffects = ids.map { _ in [] }
    }

    /// The application of `rank` sends these bytes.
    func send(_ rank: Int, _ bytes: [UInt8]) throws(CoreError) {
        try cores[rank].handle(.sendRequested(bytes[...]))
    }

    /// Sends `count` one-byte messages numbered from `first`.
    func send(_ rank: Int, count: Int, first: UInt8 = 0) throws(CoreError) {
        for k in 0..<count { try send(rank, [first &+ UInt8(truncatingIfNeeded: k)]) }
    }

    /// Polls `rank` and puts its sends on its outgoing links: to the members of the view it was
    /// in when it emitted them (sends before an `installView` go to the old view).
    @discardableResult
    func poll(_ rank: Int) -> [Effect] {
        var senderView = cores[rank].view
        let effects = cores[rank].poll()
        lastEffects[rank] = effects
        let recipients = { (view: View) in
            self.cores.indices.filter { $0 != rank && view.rank(of: self.memberID(ofIndex: $0)) != nil }
        }
        for effect in effects {
            switch effect {
            case .sendData(let batch):
                for to in recipients(senderView) { queues[rank][to].append(.data(batch)) }
            case .sendRow(let row):
                for to in recipients(senderView) { queues[rank][to].append(.row(row)) }
            case .deliver(let delivery):
                deliveries[rank].append(delivery)
            case .installView(let next, _):
                senderView = next
            case .armTimer, .wedged, .removed, .minority, .raggedTrim:
                break
            }
        }
        return effects
    }

    /// The member id of the core at `index` (ids are 1...memberCount, by index).
    func memberID(ofIndex index: Int) -> MemberID { MemberID(UInt64(index + 1)) }

    /// Hands over everything queued from `from` to `to`, in FIFO order, then polls `to`.
    @discardableResult
    func flush(from: Int, to: Int) throws(CoreError) -> Bool {
        let messages = queues[from][to]
        queues[from][to] = []
        // Traffic of a view the receiver has not installed waits for it. The sender's rank is
        // looked up in the receiver's view (ranks move when a lower rank is removed); traffic
        // from a member the receiver's view no longer has is dropped, as a shell drops traffic
        // of views left behind.
        var handed = false
        for (position, message) in messages.enumerated() {
            if message.viewID > cores[to].view.id {
                queues[from][to] = Array(messages[position...])
                break
            }
            guard let fromRank = cores[to].view.rank(of: memberID(ofIndex: from)) else { continue }
            try cores[to].handle(.received(message, fromMemberRank: fromRank))
            handed = true
        }
        poll(to)
        return handed
    }

    /// Polls everyone and moves messages on every link not in `held` until nothing moves.
    func settle(holding held: Set<Link> = []) throws(CoreError) {
        for rank in cores.indices { poll(rank) }
        var moved = true
        while moved {
            moved = false
            for from in cores.indices {
                for to in cores.indices where from != to && !held.contains(Link(from: from, to: to)) {
                    if !queues[from][to].isEmpty, try flush(from: from, to: to) { moved = true }
                }
            }
        }
    }

    /// The payloads member `rank` delivered, as first bytes.
    func delivered(_ rank: Int) -> [[UInt8]] { deliveries[rank].map { Array($0.payload) } }

    struct Link: Hashable {
        var from: Int
        var to: Int
    }
}
