// The simulated member shell: what runs around one process's `Member` (the member shell the
// runtime drives too: traffic by view, holds, stragglers, audiences and welcomes are its rules,
// not this file's). What stays here is IO, as in a runtime: handing arrivals to the member,
// polling it (after every event, or after a burst of them, as read bursts and completion
// batches do: `Harshness`), carrying out its effects on the simulated network, the joiner's side
// of the join handshake, and the application (`submitBacklog`, deliveries, snapshots).

import LockstepChecker
import LockstepCore

extension SimulatedGroup {
    /// The member in `process` handles one event now, then its application and effects run.
    func handle(_ event: SimulatedEvent) {
        switch event {
        case .arrival(let to, _, _, let fromID, let message, _):
            if processes[to].readingPaused.contains(fromID) {
                processes[to].unread.append(event)
                return
            }
            receive(message, at: to, fromID: fromID)
            afterEvent(to)
        case .control(let to, _, let from, let control):
            handleControl(to, from: from, control)
        case .timer(let process):
            guard processes[process].member != nil else { return }
            processes[process].member?.tick(Timestamp(nanoseconds: clock(of: process)))
            afterEvent(process)
        case .poll(let process):
            processes[process].pollScheduled = false
            if processes[process].member != nil { pump(process) }
        case .linkDown(let process, let peer):
            guard processes[process].member != nil else { return }
            processes[process].member?.linkFailed(peer)
            afterEvent(process)
        case .burst(let process, let count):
            // An application whose member does not send in its view has nothing to send with.
            if processes[process].core != nil, processes[process].core?.senderRank == nil { return }
            processes[process].backlog += count
            if processes[process].member != nil { pump(process) }
        case .leave(let process):
            guard processes[process].member != nil else { return }
            processes[process].member?.leave()
            processes[process].left = true
            pump(process)
        case .joinRetry(let process, let id):
            guard processes[process].id == id, processes[process].status == .joining else { return }
            retryJoin(process)
        case .sync(let process, let id):
            sync(process, incarnation: id)
        case .pause, .resume, .crash, .failLink, .healLink, .healLinks, .restart, .rejoin, .recoverStragglers:
            preconditionFailure("pauses and faults are never deferred, got \(event)")
        }
    }

    /// The process's clock now (skewed: `Harshness.clockRateSkewMax`).
    func clock(of process: Int) -> UInt64 { clockReading(of: processes[process], at: now) }

    private func clockReading(of state: SimulatedProcess, at time: UInt64) -> UInt64 {
        guard state.clockRate != 1 || state.clockOffset != 0 else { return time }
        return UInt64(max(0, state.clockOffset + Int64(Double(time) * state.clockRate)))
    }

    /// The virtual time at which the process's clock reads `time`.
    private func virtualTime(of process: Int, at time: UInt64) -> UInt64 {
        let state = processes[process]
        guard state.clockRate != 1 || state.clockOffset != 0 else { return time }
        var virtual = UInt64(max(0, (Double(Int64(time) - state.clockOffset) / state.clockRate).rounded(.up)))
        // Never early by a rounding: the process's clock reads at least `time` then.
        while clockReading(of: state, at: virtual) < time { virtual += 1 }
        return virtual
    }

    /// After an event the member polls now, or (a burst) a little later, after whatever else
    /// reaches it meanwhile.
    private func afterEvent(_ process: Int) {
        guard processes[process].member != nil else { return }
        if processes[process].pollScheduled { return }
        if harshness.batchedPollProbability > 0, random.chance(harshness.batchedPollProbability) {
            processes[process].pollScheduled = true
            let delay = UInt64.random(in: 0...harshness.batchWindow.nanosecondsClamped, using: &random)
            scheduler.schedule(at: now + delay, .poll(process))
            return
        }
        pump(process)
    }

    /// Core traffic from the incarnation `fromID`: to the member (which routes it by view), or,
    /// for a joiner not welcomed yet, kept until the welcome.
    private func receive(_ message: Message, at process: Int, fromID: MemberID) {
        guard processes[process].member != nil else {
            guard processes[process].beforeWelcome.count < futureMessagesMax else {
                coreErrors.append("\(processes[process].id) at \(now)ns: more than \(futureMessagesMax) held")
                return
            }
            processes[process].beforeWelcome.append((fromID, message))
            return
        }
        feed(process, message, from: fromID)
    }

    private func feed(_ process: Int, _ message: Message, from: MemberID) {
        let state = processes[process]
        let before = traceEnabled ? state.core?.suspectedRanks : nil
        do {
            try state.member?.receive(message, from: from)
        } catch {
            coreErrors.append("\(state.id) at \(now)ns: \(error)")
        }
        if traceEnabled, let core = state.core, core.suspectedRanks != before {
            trace("process \(process) \(state.id) \(core.view.id) suspects \(core.suspectedRanks) after \(message)")
        }
    }

