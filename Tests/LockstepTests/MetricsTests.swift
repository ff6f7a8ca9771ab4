// Metrics go through the factory the program passes in (never MetricsSystem).

@testable import Lockstep
import LockstepCore
import MetricsTestKit
import Testing

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
}
