// Faithful coverage: real Soft-RoCE (rxe), the real libibverbs, rxe provider and rdma_cm, in a
// QEMU guest booted from Debian's kernel package under TCG (tools/with-rxe-vm). Slow (a guest
// boot and software-emulated RDMA), so it runs when LOCKSTEP_RXE_TESTS=1, as `.ci/run` sets it;
// `LOCKSTEP_RXE_TESTS=1 swift test --filter Rxe` runs it by hand.

import Foundation
import Testing

@Suite(
    "RDMA over real Soft-RoCE in a QEMU guest", .serialized, .timeLimit(.minutes(15)),
    .enabled(if: ProcessInfo.processInfo.environment["LOCKSTEP_RXE_TESTS"] == "1", "set LOCKSTEP_RXE_TESTS=1 (CI does)")
)
struct RxeTests {
    @Test(
        """
            3 members, one sender, stream mixed sizes (the large ones through the relay) over rxe0 with rdma_cm: the \
            checker passes, and RDMA operations carried it
            """
    )
    func groupStreamsOverRxe() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let report = root.appendingPathComponent(".build/rxe-vm/report-\(getpid()).json")
        defer { try? FileManager.default.removeItem(at: report) }
        let (status, text) = try await runProcess(
            root.appendingPathComponent("tools/with-rxe-vm"),
            [
                try lockstepExecutable().path, "bench", "--transport", "rdma", "--host", "10.47.0.1", "--mix",
                "--size", "16,1K,64K", "--count", "300", "--relay-threshold", "64K", "--senders", "one",
                "--baseline-seconds", "0.2",
                // TCG is slow and may share the machine with other work: no false suspicions.
                "--failure-timeout-ms", "10000", "--output", report.path,
            ], directory: root)
        #expect(status == 0, "\(text)")
        let json =
            (try? Data(contentsOf: report)).flatMap { try? JSONSerialization.jsonObject(with: $0) } as? [String: Any]
        let result = try #require((json?["results"] as? [[String: Any]])?.first, "\(text)")
        #expect(result["checker"] as? String == "passed", "\(text)")
        #expect(result["delivered_per_member"] as? [Int] == [300, 300, 300])
        #expect(result["transport"] as? String == "rdma")
        #expect(result["rdma_device"] as? String == "rxe0", "the guest's Soft-RoCE device carried it")
        let operations = result["rdma_operations"] as? [String: Any] ?? [:]
        for counter in ["data_writes", "row_writes", "credit_writes", "receives"] {
            #expect((operations[counter] as? Int ?? 0) > 0, "\(counter): \(operations)")
        }
        #expect(operations["error_completions"] as? Int == 0)
    }
}
