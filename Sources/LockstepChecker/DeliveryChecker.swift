// The checker reads what every member sent and delivered and says whether the run kept
// Lockstep's promises. It knows nothing of the core: the simulator hands it its members' logs, and
// `lockstep bench` and `chaos` the delivery logs their member processes wrote (DeliveryLog.swift).

import LockstepCore

/// One message as its sender's application submitted it.
public struct SentRecord: Sendable, Equatable {
    /// The sender's own count of its messages, from 0 (nulls are invisible here).
    public var senderSequence: UInt64
    public var payloadDigest: UInt64
    public init(senderSequence: UInt64, payloadDigest: UInt64) {
        self.senderSequence = senderSequence
        self.payloadDigest = payloadDigest
    }
}

/// One message as a member's application received it.
public struct DeliveredRecord: Sendable, Equatable {
    public var sender: MemberID
    public var senderSequence: UInt64
    public var payloadDigest: UInt64
    /// The view the message was delivered in (0 when the log does not say).
    public var viewID: UInt64
    public init(
        sender: MemberID, senderSequence: UInt64, payloadDigest: UInt64, viewID: UInt64 = 0
    ) {
        self.sender = sender
        self.senderSequence = senderSequence
        self.payloadDigest = payloadDigest
        self.viewID = viewID
    }
}

/// A view as one member installed it, with the digest of its application state at that moment.
public struct ViewRecord: Sendable, Equatable {
    public var viewID: UInt64
    public var members: [MemberID]
    public var stateDigest: UInt64
    public init(viewID: UInt64, members: [MemberID], stateDigest: UInt64) {
        self.viewID = viewID
        self.members = members
        self.stateDigest = stateDigest
    }
}

/// One incarnation's membership history.
public struct MemberHistory: Sendable, Equatable {
    /// Views in the order installed; a joiner's first is the view it joined.
    public var installs: [ViewRecord]
    /// A joiner's snapshot: per sender, how many messages it holds without delivering them.
    public var initialCounts: [MemberID: UInt64]
    /// The member learned it was removed.
    public var removed: Bool
    /// The incarnation ended without learning it was removed: it crashed, or a restart replaced
    /// it. Such a member is not live at the end, so completeness does not bind it. (False when
    /// a log does not say.)
    public var crashed: Bool
    public init(
        installs: [ViewRecord], initialCounts: [MemberID: UInt64] = [:], removed: Bool = false,
        crashed: Bool = false
    ) {
        self.installs = installs
        self.initialCounts = initialCounts
        self.removed = removed
        self.crashed = crashed
    }

    /// Live at the end: neither removed nor crashed.
    public var endedLive: Bool { !removed && !crashed }
}

/// A broken promise found by the checker.
public struct Violation: Sendable, Equatable, CustomStringConvertible {
    public enum Property: String, Sendable, CaseIterable {
        case noCreation = "no creation"
        case noDuplication = "no duplication"
        /// A joiner delivered a message its snapshot already holds (a re-sent message not skipped).
        case snapshotDuplication = "nothing a joiner's snapshot holds is delivered again"
        case totalOrder = "same total order"
        case fifo = "per-sender FIFO"
        case completeness = "every sent message delivered"
        /// Ordered mode: what any member delivered in view v, every member that moved on from v
        /// to v+1 delivered in v (the member that delivered may have crashed or been removed since).
        case uniformAgreement = "uniform agreement per view"
        /// At quiescence: a live member of the final view lacks a message another member
        /// delivered (unordered mode: of a sender in the final view).
        case noLoss = "no loss at a member that stays"
        case viewAgreement = "same sequence of views"
        case virtualSynchrony = "virtual synchrony"
        case deliveryOutsideView = "nothing delivered outside the member's views"
        /// Progress (simulator): a connected majority of a view's live members stayed wedged,
        /// with no view installed anywhere, for longer than a bound.
        case wedgedMajority = "no connected majority stays wedged"
    }
    public var property: Property
    public var member: MemberID
    public var detail: String
    public init(property: Property, member: MemberID, detail: String) {
        self.property = property
        self.member = member
        self.detail = detail
    }
    public var description: String { "\(property.rawValue) violated at \(member): \(detail)" }
}

