// What `lockstep node` and the benchmark's member processes share: the member's settings from
// flags or a JSON config file, validated with errors that name the bad value.

import ArgumentParser
import Foundation
import LockstepCore
import LockstepRuntime

/// Which members send.
enum SenderChoice: String, ExpressibleByArgument, Codable, Sendable {
    case all, half, one

    func senderRanks(memberCount: Int) -> [Int] {
        switch self {
        case .all: return Array(0..<memberCount)
        case .half: return Array(0..<max(1, memberCount / 2))
        case .one: return [0]
        }
    }
}

/// Options of one member, shared by `node` and the benchmark.
struct MemberOptions: ParsableArguments {
    @Option(
        help: """
            JSON file with any of: rank, peers, senders, window, windowBytes, mode, messageBytesMax, batchMessagesMax, \
            batchBytesMax, heartbeatMilliseconds, failureTimeoutMilliseconds, relayThreshold. Flags override it.
            """)
    var config: String?

    @Option(help: "This member's rank (its position in --peers).")
    var rank: Int?

    @Option(help: "Every member's listening address in rank order, comma-separated host:port (this member's included).")
    var peers: String?

    @Option(help: "Which members send: all, half (the lower ranks) or one (rank 0).")
    var senders: SenderChoice?

    @Option(help: "The window: most messages a sender has beyond the group's delivered minimum (default 1024).")
    var window: Int?

    @Option(
        help: """
            The window in bytes: most payload bytes a sender has in flight (K/M suffixes; default 16M). Bounds each \
            member's memory to about senders x this.
            """)
    var windowBytes: String?

    @Option(help: "Delivery mode: ordered or unordered.")
    var mode: DeliveryMode?

    @Option(help: "Largest message payload, bytes.")
    var messageBytesMax: Int?

    @Option(
        name: .customLong("failure-timeout-ms"),
        help: """
            Suspect a member not heard from for this many milliseconds (default 500).
            """)
    var failureTimeoutMilliseconds: Int?

    @Option(help: "Transport: tcp, rdma, or auto (rdma when an RDMA device is present).")
    var transport: String?

    @Option(help: "RDMA: bytes of each per-peer data ring (all members must use the same; default 4 MiB).")
    var rdmaRingBytes: Int?

    @Option(help: "RDMA: row slots per peer, also the most unconsumed writes with immediate (default 64).")
    var rdmaRowSlots: Int?

    @Option(
        help: """
            Payloads of at least this size (K/M suffixes) travel in blocks through the relay; 'off' sends every \
            payload \
            directly. Default 1M.
            """)
    var relayThreshold: String?

    @Flag(
        help: """
            Durable mode: log every delivery in --data-dir (group commit, one fdatasync per group); the window counts \
            from the persistence frontier. Every member must use it.
            """)
    var durable = false

    @Option(
        help: """
            Durable mode: where this process's logs go, one directory per incarnation (PATH/m<member id>, created; it \
            must hold no log yet).
            """)
    var dataDir: String?

    /// Durable mode: the log directory of incarnation `id` (a rejoin is a new member with a log
    /// of its own: restarting from a log is not built).
    func dataDirectory(of id: MemberID) -> String? { dataDir.map { "\($0)/m\(id.rawValue)" } }

    struct FileConfig: Codable {
        var rank: Int?
        var peers: [String]?
        var senders: SenderChoice?
        var window: Int?
        var windowBytes: String?
        var mode: String?
        var messageBytesMax: Int?
        var batchMessagesMax: Int?
        var batchBytesMax: Int?
        var heartbeatMilliseconds: Int?
        var failureTimeoutMilliseconds: Int?
        var relayThreshold: String?
    }

    /// These options as command-line arguments (what `NodeArguments` passes on to a member).
    var arguments: [String] {
        var arguments: [String] = []
        func add(_ flag: String, _ value: (some CustomStringConvertible)?) {
            if let value { arguments += [flag, value.description] }
        }
        add("--config", config)
        add("--rank", rank)
        add("--peers", peers)
        add("--senders", senders?.rawValue)
        add("--window", window)
        add("--window-bytes", windowBytes)
        add("--mode", mode?.rawValue)
        add("--message-bytes-max", messageBytesMax)
        add("--failure-timeout-ms", failureTimeoutMilliseconds)
        add("--transport", transport)
        add("--rdma-ring-bytes", rdmaRingBytes)
        add("--rdma-row-slots", rdmaRowSlots)
        add("--relay-threshold", relayThreshold)
        if durable { arguments.append("--durable") }
        add("--data-dir", dataDir)
        return arguments
    }

    func loadFile() throws -> FileConfig {
        guard let config else { return FileConfig() }
        do {
            return try JSONDecoder().decode(FileConfig.self, from: Data(contentsOf: URL(fileURLWithPath: config)))
        } catch {
            throw ValidationError("cannot read config file \(config): \(error)")
        }
    }

