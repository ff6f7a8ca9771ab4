// The simulated member shell: what runs around one process's core, as a runtime does. It feeds
// the core what arrives, lets the application submit what the window admits, polls, and
// carries out the effects: it sends a view and a state snapshot to joiners, holds traffic of a
// view it has not installed yet, answers members still in a view it has left, and drops the
// rest of the traffic of views it has left.
//
// The view-change rules here (`receive`, `holdFuture`, `replayFuture`, `answerJoin`,
// `acceptWelcome`, `install`) also exist in the runtime; issue 12 moves them into one shell that
// both drive, and what stays is the application (`submitBacklog`, deliveries) and the IO. To
// keep that step small, the shell reaches outside its own process only through `transmit` and
// `sendControl` (the network), `processOfMember` (addressing), `scheduler.armTimer`, the records
// (`histories`, `coreErrors`, `dataInFlight`, `lastInstallAt`), `random` (the payloads) and
// `startIncarnation` (a joiner that gives up and retries).

import LockstepChecker
import LockstepCore

extension SimulatedGroup {
    /// The member in `process` handles one event now, then its application and effects run.
    func handle(_ event: SimulatedEvent) {
        switch event {
        case .arrival(let to, _, let from, let fromID, let message):
            receive(message, at: to, from: from, fromID: fromID)
        case .control(let to, _, let from, let control):
            handleControl(to, from: from, control)
        case .timer(let process):
            guard processes[process].core != nil else { return }
            feed(process, .tick(Timestamp(nanoseconds: now)))
            pump(process)
        case .burst(let process, let count):
            // An application whose member does not send in its view has nothing to send with.
            if processes[process].core != nil, processes[process].core?.senderRank == nil { return }
            processes[process].backlog += count
            if processes[process].core != nil { pump(process) }
        case .leave(let process):
            guard processes[process].core != nil else { return }
            processes[process].core?.leave()
            pump(process)
        case .joinRetry(let process, let id):
            guard processes[process].id == id, processes[process].status == .joining else { return }
            // Not welcomed in time (the leader may have failed, or added this incarnation and
            // died before welcoming it): try again as a new incarnation.
            startIncarnation(process)
        case .pause, .resume, .crash, .failLink, .healLinks, .restart, .recoverStragglers:
            preconditionFailure("pauses and faults are never deferred, got \(event)")
        }
    }

    /// Core traffic from the incarnation `fromID` in process `from`, by the message's view.
    private func receive(_ message: Message, at process: Int, from: Int, fromID: MemberID) {
        guard let view = processes[process].core?.view else {
            holdFuture(process, fromID, message)
            return
        }
        let viewID = message.viewID
        if viewID > view.id {
            holdFuture(process, fromID, message)
            if let rank = view.rank(of: fromID) { feed(process, .heard(fromMemberRank: rank)) }
        } else if viewID == view.id, let rank = view.rank(of: fromID) {
            feed(process, .received(message, fromMemberRank: rank))
            pump(process)
        } else if viewID < view.id, let last = processes[process].core?.lastRowOfPreviousView,
            last.viewID == viewID,
            processes[process].answeredStragglers.insert([fromID.rawValue, viewID.rawValue]).inserted
        {
            // The sender is still in a view this member has left: it missed the install.
            // This member's last row of that view carries it (once per straggler and view).
            transmit(.row(last), from: process, to: from, toID: fromID)
        }
    }

    private func holdFuture(_ process: Int, _ from: MemberID, _ message: Message) {
        guard processes[process].future.count < futureMessagesMax else {
            coreErrors.append(
                "\(processes[process].id) at \(now)ns: more than \(futureMessagesMax) messages of future views held")
            return
        }
        processes[process].future.append((from, message))
    }

    private func handleControl(_ process: Int, from: Int, _ control: SimulatedControl) {
        switch control {
        case .join(let joiner):
            answerJoin(process, from: from, joiner: joiner)
        case .redirect(let leader):
            let state = processes[process]
            guard state.status == .joining, let leaderProcess = processOfMember[leader], leaderProcess != process
            else { return }
            sendControl(.join(state.id), from: process, to: leaderProcess, toID: leader)
        case .welcome(let view, let rank, let snapshot, let skip):
            acceptWelcome(process, view: view, rank: rank, snapshot: snapshot, skip: skip)
        }
    }

    /// A joiner asks this member to add it: the leader takes it into the next view; anyone else
    /// points the joiner at the leader.
    private func answerJoin(_ process: Int, from: Int, joiner: MemberID) {
        guard let answer = processes[process].core?.requestJoin(joiner) else { return }
        switch answer {
        case .accepted: pump(process)
        case .redirect(let leader):
            if processOfMember[leader] != nil, processes[from].id == joiner {
                sendControl(.redirect(leader), from: process, to: from, toID: joiner)
            }
        case .refused: break  // the joiner retries after joinRetryInterval
        }
    }

    /// A joiner is welcomed into `view`: it starts its core there from the snapshot, skipping
    /// the re-sent messages the snapshot already holds, then handles what it held for the view.
    private func acceptWelcome(_ process: Int, view: View, rank: Int, snapshot: AppState, skip: [UInt64]) {
        let state = processes[process]
        guard state.status == .joining, view.members.indices.contains(rank), view.members[rank] == state.id else {
            return
        }
        do {
            state.core = try OrderingCore(configuration: configuration, view: view, memberRank: rank)
        } catch {
            coreErrors.append("\(state.id): cannot start in \(view): \(error)")
            return
        }
        state.core?.skipResentMessages(skip)
        state.status = .active
        state.app = snapshot
        histories[state.id]?.initialState = snapshot
        histories[state.id]?.installs.append(
            ViewRecord(viewID: view.id.rawValue, members: view.members, stateDigest: snapshot.digest))
        feed(process, .tick(Timestamp(nanoseconds: now)))
        replayFuture(process)
        pump(process)
    }

