// Random storage-fault schedules against the log's own code on the simulated disk: group commits
// of random records, crashes injected inside a commit (unsynced writes lost or torn), bit flips in
// groups already followed by a later commit, a disk that fills up; then recovery, and on again.
// Each schedule checks what durable mode promises of its log:
// - every acknowledged record (its commit returned) is recovered, in order, unchanged;
// - nothing that was never appended is recovered, and a group comes back whole or not at all;
// - damage to an acknowledged group that a later commit follows is refused (`corrupt`), never
//   silently cut or used;
// - a full disk stops the log with `diskFull`, and nothing acknowledged is lost.

/// The outcome of one schedule.
public struct StorageScheduleReport: Sendable {
    public init(seed: UInt64) { self.seed = seed }

    public var seed: UInt64
    public var commits = 0
    public var crashes = 0
    public var bitFlips = 0
    public var refusedCorruptions = 0
    public var diskFullStops = 0
    public var recoveries = 0
    public var violation: String?
    public var passed: Bool { violation == nil }
}

public enum StorageFaultSchedule {
    /// Small segments, so that groups span segments and segments roll often.
    public static let settings: LogSettings = {
        var settings = LogSettings()
        settings.segmentBytes = 4_096
        settings.recordBytesMax = 1_024
        settings.pendingBytesMax = 64 * 1_024
        return settings
    }()

    public static func run(seed: UInt64, steps: Int = 40) -> StorageScheduleReport {
        var run = ScheduleRun(seed: seed)
        do {
            try run.steps(steps)
        } catch {
            run.report.violation = "seed \(seed): unexpected \(error)"
        }
        return run.report
    }
}

/// A deterministic generator (SplitMix64): a seed replays its schedule exactly.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var value = state
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        return value ^ (value >> 31)
    }
}

struct ScheduleRun {
    var report: StorageScheduleReport
    var random: SplitMix64
    let disk = SimulatedLogDirectory()
    /// Every record whose commit returned, in order.
    var acknowledged: [[UInt8]] = []
    /// Where each acknowledged group starts and ends (segment, offset), for bit flips.
    /// (nil: a group recovered after a crash inside its commit, where it lies unknown.)
    var groups: [(start: (segment: UInt64, offset: Int), end: (segment: UInt64, offset: Int))?] = []
    var appender: LogAppender?

    init(seed: UInt64) {
        report = StorageScheduleReport(seed: seed)
        random = SplitMix64(seed: seed)
    }

    mutating func steps(_ count: Int) throws(StorageError) {
        try recover(expecting: [])
        if Int.random(in: 0..<4, using: &random) == 0 {
            disk.capacityBytes = Int.random(in: 8...40, using: &random) * 1_024
        }
        for _ in 0..<count where report.violation == nil {
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<6: try commitGroup(crashInside: false)
            case 6, 7: try commitGroup(crashInside: true)
            case 8: try flipAcknowledgedBit()
            default:
                report.crashes += 1
                disk.crash(using: &random)
                try recover(expecting: [])
            }
        }
    }

    /// A group of random records; with `crashInside`, the machine crashes at a random call
    /// within the commit, and recovery must find the group whole or not at all.
    mutating func commitGroup(crashInside: Bool) throws(StorageError) {
        guard let appender else { return }
        let records = (0..<Int.random(in: 1...6, using: &random)).map { _ in
            let length = Int.random(in: 0...StorageFaultSchedule.settings.recordBytesMax, using: &random)
            return (
                kind: LogRecordKind.entry, body: (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
            )
        }
        if crashInside { disk.callsBeforeCrash = Int.random(in: 0...6, using: &random) }
        let start = appender.tail
        do {
            try appender.commit(records)
            report.commits += 1
            acknowledged += records.map(\.body)
            groups.append((start, appender.tail))
            disk.callsBeforeCrash = nil
        } catch  where error.code == .diskFull {
            report.diskFullStops += 1
            // Stopped at its last commit: a crash loses nothing acknowledged, and a disk with
            // room again takes appends after recovery.
            disk.crash(using: &random)
            disk.capacityBytes = nil
            try recover(expecting: [])
        } catch  where disk.crashed || error.code == .io {
            report.crashes += 1
            disk.crash(using: &random)
            try recover(expecting: records.map(\.body))
        }
    }

    /// Flips a bit inside an acknowledged group that a later group follows: recovery must refuse.
    mutating func flipAcknowledgedBit() throws(StorageError) {
        let candidates = groups.indices.dropLast().filter { index in
            groups[index].map { $0.start.segment == $0.end.segment && $0.start.offset < $0.end.offset } ?? false
        }
        guard let chosen = candidates.randomElement(using: &random), let group = groups[chosen] else { return }
        let name = LogFormat.segmentName(group.start.segment)
        let byte = Int.random(in: group.start.offset..<group.end.offset, using: &random)
        let bit = Int.random(in: 0..<8, using: &random)
        disk.flipBit(in: name, byte: byte, bit: bit)
        report.bitFlips += 1
        appender = nil
        do {
            _ = try LogRecovery.recover(disk, settings: StorageFaultSchedule.settings) { _ in }
            report.violation = "seed \(report.seed): a bit flip in acknowledged group \(chosen) was not refused"
            return
        } catch  where error.code == .corrupt {
            report.refusedCorruptions += 1
        }
        // A refused log is repaired from a peer in durable mode; here the flip is undone.
        disk.flipBit(in: name, byte: byte, bit: bit)
        try recover(expecting: [])
    }

    /// Recovers the disk and checks the records: the acknowledged ones, then `inFlight` whole or
    /// nothing of it.
    mutating func recover(expecting inFlight: [[UInt8]]) throws(StorageError) {
        appender = nil
        var found: [LogRecord] = []
        let recovered = try LogRecovery.recover(disk, settings: StorageFaultSchedule.settings) { found.append($0) }
        report.recoveries += 1
        let bodies = found.map(\.body)
        let indicesInOrder = found.enumerated().allSatisfy { $0.element.index == UInt64($0.offset) }
        if bodies == acknowledged + inFlight, !inFlight.isEmpty {
            acknowledged = bodies
            groups.append(nil)
        } else if bodies != acknowledged || !indicesInOrder {
            report.violation =
                "seed \(report.seed): recovered \(bodies.count) records, expected the \(acknowledged.count) "
                + "acknowledged (+\(inFlight.count) in flight, whole or not at all)"
            return
        }
        appender = try LogAppender(directory: disk, settings: StorageFaultSchedule.settings, recovered: recovered)
    }
}