    private func handleControl(_ process: Int, from: Int, _ control: SimulatedControl) {
        switch control {
        case .join(let joiner):
            answerJoin(process, from: from, joiner: joiner)
        case .redirect(let leader):
            let state = processes[process]
            guard state.status == .joining, let leaderProcess = processOfMember[leader], leaderProcess != process
            else { return }
            state.joinContact = leaderProcess
            sendControl(.join(state.id), from: process, to: leaderProcess, toID: leader)
        case .welcome(let start, let snapshot, let hookSnapshot):
            acceptWelcome(process, start: start, snapshot: snapshot, hookSnapshot: hookSnapshot)
        }
    }

    /// A joiner asks this member to add it (the member shell decides how to answer).
    private func answerJoin(_ process: Int, from: Int, joiner: MemberID) {
        guard let answer = processes[process].member?.requestJoin(joiner) else { return }
        switch answer {
        case .accepted: pump(process)
        case .welcome(let start):
            let snapshots = (processes[process].app, hookSnapshot(process))
            sendControl(.welcome(start, snapshots.0, snapshots.1), from: process, to: from, toID: joiner)
        case .redirect(let leader):
            if processOfMember[leader] != nil, processes[from].id == joiner {
                sendControl(.redirect(leader), from: process, to: from, toID: joiner)
            }
        case .refused: break  // the joiner asks another member after joinRetryInterval
        }
    }

    /// A joiner is welcomed: it starts its member from the welcome and the snapshot, then handles
    /// what reached it before.
    private func acceptWelcome(_ process: Int, start: JoinerStart, snapshot: AppState, hookSnapshot: [UInt8]?) {
        let state = processes[process]
        let view = start.view
        guard state.status == .joining, view.members.indices.contains(start.memberRank),
            view.members[start.memberRank] == state.id
        else { return }
        do {
            state.member = try Member(configuration: configuration, joining: start)
        } catch {
            coreErrors.append("\(state.id): cannot start in \(view): \(error)")
            return
        }
        state.status = .active
        startDisk(process, view: view)
        state.app = snapshot
        if let hookSnapshot { applicationHook?.restore(hookSnapshot, at: process, member: state.id) }
        histories[state.id]?.initialState = snapshot
        histories[state.id]?.installs.append(
            ViewRecord(viewID: view.id.rawValue, members: view.members, stateDigest: snapshot.digest))
        state.member?.tick(Timestamp(nanoseconds: clock(of: process)))
        let held = state.beforeWelcome
        state.beforeWelcome = []
        for (from, message) in held { feed(process, message, from: from) }
        pump(process)
    }

    /// Lets the member's application submit what the window admits, then polls and carries out
    /// the effects; repeats while deliveries or a new view open the window for more, and after an
    /// install replays what was held for the new view (all of it before the next poll).
    func pump(_ process: Int) {
        let state = processes[process]
        while state.status == .active, state.member != nil {
            let submitted = submitBacklog(process)
            memberEffects.removeAll(keepingCapacity: true)
            let before = traceEnabled ? state.core?.suspectedRanks : nil
            let oldView = state.core?.view.id
            state.member?.poll(into: &memberEffects)
            if traceEnabled, let core = state.core, core.view.id == oldView, core.suspectedRanks != before {
                trace("process \(process) \(state.id) \(core.view.id) suspects \(core.suspectedRanks)")
            }
            let progressed = carryOut(process)
            if state.member?.hasHeldTrafficToReplay == true, let held = state.member?.takeHeldTraffic() {
                for (from, message) in held { feed(process, message, from: from) }
                continue
            }
            guard state.status == .active, let sendCapacity = state.core?.sendCapacity else { break }
            if (state.backlog == 0 && state.outbox.isEmpty) || (submitted == 0 && !progressed) { break }
            if sendCapacity == 0 { break }
        }
    }

    /// The outside application's snapshot for a joiner, when there is one.
    private func hookSnapshot(_ process: Int) -> [UInt8]? {
        applicationHook?.snapshot(at: process, member: processes[process].id)
    }

    /// Submits as much of the outside application's queue, then of the application's backlog, as
    /// the window admits; returns how much.
    private func submitBacklog(_ process: Int) -> Int {
        let state = processes[process]
        guard let sendCapacity = state.core?.sendCapacity else {
            preconditionFailure("\(state.id) (\(state.status)) submits without a core")
        }
        let id = state.id
        var outboxSent = 0
        while outboxSent < min(state.outbox.count, sendCapacity) {
            let sequence = state.nextSenderSequence
            let payload = ApplicationPayload.make(sender: id, sequence: sequence, body: state.outbox[outboxSent])
            do {
                try state.member?.send(payload)
            } catch {
                coreErrors.append("\(id) send #\(sequence): \(error)")
                state.outbox.removeFirst(outboxSent)
                return outboxSent
            }
            histories[id]?.sent.append(SentRecord(senderSequence: sequence, payloadDigest: payloadDigest(payload)))
            state.nextSenderSequence += 1
            outboxSent += 1
        }
        state.outbox.removeFirst(outboxSent)
        let count = min(state.backlog, sendCapacity - outboxSent)
        for _ in 0..<count {
            let sequence = state.nextSenderSequence
            let payload = ApplicationPayload.make(
                sender: id, sequence: sequence, fillerBytesMax: payloadFillerBytesMax, using: &random)
            do {
                try state.member?.send(payload)
            } catch {
                coreErrors.append("\(id) send #\(sequence): \(error)")
                return 0
            }
            histories[id]?.sent.append(SentRecord(senderSequence: sequence, payloadDigest: payloadDigest(payload)))
            state.nextSenderSequence += 1
            state.backlog -= 1
        }
        return outboxSent + count
    }