    /// Feeds the held traffic of the view just installed; keeps what is for later views.
    private func replayFuture(_ process: Int) {
        guard let view = processes[process].core?.view else { return }
        let held = processes[process].future
        processes[process].future = []
        for (from, message) in held {
            if message.viewID > view.id {
                processes[process].future.append((from, message))
            } else if message.viewID == view.id, let rank = view.rank(of: from) {
                feed(process, .received(message, fromMemberRank: rank))
            }
        }
    }

    private func feed(_ process: Int, _ event: Event) {
        let state = processes[process]
        do {
            let before = traceEnabled ? state.core?.suspectedRanks : nil
            guard state.core != nil else {
                preconditionFailure("\(state.id) (\(state.status)) fed \(event) without a core")
            }
            try state.core?.handle(event)
            if traceEnabled, let core = state.core, core.suspectedRanks != before {
                trace("process \(process) \(state.id) \(core.view.id) suspects \(core.suspectedRanks) after \(event)")
            }
        } catch {
            coreErrors.append("\(state.id) at \(now)ns: \(error)")
        }
    }

    /// Lets the member's application submit what the window admits, then polls and carries out
    /// the effects; repeats while deliveries or a new view open the window for more.
    func pump(_ process: Int) {
        let state = processes[process]
        while state.status == .active, state.core != nil {
            let submitted = submitBacklog(process)
            effects.removeAll(keepingCapacity: true)
            guard let oldView = state.core?.view, let memberRank = state.core?.memberRank else {
                preconditionFailure("\(state.id) (\(state.status)) lost its core while submitting")
            }
            let ledOldView = state.core?.leaderRank == memberRank
            let before = traceEnabled ? state.core?.suspectedRanks : nil
            state.core?.poll(into: &effects)
            if traceEnabled, let core = state.core, core.view == oldView, core.suspectedRanks != before {
                trace("process \(process) \(state.id) \(oldView.id) suspects \(core.suspectedRanks)")
            }
            let progressed = carryOut(process, oldView: oldView, ledOldView: ledOldView)
            guard state.status == .active, let sendCapacity = state.core?.sendCapacity else { break }
            if state.backlog == 0 || (submitted == 0 && !progressed) { break }
            if sendCapacity == 0 { break }
        }
    }

    /// Submits as much of the application's backlog as the window admits; returns how much.
    private func submitBacklog(_ process: Int) -> Int {
        let state = processes[process]
        guard let sendCapacity = state.core?.sendCapacity else {
            preconditionFailure("\(state.id) (\(state.status)) submits without a core")
        }
        let count = min(state.backlog, sendCapacity)
        let id = state.id
        for _ in 0..<count {
            let sequence = state.nextSenderSequence
            let payload = ApplicationPayload.make(
                sender: id, sequence: sequence, fillerBytesMax: payloadFillerBytesMax, using: &random)
            do {
                try state.core?.send(payload)
            } catch {
                coreErrors.append("\(id) send #\(sequence): \(error)")
                return 0
            }
            histories[id]?.sent.append(SentRecord(senderSequence: sequence, payloadDigest: payloadDigest(payload)))
            state.nextSenderSequence += 1
            state.backlog -= 1
        }
        return count
    }

    /// Carries out the effects of one poll. Sends before an `installView` go to the old view's
    /// members, later ones to the new view's. Returns whether anything opened the window.
    private func carryOut(_ process: Int, oldView: View, ledOldView: Bool) -> Bool {
        let state = processes[process]
        var progressed = false
        var currentView = oldView
        for effect in effects {
            switch effect {
            case .sendData(let batch):
                for member in currentView.members where member != state.id {
                    guard let to = processOfMember[member] else { continue }
                    dataInFlight += 1
                    transmit(.data(batch), from: process, to: to, toID: member)
                }
            case .sendRow(let row):
                for member in currentView.members where member != state.id {
                    guard let to = processOfMember[member] else { continue }
                    transmit(.row(row), from: process, to: to, toID: member)
                }
            case .deliver(let delivery):
                progressed = true
                let record = ApplicationPayload.record(of: delivery)
                state.app.apply(record)
                histories[state.id]?.delivered.append(record)
            case .wedged:
                state.wedgedAt = now
                state.everWedged = true
                state.sentWhenWedged = sentRecords(process).count
            case .installView(let view, _):
                progressed = true
                install(view, at: process, leaving: currentView, ledOldView: ledOldView)
                currentView = view
                replayFuture(process)
            case .removed:
                state.status = .removed
                histories[state.id]?.removed = true
                state.backlog = 0
                return progressed
            case .minority:
                state.minority = true
            case .armTimer(let at):
                scheduler.armTimer(process, at: at.nanoseconds)
            }
        }
        return progressed
    }

    /// Records an install; the leader of the view left welcomes the joiners with its snapshot.
    private func install(_ view: View, at process: Int, leaving oldView: View, ledOldView: Bool) {
        let state = processes[process]
        lastInstallAt = now
        histories[state.id]?.installs.append(
            ViewRecord(viewID: view.id.rawValue, members: view.members, stateDigest: state.app.digest))
        state.wedgedAt = nil
        state.minority = false
        guard ledOldView else { return }
        for (rank, member) in view.members.enumerated() where !oldView.members.contains(member) {
            guard let to = processOfMember[member] else { continue }
            guard let skip = state.core?.resentAlreadyDelivered else {
                preconditionFailure("\(state.id) installed \(view.id) without a core")
            }
            sendControl(.welcome(view, rank: rank, state.app, skip: skip), from: process, to: to, toID: member)
        }
    }
}
