// The real file system under the log: pwrite, fdatasync, posix_fallocate.

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A directory on a real file system (created when missing).
public final class PosixLogDirectory: LogDirectory {
    public let path: String
    private let descriptor: Int32

    public init(path: String) throws(StorageError) {
        if mkdir(path, 0o755) != 0, errno != EEXIST {
            throw StorageError(.io, "cannot create the data directory \(path): \(errorText())")
        }
        let descriptor = Glibc.open(path, O_RDONLY | O_DIRECTORY)
        guard descriptor >= 0 else { throw StorageError(.io, "cannot open the data directory \(path): \(errorText())") }
        self.path = path
        self.descriptor = descriptor
    }

    deinit { _ = Glibc.close(descriptor) }

    public func fileNames() throws(StorageError) -> [String] {
        guard let stream = opendir(path) else { throw StorageError(.io, "cannot list \(path): \(errorText())") }
        defer { closedir(stream) }
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != ".", name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    public func open(_ name: String, create: Bool) throws(StorageError) -> any LogFile {
        let flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0)
        let descriptor = Glibc.open("\(path)/\(name)", flags, 0o644)
        guard descriptor >= 0 else { throw StorageError(.io, "cannot open \(path)/\(name): \(errorText())") }
        return PosixLogFile(descriptor: descriptor, path: "\(path)/\(name)")
    }

    public func remove(_ name: String) throws(StorageError) {
        guard unlink("\(path)/\(name)") == 0 || errno == ENOENT else {
            throw StorageError(.io, "cannot remove \(path)/\(name): \(errorText())")
        }
    }

    public func sync() throws(StorageError) {
        guard fsync(descriptor) == 0 else { throw StorageError(.io, "cannot sync \(path): \(errorText())") }
    }
}

final class PosixLogFile: LogFile {
    private let descriptor: Int32
    private let path: String
    private var closed = false

    init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    deinit { close() }

    func length() throws(StorageError) -> Int {
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw failure("stat") }
        return Int(status.st_size)
    }

    func read(at offset: Int, count: Int) throws(StorageError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let got = bytes.withUnsafeMutableBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return pread(descriptor, base + done, count - done, off_t(offset + done))
            }
            if got < 0, errno == EINTR { continue }
            guard got >= 0 else { throw failure("read") }
            if got == 0 { break }  // end of file: the rest reads as zeros
            done += got
        }
        return bytes
    }

    func write(_ bytes: [UInt8], at offset: Int) throws(StorageError) {
        var done = 0
        while done < bytes.count {
            let put = bytes.withUnsafeBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return pwrite(descriptor, base + done, bytes.count - done, off_t(offset + done))
            }
            if put < 0, errno == EINTR { continue }
            guard put > 0 else { throw failure("write") }
            done += put
        }
    }

    func allocate(length: Int) throws(StorageError) {
        let result = posix_fallocate(descriptor, 0, off_t(length))
        guard result == 0 else {
            errno = result
            throw failure("preallocate \(length) bytes for")
        }
    }

    func truncate(length: Int) throws(StorageError) {
        guard ftruncate(descriptor, off_t(length)) == 0 else { throw failure("truncate") }
    }

    func sync() throws(StorageError) {
        guard fdatasync(descriptor) == 0 else { throw failure("sync") }
    }

    func close() {
        guard !closed else { return }
        closed = true
        _ = Glibc.close(descriptor)
    }

    private func failure(_ what: String) -> StorageError {
        let code: StorageError.Code = errno == ENOSPC || errno == EDQUOT ? .diskFull : .io
        return StorageError(code, "cannot \(what) \(path): \(errorText())")
    }
}

func errorText() -> String { String(cString: strerror(errno)) }