/// Checks delivery logs against send logs.
public struct DeliveryChecker: Sendable {
    /// What each sender submitted, in submission order.
    public var sent: [MemberID: [SentRecord]]
    /// What each member delivered, in delivery order.
    public var delivered: [MemberID: [DeliveredRecord]]

    /// Views each incarnation installed. Empty for logs of a single view (then the total order
    /// is checked over whole logs, and completeness over every member).
    public var membership: [MemberID: MemberHistory]

    public init(
        sent: [MemberID: [SentRecord]], delivered: [MemberID: [DeliveredRecord]],
        membership: [MemberID: MemberHistory] = [:]
    ) {
        self.sent = sent
        self.delivered = delivered
        self.membership = membership
    }

    /// The members of the last view installed anywhere, if views were recorded.
    public var finalMembers: [MemberID]? {
        membership.values.compactMap(\.installs.last).max { $0.viewID < $1.viewID }?.members
    }

    /// Runs every check.
    /// - Parameters:
    ///   - totalOrder: check that all members delivered in the same order (ordered mode).
    ///   - quiesced: the run has quiesced with no failures, so every sent message must have been
    ///     delivered at every member.
    ///   - violationsMax: stop collecting after this many.
    public func check(totalOrder: Bool, quiesced: Bool, violationsMax: Int = 20) -> [Violation] {
        var found = Violations(limit: violationsMax)
        for member in delivered.keys.sorted() {
            let nextExpected = checkLog(of: member, into: &found)
            if quiesced && membership.isEmpty {
                checkCompleteness(of: member, nextExpected: nextExpected, into: &found)
            }
        }
        if !membership.isEmpty {
            checkViews(totalOrder: totalOrder, quiesced: quiesced, into: &found)
        } else if totalOrder {
            checkOneOrder(into: &found)
        }
        return found.list
    }

    // MARK: - One member's log

    /// No creation, no duplication and FIFO without gaps over one member's log; returns, per
    /// sender, the sequence the member would deliver next. Sender sequences are the sender
    /// incarnation's own count, carried in the payload, so a message re-sent in a later view
    /// keeps its sequence and a second delivery of it shows up here, whichever view it is in.
    private func checkLog(of member: MemberID, into found: inout Violations) -> [MemberID: UInt64] {
        // A joiner starts from its snapshot: what it holds without having delivered it.
        let snapshot = membership[member]?.initialCounts ?? [:]
        var nextExpected = snapshot
        // Per sender, the sequences a FIFO gap skipped: delivering one late is not a repeat.
        var holes: [MemberID: [Range<UInt64>]] = [:]
        for (position, record) in (delivered[member] ?? []).enumerated() {
            let name = "position \(position) (v\(record.viewID)): \(Self.name(record))"
            // No creation: the record names a message its sender really sent, with that content.
            guard let senderLog = sent[record.sender], record.senderSequence < UInt64(senderLog.count) else {
                found.report(.noCreation, member, "\(name) was never sent")
                continue
            }
            if senderLog[Int(record.senderSequence)].payloadDigest != record.payloadDigest {
                found.report(.noCreation, member, "\(name) has other content than was sent")
            }
            let sequence = record.senderSequence
            let expected = nextExpected[record.sender, default: 0]
            let held = snapshot[record.sender, default: 0]
            if sequence >= expected {
                if sequence > expected {
                    found.report(.fifo, member, "\(name) delivered before #\(expected)")
                    holes[record.sender, default: []].append(expected..<sequence)
                }
                nextExpected[record.sender] = sequence + 1
            } else if Self.fill(sequence, in: &holes[record.sender, default: []]) {
                // Late into a gap that was reported as a FIFO break when it opened.
            } else if sequence < held {
                found.report(
                    .snapshotDuplication, member,
                    "\(name) delivered, but the snapshot it joined with already holds \(held) messages of "
                        + "\(record.sender)")
            } else {
                found.report(.noDuplication, member, "\(name) delivered again")
            }
        }
        return nextExpected
    }

    /// Takes `sequence` out of the gap it lies in; returns whether it lay in one.
    private static func fill(_ sequence: UInt64, in holes: inout [Range<UInt64>]) -> Bool {
        guard let index = holes.firstIndex(where: { $0.contains(sequence) }) else { return false }
        let hole = holes.remove(at: index)
        for part in [hole.lowerBound..<sequence, (sequence + 1)..<hole.upperBound] where !part.isEmpty {
            holes.append(part)
        }
        return true
    }

