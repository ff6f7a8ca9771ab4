// Driving the core: admitting what the application and the source want to send, polling, and
// carrying out every effect (a switch without `default:`, so a new effect cannot be ignored).

import LockstepCore
import LockstepWire
import NIOCore
import NIOPosix

extension MemberRuntime {
    /// Rounds of send-then-poll in one go before yielding to reads (and coming back).
    static let pollRoundsMax = 4

    func poll() {
        guard isReady, !isClosed else { return }
        var rounds = 0
        while true {
            rounds += 1
            admitQueuedSends()
            let sourceDrained = pullFromSource()
            effects.removeAll(keepingCapacity: true)
            shell.poll(into: &effects)
            carryOutEffects()
            if shell.hasHeldTrafficToReplay {
                replayHeldFrames()
                continue
            }
            // Deliveries in this poll may have opened the window: go round again while there is
            // something to send and room for it. After a few rounds, yield to reads and come back.
            guard hasMoreToSend(sourceDrained: sourceDrained), shell.core.sendCapacity > 0 else { break }
            if rounds == Self.pollRoundsMax {
                eventLoop.execute { self.poll() }
                break
            }
        }
        for link in links.values { link.flush() }
    }

    /// Application sends waiting for the window, then payloads pulled earlier and not admitted
    /// then, in their order, while the window has room.
    private func admitQueuedSends() {
        while shell.core.sendCapacity > 0, let first = sendQueue.first, first.0.count <= shell.core.sendCapacityBytes {
            let (payload, promise) = sendQueue.removeFirst()
            do {
                try shell.send(payload)
                promise.succeed(())
            } catch {
                promise.fail(RuntimeError(.sendRefused, "\(error)"))
            }
        }
        while shell.core.sendCapacity > 0, let payload = pulledBack.first,
            payload.count <= shell.core.sendCapacityBytes
        {
            pulledBack.removeFirst()
            sendFromSource(payload)
        }
    }

    /// Asks the source for what the window has room for; returns whether it has nothing more now.
    private func pullFromSource() -> Bool {
        // Not asked because payloads pulled earlier still wait for bytes: nothing more can go now,
        // and the window opening (acknowledgements, a poll) asks again. Taking such a source for
        // "not drained" had the poll re-queue itself without end while the byte window was full
        // (an event loop spinning on a greedy source).
        // A window without room in messages is not "drained": the poll below may reopen it, and
        // the loop then asks again (with no traffic left to trigger a poll, a sender whose source
        // filled the window exactly would wait for its next heartbeat).
        let capacity = shell.core.sendCapacity
        guard capacity > 0 else { return source == nil }
        guard pulledBack.isEmpty, let source else { return true }
        // An empty window admits one message of any size (sendCapacityBytes is Int.max): ask for
        // a window's worth, and only if even the first does not fit, for that one alone (asking
        // for one at a time cost small messages a fifth of their rate).
        let bytesRoom = shell.core.sendCapacityBytes
        let empty = bytesRoom == Int.max
        pulled.removeAll(keepingCapacity: true)
        source.nextPayloads(
            limit: capacity, bytesLimit: empty ? settings.configuration.windowBytesMax : bytesRoom, into: &pulled)
        if empty && pulled.isEmpty { source.nextPayloads(limit: 1, bytesLimit: Int.max, into: &pulled) }
        sendPulled()
        // Fewer than asked for: the source has nothing more now, or its next message does not
        // fit the bytes left (it comes at a later poll, when the window opens). Not drained only
        // when it gave all it was asked for: then go round again.
        return pulled.count < capacity
    }

    private func hasMoreToSend(sourceDrained: Bool) -> Bool {
        let room = shell.core.sendCapacityBytes
        let queued = sendQueue.first.map { $0.0.count <= room } ?? false
        let pulledEarlier = pulledBack.first.map { $0.count <= room } ?? false
        return queued || pulledEarlier || !sourceDrained
    }

    /// Hands the payloads pulled from the source to the shell.core. A source that gave more than the
    /// window admits loses nothing: from the first the window refuses, they wait in `pulledBack`
    /// for room, in order.
    private func sendPulled() {
        for index in pulled.indices {
            do {
                try shell.send(pulled[index])
            } catch  where error.code == .windowFull {
                pulledBack.append(contentsOf: pulled[index...])
                return
            } catch {
                logSourceRefusal(error)
            }
        }
    }

    private func sendFromSource(_ payload: Payload) {
        do {
            try shell.send(payload)
        } catch {
            logSourceRefusal(error)
        }
    }

    /// Wedged, removed or too large: the source's message cannot go in this view (the source
    /// learns of views through the view observer; its messages are not retried here).
    private func logSourceRefusal(_ error: CoreError) {
        stats.sourceMessagesRefused += 1
        logger.error("source message refused: \(error)")
    }

