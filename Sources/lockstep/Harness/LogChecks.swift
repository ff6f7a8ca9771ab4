// The delivery checks of bench and chaos: every member's delivery log (LockstepChecker's
// format), with what the members reported, handed to the one `DeliveryChecker`. Senders are
// member ids throughout, as in the views; a first-view member of rank r has id r + 1.

import LockstepChecker
import LockstepCore
import LockstepStorage

enum LogChecks {
    /// The most violations chaos collects (bench stops at the checker's default).
    static let chaosViolationsMax = 100

    /// bench's verdict on one size ("passed", "passed (safety only)" or "failed: ..."): the
    /// logs of the first view's members, in rank order. `quiesced` is false after a kill: then
    /// only safety is checked, and the victim's log may end inside a record.
    static func benchVerdict(logPaths: [String], finals: [MemberFinal], totalOrder: Bool, quiesced: Bool) -> String {
        var delivered: [MemberID: [DeliveredRecord]] = [:]
        for (rank, path) in logPaths.enumerated() {
            do throws(DeliveryLogError) {
                let records = try DeliveryLog.read(path: path, tail: quiesced ? .whole : .mayBeTorn)
                delivered[DeliveryLog.sender(ofOrigin: rank)] = records.map(\.delivered)
            } catch .missing {
                return "failed: no delivery log from member \(rank)"
            } catch {
                return "failed: \(error)"
            }
        }
        var sent: [MemberID: [SentRecord]] = [:]
        for final in finals where final.sent > 0 {
            // Senders are the lowest ranks, so a sender's sender rank is its member rank.
            sent[DeliveryLog.sender(ofOrigin: final.rank)] = sentRecords(count: final.sent)
        }
        if !quiesced {
            // A killed member reports no count of what it sent: take the highest of its messages
            // anyone delivered (its payloads' content is still checked on delivery).
            for (sender, count) in highestDelivered(delivered) where sent[sender] == nil {
                sent[sender] = sentRecords(count: count)
            }
        }
        let violations = DeliveryChecker(sent: sent, delivered: delivered)
            .check(totalOrder: totalOrder, quiesced: quiesced)
        let corrupt = finals.reduce(0) { $0 + $1.corrupt }
        if corrupt > 0 { return "failed: \(corrupt) payloads arrived with other content than was sent" }
        if let first = violations.first { return "failed: \(violations.count) violations, first: \(first)" }
        let total = delivered.values.reduce(0) { $0 + $1.count }
        guard total > 0 else { return "failed: nothing was delivered" }
        return quiesced ? "passed" : "passed (safety only)"
    }

    /// One process of a chaos run: its member id, its log, and its final line if it reported.
    struct ChaosMember {
        var id: MemberID
        var logPath: String
        var final: MemberFinal?
    }

    /// chaos's checks: every log with each member's views and, for joiners, the snapshot it
    /// started from. Throws if a log is damaged (not merely cut short by a kill).
    static func chaosViolations(_ members: [ChaosMember]) throws(DeliveryLogError) -> [Violation] {
        var delivered: [MemberID: [DeliveredRecord]] = [:]
        var membership: [MemberID: MemberHistory] = [:]
        for member in members {
            delivered[member.id] = try chaosLog(member)
            if let final = member.final { membership[member.id] = reportedHistory(final) }
        }
        // A killed member reports nothing and lost the tail of its log (the unflushed buffer): it
        // installed the views its log covers, as the members that reported them saw them.
        var known: [UInt64: ViewRecord] = [:]
        for history in membership.values { for record in history.installs { known[record.viewID] = record } }
        for member in members where member.final == nil {
            membership[member.id] = inferredHistory(of: member.id, log: delivered[member.id] ?? [], known: known)
        }
        let highest = highestDelivered(delivered)
        var sent: [MemberID: [SentRecord]] = [:]
        for member in members {
            sent[member.id] = sentRecords(count: max(member.final?.sent ?? 0, highest[member.id] ?? 0))
        }
        return DeliveryChecker(sent: sent, delivered: delivered, membership: membership)
            .check(totalOrder: true, quiesced: false, violationsMax: chaosViolationsMax)
    }