    /// The protocol configuration from the flags and the config file.
    func configuration(file: FileConfig? = nil) throws -> Configuration {
        let file = try file ?? loadFile()
        var configuration = Configuration()
        if let window = window ?? file.window { configuration.windowMessagesMax = window }
        if let text = windowBytes ?? file.windowBytes {
            configuration.windowBytesMax = try parseSize(text, flag: "--window-bytes", example: "16M")
        }
        if let modeText = file.mode {
            guard let parsed = DeliveryMode(rawValue: modeText) else {
                throw ValidationError("config mode '\(modeText)' is not ordered or unordered")
            }
            configuration.deliveryMode = parsed
        }
        if let mode { configuration.deliveryMode = mode }
        if let bytes = messageBytesMax ?? file.messageBytesMax { configuration.messageBytesMax = bytes }
        if let count = file.batchMessagesMax { configuration.batchMessagesMax = count }
        if let bytes = file.batchBytesMax { configuration.batchBytesMax = bytes }
        if let milliseconds = file.heartbeatMilliseconds {
            configuration.heartbeatInterval = .milliseconds(milliseconds)
        }
        if let milliseconds = failureTimeoutMilliseconds ?? file.failureTimeoutMilliseconds {
            configuration.failureTimeout = .milliseconds(milliseconds)
        }
        configuration.durable = durable
        do { try configuration.validate() } catch { throw ValidationError("\(error)") }
        return configuration
    }

    /// The relay threshold from the flags or the file (nil: off; default 1 MiB). Every member,
    /// joiners included, must use the same.
    func relayThresholdBytes(file: FileConfig? = nil) throws -> Int? {
        let file = try file ?? loadFile()
        guard let text = relayThreshold ?? file.relayThreshold else {
            return RuntimeSettings.defaultRelayThresholdBytes
        }
        if text == "off" { return nil }
        return try parseSize(text, flag: "--relay-threshold", example: "64K, or off")
    }

    /// The member's validated settings.
    func settings() throws -> RuntimeSettings {
        let file = try loadFile()
        guard let peerText = peers.map({ $0.split(separator: ",").map(String.init) }) ?? file.peers,
            !peerText.isEmpty
        else {
            throw ValidationError(
                "--peers (or \"peers\" in the config file) is required: every member's host:port in rank order")
        }
        var addresses: [PeerAddress] = []
        for text in peerText {
            guard let address = PeerAddress(text.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("peer address '\(text)' is not host:port with a port in 1...65535")
            }
            addresses.append(address)
        }
        guard Set(addresses).count == addresses.count else { throw ValidationError("--peers lists an address twice") }
        guard let rank = rank ?? file.rank else {
            throw ValidationError("--rank (or \"rank\" in the config file) is required")
        }
        guard addresses.indices.contains(rank) else {
            throw ValidationError("--rank \(rank) is not a position in --peers (0...\(addresses.count - 1))")
        }
        let configuration = try configuration(file: file)
        let ids = addresses.indices.map { MemberID(UInt64($0 + 1)) }
        let senderRanks = (senders ?? file.senders ?? .all).senderRanks(memberCount: addresses.count)
        let view: View
        do {
            view = try View(id: ViewID(1), members: ids, senders: senderRanks.map { ids[$0] })
        } catch {
            throw ValidationError("\(error)")
        }
        var settings = RuntimeSettings(configuration: configuration, view: view, memberRank: rank, addresses: addresses)
        if let name = transport {
            switch TransportKind.choose(name) {
            case .success(let kind): settings.transport = kind
            case .failure(let error): throw ValidationError(error.description)
            }
        }
        settings.relayThresholdBytes = try relayThresholdBytes(file: file)
        guard durable == (dataDir != nil) else {
            throw ValidationError(durable ? "--durable needs --data-dir" : "--data-dir needs --durable")
        }
        settings.dataDirectory = dataDirectory(of: ids[rank])
        if let rdmaRingBytes { settings.rdma.ringBytes = rdmaRingBytes }
        if let rdmaRowSlots { settings.rdma.rowSlots = rdmaRowSlots }
        settings.rdma.chunkBytesMax = min(settings.rdma.chunkBytesMax, settings.rdma.ringBytes / 4)
        do {
            try settings.rdma.validate()
        } catch {
            throw ValidationError("\(error)")
        }
        return settings
    }
}

extension RuntimeSettings {
    /// The effective configuration, printed at start.
    var summary: String {
        let c = configuration
        let members = zip(view.members, addresses).map { "\($0)@\($1)" }.joined(separator: " ")
        let relay = relayThresholdBytes.map {
            "payloads of \($0) bytes or more, in blocks of \(relayBlockBytes) bytes, along the chain"
        }
        let rdmaDetail =
            transport != .rdma
            ? ""
            : """
             (ring \(rdma.ringBytes) bytes, \(rdma.rowSlots) row slots of \(rdma.rowSlotBytes) bytes, \
            chunks up to \(rdma.chunkBytesMax) bytes, peer timeout \(rdma.peerTimeout))
            """
        return """
            member rank \(memberRank) of \(view.memberCount) (\(view.members[memberRank])), \
            listening on \(addresses[memberRank])
            view \(view.id): members \(members)
            senders: \(view.senderMemberRanks.map { "rank \($0)" }.joined(separator: ", "))
            mode \(c.deliveryMode.rawValue), windowMessagesMax \(c.windowMessagesMax), \
            windowBytesMax \(c.windowBytesMax), messageBytesMax \(c.messageBytesMax), \
            batchMessagesMax \(c.batchMessagesMax), batchBytesMax \(c.batchBytesMax), \
            heartbeatInterval \(c.heartbeatInterval), failureTimeout \(c.failureTimeout)
            relay: \(relay ?? "off")
            transport: \(transport.rawValue)\(rdmaDetail)
            """
    }
}