    private func carryOutEffects() {
        defer { endDurablePoll() }
        for effect in effects {
            switch effect {
            case .sendData(let batch, let view):
                sendData(batch, to: view)
            case .sendRow(let row, let view):
                sendRow(row, to: view)
            case .sendRowTo(let row, let member):
                if let link = links[member] {
                    link.write(encode(.row(row)))
                    link.flush()
                }
            case .deliver(let delivery):
                stats.bytesDelivered &+= UInt64(delivery.payload.count)
                durable?.logDelivery(delivery)
                onDeliver(delivery)
            case .raggedTrim(let trim, let view):
                logging { try $0.logRaggedTrim(trim, viewID: view) }
            case .armTimer(let at):
                armTimer(at)
            case .wedged(let suspected):
                wedged(suspecting: suspected)
            case .installed(let view, _, let previous):
                logging { try $0.logView(view) }
                installed(view, previous: previous)
            case .welcome(let joiner, let start):
                if let link = joinerLinks.removeValue(forKey: joiner) { welcome(joiner, start, on: link) }
            case .pauseReading(let member):
                stats.readPauses += 1
                readingPaused.insert(member)
                links[member]?.setReading(false)
                let held = "\(shell.heldFrames) frames held"
                logger.warning("\(member) is far ahead (\(held)): not reading from it until the install")
            case .resumeReading(let member):
                readingPaused.remove(member)
                if deliveriesWanted { links[member]?.setReading(true) }
            case .removed(let reason):
                stats.removed = true
                if let left = leftPromise {
                    leftPromise = nil
                    logger.info("left the group: \(reason)")
                    left.succeed(())
                } else {
                    logger.error("removed from the group: \(reason)")
                }
                queueRefusal = RuntimeError(.removed, "this member was removed from the group: \(reason)")
                failQueuedSends(RuntimeError(.removed, "removed before the window took this message: \(reason)"))
                onEvent?(.removed(reason: reason))
            case .minority(let reachable, let of):
                stats.minority = true
                let why =
                    "suspects ranks \(shell.core.suspectedRanks), "
                    + "\(shell.core.statistics.suspicionsRaised) suspicions raised "
                    + "here, \(shell.core.statistics.localStalls) local stalls"
                let minority =
                    "in a minority: reaches \(reachable) of \(of) members of \(shell.core.view.id) (\(why)); "
                    + "not forming a view (partition safety)"
                logger.error("\(minority)")
                queueRefusal = RuntimeError(.minority, "this member is in a minority of its view")
                failQueuedSends(RuntimeError(.minority, "in a minority before the window took this message"))
                onEvent?(.minority(reachable: reachable, of: of))
            }
        }
    }

    private func sendData(_ batch: DataBatch, to view: View) {
        if let threshold = relay.carries(batch, in: view) {
            return sendThroughRelay(batch, threshold: threshold, to: view)
        }
        let buffer = encode(.data(batch))
        forEachPeerLink(in: view, holding: buffer) { _, link in
            link.write(buffer)
            stats.framesSent += 1
            stats.bytesSent += UInt64(buffer.readableBytes)
        }
    }

    private func sendRow(_ row: Row, to view: View) {
        let buffer = encode(.row(row))
        forEachPeerLink(in: view, holding: buffer, row: row) { member, link in
            if link.isWritable {
                link.write(buffer)
                stats.framesSent += 1
                stats.bytesSent += UInt64(buffer.readableBytes)
                return
            }
            // Rows are latest-wins, but an install row must not be replaced by a row of the
            // next view: write it regardless.
            if row.installNumber != 0 { return link.write(buffer) }
            if pendingRows[member] != nil { stats.rowsCoalesced += 1 }
            pendingRows[member] = buffer
        }
    }

    private func wedged(suspecting suspected: [MemberID]) {
        stats.wedgedAtUptimeNanoseconds = NIODeadline.now().uptimeNanoseconds
        let ranks = suspected.compactMap { shell.core.view.rank(of: $0) }
        stats.suspectedRanks = ranks
        let silences = zip(suspected, ranks).map {
            "\($0.0): \(shell.core.silenceNanoseconds(ofMemberRank: $0.1) / 1_000_000) ms"
        }
        let wedged =
            "wedged: \(suspected) suspected (silent for \(silences.joined(separator: ", ")); "
            + "\(shell.core.statistics.localStalls) local stalls); "
            + "this member sends nothing new in \(shell.core.view.id)"
        logger.warning("\(wedged)")
        onEvent?(.wedged(suspected: suspected))
    }

    func encode(_ message: Message, relayingFrom threshold: Int = .max) -> ByteBuffer {
        let size = Wire.encodedBytes(message, relayingFrom: threshold)
        var buffer = ByteBufferAllocator().buffer(capacity: size)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) {
            Wire.encode(message, relayingFrom: threshold, into: $0)
        }
        return buffer
    }

    private func armTimer(_ at: Timestamp) {
        guard timerAt != at else { return }
        timerAt = at
        timer?.cancel()
        timer = eventLoop.scheduleTask(deadline: .uptimeNanoseconds(at.nanoseconds)) {
            self.timerAt = nil
            self.hearDoneMembers()
            self.hearPeersStillStarting()
            self.shell.tick(Timestamp(nanoseconds: NIODeadline.now().uptimeNanoseconds))
            self.poll()
        }
    }

    /// A peer sends rows only once all of its own links are up, which may be a while after its
    /// link to this member came up (it dials others, its machine is busy): a peer connected and
    /// not heard from yet is starting, not failed, for `connectTimeout` after this member started
    /// (the time any member is given to connect). Its failure detector starts with its first row;
    /// a peer whose link goes down is suspected at once as before.
    private func hearPeersStillStarting() {
        guard NIODeadline.now() < startupDeadline else { return }
        let view = shell.core.view
        for member in view.members where member != me && links[member] != nil && lastRowArrival[member] == nil {
            heard(member)
        }
    }

    /// A member that is done and has closed may do so before this one has heard from everyone:
    /// its silence is not a failure (it delivered everything; its last row came before its
    /// `done`). One that is done but still connected is watched as usual.
    private func hearDoneMembers() {
        for member in membersDone where links[member] == nil && member != me { heard(member) }
    }
}
