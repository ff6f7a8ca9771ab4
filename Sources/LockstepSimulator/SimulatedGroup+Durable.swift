// Durable mode in the simulator (`Configuration.durable`): every incarnation logs on a simulated
// disk through the same journal the runtime uses (LockstepStorage's DurableJournal: what is
// logged, in which order, and the progress marks fed back to the member), with a LogAppender
// for the group-commit engine. A sync is an event of its own, after a delay the seed draws
// (slow fsyncs: `Harshness.syncDelayMax`), so deliveries run ahead of the disk as they do in a
// runtime; what is queued and not yet synced when the process crashes is lost.
//
// Checked (`durabilityViolations`): when an incarnation ends (a crash, or a restart of a process
// whose incarnation was removed or stuck), the log on its disk must hold every message it
// delivered below the highest persistence frontier any member ever saw in that message's view,
// and at the end every live incarnation's log must be the same; every log must be exactly a
// prefix of what its incarnation delivered, in its order (no creation, no reordering).

import LockstepChecker
import LockstepCore
import LockstepStorage

/// One incarnation's simulated disk, its log and its journal.
final class SimulatedDisk {
    static let settings: LogSettings = {
        // Small segments, so that runs roll segments often.
        var settings = LogSettings()
        settings.segmentBytes = 256 * 1_024
        settings.recordBytesMax = 128 * 1_024
        settings.pendingBytesMax = 1 << 30
        return settings
    }()

    let directory = SimulatedLogDirectory()
    let appender: LogAppender
    var journal = DurableJournal()
    /// Records made durable so far, and whether a sync is on the agenda.
    var durableRecords = 0
    var syncScheduled = false
    /// What the incarnation delivered, in order: view and global sequence (parallel to its
    /// history's deliveries), for the checks.
    var positions: [(viewID: ViewID, sequence: UInt64)] = []
    var failure: StorageError?
    /// Checked already (when its incarnation ended).
    var checked = false

    init() {
        do {
            appender = try LogAppender(directory: directory, settings: Self.settings, recovered: RecoveredLog())
        } catch {
            preconditionFailure("a fresh simulated disk refused a log: \(error)")
        }
    }
}

extension SimulatedGroup {
    /// A new incarnation has a view (bootstrap or welcome): its disk starts with that view.
    func startDisk(_ process: Int, view: View) {
        guard configuration.durable else { return }
        let disk = SimulatedDisk()
        disk.journal.logView(view)
        processes[process].disk = disk
        scheduleSync(process)
    }

    /// The effects of one poll that a durable member logs, in their order.
    func journal(_ effect: MemberEffect, at process: Int) {
        guard let disk = processes[process].disk else { return }
        switch effect {
        case .deliver(let delivery):
            disk.journal.logDelivery(delivery)
            disk.positions.append((delivery.viewID, delivery.globalSequence ?? 0))
        case .raggedTrim(let trim, let viewID):
            disk.journal.logRaggedTrim(trim, viewID: viewID)
        case .installed(let view, _, _):
            disk.journal.logView(view)
        default:
            break
        }
    }

    /// The end of a poll: the journal marks how far the view's deliveries go, and a sync is
    /// scheduled if none is.
    func endJournalPoll(_ process: Int) {
        guard let disk = processes[process].disk, let core = processes[process].core else { return }
        disk.journal.endPoll(viewID: core.view.id, delivered: core.ownRow.delivered)
        let frontier = core.persistenceFrontier
        if frontier > frontierSeen[core.view.id] ?? 0 { frontierSeen[core.view.id] = frontier }
        scheduleSync(process)
    }

    /// How many of the incarnation's first deliveries some member saw below the frontier of
    /// their view: its log must hold at least these.
    private func deliveriesBelowFrontiers(_ disk: SimulatedDisk) -> Int {
        let last = disk.positions.lastIndex { position in
            position.sequence < frontierSeen[position.viewID] ?? 0
        }
        return last.map { $0 + 1 } ?? 0
    }

