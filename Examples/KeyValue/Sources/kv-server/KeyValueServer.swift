// One member of the replicated key-value store: a ReplicatedGroup of KeyValueStore and its HTTP API
// in one ServiceGroup. SIGTERM or SIGINT shuts both down gracefully: the HTTP server stops first
// (services stop in reverse order), then the member leaves the group, so the others need not wait
// out the failure timeout.

import ArgumentParser
import Hummingbird
import KeyValueStore
import Lockstep
import Logging
import ServiceLifecycle

@main
struct KeyValueServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kv-server",
        abstract: "A member of a replicated key-value store, with an HTTP API.",
        discussion: """
            Bootstrap (every member of the first view, the same --peers list; member id N is the N-th):
              kv-server --id 1 --peers 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 --http-port 8081
            Join a running group (a new member, with a fresh id):
              kv-server --join 127.0.0.1:7001,127.0.0.1:7002 --listen 127.0.0.1:7004 --http-port 8084
            """
    )

    @Option(help: "This member's id in the first view: 1...n, its place in --peers.")
    var id: UInt64?

    @Option(help: "The first view's members, host:port,... (with --id).")
    var peers: String?

    @Option(help: "Members of a running group to ask to let this one in, host:port,...")
    var join: String?

    @Option(help: "Where a joiner listens for the group, host:port (with --join).")
    var listen: String?

    @Option(help: "The HTTP API's port.")
    var httpPort: Int

    @Option(help: "The HTTP API's address.")
    var httpHost = "127.0.0.1"

    @Option(help: "Largest value a PUT may carry, in bytes.")
    var valueBytesMax = 64 * 1_024

    @Option(help: "How long a write or a linearizable read may wait for the group, in seconds.")
    var operationTimeoutSeconds = 10

    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    mutating func validate() throws {
        switch (id, peers, join, listen) {
        case (.some, .some, nil, nil), (nil, nil, .some, .some): break
        default: throw ValidationError("give --id and --peers (bootstrap), or --join and --listen (join)")
        }
        guard (1...65_535).contains(httpPort) else { throw ValidationError("--http-port must be 1...65535") }
        guard valueBytesMax >= 1 else { throw ValidationError("--value-bytes-max must be at least 1") }
        guard operationTimeoutSeconds >= 1 else { throw ValidationError("--operation-timeout-seconds must be at least 1") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
    }

    func run() async throws {
        var logger = Logger(label: "kv-server")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        var configuration = try groupConfiguration()
        configuration.operationTimeout = .seconds(operationTimeoutSeconds)
        let group = try ReplicatedGroup(configuration: configuration, initialState: KeyValueStore(), logger: logger)
        let router = Router()
        KeyValueAPI(group: group, valueBytesMax: valueBytesMax).register(on: router)
        let app = Application(
            router: router,
            configuration: ApplicationConfiguration(address: .hostname(httpHost, port: httpPort)),
            logger: logger
        )
        logger.info("member \(configuration.me) serving HTTP on \(httpHost):\(httpPort)")
        // Either one ending ends the other gracefully: an HTTP server that cannot bind makes the
        // member leave (cancelling would not: the group's run waits for the group, not the task),
        // and a member the others removed stops serving HTTP.
        let services = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: ([group, app] as [any Service]).map {
                    .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup,
                          failureTerminationBehavior: .gracefullyShutdownGroup)
                },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await services.run()
    }

    /// The group's start from the flags (checked by `validate`, so only the addresses can be wrong).
    func groupConfiguration() throws -> GroupConfiguration {
        if let id, let peers {
            let addresses = try Self.addresses(peers, flag: "--peers")
            guard (1...UInt64(addresses.count)).contains(id) else {
                throw ValidationError("--id \(id) is not in 1...\(addresses.count) (the members of --peers)")
            }
            let members = addresses.enumerated().map { index, address in
                GroupConfiguration.Member(id: MemberID(UInt64(index + 1)), address: address)
            }
            return .bootstrap(members: members, me: MemberID(id))
        }
        guard let join, let listen else { throw ValidationError("give --join with --listen") }
        let contacts = try Self.addresses(join, flag: "--join")
        guard let address = PeerAddress(listen) else { throw ValidationError("--listen: not host:port: \(listen)") }
        return .join(contacts: contacts, listen: address)
    }

    static func addresses(_ list: String, flag: String) throws -> [PeerAddress] {
        let parts = list.split(separator: ",").map { $0.trimmingPrefixAndSuffixSpaces() }
        guard !parts.isEmpty else { throw ValidationError("\(flag) lists no address") }
        return try parts.map { part in
            guard let address = PeerAddress(part) else { throw ValidationError("\(flag): not host:port: \(part)") }
            return address
        }
    }
}

extension Substring {
    fileprivate func trimmingPrefixAndSuffixSpaces() -> String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}
