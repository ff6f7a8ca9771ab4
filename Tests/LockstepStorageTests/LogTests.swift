// The durable log: checksums, group commits, recovery from torn tails and damage, full disks,
// on the simulated disk (every fault) and on the real file system.

import Foundation
import LockstepTestSupport
import Synchronization
import Testing

@testable import LockstepStorage

private func records(_ count: Int, bytes: Int, tag: UInt8 = 0) -> [(kind: LogRecordKind, body: [UInt8])] {
    (0..<count).map { index in (.entry, [UInt8](repeating: UInt8(truncatingIfNeeded: index) &+ tag, count: bytes)) }
}

private func recoverAll(_ directory: any LogDirectory, settings: LogSettings) throws -> (RecoveredLog, [LogRecord]) {
    var found: [LogRecord] = []
    let recovered = try LogRecovery.recover(directory, settings: settings) { found.append($0) }
    return (recovered, found)
}

@Suite("CRC32C")
struct CRC32CTests {
    @Test("The check value of \"123456789\" is 0xE3069283, in hardware and in software")
    func checkValue() {
        let input = Array("123456789".utf8)
        #expect(CRC32C.checksum(input) == 0xE306_9283)
        #expect(CRC32C.softwareChecksum(input) == 0xE306_9283)
    }

    @Test("Hardware and software agree on every length and alignment, whole or in pieces")
    func hardwareMatchesSoftware() {
        var random = SplitMix64(seed: 7)
        for length in [0, 1, 7, 8, 9, 63, 64, 65, 1_000, 4_097] {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
            let whole = CRC32C.checksum(bytes)
            #expect(whole == CRC32C.softwareChecksum(bytes), "length \(length)")
            let cut = length / 3
            #expect(CRC32C.checksum(bytes[cut...], extending: CRC32C.checksum(bytes[..<cut])) == whole)
        }
    }
}

@Suite("Log on the simulated disk")
struct SimulatedLogTests {
    let settings = StorageFaultSchedule.settings

    @Test("Groups that span segments come back in order, whole, with their indices; appending goes on after")
    func roundTrip() throws {
        let disk = SimulatedLogDirectory()
        var appender = try LogAppender(directory: disk, settings: settings, recovered: RecoveredLog())
        try appender.commit(records(3, bytes: 1_000))
        try appender.commit(records(5, bytes: 700, tag: 50))
        var (recovered, found) = try recoverAll(disk, settings: settings)
        #expect(found.map(\.body) == (records(3, bytes: 1_000) + records(5, bytes: 700, tag: 50)).map(\.body))
        #expect(found.map(\.index) == Array(0..<8))
        #expect(recovered.lastCommit == 2 && recovered.nextIndex == 8 && recovered.truncatedBytes == 0)
        #expect(recovered.segments.count > 1, "4 KiB segments: the groups rolled over")
        appender = try LogAppender(directory: disk, settings: settings, recovered: recovered)
        try appender.commit(records(1, bytes: 10, tag: 99))
        (recovered, found) = try recoverAll(disk, settings: settings)
        #expect(found.count == 9 && found.last?.body == [UInt8](repeating: 99, count: 10))
        #expect(recovered.lastCommit == 3)
    }

    @Test("Records written without their commit (a crash before it) are cut, and the space is zeroed for reuse")
    func uncommittedTailIsCut() throws {
        let disk = SimulatedLogDirectory()
        let appender = try LogAppender(directory: disk, settings: settings, recovered: RecoveredLog())
        try appender.commit(records(2, bytes: 100))
        // A record after the last commit, as a crash between the write and the commit leaves it.
        let file = try disk.open(LogFormat.segmentName(appender.tail.segment), create: false)
        var stray: [UInt8] = []
        LogFormat.appendRecord(kind: .entry, body: [1, 2, 3], to: &stray)
        try file.write(stray, at: appender.tail.offset)
        let (recovered, found) = try recoverAll(disk, settings: settings)
        #expect(found.count == 2)
        #expect(recovered.truncatedBytes == stray.count)
        let after = try file.read(at: appender.tail.offset, count: stray.count)
        #expect(after.allSatisfy { $0 == 0 }, "the cut bytes read as zeros again")
    }

