// A disk in memory for the simulator and the storage tests: what was written but not synced is
// kept apart, so that a crash can lose it or tear it (the last sector written in part), and an
// old byte can be flipped, a capacity filled, a crash injected at any call.

/// A simulated directory with the faults a real disk has.
public final class SimulatedLogDirectory: LogDirectory {
    /// The size of the unit a crash tears writes at (a sector).
    public static let sectorBytes = 512

    final class File {
        /// What a crash keeps.
        var durable: [UInt8] = []
        /// What reads see.
        var current: [UInt8] = []
        /// Writes since the last sync, in order (a crash keeps any of them, whole or torn).
        var unsynced: [(offset: Int, bytes: [UInt8])] = []
    }

    /// The files as reads see them, and the names a crash keeps (synced directory entries).
    private var files: [String: File] = [:]
    private var durableNames: Set<String> = []
    /// Allocated bytes may not exceed this (a full disk); nil: no limit.
    public var capacityBytes: Int?
    /// Calls that touch the disk before the injected crash; nil: none injected.
    public var callsBeforeCrash: Int?
    public private(set) var crashed = false
    public private(set) var syncs = 0

    public init() {}

    public var allocatedBytes: Int { files.values.reduce(0) { $0 + $1.current.count } }

    /// Counts a call toward the injected crash; throws once it is reached (and after).
    func touch() throws(StorageError) {
        if crashed { throw StorageError(.io, "simulated crash") }
        guard let calls = callsBeforeCrash else { return }
        if calls == 0 {
            crashed = true
            throw StorageError(.io, "simulated crash")
        }
        callsBeforeCrash = calls - 1
    }

    /// The machine loses power: every unsynced write is kept whole, torn at a sector or lost, at
    /// random; directory entries not synced vanish. Afterwards the disk works again.
    public func crash(using random: inout some RandomNumberGenerator) {
        for name in files.keys where !durableNames.contains(name) {
            if Bool.random(using: &random) { files[name] = nil }
        }
        for name in durableNames where files[name] == nil { files[name] = File() }
        for file in files.values {
            var kept = file.durable
            for write in file.unsynced {
                switch Int.random(in: 0..<3, using: &random) {
                case 0: continue
                case 1: apply(write.bytes, at: write.offset, to: &kept)
                default:
                    let sectors = (write.bytes.count + Self.sectorBytes - 1) / Self.sectorBytes
                    let keptSectors = Int.random(in: 0...sectors, using: &random)
                    apply(Array(write.bytes.prefix(keptSectors * Self.sectorBytes)), at: write.offset, to: &kept)
                }
            }
            if kept.count < file.current.count { kept += [UInt8](repeating: 0, count: file.current.count - kept.count) }
            file.durable = kept
            file.current = kept
            file.unsynced = []
        }
        durableNames = Set(files.keys)
        crashed = false
        callsBeforeCrash = nil
    }

    /// Flips one bit of what is durable (bit rot): `file` and `byte` as the caller found them.
    public func flipBit(in name: String, byte: Int, bit: Int) {
        guard let file = files[name], byte < file.current.count else { return }
        file.current[byte] ^= UInt8(1 << bit)
        if byte < file.durable.count { file.durable[byte] ^= UInt8(1 << bit) }
    }

    public func fileNames() throws(StorageError) -> [String] { files.keys.sorted() }

    public func open(_ name: String, create: Bool) throws(StorageError) -> any LogFile {
        try touch()
        if let file = files[name] { return SimulatedLogFile(directory: self, file: file, name: name) }
        guard create else { throw StorageError(.io, "no file \(name)") }
        let file = File()
        files[name] = file
        return SimulatedLogFile(directory: self, file: file, name: name)
    }

    public func remove(_ name: String) throws(StorageError) {
        try touch()
        files[name] = nil
    }

    public func sync() throws(StorageError) {
        try touch()
        durableNames = Set(files.keys)
    }

    func countSync() { syncs += 1 }

    func fits(growingBy bytes: Int) -> Bool { capacityBytes.map { allocatedBytes + bytes <= $0 } ?? true }
}

func apply(_ bytes: [UInt8], at offset: Int, to target: inout [UInt8]) {
    if target.count < offset + bytes.count {
        target += [UInt8](repeating: 0, count: offset + bytes.count - target.count)
    }
    target.replaceSubrange(offset..<offset + bytes.count, with: bytes)
}

final class SimulatedLogFile: LogFile {
    private let directory: SimulatedLogDirectory
    private let file: SimulatedLogDirectory.File
    private let name: String

    init(directory: SimulatedLogDirectory, file: SimulatedLogDirectory.File, name: String) {
        self.directory = directory
        self.file = file
        self.name = name
    }

    func length() throws(StorageError) -> Int { file.current.count }

    func read(at offset: Int, count: Int) throws(StorageError) -> [UInt8] {
        try directory.touch()
        let end = min(offset + count, file.current.count)
        let bytes = offset < end ? Array(file.current[offset..<end]) : []
        return bytes + [UInt8](repeating: 0, count: count - bytes.count)
    }

    func write(_ bytes: [UInt8], at offset: Int) throws(StorageError) {
        try directory.touch()
        let growth = max(0, offset + bytes.count - file.current.count)
        guard directory.fits(growingBy: growth) else { throw StorageError(.diskFull, "simulated disk full: \(name)") }
        apply(bytes, at: offset, to: &file.current)
        file.unsynced.append((offset, bytes))
    }

    func allocate(length: Int) throws(StorageError) {
        try directory.touch()
        let growth = max(0, length - file.current.count)
        guard directory.fits(growingBy: growth) else {
            throw StorageError(.diskFull, "simulated disk full: cannot preallocate \(length) bytes for \(name)")
        }
        // Allocation is metadata: durable at once here (zeros either way).
        file.current += [UInt8](repeating: 0, count: growth)
        file.durable += [UInt8](repeating: 0, count: max(0, length - file.durable.count))
    }

    func truncate(length: Int) throws(StorageError) {
        try directory.touch()
        if file.current.count > length { file.current.removeSubrange(length...) }
        if file.durable.count > length { file.durable.removeSubrange(length...) }
        file.unsynced = file.unsynced.compactMap { write in
            write.offset >= length ? nil : (write.offset, Array(write.bytes.prefix(length - write.offset)))
        }
    }

    func sync() throws(StorageError) {
        try directory.touch()
        file.durable = file.current
        file.unsynced = []
        directory.countSync()
    }

    func close() {}
}
