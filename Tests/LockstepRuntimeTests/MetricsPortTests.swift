// `lockstep node --metrics-port` serves the member's metrics in Prometheus's text format.

import Foundation
import Testing

@Suite("Metrics port", .timeLimit(.minutes(2)))
struct MetricsPortTests {
    @Test("A node with --metrics-port answers GET /metrics with its counters, and 404 elsewhere")
    func metricsPort() async throws {
        let member = try freePort()
        let metrics = try freePort()
        let lockstep = try lockstepExecutable().path
        // A one-member group kept up by a stdin that stays open for 4 s; bash's /dev/tcp asks.
        let script = """
            (sleep 4) | "\(lockstep)" node --rank 0 --peers 127.0.0.1:\(member) --metrics-port \(metrics) \
                --metrics-host 127.0.0.1 >/dev/null 2>&1 &
            for attempt in $(seq 1 30); do
                if (exec 3<>/dev/tcp/127.0.0.1/\(metrics)) 2>/dev/null; then break; fi
                sleep 0.1
            done
            sleep 1.5  # the runtime samples its figures once a second
            exec 3<>/dev/tcp/127.0.0.1/\(metrics)
            printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3; exec 3<&-
            exec 4<>/dev/tcp/127.0.0.1/\(metrics); printf 'GET /other HTTP/1.0\\r\\n\\r\\n' >&4; head -n 1 <&4
            wait
            """
        let (status, output) = try await runProcess(
            URL(fileURLWithPath: "/bin/bash"), ["-c", script], timeoutSeconds: 60)
        #expect(status == 0, "\(output)")
        #expect(output.contains("HTTP/1.1 200 OK"), "\(output)")
        #expect(output.contains("lockstep_delivered_messages{member=\"1\"}"), "\(output)")
        #expect(output.contains("lockstep_view{member=\"1\"} 1"), "\(output)")
        #expect(output.contains("HTTP/1.1 404"), "\(output)")
    }
}
