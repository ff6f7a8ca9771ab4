// The raw baseline of `lockstep bench`: one plain TCP stream between two processes on
// loopback with large writes, like iperf3. Plain POSIX sockets, nothing of Lockstep in the way.

import ArgumentParser
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

enum RawTCP {
    static let chunkBytes = 1 << 20

    /// Listens on 127.0.0.1 (port 0: any free port) and returns the socket and its port.
    static func listen(port: UInt16 = 0) throws -> (Int32, UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw RawTCPError("socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, Glibc.listen(fd, 16) == 0 else {
            close(fd)
            throw RawTCPError("bind/listen on port \(port): \(String(cString: strerror(errno)))")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
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
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard fd >= 0, connected == 0 else { throw RawTCPError("connect to port \(port): \(String(cString: strerror(errno)))") }
        return fd
    }

    /// Writes 1 MiB chunks to `fd` for `seconds`, then closes it.
    static func stream(to fd: Int32, seconds: Double) {
        let chunk = [UInt8](repeating: 0xA5, count: chunkBytes)
        let end = ContinuousClock.now + .milliseconds(Int64(seconds * 1_000))
        chunk.withUnsafeBytes { raw in
            while ContinuousClock.now < end {
                var offset = 0
                while offset < raw.count {
                    let written = write(fd, raw.baseAddress! + offset, raw.count - offset)
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

/// Hidden helper process of the baseline: accepts one connection, reads to the end, prints
/// {"bytes":..,"seconds":..} measured from the first byte to the end.
struct RawTCPSink: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "raw-tcp-sink", abstract: "Baseline helper: read one TCP stream and report its rate.",
        shouldDisplay: false)

    @Option(help: "Port on 127.0.0.1 to listen on.")
    var port: Int

    func run() throws {
        guard (1...65_535).contains(port) else { throw ValidationError("--port must be in 1...65535") }
        let (listener, _) = try RawTCP.listen(port: UInt16(port))
        Output.line("{\"event\":\"listening\"}")
        let fd = accept(listener, nil, nil)
        guard fd >= 0 else { throw RawTCPError("accept: \(String(cString: strerror(errno)))") }
        var buffer = [UInt8](repeating: 0, count: RawTCP.chunkBytes)
        var total = 0
        var start: ContinuousClock.Instant?
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count <= 0 { break }
            if start == nil { start = .now }
            total += count
        }
        let elapsed = start.map { ContinuousClock.now - $0 } ?? .zero
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        Output.line("{\"event\":\"baseline\",\"bytes\":\(total),\"seconds\":\(seconds)}")
        close(fd)
        close(listener)
    }
}