    /// Carries out the effects of one poll. Returns whether anything opened the window.
    private func carryOut(_ process: Int) -> Bool {
        let state = processes[process]
        var progressed = false
        defer { endJournalPoll(process) }
        for effect in memberEffects {
            journal(effect, at: process)
            switch effect {
            case .sendData(let batch, let view):
                for member in view.members where member != state.id {
                    guard let to = processOfMember[member] else { continue }
                    dataInFlight += 1
                    transmit(.data(batch), from: process, to: to, toID: member)
                }
            case .sendRow(let row, let view):
                for member in view.members where member != state.id {
                    guard let to = processOfMember[member] else { continue }
                    transmit(.row(row), from: process, to: to, toID: member)
                }
            case .sendRowTo(let row, let member):
                if let to = processOfMember[member] { transmit(.row(row), from: process, to: to, toID: member) }
            case .deliver(let delivery):
                progressed = true
                deliver(delivery, at: process)
            case .wedged:
                state.wedgedAt = now
                state.everWedged = true
                state.sentWhenWedged = sentRecords(process).count
            case .installed(let view, let memberRank, _):
                progressed = true
                if traceEnabled { trace("process \(process) \(state.id) installs \(view)") }
                recordInstall(view, at: process)
                applicationHook?.installed(view, memberRank: memberRank, at: process, member: state.id)
            case .welcome(let joiner, let start):
                if traceEnabled { trace("process \(process) \(state.id) welcomes \(joiner) into \(start.view.id)") }
                if let to = processOfMember[joiner] {
                    let welcome = SimulatedControl.welcome(start, state.app, hookSnapshot(process))
                    sendControl(welcome, from: process, to: to, toID: joiner)
                }
            case .removed:
                state.status = .removed
                histories[state.id]?.removed = true
                state.backlog = 0
                state.outbox = []
                if let after = rejoinAfterRemoval, !state.left {
                    // As `lockstep node` does: a member removed while alive joins again, afresh.
                    scheduledWorkPending += 1
                    scheduler.schedule(at: now + after.nanosecondsClamped, .rejoin(process, state.id))
                }
                return progressed
            case .minority:
                state.minority = true
            case .raggedTrim:
                // Logged by the journal before this switch (SimulatedGroup+Durable.swift).
                break
            case .armTimer(let at):
                var time = virtualTime(of: process, at: at.nanoseconds)
                if harshness.lateTimerProbability > 0, random.chance(harshness.lateTimerProbability) {
                    time += UInt64.random(in: 0...harshness.lateTimerMax.nanosecondsClamped, using: &random)
                }
                scheduler.armTimer(process, at: time)
            case .pauseReading(let member):
                if traceEnabled { trace("process \(process) \(state.id) stops reading from \(member)") }
                state.readingPaused.insert(member)
            case .resumeReading(let member):
                resumeReading(process, from: member)
            }
        }
        return progressed
    }

    /// A delivery reaches the application, and the outside one (without the header) if any.
    private func deliver(_ delivery: Delivery, at process: Int) {
        let state = processes[process]
        let record = ApplicationPayload.record(of: delivery)
        state.app.apply(record)
        histories[state.id]?.delivered.append(record)
        if let hook = applicationHook {
            var outside = delivery
            outside.payload = delivery.payload.dropFirst(ApplicationPayload.headerBytes)
            hook.delivered(outside, at: process, member: state.id)
        }
    }

    private func resumeReading(_ process: Int, from member: MemberID) {
        let state = processes[process]
        state.readingPaused.remove(member)
        let unread = state.unread
        state.unread = []
        for event in unread {
            guard case .arrival(_, _, _, let fromID, let message, _) = event, fromID == member else {
                state.unread.append(event)
                continue
            }
            feed(process, message, from: fromID)
        }
        // What was read now wants a poll, after this one's effects.
        if !state.pollScheduled {
            state.pollScheduled = true
            scheduler.schedule(at: now, .poll(process))
        }
    }

    private func recordInstall(_ view: View, at process: Int) {
        let state = processes[process]
        lastInstallAt = now
        histories[state.id]?.installs.append(
            ViewRecord(viewID: view.id.rawValue, members: view.members, stateDigest: state.app.digest))
        state.wedgedAt = nil
        state.minority = false
    }
}
