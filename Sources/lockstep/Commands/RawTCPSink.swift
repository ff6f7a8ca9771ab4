// `lockstep raw-tcp-sink` (hidden): the receiving end of bench's raw TCP baseline.

import ArgumentParser

#if canImport(Glibc)
    import Glibc
#endif

/// Hidden helper process of the baseline: accepts one connection, reads to the end, prints
/// {"bytes":..,"seconds":..} measured from the first byte to the end.
struct RawTCPSink: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "raw-tcp-sink", abstract: "Baseline helper: read one TCP stream and report its rate.",
        shouldDisplay: false)

    static let portRange = 1...65_535

    @Option(help: "Port on 127.0.0.1 to listen on.")
    var port: Int

    func run() throws {
        guard Self.portRange.contains(port) else { throw ValidationError("--port must be in 1...65535") }
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
        let seconds = (start.map { ContinuousClock.now - $0 } ?? .zero).inSeconds
        Output.line("{\"event\":\"baseline\",\"bytes\":\(total),\"seconds\":\(seconds)}")
        close(fd)
        close(listener)
    }
}
