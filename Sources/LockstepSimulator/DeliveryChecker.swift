// The checker reads what every member sent and delivered and says whether the run kept
// Lockstep's promises. It knows nothing of the core: the same checker will read delivery logs
// written by real processes.

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
    public init(sender: MemberID, senderSequence: UInt64, payloadDigest: UInt64) {
        self.sender = sender
        self.senderSequence = senderSequence
        self.payloadDigest = payloadDigest
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

    public init(sent: [MemberID: [SentRecord]], delivered: [MemberID: [DeliveredRecord]]) {
        self.sent = sent
        self.delivered = delivered
    }

    /// Runs every check.
    /// - Parameters:
    ///   - totalOrder: check that all members delivered in the same order (ordered mode).
    ///   - quiesced: the run has quiesced with no failures, so every sent message must have been
    ///     delivered at every member.
    ///   - violationsMax: stop collecting after this many.
    public func check(totalOrder: Bool, quiesced: Bool, violationsMax: Int = 20) -> [Violation] {
        var violations: [Violation] = []
        func report(_ property: Violation.Property, _ member: MemberID, _ detail: @autoclosure () -> String) {
            if violations.count < violationsMax {
                violations.append(Violation(property: property, member: member, detail: detail()))
            }
        }
        let members = delivered.keys.sorted()
        for member in members {
            let log = delivered[member] ?? []
            var nextExpected: [MemberID: UInt64] = [:]
            for (position, record) in log.enumerated() {
                // No creation: the record names a message its sender really sent, with that content.
                guard let senderLog = sent[record.sender], record.senderSequence < UInt64(senderLog.count) else {
                    report(.noCreation, member, "position \(position): \(record.sender)#\(record.senderSequence) was never sent")
                    continue
                }
                if senderLog[Int(record.senderSequence)].payloadDigest != record.payloadDigest {
                    report(.noCreation, member, "position \(position): \(record.sender)#\(record.senderSequence) has other content than was sent")
                }
                // FIFO without gaps, and no duplication (a repeat shows up as going backwards).
                let expected = nextExpected[record.sender, default: 0]
                if record.senderSequence < expected {
                    report(.noDuplication, member, "position \(position): \(record.sender)#\(record.senderSequence) delivered again")
                } else {
                    if record.senderSequence > expected {
                        report(.fifo, member, "position \(position): \(record.sender)#\(record.senderSequence) delivered before #\(expected)")
                    }
                    nextExpected[record.sender] = record.senderSequence + 1
                }
            }
            if quiesced {
                for sender in sent.keys.sorted() {
                    let count = UInt64(sent[sender]?.count ?? 0)
                    let got = nextExpected[sender, default: 0]
                    if got < count {
                        report(.completeness, member, "delivered \(got) of \(count) messages of \(sender)")
                    }
                }
            }
        }
        if totalOrder, let reference = members.max(by: { (delivered[$0]?.count ?? 0) < (delivered[$1]?.count ?? 0) }) {
            let referenceLog = delivered[reference] ?? []
            for member in members where member != reference {
                let log = delivered[member] ?? []
                for position in log.indices where log[position] != referenceLog[position] {
                    let mine = log[position]
                    let theirs = referenceLog[position]
                    report(.totalOrder, member, "position \(position): \(mine.sender)#\(mine.senderSequence) where \(reference) delivered \(theirs.sender)#\(theirs.senderSequence)")
                    break
                }
            }
        }
        return violations
    }
}

/// FNV-1a over the bytes: a cheap, stable digest for comparing payloads in logs.
public func payloadDigest(_ bytes: some Collection<UInt8>) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes {
        hash ^= UInt64(byte)
        hash &*= 0x0000_0100_0000_01B3
    }
    return hash
}
