// Members on separate network stacks joined by links of bounded bandwidth: network namespaces
// and veth links shaped to 1 Gbit/s each way with tc tbf (tools/with-netns). Needs root,
// iproute2, iperf3 and jq, so it runs when LOCKSTEP_NETNS_TESTS=1, as `.ci/run` sets it;
// `sudo LOCKSTEP_NETNS_TESTS=1 swift test --filter ShapedLink` runs it by hand. Figures are
// not asserted (shared, noisy machines): the checker and the end of the run are.

import Foundation
import Testing

@Suite(
    "Members in network namespaces on 1 Gbit/s links", .serialized, .timeLimit(.minutes(10)),
    .enabled(
        if: ProcessInfo.processInfo.environment["LOCKSTEP_NETNS_TESTS"] == "1",
        "set LOCKSTEP_NETNS_TESTS=1 (CI does; needs root)"))
struct ShapedLinkTests {
    /// Regression (issue 10, cases 1-3): on shaped links 1 MiB messages hung the group (heartbeats
    /// behind data, windows of 1 GiB per sender, a relay everyone forwarded for). Both patterns,
    /// the relay on (one sender of three uses it; all senders go directly), through the checker.
    @Test(
        """
            3 members, 1 Gbit/s, 1 MiB messages, all senders and one sender, relay on: every run completes and passes \
            the checker, memory within 64 MiB + senders x the byte window
            """
    )
    func oneMebibyteOnShapedLinks() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        for senders in ["all", "one"] {
            let report = FileManager.default.temporaryDirectory.appendingPathComponent(
                "lockstep-netns-\(getpid())-\(senders).json")
            defer { try? FileManager.default.removeItem(at: report) }
            let (status, text) = try await runProcess(
                root.appendingPathComponent("tools/with-netns"),
                [
                    "--members", "3", "--rate", "1gbit", "--baseline-seconds", "2", "--",
                    try lockstepExecutable().path, "bench", "--netns", "--size", "1M", "--senders", senders,
                    "--duration", "4",
                    "--relay-threshold", "1M", "--output", report.path,
                ], directory: root, timeoutSeconds: 240)
            #expect(status == 0, "\(text)")
            let json =
                (try? Data(contentsOf: report)).flatMap { try? JSONSerialization.jsonObject(with: $0) }
                as? [String: Any]
            let result = try #require((json?["results"] as? [[String: Any]])?.first, "\(text)")
            #expect(result["checker"] as? String == "passed", "\(text)")
            let delivered = result["delivered_per_member"] as? [Int] ?? []
            #expect(delivered.count == 3 && Set(delivered).count == 1 && delivered[0] > 0, "\(delivered)")
            #expect(
                (result["link_megabytes_per_second"] as? Double ?? 0) > 0,
                "the link's rate was measured in the same run")
            // 64 MiB + senders x the 16 MiB byte window (README: "about"), plus a tenth for the
            // allocator's slack: quiet runs peak at 95-113 MB with three senders, but a loaded
            // machine held more in flight and reached 122-125.5 MB (a CI dry run, and a run beside
            // a build), which failed a bound without slack. The regression this guards (windows
            // of 1 GiB per sender) is far above either.
            let bound = (64.0 + (senders == "all" ? 3 : 1) * 16) * 1_048_576 / 1e6 * 1.1
            #expect(
                (result["rss_megabytes_max"] as? Double ?? .infinity) <= bound,
                "RSS \(result["rss_megabytes_max"] ?? "?") MB > \(bound) MB")
        }
    }
}