    /// Without views: the member delivered every message of every sender.
    private func checkCompleteness(
        of member: MemberID, nextExpected: [MemberID: UInt64], into found: inout Violations
    ) {
        for sender in sent.keys.sorted() {
            let count = UInt64(sent[sender]?.count ?? 0)
            let got = nextExpected[sender, default: 0]
            if got < count {
                found.report(.completeness, member, "delivered \(got) of \(count) messages of \(sender)")
            }
        }
    }

    /// Without views: every log is a prefix of the longest one.
    private func checkOneOrder(into found: inout Violations) {
        let members = delivered.keys.sorted()
        guard let reference = members.max(by: { (delivered[$0]?.count ?? 0) < (delivered[$1]?.count ?? 0) })
        else { return }
        let referenceLog = delivered[reference] ?? []
        for member in members where member != reference {
            let log = delivered[member] ?? []
            if let position = log.indices.first(where: { log[$0] != referenceLog[$0] }) {
                found.report(
                    .totalOrder, member,
                    "position \(position): \(Self.name(log[position])) where \(reference) delivered "
                        + Self.name(referenceLog[position]))
            }
        }
    }

    // MARK: - Across views

    /// One message, by its sender and the sender's sequence.
    private struct MessageKey: Hashable {
        var sender: MemberID
        var sequence: UInt64
        init(_ record: DeliveredRecord) {
            sender = record.sender
            sequence = record.senderSequence
        }
    }

    /// Per view, what each member delivered in it, in order.
    private typealias PerView = [UInt64: [MemberID: [DeliveredRecord]]]

    /// Checks across views: every view id names the same members wherever it was installed,
    /// each member's views are consecutive, deliveries happen only in installed views; in ordered
    /// mode, per view one total order (prefixes of one sequence), the same state at every
    /// install, and uniform agreement; at quiescence, completeness at the final view's live
    /// members (both modes). Each missing message is reported once: uniform agreement covers
    /// the views a member moved on from, the final-view checks the view it ended in.
    private func checkViews(totalOrder: Bool, quiesced: Bool, into found: inout Violations) {
        let installers = checkViewAgreement(into: &found)
        var perView: PerView = [:]
        for (member, log) in delivered {
            for record in log { perView[record.viewID, default: [:]][member, default: []].append(record) }
        }
        var reported: Set<[UInt64]> = []
        if totalOrder {
            checkOrderPerView(perView, into: &found)
            checkStateAgreement(installers: installers, into: &found)
            reported = checkUniformAgreement(perView, into: &found)
        }
        if quiesced { checkFinalView(perView, totalOrder: totalOrder, skipping: reported, into: &found) }
    }

    /// One membership per view id, consecutive installs, deliveries only in installed views.
    /// Returns, per view, who installed it with which state digest.
    private func checkViewAgreement(into found: inout Violations) -> [UInt64: [(MemberID, UInt64)]] {
        var viewMembers: [UInt64: (MemberID, [MemberID])] = [:]
        var installers: [UInt64: [(MemberID, UInt64)]] = [:]
        for (member, history) in membership.sorted(by: { $0.key < $1.key }) {
            let installs = history.installs
            for (position, record) in installs.enumerated() {
                if let (first, members) = viewMembers[record.viewID] {
                    if members != record.members {
                        found.report(
                            .viewAgreement, member,
                            "v\(record.viewID) has members \(record.members), \(first) installed \(members)")
                    }
                } else {
                    viewMembers[record.viewID] = (member, record.members)
                }
                if !record.members.contains(member) {
                    found.report(.viewAgreement, member, "installed v\(record.viewID) without being a member")
                }
                if position > 0 && record.viewID != installs[position - 1].viewID + 1 {
                    found.report(
                        .viewAgreement, member, "installed v\(record.viewID) after v\(installs[position - 1].viewID)")
                }
                installers[record.viewID, default: []].append((member, record.stateDigest))
            }
            let viewIDs = Set(installs.map(\.viewID))
            let log = delivered[member] ?? []
            if let position = log.indices.first(where: { !viewIDs.contains(log[$0].viewID) }) {
                found.report(
                    .deliveryOutsideView, member,
                    "position \(position): delivered in v\(log[position].viewID), which it never installed")
            }
        }
        return installers
    }

