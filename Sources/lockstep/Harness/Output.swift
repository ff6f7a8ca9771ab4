// Unbuffered line output, so progress lines appear at once even when stdout is a pipe
// (print() is fully buffered then).

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

enum Output {
    static func line(_ text: String) {
        write(fileDescriptor: 1, text + "\n")
    }

    static func error(_ text: String) {
        write(fileDescriptor: 2, text + "\n")
    }

    private static func write(fileDescriptor: Int32, _ text: String) {
        var text = text
        text.withUTF8 { buffer in
            guard let base = buffer.baseAddress else { return }
            var offset = 0
            while offset < buffer.count {
                let written = systemWrite(fileDescriptor, base + offset, buffer.count - offset)
                // The reader went away (EPIPE) or stdout is closed: there is no one to tell.
                if written <= 0 { return }
                offset += written
            }
        }
    }
}

#if canImport(Glibc)
    private let systemWrite = Glibc.write
#elseif canImport(Darwin)
    private let systemWrite = Darwin.write
#endif

enum System {
    /// Online processors, at least 1.
    static var coreCount: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}
