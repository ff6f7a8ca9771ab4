// To the event loop: routing the poller's events to the runtime and decoding what arrived, in
// place in registered memory, through the handshake every transport follows (Handshake.swift).

import CLockstepVerbs
import Foundation
import LockstepCore
import LockstepWire
import Logging
import NIOCore
import Synchronization

extension RDMAPoller {
    func deliverEvents() {
        guard !events.isEmpty else { return }
        let batch = events
        events.removeAll(keepingCapacity: true)
        eventLoop.execute { [self] in
            guard let delegate else { return }
            for event in batch { route(event, delegate) }
            delegate.readsComplete()
        }
    }

    /// Runs on the event loop.
    func route(_ event: RDMALinkEvent, _ delegate: TransportDelegate) {
        switch event {
        case .up(let link, let member):
            guard !link.isClosed else { return }
            delegate.linkUp(link, member: member)
        case .arrived(let link, let arrival):
            guard !link.isClosed, !stoppedOnLoop else { return }
            if link.reading && link.waiting.isEmpty {
                consume(arrival, on: link, delegate)
            } else {
                link.waiting.append(arrival)
            }
        case .failed(let link, let reason):
            if !link.isClosed { delegate.linkFailed(link, reason: reason) }
            link.isClosed = true
            release(link)
            delegate.linkDown(link, member: link.gate.member)
        case .down(let link):
            link.isClosed = true
            release(link)
            delegate.linkDown(link, member: link.gate.member)
        case .writable(let link):
            if let member = link.gate.member, !link.isClosed { delegate.linkWritable(member: member) }
        }
    }

    func release(_ link: RDMALink) {
        link.memory = nil
        link.waiting.removeAll()
        submit(.release(link.connectionID))
    }

    /// Decodes what arrived (event loop), hands the frames on, and publishes what was consumed.
    func consume(_ arrival: RDMAArrival, on link: RDMALink, _ delegate: TransportDelegate) {
        guard let memory = link.memory else { return }
        do {
            switch arrival {
            case .row(let offset, let length):
                let bytes = UnsafeRawBufferPointer(start: memory + offset, count: length)
                guard let (frame, used) = try Wire.decode(bytes, limits: limits), used == length else {
                    return delegate.failAndClose(link, reason: "a row slot that does not hold one whole frame")
                }
                deliver(ReceivedFrame(frame: frame), on: link, delegate)
            case .chunk(let offset, let length):
                let chunk = UnsafeRawBufferPointer(start: memory + offset, count: length)
                if link.cumulation.readableBytes == 0 {
                    var used = 0
                    while used < length, !link.isClosed {
                        let rest = UnsafeRawBufferPointer(rebasing: chunk[used...])
                        // A relay block is lent to the runtime in place (no copy unless it forwards it).
                        if let (block, bytesAt, bytes) = try FrameReader.blockFrame(in: rest, limits: limits) {
                            used += bytes
                            deliver(
                                ReceivedFrame(
                                    block: block, lent: UnsafeRawBufferPointer(rebasing: rest[0..<bytes]),
                                    blockBytesAt: bytesAt), on: link, delegate)
                            continue
                        }
                        guard
                            let (frame, bytes) = try FrameReader.nextFrame(
                                in: rest, allocator: allocator, limits: limits)
                        else { break }
                        used += bytes
                        deliver(frame, on: link, delegate)
                    }
                    if used < length { link.cumulation.writeBytes(UnsafeRawBufferPointer(rebasing: chunk[used...])) }
                } else {
                    link.cumulation.writeBytes(chunk)
                    while !link.isClosed,
                        let frame = try FrameReader.nextFrame(
                            from: &link.cumulation, allocator: allocator, limits: limits)
                    {
                        deliver(frame, on: link, delegate)
                    }
                    link.cumulation.discardReadBytes()
                }
                link.consumedBytes.add(UInt64(length), ordering: .releasing)
            }
            link.consumedImmediates.add(1, ordering: .releasing)
        } catch {
            delegate.failAndClose(link, reason: "\(error)")
        }
    }

    /// Resumes reading a link (event loop): what waited is decoded now.
    func resume(_ link: RDMALink) {
        guard let delegate, !stoppedOnLoop else { return }
        while link.reading, !link.isClosed, !link.waiting.isEmpty {
            consume(link.waiting.removeFirst(), on: link, delegate)
        }
        delegate.readsComplete()
    }

    /// Passes a frame through the handshake every transport follows (Handshake.swift).
    func deliver(_ received: ReceivedFrame, on link: RDMALink, _ delegate: TransportDelegate) {
        switch link.gate.step(for: received.frame) {
        case .control(let body):
            delegate.control(body, link: link, member: link.gate.member)
        case .hello(let hello):
            guard delegate.admit(hello) else {
                return delegate.failAndClose(link, reason: "unexpected hello \(hello) for \(settings.view)")
            }
            logger.info("member \(hello.member) connected over RDMA")
            link.gate.admitted(hello)
            delegate.linkUp(link, member: hello.member)
        case .frame(let member):
            delegate.received(received, from: member, link: link)
        case .refuse(let reason):
            delegate.failAndClose(link, reason: reason)
        }
    }
}