    @Test("A bit flipped in a group a later commit follows is refused, naming the segment and the byte")
    func oldDamageIsRefused() throws {
        let disk = SimulatedLogDirectory()
        let appender = try LogAppender(directory: disk, settings: settings, recovered: RecoveredLog())
        try appender.commit(records(2, bytes: 100))
        let firstEnd = appender.tail.offset
        try appender.commit(records(2, bytes: 100))
        disk.flipBit(in: LogFormat.segmentName(0), byte: firstEnd - 20, bit: 3)
        #expect {
            try recoverAll(disk, settings: settings)
        } throws: { error in
            guard let error = error as? StorageError, error.code == .corrupt else { return false }
            return error.message.contains("segment 0 at byte") && error.message.contains("repair it from a peer")
        }
    }

    @Test("A damaged segment header, or a segment not starting where the one before ended, is refused")
    func damagedSegmentChainIsRefused() throws {
        for rewrite in [false, true] {
            let disk = SimulatedLogDirectory()
            let appender = try LogAppender(directory: disk, settings: settings, recovered: RecoveredLog())
            // Enough groups that segment 1 holds two commits or more.
            for _ in 0..<10 { try appender.commit(records(1, bytes: 900)) }
            let name = LogFormat.segmentName(1)
            if rewrite {
                // A well-formed header whose first index does not follow segment 0's records.
                let header = LogFormat.segmentHeader(number: 1, firstIndex: 999)
                try disk.open(name, create: false).write(header, at: 0)
            } else {
                disk.flipBit(in: name, byte: 8, bit: 0)  // the header's checksum fails
            }
            var codes: [StorageError.Code] = []
            do {
                _ = try recoverAll(disk, settings: settings)
            } catch let error as StorageError {
                codes.append(error.code)
            }
            #expect(codes == [.corrupt], "rewritten header: \(rewrite)")
        }
    }

    @Test("A full disk stops the log with diskFull at its last commit; nothing acknowledged is lost")
    func fullDiskStopsCleanly() throws {
        let disk = SimulatedLogDirectory()
        disk.capacityBytes = 3 * settings.segmentBytes
        let appender = try LogAppender(directory: disk, settings: settings, recovered: RecoveredLog())
        var acknowledged = 0
        var stop: StorageError?
        for _ in 0..<100 {
            do {
                try appender.commit(records(2, bytes: 900))
                acknowledged += 2
            } catch {
                stop = error
                break
            }
        }
        #expect(stop?.code == .diskFull, "\(String(describing: stop))")
        #expect(throws: StorageError.self) { try appender.commit(records(1, bytes: 1)) }
        var random = SplitMix64(seed: 1)
        disk.crash(using: &random)
        let (_, found) = try recoverAll(disk, settings: settings)
        #expect(found.count == acknowledged)
    }

    /// `lockstep storage-faults --seeds 10000` runs more (in release).
    @Test("1,000 random storage-fault schedules: crashes inside commits, torn writes, bit flips, full disks")
    func randomSchedules() async {
        let reports = await withTaskGroup(of: [StorageScheduleReport].self) { group in
            for chunk in 0..<4 {
                group.addTask {
                    await runBatch { (0..<250).map { StorageFaultSchedule.run(seed: UInt64(chunk * 250 + $0)) } }
                }
            }
            return await group.reduce(into: []) { $0 += $1 }
        }
        for report in reports where !report.passed { Issue.record("\(report.violation ?? "")") }
        #expect(reports.count == 1_000)
        #expect(reports.map(\.crashes).reduce(0, +) > 500, "the schedules crash")
        #expect(reports.map(\.refusedCorruptions).reduce(0, +) > 250, "the schedules flip bits")
        #expect(reports.map(\.diskFullStops).reduce(0, +) > 25, "the schedules fill disks")
    }
}

@Suite("Log input")
struct LogInputTests {
    /// Regression (review of issue 14's storage layer): an oversized record was queued, failed in
    /// the writer's batch, and stopped the log for every caller.
    @Test("A record over recordBytesMax is refused alone; the log takes the next ones")
    func oversizedRecordIsRefusedAlone() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-big-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        var settings = LogSettings()
        settings.segmentBytes = 1 << 20
        settings.recordBytesMax = 1_024
        let appender = try LogAppender(
            directory: try PosixLogDirectory(path: path), settings: settings, recovered: RecoveredLog())
        let log = GroupCommitLog(appender: appender, onPersisted: { _ in }, onFailure: { _ in })
        #expect(throws: StorageError.self) { try log.append(kind: .entry, body: [UInt8](repeating: 1, count: 2_000)) }
        try log.append(kind: .entry, body: [1])
        try log.close()
        #expect(log.persisted == 1)
    }

    /// Regression (the same review): an empty group after one that filled its segment wrote its
    /// commit past the preallocated end.
    @Test("An empty group after a full segment rolls to the next segment instead of growing this one")
    func emptyGroupStaysInsideTheSegment() throws {
        let disk = SimulatedLogDirectory()
        let settings = StorageFaultSchedule.settings
        let appender = try LogAppender(directory: disk, settings: settings, recovered: RecoveredLog())
        for _ in 0..<200 {
            try appender.commit(appender.tail.offset + 1_100 < settings.segmentBytes ? records(1, bytes: 1_000) : [])
        }
        for name in try disk.fileNames() {
            #expect(try disk.open(name, create: false).length() == settings.segmentBytes, "\(name)")
        }
        let (recovered, _) = try recoverAll(disk, settings: settings)
        #expect(recovered.lastCommit == 200)
    }
}

@Suite("Log on the file system")
struct PosixLogTests {
    @Test("Group commits through the writing thread are durable, preallocated, and recovered after a reopen")
    func groupCommitThread() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-log-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        var settings = LogSettings()
        settings.segmentBytes = 1 << 20
        settings.recordBytesMax = 64 * 1_024
        let directory = try PosixLogDirectory(path: path)
        let persisted = Mutex<UInt64>(0)
        // The writing thread gets an appender of its own, on a directory object of its own.
        let appender = try LogAppender(
            directory: try PosixLogDirectory(path: path), settings: settings, recovered: RecoveredLog())
        let log = GroupCommitLog(
            appender: appender,
            onPersisted: { next in persisted.withLock { $0 = max($0, next) } },
            onFailure: { error in Issue.record("\(error)") })
        for record in records(5_000, bytes: 1_000) { try log.append(kind: record.kind, body: record.body) }
        try log.close()
        #expect(persisted.withLock { $0 } == 5_000)
        #expect(log.statistics.commits < 5_000, "groups of more than one record: \(log.statistics.commits)")
        let names = try directory.fileNames()
        #expect(names.count >= 5, "5 MB in 1 MiB segments: \(names)")
        let length = try directory.open(names[0], create: false).length()
        #expect(length == settings.segmentBytes, "segments are preallocated")
        let (recovered, found) = try recoverAll(try PosixLogDirectory(path: path), settings: settings)
        #expect(found.count == 5_000 && recovered.nextIndex == 5_000)
        #expect(found.map(\.body) == records(5_000, bytes: 1_000).map(\.body))
    }
}
