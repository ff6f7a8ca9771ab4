// One TCP link: the two connections (lanes) to one peer, and how frames are routed to them.

import LockstepWire
import NIOCore

/// The connections to one peer as a transport link: a control lane (rows, hellos, control
/// frames) and a data lane (data batches, relay blocks), so that a heartbeat never waits behind
/// the megabytes of data queued to the same peer. `write` routes each frame by the type in its
/// header. A link made of one connection (`single`: before a hello, or a peer that sent lane
/// `all`) sends everything on it. Used on the event loop only.
final class TCPLink: TransportLink, @unchecked Sendable {
    private var control: Channel?
    private var data: Channel?
    private var single: Channel?
    /// Frames written to a lane not connected yet (between a peer's two connections).
    private var waiting: [(Lane, ByteBuffer)] = []
    private var isClosed = false
    private(set) var isDown = false
    /// Reading paused by back-pressure: applies to a data lane that connects later, too.
    private var readingPaused = false

    init() {}
    init(single channel: Channel) { self.single = channel }

    func has(_ lane: Lane) -> Bool { lane == .control ? control != nil : data != nil }

    func attach(_ channel: Channel, lane: Lane) {
        guard !isClosed else {
            channel.close(promise: nil)
            return
        }
        switch lane {
        case .control: control = channel
        case .data: data = channel
        case .all: single = channel
        }
        if readingPaused, lane != .control { applyReading(false, to: channel) }
        let stillWaiting = waiting.filter { !has($0.0) }
        for (waitingLane, frame) in waiting where has(waitingLane) { channel.write(frame, promise: nil) }
        waiting = stillWaiting
        channel.flush()
    }

    /// Marks the link down; true the first time.
    func markDown() -> Bool {
        defer { isDown = true }
        return !isDown
    }

    private func channel(for lane: Lane) -> Channel? {
        if let single { return single }
        return lane == .control ? control : data
    }

    /// Bytes in NIO's outbound buffers of every lane, and frames waiting for a lane to connect.
    var queuedBytes: Int {
        let buffered = [single, control, data].reduce(0) { total, channel in
            // A channel that closed meanwhile has nothing queued (the option then throws).
            total + ((try? channel?.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0)
        }
        return buffered + waiting.reduce(0) { $0 + $1.1.readableBytes }
    }

    /// The control lane's writability: rows coalesce while it is full.
    var isWritable: Bool { (single ?? control)?.isWritable ?? true }

    func write(_ frame: ByteBuffer) {
        guard !isClosed else { return }
        // Every frame the runtime writes is whole, so its header is there to route by.
        let lane = frame.frameHeader?.type.map(Lane.of) ?? .data
        if let channel = channel(for: lane) {
            channel.write(frame, promise: nil)
        } else {
            waiting.append((lane, frame))
        }
    }

    func flush() {
        single?.flush()
        control?.flush()
        data?.flush()
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        waiting = []
        for channel in [single, control, data] { channel?.close(promise: nil) }
    }

    /// Back-pressure stops the data lane only: rows and heartbeats are still read, so a member
    /// whose application is slow is not taken for a dead one.
    func setReading(_ enabled: Bool) {
        readingPaused = !enabled
        guard let channel = single ?? data else { return }
        applyReading(enabled, to: channel)
    }

    private func applyReading(_ enabled: Bool, to channel: Channel) {
        channel.setOption(ChannelOptions.autoRead, value: enabled).whenSuccess {
            if enabled { channel.read() }
        }
    }
}
