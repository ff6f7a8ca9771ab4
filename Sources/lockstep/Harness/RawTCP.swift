// The raw baseline of `lockstep bench`: one plain TCP stream between two processes on
// loopback with large writes, like iperf3. Plain POSIX sockets, nothing of Lockstep in the way.

import ArgumentParser
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

enum RawTCP {
    static let chunkBytes = 1 << 20
    /// Pending connections a listener holds.
    static let listenBacklog: Int32 = 16

    /// The baseline, MB/s: a `raw-tcp-sink` child process reads what this process streams to it
    /// for `seconds`.
    static func measureBaseline(seconds: Double) async throws -> Double {
        let port = try freePort()
        let sink = try ChildProcess(arguments: ["raw-tcp-sink", "--port", "\(port)"], stderrPath: nil)
        try await sink.waitForLine { $0.contains("listening") }
        let fd = try connect(port: UInt16(port))
        await Task.detached { stream(to: fd, seconds: seconds) }.value
        let line = try await sink.waitForLine { $0.contains("\"baseline\"") }
        sink.waitUntilExit()
        struct BaselineLine: Decodable {
            var bytes: Double
            var seconds: Double
        }
        let parsed = try JSONDecoder().decode(BaselineLine.self, from: Data(line.utf8))
        return parsed.seconds > 0 ? parsed.bytes / parsed.seconds / 1e6 : 0
    }

    /// Listens on 127.0.0.1 (port 0: any free port) and returns the socket and its port.
    static func listen(port: UInt16 = 0) throws -> (Int32, UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw RawTCPError("socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = loopback(port: port)
        let bound = withSocketAddress(&address) { bind(fd, $0, $1) }
        guard bound == 0, Glibc.listen(fd, listenBacklog) == 0 else {
            close(fd)
            throw RawTCPError("bind/listen on port \(port): \(String(cString: strerror(errno)))")
        }
        _ = withSocketAddress(&address) { pointer, length in
            var length = length
            return getsockname(fd, pointer, &length)
        }
        return (fd, UInt16(bigEndian: address.sin_port))
    }

    /// A free loopback port (bound, then released: another process may take it, rarely).
    static func freePort() throws -> Int {
        let (fd, port) = try listen()
        close(fd)
        return Int(port)
    }

    static func connect(port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = loopback(port: port)
        let connected = withSocketAddress(&address) { Glibc.connect(fd, $0, $1) }
        guard fd >= 0, connected == 0 else {
            throw RawTCPError("connect to port \(port): \(String(cString: strerror(errno)))")
        }
        return fd
    }

    /// 127.0.0.1:`port`.
    private static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }

    /// Calls `body` with `address` as the generic socket address the socket calls take.
    private static func withSocketAddress<T>(
        _ address: inout sockaddr_in, _ body: (UnsafeMutablePointer<sockaddr>, socklen_t) -> T
    ) -> T {
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }

    /// Writes 1 MiB chunks to `fd` for `seconds`, then closes it.
    static func stream(to fd: Int32, seconds: Double) {
        let chunk = [UInt8](repeating: 0xA5, count: chunkBytes)
        let end = ContinuousClock.now + .milliseconds(Int64(seconds * 1_000))
        chunk.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            while ContinuousClock.now < end {
                var offset = 0
                while offset < raw.count {
                    let written = write(fd, base + offset, raw.count - offset)
                    if written <= 0 { return }
                    offset += written
                }
            }
        }
        close(fd)
    }
}

struct RawTCPError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