    private func scheduleSync(_ process: Int) {
        guard let disk = processes[process].disk, !disk.syncScheduled, disk.failure == nil, disk.journal.hasWork
        else { return }
        disk.syncScheduled = true
        let delay = UInt64.random(in: 0...harshness.syncDelayMax.nanosecondsClamped, using: &random)
        scheduler.schedule(at: now + delay, .sync(process, processes[process].id))
    }

    /// A group commit completes: everything queued since the last one is written and synced, and
    /// the member learns how far its log is durable.
    func sync(_ process: Int, incarnation: MemberID) {
        let state = processes[process]
        guard state.id == incarnation, let disk = state.disk else { return }
        disk.syncScheduled = false
        let records = disk.journal.takeRecords()
        guard !records.isEmpty || disk.journal.recordsQueued > disk.durableRecords else {
            feedDurableMarks(process, disk)
            return
        }
        do {
            try disk.appender.commit(records)
            disk.durableRecords += records.count
        } catch {
            // The simulated disk has no capacity limit here: a failure is the log's own bug.
            disk.failure = error
            durabilityViolations.append("\(state.id): the log failed: \(error)")
            return
        }
        feedDurableMarks(process, disk)
    }

    private func feedDurableMarks(_ process: Int, _ disk: SimulatedDisk) {
        let marks = disk.journal.takeDurableMarks(durableRecords: disk.durableRecords)
        guard !marks.isEmpty, processes[process].member != nil else { return }
        for mark in marks { processes[process].member?.persisted(upTo: mark.upTo, viewID: mark.viewID) }
        pump(process)
    }

    /// A durable incarnation crashes: what was not synced is gone, and what its disk holds must
    /// cover every message of its view below the frontier any live member of the view had seen.
    func checkDiskAtCrash(_ process: Int) {
        let state = processes[process]
        guard let disk = state.disk, !disk.checked else { return }
        disk.checked = true
        // A group commit under way: the crash comes in the middle of its writes and sync (after
        // a few calls), and the disk keeps what it keeps of unsynced writes: whole, torn or lost.
        if disk.syncScheduled, disk.journal.hasWork, random.chance(0.5) {
            disk.directory.callsBeforeCrash = Int.random(in: 0...4, using: &random)
            _ = try? disk.appender.commit(disk.journal.takeRecords())
        }
        disk.directory.crash(using: &random)
        checkLog(of: state.id, disk, needed: deliveriesBelowFrontiers(disk), when: "ended at \(now / 1_000_000) ms")
    }

    /// At the end: every live durable incarnation's log is a prefix of what it delivered.
    func checkDisksAtEnd() {
        for process in processes.indices {
            guard let disk = processes[process].disk, !disk.checked else { continue }
            disk.checked = true
            checkLog(of: processes[process].id, disk, needed: deliveriesBelowFrontiers(disk), when: "at the end")
        }
    }

    /// Recovers the log on `disk` and checks it against the incarnation's deliveries.
    private func checkLog(of id: MemberID, _ disk: SimulatedDisk, needed: Int, when: String) {
        var logged: [DeliveredRecord] = []
        do {
            var decodeFailure: StorageError?
            _ = try LogRecovery.recover(disk.directory, settings: SimulatedDisk.settings) { record in
                do {
                    if case .entries(_, let deliveries) = try DurableRecords.decode(record) {
                        logged += deliveries.map(ApplicationPayload.record(of:))
                    }
                } catch {
                    decodeFailure = error as? StorageError ?? StorageError(.corrupt, "\(error)")
                }
            }
            if let decodeFailure { throw decodeFailure }
        } catch {
            durabilityViolations.append("\(id) \(when): its log does not recover: \(error)")
            return
        }
        let delivered = histories[id]?.delivered ?? []
        if logged.count > delivered.count || Array(delivered.prefix(logged.count)) != logged {
            durabilityViolations.append(
                "\(id) \(when): its log (\(logged.count) entries) is not a prefix of its \(delivered.count) deliveries")
        }
        if logged.count < needed {
            durabilityViolations.append(
                "\(id) \(when): its log holds \(logged.count) entries, but the persistence frontier covered \(needed)")
        }
    }
}
