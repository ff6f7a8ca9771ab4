// Faults as the agenda carries them out: pauses and resumes, crashes, the operator's sweep, and
// the start of a new incarnation (a restart, a spare process joining, a joiner that retries).
// The scripting API (SimulatedGroup+Scripting.swift) only schedules these.

import LockstepCore

extension SimulatedGroup {
    func beginPause(_ process: Int, until: UInt64) {
        scheduledWorkPending -= 1
        guard isLive(process) else { return }
        // The process defers everything until `until`; overlapping pauses merge.
        processes[process].pausedUntil = max(processes[process].pausedUntil ?? 0, until)
        scheduler.schedule(at: until, .resume(process))
    }

    func endPause(_ process: Int) {
        // A pause extended by a later one resumes at the later one's end.
        guard isLive(process), let until = processes[process].pausedUntil, until <= now else { return }
        processes[process].pausedUntil = nil
        let deferred = processes[process].deferred
        processes[process].deferred = []
        for event in deferred where isLive(process) { handle(event) }
    }

    func crashNow(_ process: Int) {
        scheduledWorkPending -= 1
        guard isLive(process) else { return }
        checkDiskAtCrash(process)
        let state = processes[process]
        state.status = .crashed
        state.pausedUntil = nil
        state.deferred = []
        state.backlog = 0  // its application is gone too
        state.outbox = []
        noticeCrash(of: process, id: state.id)
    }

    /// An operator's sweep: restarts whatever crashed, was removed or is stuck wedged, and comes
    /// back while the group has not settled.
    func sweepStragglers(wedgedOnly: Bool) {
        scheduledWorkPending -= 1
        // Stuck: wedged for longer than two failure timeouts (a member busy installing a view
        // is wedged for a few round trips only).
        let stuckAfter = 2 * configuration.failureTimeout.nanosecondsClamped
        if traceEnabled { for line in processSummary { trace("sweep sees: \(line)") } }
        for process in processes.indices {
            switch processes[process].status {
            case .crashed, .removed: if !wedgedOnly { startIncarnation(process) }
            case .active:
                if let wedgedAt = processes[process].wedgedAt, now - wedgedAt > stuckAfter { startIncarnation(process) }
            case .joining, .dormant: break
            }
        }
        // An operator keeps looking while the group has not settled (a member can get stuck
        // after a sweep, when a late view change leaves it in a minority): up to ten sweeps.
        sweeps += 1
        let unsettled = processes.contains {
            $0.status == .joining || ($0.status == .active && ($0.core?.isWedged ?? false))
        }
        if unsettled && sweeps < sweepsMax {
            scheduledWorkPending += 1
            let next = now + 3 * configuration.failureTimeout.nanosecondsClamped
            scheduler.schedule(at: next, .recoverStragglers(wedgedOnly: wedgedOnly))
        }
    }

    /// The process starts as a new member and asks a random live member to add it. A restart of
    /// a live process leaves the old incarnation gone as if crashed.
    func startIncarnation(_ process: Int) {
        // The incarnation it replaces (removed, stuck or crashed) ends here: its disk is checked.
        checkDiskAtCrash(process)
        let id = MemberID(nextMemberID)
        nextMemberID += 1
        let clock = (processes[process].clockRate, processes[process].clockOffset)
        processes[process] = SimulatedProcess(id: id, status: .joining, member: nil)
        (processes[process].clockRate, processes[process].clockOffset) = clock
        scheduler.resetTimer(process)
        processOfMember[id] = process
        histories[id] = History()
        askToJoin(process)
    }

    /// Not welcomed in time: the joiner asks another member (its contact may have failed, or
    /// been the leader that accepted it and died); after `joinAttemptsMax` it starts afresh as a
    /// new incarnation (its id may be in a view that removed it by now).
    func retryJoin(_ process: Int) {
        if processes[process].joinAttempts >= joinAttemptsMax {
            startIncarnation(process)
        } else {
            askToJoin(process)
        }
    }

    private func askToJoin(_ process: Int) {
        let state = processes[process]
        let contacts = processes.indices.filter { $0 != process && processes[$0].status == .active }
        state.joinAskedAt = now
        state.joinAttempts += 1
        // Asking another member closes the connection the last one waited on, as a runtime's
        // joiner does: that member no longer welcomes it at the install.
        if let previous = state.joinContact, processes[previous].status == .active {
            processes[previous].member?.joinerGone(state.id)
        }
        state.joinContact = nil
        scheduler.schedule(at: now + joinRetryInterval.nanosecondsClamped, .joinRetry(process, state.id))
        guard let contact = contacts.randomElement(using: &random) else { return }
        state.joinContact = contact
        sendControl(.join(state.id), from: process, to: contact, toID: processes[contact].id)
    }
}