    /// Per view, each member's deliveries in it are a prefix of the longest member's.
    private func checkOrderPerView(_ perView: PerView, into found: inout Violations) {
        for (viewID, logs) in perView.sorted(by: { $0.key < $1.key }) {
            // The longest log, the lowest member id among equals.
            guard let (reference, referenceLog) = logs.max(by: { ($0.value.count, $1.key) < ($1.value.count, $0.key) })
            else { continue }
            for (member, log) in logs.sorted(by: { $0.key < $1.key }) where member != reference {
                if let position = log.indices.first(where: { log[$0] != referenceLog[$0] }) {
                    found.report(
                        .totalOrder, member,
                        "v\(viewID) position \(position): \(Self.name(log[position])) where \(reference) delivered "
                            + Self.name(referenceLog[position]))
                }
            }
        }
    }

    /// Virtual synchrony's state half: everyone who installed v+1 did so with the same
    /// application state (a digest chained over every delivery, a joiner's snapshot included).
    /// The other half, the same messages in v, is uniform agreement.
    private func checkStateAgreement(installers: [UInt64: [(MemberID, UInt64)]], into found: inout Violations) {
        for (viewID, entries) in installers.sorted(by: { $0.key < $1.key }) where viewID > 1 {
            guard let (first, digest) = entries.first else { continue }
            for (member, other) in entries.dropFirst() where other != digest {
                found.report(.virtualSynchrony, member, "installed v\(viewID) with another state than \(first)")
            }
        }
    }

    /// What anyone delivered in one view, each message once with the lowest member id that
    /// delivered it, in the order of the members' logs.
    private static func union(_ logs: [MemberID: [DeliveredRecord]]?) -> [(MessageKey, MemberID)] {
        var seen: Set<MessageKey> = []
        var list: [(MessageKey, MemberID)] = []
        for (member, log) in (logs ?? [:]).sorted(by: { $0.key < $1.key }) {
            for record in log where seen.insert(MessageKey(record)).inserted {
                list.append((MessageKey(record), member))
            }
        }
        return list
    }

    /// The messages of `union` that `member` did not deliver in its view, described (a few),
    /// and their senders.
    private static func missing(
        _ union: [(MessageKey, MemberID)], at member: MemberID, _ logs: [MemberID: [DeliveredRecord]]?,
        alsoHeld: (MessageKey) -> Bool = { _ in false }
    ) -> (gap: String, senders: Set<MemberID>)? {
        let own = Set((logs?[member] ?? []).map(MessageKey.init))
        let absent = union.filter { !own.contains($0.0) && !alsoHeld($0.0) }
        guard !absent.isEmpty else { return nil }
        let named = absent.prefix(3).map { "\($0.0.sender)#\($0.0.sequence) (delivered by \($0.1))" }
        let more = absent.count > 3 ? " and \(absent.count - 3) more" : ""
        let gap =
            "delivered \(union.count - absent.count) of the \(union.count) messages delivered there; missing "
            + named.joined(separator: ", ") + more
        return (gap, Set(absent.map(\.0.sender)))
    }

    /// Uniform agreement per view (ordered mode): a member that moved on from v to v+1
    /// delivered in v everything anyone delivered in v, a member that crashed or was removed
    /// in v or later included. (With one order per view, every mover's v log is the longest.)
    /// Returns the (member, sender) pairs it found missing, which the final view's checks skip.
    private func checkUniformAgreement(_ perView: PerView, into found: inout Violations) -> Set<[UInt64]> {
        var reported: Set<[UInt64]> = []
        var unions: [UInt64: [(MessageKey, MemberID)]] = [:]
        for (member, history) in membership.sorted(by: { $0.key < $1.key }) {
            let installs = history.installs
            for position in installs.indices.dropFirst()
            where installs[position].viewID == installs[position - 1].viewID + 1 {
                let viewID = installs[position - 1].viewID
                if unions[viewID] == nil { unions[viewID] = Self.union(perView[viewID]) }
                if let (gap, senders) = Self.missing(unions[viewID] ?? [], at: member, perView[viewID]) {
                    found.report(.uniformAgreement, member, "installed v\(viewID + 1) from v\(viewID), where it " + gap)
                    for sender in senders { reported.insert([member.rawValue, sender.rawValue]) }
                }
            }
        }
        return reported
    }

