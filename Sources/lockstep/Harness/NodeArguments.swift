// The one builder of `lockstep node` command lines: bench and chaos start their member
// processes with it, and bench's --in-process members take its member options as they are.

/// A workload member's `lockstep node` arguments (always --stop-on-eof: the harness stops it).
struct NodeArguments {
    /// A joiner's entry: through the first of the members at `contacts` (host:port) that lets
    /// it in, with a new member id, listening at `listen`.
    struct Join {
        var contacts: [String]
        var id: UInt64
        var listen: String
    }

    /// The member's options (a first-view member's rank and peers among them).
    var member: MemberOptions
    /// Set for a joiner instead of rank and peers.
    var join: Join?
    /// The workload: message sizes (cycled through), seconds of sending or messages per sender,
    /// and the delivery log's path.
    var sizes: [Int]
    var duration: Double
    var count: Int?
    var logPath: String
    /// The ids of the member's later incarnations when the group removes it and it rejoins
    /// (empty: `lockstep node`'s default), or whether it exits when removed instead. A harness
    /// member exits (bench ends its run when a member is removed and says so) unless the
    /// harness asks for rejoins, as chaos does.
    var rejoinIDs: [UInt64] = []
    var exitWhenRemoved = true

    /// A first-view member's arguments: rank `rank` of `peers` (host:port, comma-separated).
    init(rank: Int, peers: String, sizes: [Int], duration: Double, count: Int? = nil, logPath: String) throws {
        try self.init(sizes: sizes, duration: duration, count: count, logPath: logPath)
        member.rank = rank
        member.peers = peers
    }

    /// A joiner's arguments.
    init(join: Join, sizes: [Int], duration: Double, logPath: String) throws {
        try self.init(sizes: sizes, duration: duration, count: nil, logPath: logPath)
        self.join = join
    }

    private init(sizes: [Int], duration: Double, count: Int?, logPath: String) throws {
        // No arguments: every member option unset, to be filled in by the caller.
        member = try MemberOptions.parse([])
        self.sizes = sizes
        self.duration = duration
        self.count = count
        self.logPath = logPath
    }

    /// The whole command line, after the binary.
    var command: [String] {
        var arguments = ["node"] + member.arguments
        if let join {
            arguments += [
                "--join", join.contacts.joined(separator: ","), "--id", "\(join.id)", "--listen", join.listen,
            ]
        }
        if !rejoinIDs.isEmpty { arguments += ["--rejoin-ids", rejoinIDs.map(String.init).joined(separator: ",")] }
        if exitWhenRemoved { arguments.append("--exit-when-removed") }
        arguments += ["--size", sizes.map(String.init).joined(separator: ","), "--duration", "\(duration)"]
        if let count { arguments += ["--count", "\(count)"] }
        return arguments + ["--log", logPath, "--stop-on-eof"]
    }
}
