// Metrics go through the factory the program passes in (never MetricsSystem).

import Foundation
import LockstepCore
import MetricsTestKit
import Testing

@testable import Lockstep

@Suite("Metrics", .serialized, .timeLimit(.minutes(2)))
struct MetricsTests {
    @Test("A group's metrics reach the injected factory: deliveries, view, submit latency")
    func injectedFactory() async throws {
        let metrics = TestMetrics()
        let group = try TestGroup(count: 3, initialState: Counter()) { configuration in
            configuration.metricsFactory = metrics
        }
        for _ in 0..<10 { _ = try await group.members[0].submit(1) }
        let member = [("member", "1")]
        // The runtime samples its figures once a second.
        try await waitUntil("the delivered-messages counter counts the submits") {
            ((try? metrics.expectCounter("lockstep_delivered_messages", member))?.totalValue ?? 0) >= 10
        }
        let latency = try metrics.expectTimer("lockstep_submit_latency", member)
        #expect(latency.values.count == 10)
        #expect(try metrics.expectGauge("lockstep_view", member).lastValue == 1)
        await group.stop()
    }

    @Test("Durable mode's metrics: the log's commits and bytes, and the persistence frontier's lag")
    func durableMetrics() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent(
            "lockstep-metrics-\(UInt64.random(in: 0...UInt64.max))")
        defer { try? FileManager.default.removeItem(at: root) }
        let metrics = TestMetrics()
        let group = try TestGroup(count: 3, initialState: Counter()) { configuration in
            configuration.metricsFactory = metrics
            configuration.protocolConfiguration.durable = true
            configuration.dataDirectory = root.appendingPathComponent("m\(configuration.me.rawValue)").path
        }
        for _ in 0..<10 { _ = try await group.members[0].submit(1, waitFor: .persisted) }
        let member = [("member", "1")]
        try await waitUntil("the log's bytes are counted") {
            ((try? metrics.expectCounter("lockstep_log_bytes", member))?.totalValue ?? 0) > 0
        }
        #expect(try metrics.expectCounter("lockstep_log_commits", member).totalValue > 0)
        _ = try metrics.expectGauge("lockstep_persistence_frontier_lag_messages", member)
        await group.stop()
    }
}