    private static func chaosLog(_ member: ChaosMember) throws(DeliveryLogError) -> [DeliveredRecord] {
        do throws(DeliveryLogError) {
            // A member that did not report was killed: its last write may have been cut.
            return try DeliveryLog.read(path: member.logPath, tail: member.final == nil ? .mayBeTorn : .whole)
                .map(\.delivered)
        } catch .missing {
            // Killed before it had joined (the log is made once the member is in the group).
            return []
        }
    }

    /// The views a member reported, and its snapshot's counts (by origin in the report).
    private static func reportedHistory(_ final: MemberFinal) -> MemberHistory {
        var counts: [MemberID: UInt64] = [:]
        for (origin, count) in final.initialCounts.enumerated() where count > 0 {
            counts[DeliveryLog.sender(ofOrigin: origin)] = count
        }
        return MemberHistory(
            installs: final.views.map {
                ViewRecord(viewID: $0.id, members: $0.members.map(MemberID.init), stateDigest: $0.stateDigest)
            },
            initialCounts: counts)
    }

    /// A killed member's views, from the views its log names; a killed joiner's snapshot is
    /// taken to end just before its first delivery of each sender.
    private static func inferredHistory(
        of member: MemberID, log: [DeliveredRecord], known: [UInt64: ViewRecord]
    ) -> MemberHistory {
        let first = log.first?.viewID ?? 1
        let reached = log.map(\.viewID).max() ?? first
        var counts: [MemberID: UInt64] = [:]
        for record in log where counts[record.sender] == nil { counts[record.sender] = record.senderSequence }
        let installs = (first...max(first, reached)).compactMap { known[$0] }.filter { $0.members.contains(member) }
        return MemberHistory(installs: installs, initialCounts: first == 1 ? [:] : counts)
    }

    /// Per sender, one more than the highest sequence anyone delivered.
    private static func highestDelivered(_ delivered: [MemberID: [DeliveredRecord]]) -> [MemberID: UInt64] {
        var highest: [MemberID: UInt64] = [:]
        for records in delivered.values {
            for record in records {
                highest[record.sender] = max(highest[record.sender] ?? 0, record.senderSequence + 1)
            }
        }
        return highest
    }

    /// `count` sent messages, without payload digests (a log has none: content is checked at
    /// delivery).
    private static func sentRecords(count: UInt64) -> [SentRecord] {
        (0..<count).map { SentRecord(senderSequence: $0, payloadDigest: 0) }
    }
}

extension LogChecks {
    /// chaos --durable: the durable log in `directory` recovers (a SIGKILL never leaves one that
    /// refuses to open) and agrees with the delivery log at `logPath`: of the two, one is a prefix
    /// of the other, by sender, the sender's message number and view (either may lose its tail
    /// to a kill: the delivery log its unflushed buffer, the durable log what was not synced).
    /// Returns the problem, or nil; and how many entries the durable log held.
    static func durableLogProblem(directory: String, logPath: String) -> (String?, Int) {
        var logged: [DeliveryLogRecord] = []
        do {
            var decodeFailure: (any Error)?
            _ = try LogRecovery.recover(try PosixLogDirectory(path: directory), settings: LogSettings()) { record in
                do {
                    guard case .entries(let viewID, let deliveries) = try DurableRecords.decode(record) else { return }
                    for delivery in deliveries {
                        let (_, sequence, _, _) = BenchPayload.read(delivery.payload)
                        logged.append(
                            DeliveryLogRecord(
                                sender: delivery.sender, senderSequence: sequence, viewID: viewID.rawValue))
                    }
                } catch {
                    decodeFailure = error
                }
            }
            if let decodeFailure { throw decodeFailure }
        } catch {
            return ("the durable log in \(directory) does not recover: \(error)", logged.count)
        }
        let delivered: [DeliveryLogRecord]
        do {
            delivered = try DeliveryLog.read(path: logPath, tail: .mayBeTorn)
        } catch {
            return ("its delivery log \(logPath) does not read: \(error)", logged.count)
        }
        let common = min(logged.count, delivered.count)
        if let first = (0..<common).first(where: { logged[$0] != delivered[$0] }) {
            return (
                "the durable log in \(directory) and the delivery log differ at entry \(first): "
                    + "\(logged[first]) against \(delivered[first])", logged.count
            )
        }
        return (nil, logged.count)
    }
}
