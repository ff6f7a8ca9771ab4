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
            Join a running group through the member at this host:port (with --id and --listen) instead of starting \
            one with --peers.
            """)
    var join: String?

    @Option(
        help: """
            With --join: this process's member id (a new one for every start: a restarted process is a new \
            incarnation).
            """)
    var id: UInt64?

    @Option(help: "With --join: the host:port this member listens on.")
    var listen: String?

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

    func run() async throws {
        let settings: RuntimeSettings
        var snapshot: [UInt8] = []
        if let join {
            let joined = try await joinedSettings(contactText: join)
            settings = joined.settings
            snapshot = joined.snapshot
        } else {
            settings = try member.settings()
        }
        Output.error(settings.summary)
        if let size {
            try await runWorkload(settings: settings, sizes: try parseSizes(size), snapshot: snapshot)
        } else {
            try await runInteractive(settings)
        }
    }

    /// Asks the member at `contactText` to let this one in; returns the settings of the view it
    /// joins and the application snapshot it starts from.
    private func joinedSettings(
        contactText: String
    ) async throws -> (settings: RuntimeSettings, snapshot: [UInt8]) {
        guard let contact = PeerAddress(contactText) else {
            throw ValidationError("--join '\(contactText)' is not host:port")
        }
        guard let id, id >= 1 else { throw ValidationError("--join needs --id (a member id not used before)") }
        guard let listenText = listen, let address = PeerAddress(listenText) else {
            throw ValidationError("--join needs --listen host:port")
        }
        let configuration = try member.configuration()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let welcome: Welcome
        do {
            welcome = try await MemberRuntime.requestJoin(
                member: MemberID(id), listen: address, contact: contact,
                limits: WireLimits(configuration: configuration), eventLoop: group.next())
        } catch {
            // The join's error is the one to report; a failing shutdown after it adds nothing.
            try? await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
        var joining = RuntimeSettings(configuration: configuration, joining: welcome)
        joining.relayThresholdBytes = try member.relayThresholdBytes()  // the same as every member's
        return (settings: joining, snapshot: welcome.snapshot)
    }

    /// The benchmark workload, after checking its limits.
    private func runWorkload(settings: RuntimeSettings, sizes: [Int], snapshot: [UInt8]) async throws {
        let messageBytesMax = settings.configuration.messageBytesMax
        for size in sizes where size > messageBytesMax {
            throw ValidationError("--size \(size) exceeds messageBytesMax \(messageBytesMax)")
        }
        try Self.checkSeconds(duration, flag: "--duration")
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        let stall = stallTimeout ?? stallSecondsDefault(failureTimeout: settings.configuration.failureTimeout)
        try Self.checkSeconds(stall, flag: "--stall-timeout")
        try Self.checkSeconds(finishTimeout, flag: "--finish-timeout")
        let workload = try BenchMember(
            settings: settings, sizes: sizes, duration: duration, count: count, logPath: log, snapshot: snapshot)
        if stopOnEof {
            try await workload.runUntilStdinCloses()
        } else {
            try await workload.runToTheEnd(stallSeconds: stall, finishSeconds: finishTimeout)
        }
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
