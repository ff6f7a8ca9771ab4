// `lockstep node` and `lockstep bench` refuse bad values with a message that names them, and
// exit non-zero, before doing anything.

import Foundation
import Testing

@Suite("Command line")
struct CommandLineTests {
    static let cases: [([String], String)] = [
        (["node", "--rank", "5", "--peers", "127.0.0.1:7000,127.0.0.1:7001"], "--rank 5 is not a position in --peers"),
        (["node", "--rank", "0", "--peers", "127.0.0.1:7000,127.0.0.1:7001", "--window", "0"], "windowMessagesMax"),
        (
            ["node", "--rank", "0", "--peers", "127.0.0.1:7000,127.0.0.1:7001", "--window-bytes", "lots"],
            "--window-bytes 'lots'"
        ),
        (["bench", "--stall-timeout", "0"], "--stall-timeout"),
        (["bench", "--netns"], "tools/with-netns"),
        (["node", "--rank", "0", "--peers", "127.0.0.1:70000"], "127.0.0.1:70000"),
        (["node", "--rank", "0", "--peers", "127.0.0.1:7000,127.0.0.1:7000"], "lists an address twice"),
        (
            ["node", "--rank", "0", "--peers", "127.0.0.1:7000", "--relay-threshold", "lots"],
            "--relay-threshold 'lots'"
        ),
        (["node", "--peers", "127.0.0.1:7000"], "--rank"),
        (["node", "--config", "/nonexistent/member.json"], "cannot read config file"),
        (["node", "--rank", "0", "--peers", "127.0.0.1:7000", "--failure-timeout-ms", "100"], "failureTimeout"),
        (["node", "--rank", "0", "--peers", "127.0.0.1:7000", "--transport", "rdma"], "--transport rdma"),
        (["bench", "--transport", "infiniband"], "expected tcp, rdma or auto"),
        (["bench", "--size", "3"], "3 bytes is outside"),
        (["bench", "--members", "1"], "--members must be in 2...16"),
        (["simulate", "--seeds", "0"], "--seeds must be at least 1"),
        (
            ["node", "--join", "127.0.0.1:1,nothost", "--id", "9", "--listen", "127.0.0.1:3", "--size", "64"],
            "--join 'nothost' is not host:port"
        ),
        // Every contact refuses the connection: the error names both (contacts in one flag and repeated).
        (
            ["node", "--join", "127.0.0.1:1", "--join", "127.0.0.1:2", "--id", "9", "--listen", "127.0.0.1:3"],
            "no contact let m9 in (2 tried): 127.0.0.1:1: "
        ),
        (
            ["node", "--rank", "0", "--peers", "127.0.0.1:7000", "--size", "64", "--rejoin-ids", "0"],
            "--rejoin-ids takes 1...3 member ids"
        ),
        (["node", "--rank", "0", "--peers", "127.0.0.1:7000", "--durable"], "--durable needs --data-dir"),
        (["node", "--rank", "0", "--peers", "127.0.0.1:7000", "--data-dir", "/tmp/x"], "--data-dir needs --durable"),
        (["node", "--rank", "0", "--peers", "127.0.0.1:7000", "--durable", "--mode", "unordered"], "ordered"),
        (["bench", "--durable"], "--durable needs --data-dir"),
        (["bench", "--data-dir", "/tmp/x"], "--data-dir needs --durable"),
    ]

    @Test("Bad values are refused with a clear error", arguments: cases)
    func badValues(arguments: [String], expected: String) async throws {
        let (status, text) = try await runLockstep(arguments)
        #expect(status != 0)
        #expect(text.contains(expected), "\(text)")
    }
}
