// The member's figures as swift-metrics, through a factory the embedding program passes in
// (`RuntimeSettings.metricsFactory`): the library never bootstraps the global MetricsSystem.
// Sampled from the statistics once a second on the event loop, so the message path pays for
// nothing but the counters it keeps anyway.

import CoreMetrics
import LockstepCore
import NIOCore

/// Used on the member's event loop only (its sampling task runs there).
final class RuntimeMetrics: @unchecked Sendable {
    static let sampleInterval: TimeAmount = .seconds(1)

    private let deliveredMessages: Counter
    private let deliveredBytes: Counter
    private let viewChanges: Counter
    private let suspicions: Counter
    private let windowMessagesInFlight: Gauge
    private let windowBytesInFlight: Gauge
    private let stabilityFrontierLag: Gauge
    private let viewID: Gauge
    /// Durable mode: how far this member's deliveries are ahead of the persistence frontier,
    /// and the log's group commits and bytes.
    private let persistenceFrontierLag: Gauge
    private let logCommits: Counter
    private let logBytes: Counter
    private var last = RuntimeStatistics()

    init(factory: MetricsFactory, member: MemberID) {
        let dimensions = [("member", "\(member.rawValue)")]
        deliveredMessages = Counter(label: "lockstep_delivered_messages", dimensions: dimensions, factory: factory)
        deliveredBytes = Counter(label: "lockstep_delivered_bytes", dimensions: dimensions, factory: factory)
        viewChanges = Counter(label: "lockstep_view_changes", dimensions: dimensions, factory: factory)
        suspicions = Counter(label: "lockstep_suspicions", dimensions: dimensions, factory: factory)
        windowMessagesInFlight = Gauge(
            label: "lockstep_window_messages_in_flight", dimensions: dimensions, factory: factory)
        windowBytesInFlight = Gauge(label: "lockstep_window_bytes_in_flight", dimensions: dimensions, factory: factory)
        stabilityFrontierLag = Gauge(
            label: "lockstep_stability_frontier_lag_messages", dimensions: dimensions, factory: factory)
        viewID = Gauge(label: "lockstep_view", dimensions: dimensions, factory: factory)
        persistenceFrontierLag = Gauge(
            label: "lockstep_persistence_frontier_lag_messages", dimensions: dimensions, factory: factory)
        logCommits = Counter(label: "lockstep_log_commits", dimensions: dimensions, factory: factory)
        logBytes = Counter(label: "lockstep_log_bytes", dimensions: dimensions, factory: factory)
    }

    /// Records what changed since the last sample. `frontierLag`: how far this member's received
    /// prefix is ahead of the stability frontier (the group's minimum), in messages.
    func sample(
        _ stats: RuntimeStatistics, windowMessagesInFlight inFlight: Int, frontierLag: UInt64,
        persistenceLag: UInt64?
    ) {
        if let persistenceLag { persistenceFrontierLag.record(persistenceLag) }
        deliveredMessages.increment(by: stats.core.messagesDelivered &- last.core.messagesDelivered)
        deliveredBytes.increment(by: stats.bytesDelivered &- last.bytesDelivered)
        viewChanges.increment(by: stats.core.viewsInstalled &- last.core.viewsInstalled)
        suspicions.increment(by: stats.core.suspicionsRaised &- last.core.suspicionsRaised)
        windowMessagesInFlight.record(inFlight)
        windowBytesInFlight.record(stats.occupancy.windowBytesInFlight)
        stabilityFrontierLag.record(frontierLag)
        viewID.record(stats.viewID)
        if let durable = stats.durable {
            let before = last.durable ?? DurableLogStatistics()
            logCommits.increment(by: durable.commits - before.commits)
            logBytes.increment(by: durable.bytes - before.bytes)
        }
        last = stats
    }
}

extension MemberRuntime {
    /// Starts the once-a-second sampling (when a factory was given).
    func startMetrics() {
        guard let factory = settings.metricsFactory else { return }
        let metrics = RuntimeMetrics(factory: factory, member: me)
        eventLoop.scheduleRepeatedTask(
            initialDelay: RuntimeMetrics.sampleInterval, delay: RuntimeMetrics.sampleInterval
        ) {
            task in
            guard !self.isClosed else { return task.cancel() }
            let core = self.shell.core
            let view = core.view
            let seqs = (0..<view.memberCount).map { core.row(ofMemberRank: $0).seq }
            let lag = core.row(ofMemberRank: core.memberRank).seq &- (seqs.min() ?? 0)
            let inFlight = self.settings.configuration.windowMessagesMax - core.sendCapacity
            let persistenceLag =
                self.settings.configuration.durable
                ? core.ownRow.delivered &- min(core.ownRow.delivered, core.persistenceFrontier) : nil
            metrics.sample(
                self.statisticsOnLoop(), windowMessagesInFlight: max(0, inFlight), frontierLag: lag,
                persistenceLag: persistenceLag)
        }
    }
}
