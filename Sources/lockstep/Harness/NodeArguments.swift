// The one builder of `lockstep node` command lines: bench and chaos start their member
// processes with it (and bench's --in-process members parse its member part).

import LockstepCore

/// A workload member's `lockstep node` arguments (always --stop-on-eof: the harness stops it).
struct NodeArguments {
    /// How the member enters the group.
    enum Entry {
        /// One of the first view's members: its rank in `peers` (host:port, comma-separated).
        case founding(rank: Int, peers: String)
        /// A joiner through the member at `contact`, with a new member id, listening at `listen`.
        case joining(contact: String, id: UInt64, listen: String)
    }

    var entry: Entry
    var senders: SenderChoice?
    var window: Int?
    var windowBytes: Int?
    var mode: DeliveryMode?
    var messageBytesMax: Int?
    var relayThreshold: String?
    var transport: String?
    var failureTimeoutMilliseconds: Int?
    var rdmaRingBytes: Int?
    var rdmaRowSlots: Int?
    /// The workload: message sizes (cycled through), seconds of sending or messages per sender,
    /// and the delivery log's path.
    var sizes: [Int]
    var duration: Double
    var count: Int?
    var logPath: String

    init(entry: Entry, sizes: [Int], duration: Double, count: Int? = nil, logPath: String) {
        self.entry = entry
        self.sizes = sizes
        self.duration = duration
        self.count = count
        self.logPath = logPath
    }

    /// The options of `MemberOptions` (and --join, --id, --listen for a joiner).
    var memberOptions: [String] {
        var arguments: [String]
        switch entry {
        case .founding(let rank, let peers): arguments = ["--rank", "\(rank)", "--peers", peers]
        case .joining(let contact, let id, let listen):
            arguments = ["--join", contact, "--id", "\(id)", "--listen", listen]
        }
        func add(_ flag: String, _ value: (some CustomStringConvertible)?) {
            if let value { arguments += [flag, value.description] }
        }
        add("--senders", senders?.rawValue)
        add("--window", window)
        add("--window-bytes", windowBytes)
        add("--mode", mode?.rawValue)
        add("--message-bytes-max", messageBytesMax)
        add("--relay-threshold", relayThreshold)
        add("--transport", transport)
        add("--failure-timeout-ms", failureTimeoutMilliseconds)
        add("--rdma-ring-bytes", rdmaRingBytes)
        add("--rdma-row-slots", rdmaRowSlots)
        return arguments
    }

    /// The whole command line, after the binary.
    var command: [String] {
        var arguments = ["node"] + memberOptions
        arguments += ["--size", sizes.map(String.init).joined(separator: ","), "--duration", "\(duration)"]
        if let count { arguments += ["--count", "\(count)"] }
        return arguments + ["--log", logPath, "--stop-on-eof"]
    }
}
