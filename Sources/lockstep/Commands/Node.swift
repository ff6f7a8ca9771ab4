// `lockstep node`: runs one member. Interactive by default (each stdin line is sent, each
// delivery printed); with --size it runs the benchmark workload instead and reports JSON lines
// on stdout (`ready`, `progress`, `stalled`, `final`: an interface scripts read, README "JSON
// lines"). On its own, a workload ends when every sender's last message is delivered and every
// member says it is done; under `lockstep bench` and `chaos` (--stop-on-eof) it ends when its
// stdin closes. bench and chaos build this command's arguments with `NodeArguments`.

import ArgumentParser
import Foundation
import LockstepCore
import LockstepRuntime
import LockstepWire
import Logging
import NIOPosix
import Prometheus
import Synchronization

struct Node: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one member of a group over TCP.",
        discussion: """
            Every member is given every member's address, in rank order, and its own rank:
              lockstep node --rank 0 --peers 10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000
            Without --size, each line read from stdin is sent and every delivery is printed.
            With --size, the member runs the benchmark workload (as `lockstep bench` does): it sends
            for --duration seconds (or --count messages), then ends once every sender's last message
            is delivered and every member said it is done; stdin is not read, unless --stop-on-eof
            makes its end stop the member (how bench and chaos stop members). A workload that
            delivers nothing for --stall-timeout seconds prints its state and exits with status 1.
            A workload member the group removes (a long pause) rejoins as a new incarnation, with a
            new member id (--rejoin-ids) and its own delivery log (--log PATH + .m<id>), through
            the other members of its last view: at most 3 rejoins, each tried 3 times after
            back-offs of 1, 2 and 4 s; --exit-when-removed makes it exit with status 3 instead.
            """)

    /// The longest --duration, --stall-timeout and --finish-timeout.
    static let secondsMax: Double = 3_600

    @OptionGroup var member: MemberOptions

    @Option(
        help: """
            Benchmark workload: payload bytes per message (at least 16), or a comma-separated list (K/M suffixes) \
            that messages cycle through.
            """)
    var size: String?

    @Option(help: "Benchmark workload: seconds of sending.")
    var duration: Double = 5

    @Option(help: "Benchmark workload: messages per sender (instead of --duration).")
    var count: Int?

    @Option(help: "Benchmark workload: file for the delivery log (read by the checker).")
    var log: String?

    @Option(
        help: """
            Join a running group through a member at host:port (with --id and --listen) instead of starting one \
            with --peers. Several contacts, comma-separated or repeated, are tried in order until one lets it in.
            """)
    var join: [String] = []

    @Option(
        help: """
            With --join: this process's member id (a new one for every start: a restarted process is a new \
            incarnation).
            """)
    var id: UInt64?

    @Option(help: "Serve this member's metrics for Prometheus over HTTP on this port (GET /metrics).")
    var metricsPort: Int?

    @Option(help: "With --metrics-port: the address the metrics server listens on.")
    var metricsHost = "0.0.0.0"

    @Option(help: "With --join: the host:port this member listens on.")
    var listen: String?

    @Option(
        help: """
            Benchmark workload: the member ids this process takes, in order, when it rejoins after the group \
            removed it (at most 3; default: one above the highest id it saw in any view, each time).
            """)
    var rejoinIds: String?

    @Flag(
        help: """
            Benchmark workload: when the group removes this member, exit with status 3 instead of rejoining as a \
            new incarnation.
            """)
    var exitWhenRemoved = false

    @Flag(
        help: """
            Benchmark workload: stop when stdin closes (what bench and chaos use), instead of ending with the group \
            after --duration.
            """)
    var stopOnEof = false

    @Option(
        help: """
            Benchmark workload: seconds without a delivery, while messages are outstanding, after which the member \
            prints its state and exits with status 1 (default: 10, or 3 x the failure timeout if larger).
            """)
    var stallTimeout: Double?

    @Option(help: "Benchmark workload: seconds to wait, after the last delivery, for every member to say it is done.")
    var finishTimeout: Double = 10

    /// A removed member rejoins at most this many times (one new incarnation each), each time
    /// after a back-off, trying the join up to `rejoinAttemptsMax` times.
    static let rejoinsMax = 3
    static let rejoinAttemptsMax = 3
    /// The first back-off before a rejoin; doubled after every failed attempt (1, 2, 4 s).
    static let rejoinBackoffSeconds = 1.0
    /// The exit status of a member removed from the group that does not rejoin (--exit-when-removed,
    /// or every rejoin used).
    static let removedExitStatus: Int32 = 3
    /// The process's metrics factory (--metrics-port), for every incarnation of the member.
    static let metricsFactory = Mutex<PrometheusMetricsFactory?>(nil)
    /// The benchmark workload's snapshot (counts per origin and a digest) is far below this.
    static let workloadSnapshotBytesMax = 1 << 20

    /// One incarnation's start: its settings and the application snapshot it starts from.
    struct Incarnation {
        var settings: RuntimeSettings
        var snapshot: [UInt8] = []
    }

    /// The flags that need no settings are checked before anything starts (a join included).
    func validate() throws {
        _ = try parsedRejoinIDs()
        if !join.isEmpty { _ = try joinContacts() }
    }

    func run() async throws {
        var metricsServer: MetricsServer?
        if let metricsPort {
            guard (0...65_535).contains(metricsPort) else {
                throw ValidationError("--metrics-port \(metricsPort) is not a port")
            }
            let server = try await MetricsServer.start(
                host: metricsHost, port: metricsPort, group: MultiThreadedEventLoopGroup.singleton)
            Output.error("metrics: http://\(metricsHost):\(server.port)/metrics")
            metricsServer = server
        }
        defer { if let metricsServer { Task { await metricsServer.close() } } }
        try await run(metrics: metricsServer)
    }

    private func run(metrics: MetricsServer?) async throws {
        var first: Incarnation
        if !join.isEmpty {
            guard let id, id >= 1 else { throw ValidationError("--join needs --id (a member id not used before)") }
            guard let listenText = listen, let address = PeerAddress(listenText) else {
                throw ValidationError("--join needs --listen host:port")
            }
            first = try await joined(contacts: try joinContacts(), id: MemberID(id), listen: address)
        } else {
            first = Incarnation(settings: try member.settings())
        }
        // Rejoined incarnations keep the same factory (joined() copies it from here).
        first.settings.metricsFactory = metrics?.factory
        Self.metricsFactory.withLock { $0 = metrics?.factory }
        Output.error(first.settings.summary)
        if let size {
            try await runWorkloads(first, sizes: try parseSizes(size))
        } else {
            try await runInteractive(first.settings)
        }
    }

    /// --join's contacts: comma-separated, the flag repeated, or both.
    func joinContacts() throws -> [PeerAddress] {
        let texts = join.flatMap { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        let contacts = try texts.map { text in
            guard let contact = PeerAddress(text) else { throw ValidationError("--join '\(text)' is not host:port") }
            return contact
        }
        guard !contacts.isEmpty, contacts.count <= MemberRuntime.joinContactsMax else {
            throw ValidationError("--join takes 1...\(MemberRuntime.joinContactsMax) contacts, got \(contacts.count)")
        }
        return contacts
    }

    /// --rejoin-ids, checked (nil: not given).
    func parsedRejoinIDs() throws -> [UInt64]? {
        guard let rejoinIds else { return nil }
        let ids = rejoinIds.split(separator: ",").map { UInt64($0.trimmingCharacters(in: .whitespaces)) }
        guard !ids.isEmpty, ids.count <= Self.rejoinsMax, ids.allSatisfy({ ($0 ?? 0) >= 1 }) else {
            throw ValidationError("--rejoin-ids takes 1...\(Self.rejoinsMax) member ids (from 1), comma-separated")
        }
        let values = ids.compactMap { $0 }
        guard Set(values).count == values.count else { throw ValidationError("--rejoin-ids lists an id twice") }
        return values
    }

    /// Asks the members at `contacts` to let this one in as `id`; returns the settings of the
    /// view it joins and the application snapshot it starts from.
    private func joined(contacts: [PeerAddress], id: MemberID, listen address: PeerAddress) async throws -> Incarnation
    {
        let configuration = try member.configuration()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let welcome: Welcome
        do {
            // Ask again well within the failure timeout: see `requestJoin`.
            let attempt = max(.milliseconds(100), configuration.failureTimeout / 2)
            welcome = try await MemberRuntime.requestJoin(
                member: id, listen: address, contacts: contacts,
                limits: WireLimits(configuration: configuration), eventLoop: group.next(), attemptTimeout: attempt)
        } catch {
            // The join's error is the one to report; a failing shutdown after it adds nothing.
            try? await group.shutdownGracefully()
            throw error
        }
        var joining = RuntimeSettings(configuration: configuration, joining: welcome)
        joining.relayThresholdBytes = try member.relayThresholdBytes()  // the same as every member's
        joining.dataDirectory = member.dataDirectory(of: id)
        // The workload's state is a few kilobytes: read it whole before starting.
        let snapshot: [UInt8]
        do {
            snapshot = try await welcome.snapshot.readAll(bytesMax: Self.workloadSnapshotBytesMax)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
        joining.metricsFactory = Self.metricsFactory.withLock { $0 }
        return Incarnation(settings: joining, snapshot: snapshot)
    }

    /// The benchmark workload, after checking its limits: one run per incarnation of this process
    /// (a member the group removes rejoins as a new one, unless --exit-when-removed).
    private func runWorkloads(_ first: Incarnation, sizes: [Int]) async throws {
        let messageBytesMax = first.settings.configuration.messageBytesMax
        for size in sizes where size > messageBytesMax {
            throw ValidationError("--size \(size) exceeds messageBytesMax \(messageBytesMax)")
        }
        try Self.checkSeconds(duration, flag: "--duration")
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        let stall = stallTimeout ?? stallSecondsDefault(failureTimeout: first.settings.configuration.failureTimeout)
        try Self.checkSeconds(stall, flag: "--stall-timeout")
        try Self.checkSeconds(finishTimeout, flag: "--finish-timeout")
        let rejoinIDs = try parsedRejoinIDs()
        let stdin = stopOnEof ? StdinWatch.started() : nil
        // Later incarnations send until the first one's end of sending (at least one message).
        let sendUntil = ContinuousClock.now + .milliseconds(Int64(duration * 1_000))
        var incarnation = first
        var logPath = log
        for rejoins in 0...Self.rejoinsMax {
            let remaining = max(0.1, Double((sendUntil - ContinuousClock.now).nanosecondsClamped) / 1e9)
            let workload = try BenchMember(
                settings: incarnation.settings, sizes: sizes, duration: rejoins == 0 ? duration : remaining,
                count: count, logPath: logPath, snapshot: incarnation.snapshot)
            let end: WorkloadEnd
            if let stdin {
                end = try await workload.runUntilStdinCloses(stdin: stdin)
            } else {
                end = try await workload.runToTheEnd(stallSeconds: stall, finishSeconds: finishTimeout)
            }
            guard case .removed(let removal) = end else { return }
            let next = Self.nextID(rejoins: rejoins, given: rejoinIDs, removal: removal)
            guard !exitWhenRemoved, let next, !(stdin?.isClosed ?? false) else {
                try await workload.finishRemoved()
                if stdin?.isClosed ?? false { return }  // stopped meanwhile: nothing to rejoin for
                let why =
                    exitWhenRemoved ? "--exit-when-removed" : "every rejoin used (\(rejoins) of \(Self.rejoinsMax))"
                Output.error("\(removal.member): removed from the group; exiting (\(why))")
                throw ExitCode(Self.removedExitStatus)
            }
            logPath = log.map { "\($0).m\(next.rawValue)" }
            Output.line(
                try JSONLines.line(
                    RejoiningLine(
                        member: removal.member.rawValue, newMember: next.rawValue, log: logPath,
                        contacts: removal.contacts.map(\.description))))
            try await workload.finishRemoved()
            incarnation = try await rejoin(removal, as: next)
            Output.error(incarnation.settings.summary)
        }
    }

    /// The id of the incarnation after `rejoins` rejoins: the next of --rejoin-ids, or one above
    /// the highest id the removed member saw; nil when every rejoin is used.
    static func nextID(rejoins: Int, given: [UInt64]?, removal: Removal) -> MemberID? {
        guard rejoins < (given?.count ?? rejoinsMax) else { return nil }
        return MemberID(given.map { $0[rejoins] } ?? removal.highestMemberID + 1)
    }

    /// A removed member's way back in as `next`, through the other members of its last view:
    /// up to `rejoinAttemptsMax` joins, after back-offs of 1, 2 and 4 s.
    private func rejoin(_ removal: Removal, as next: MemberID) async throws -> Incarnation {
        guard !removal.contacts.isEmpty else {
            throw WorkloadError(
                description: "\(removal.member) was removed and knows no other member to rejoin through")
        }
        Output.error(
            "\(removal.member): removed from the group; rejoining as \(next) through "
                + removal.contacts.map(\.description).joined(separator: ", "))
        var backoff = Self.rejoinBackoffSeconds
        var failures: [String] = []
        for attempt in 1...Self.rejoinAttemptsMax {
            try await Task.sleep(for: .milliseconds(Int64(backoff * 1_000)))
            backoff *= 2
            do {
                return try await joined(contacts: removal.contacts, id: next, listen: removal.listen)
            } catch {
                failures.append("attempt \(attempt): \(error)")
                Output.error("\(next): rejoin attempt \(attempt) of \(Self.rejoinAttemptsMax) failed: \(error)")
            }
        }
        throw WorkloadError(description: "\(next) could not rejoin: " + failures.joined(separator: "; "))
    }

    private static func checkSeconds(_ seconds: Double, flag: String) throws {
        guard seconds > 0, seconds <= secondsMax else {
            throw ValidationError("\(flag) must be in (0, \(Int(secondsMax))] seconds")
        }
    }

    private func runInteractive(_ settings: RuntimeSettings) async throws {
        var logger = Logger(label: "lockstep.node")
        logger.logLevel = .info
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let runtime = try await MemberRuntime.start(settings: settings, eventLoop: group.next(), logger: logger) {
            delivery in
            Output.line("\(delivery.sender)#\(delivery.index): \(String(decoding: delivery.payload, as: UTF8.self))")
        }
        Output.error("all members connected; type lines to send them (Ctrl-D to stop)")
        let canSend = settings.view.senderRank(ofMemberRank: settings.memberRank) != nil
        while let line = readLine() {
            guard canSend else {
                Output.error("this member is not a sender (see --senders)")
                continue
            }
            try await runtime.send(Array(line.utf8)[...])
        }
        await runtime.close()
        try await group.shutdownGracefully()
    }
}
