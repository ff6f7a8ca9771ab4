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
    public init(
        installs: [ViewRecord], initialCounts: [MemberID: UInt64] = [:], removed: Bool = false
    ) {
        self.installs = installs
        self.initialCounts = initialCounts
        self.removed = removed
    }
}

/// A broken promise found by the checker.
public struct Violation: Sendable, Equatable, CustomStringConvertible {
    public enum Property: String, Sendable {
        case noCreation = "no creation"
        case noDuplication = "no duplication"
        case totalOrder = "same total order"
        case fifo = "per-sender FIFO"
        case completeness = "every sent message delivered"
        case viewAgreement = "same sequence of views"
        case virtualSynchrony = "virtual synchrony"
        case deliveryOutsideView = "nothing delivered outside the member's views"
    }
    public var property: Property
    public var member: MemberID
    public var detail: String
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
    /// sender, the sequence the member would deliver next.
    private func checkLog(of member: MemberID, into found: inout Violations) -> [MemberID: UInt64] {
        // A joiner starts from its snapshot: what it holds without having delivered it.
        var nextExpected: [MemberID: UInt64] = membership[member]?.initialCounts ?? [:]
        for (position, record) in (delivered[member] ?? []).enumerated() {
            let name = "position \(position): \(record.sender)#\(record.senderSequence)"
            // No creation: the record names a message its sender really sent, with that content.
            guard let senderLog = sent[record.sender], record.senderSequence < UInt64(senderLog.count) else {
                found.report(.noCreation, member, "\(name) was never sent")
                continue
            }
            if senderLog[Int(record.senderSequence)].payloadDigest != record.payloadDigest {
                found.report(.noCreation, member, "\(name) has other content than was sent")
            }
            // FIFO without gaps, and no duplication (a repeat shows up as going backwards).
            let expected = nextExpected[record.sender, default: 0]
            if record.senderSequence < expected {
                found.report(.noDuplication, member, "\(name) delivered again")
            } else {
                if record.senderSequence > expected {
                    found.report(.fifo, member, "\(name) delivered before #\(expected)")
                }
                nextExpected[record.sender] = record.senderSequence + 1
            }
        }
        return nextExpected
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

    /// Checks across views: every view id names the same members wherever it was installed,
    /// each member's views are consecutive, deliveries happen only in installed views; per view,
    /// one total order (prefixes of one sequence); members that install v+1 together delivered
    /// exactly the same messages in v, so they installed with the same state (virtual
    /// synchrony); and at quiescence the final view's members hold every message of every
    /// final-view sender.
    private func checkViews(totalOrder: Bool, quiesced: Bool, into found: inout Violations) {
        let installers = checkViewAgreement(into: &found)
        guard totalOrder else { return }
        checkOrderPerView(into: &found)
        checkVirtualSynchrony(installers: installers, into: &found)
        if quiesced { checkFinalViewCompleteness(into: &found) }
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
    private func checkOrderPerView(into found: inout Violations) {
        var perView: [UInt64: [MemberID: [DeliveredRecord]]] = [:]
        for (member, log) in delivered {
            for record in log { perView[record.viewID, default: [:]][member, default: []].append(record) }
        }
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

    /// Virtual synchrony: everyone who installed v+1 did so with the same application state
    /// (a digest chained over every delivery, a joiner's snapshot included), and those who
    /// were in v delivered the same messages in v.
    private func checkVirtualSynchrony(installers: [UInt64: [(MemberID, UInt64)]], into found: inout Violations) {
        for (viewID, entries) in installers.sorted(by: { $0.key < $1.key }) where viewID > 1 {
            guard let (first, digest) = entries.first else { continue }
            for (member, other) in entries.dropFirst() where other != digest {
                found.report(.virtualSynchrony, member, "installed v\(viewID) with another state than \(first)")
            }
            let movers = entries.map(\.0).filter { member in
                membership[member]?.installs.contains { $0.viewID == viewID - 1 } ?? false
            }
            let sets = movers.map { member in (delivered[member] ?? []).filter { $0.viewID == viewID - 1 } }
            for (index, set) in sets.enumerated().dropFirst() where set != sets[0] {
                found.report(
                    .virtualSynchrony, movers[index],
                    "delivered \(set.count) messages in v\(viewID - 1), \(movers[0]) delivered \(sets[0].count); "
                        + "both installed v\(viewID)")
            }
        }
    }

    /// At quiescence, the final view's members hold every message of every final-view member.
    private func checkFinalViewCompleteness(into found: inout Violations) {
        guard let final = finalMembers else { return }
        for member in final {
            guard let history = membership[member] else { continue }
            var counts = history.initialCounts
            for record in delivered[member] ?? [] { counts[record.sender] = record.senderSequence + 1 }
            for sender in final {
                let sentCount = UInt64(sent[sender]?.count ?? 0)
                if counts[sender, default: 0] < sentCount {
                    let held = counts[sender, default: 0]
                    found.report(.completeness, member, "holds \(held) of \(sentCount) messages of \(sender)")
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