    /// Per sender, how many of its first messages `member` holds without a gap: its snapshot's
    /// count, then what it delivered.
    private func contiguousHoldings(of member: MemberID, from snapshot: [MemberID: UInt64]) -> [MemberID: UInt64] {
        var sequences: [MemberID: Set<UInt64>] = [:]
        for record in delivered[member] ?? [] { sequences[record.sender, default: []].insert(record.senderSequence) }
        var held = snapshot
        for (sender, set) in sequences {
            var count = snapshot[sender, default: 0]
            while set.contains(count) { count += 1 }
            held[sender] = count
        }
        return held
    }

    /// Per sender, one more than the highest sequence delivered anywhere, with who delivered it
    /// and in which view.
    private func highestDelivered() -> [MemberID: (count: UInt64, by: MemberID, viewID: UInt64)] {
        var highest: [MemberID: (count: UInt64, by: MemberID, viewID: UInt64)] = [:]
        for (member, log) in delivered.sorted(by: { $0.key < $1.key }) {
            for record in log where record.senderSequence + 1 > highest[record.sender]?.count ?? 0 {
                highest[record.sender] = (record.senderSequence + 1, member, record.viewID)
            }
        }
        return highest
    }

    /// At quiescence, every live member of the final view (the last view installed anywhere)
    /// installed it; delivered in it everything anyone delivered in it; holds, per sender, as
    /// much as anyone delivered (unordered mode: of the final view's senders only, since a
    /// sender removed with messages delivered at some members only re-sends nothing); and holds
    /// every message the final view's members sent. One report per member and sender at most.
    private func checkFinalView(
        _ perView: PerView, totalOrder: Bool, skipping reported: Set<[UInt64]>, into found: inout Violations
    ) {
        guard let final = membership.values.compactMap(\.installs.last).max(by: { $0.viewID < $1.viewID })
        else { return }
        let finalID = final.viewID
        let union = Self.union(perView[finalID])
        let highest = highestDelivered()
        let senders = Set(final.members).union(totalOrder ? Set(highest.keys) : [])
        for member in final.members {
            guard let history = membership[member], history.endedLive else { continue }
            guard history.installs.last?.viewID == finalID else {
                found.report(
                    .completeness, member, "is live and a member of the final view v\(finalID), but never installed it")
                continue
            }
            // Unordered mode: a message some member delivered in the final view, re-sent there,
            // another may have delivered in an earlier view (or hold in its snapshot).
            let counts = contiguousHoldings(of: member, from: history.initialCounts)
            let earlier = Set((delivered[member] ?? []).map(MessageKey.init))
            let heldEarlier = { (key: MessageKey) in
                !totalOrder && (earlier.contains(key) || key.sequence < history.initialCounts[key.sender, default: 0])
            }
            if let (gap, _) = Self.missing(union, at: member, perView[finalID], alsoHeld: heldEarlier) {
                found.report(.noLoss, member, "ended live in the final view v\(finalID), where it " + gap)
                continue
            }
            for sender in senders.sorted() where !reported.contains([member.rawValue, sender.rawValue]) {
                let held = counts[sender, default: 0]
                if let top = highest[sender], held < top.count {
                    found.report(
                        .noLoss, member,
                        "ended live in v\(finalID) holding the first \(held) messages of \(sender), but "
                            + "\(top.by) delivered \(sender)#\(top.count - 1) in v\(top.viewID)")
                } else if final.members.contains(sender), held < UInt64(sent[sender]?.count ?? 0) {
                    let sentCount = sent[sender]?.count ?? 0
                    found.report(
                        .completeness, member,
                        "ended live in v\(finalID) holding \(held) of the \(sentCount) messages \(sender) sent")
                }
            }
        }
    }

    private static func name(_ record: DeliveredRecord) -> String { "\(record.sender)#\(record.senderSequence)" }
}

/// The violations found so far, up to a limit (the rest are not even described).
private struct Violations {
    let limit: Int
    private(set) var list: [Violation] = []

    init(limit: Int) { self.limit = limit }

    mutating func report(_ property: Violation.Property, _ member: MemberID, _ detail: @autoclosure () -> String) {
        if list.count < limit {
            list.append(Violation(property: property, member: member, detail: detail()))
        }
    }
}
