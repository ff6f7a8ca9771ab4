// The log's view of a file system: a directory of segment files, each written at offsets,
// synced, preallocated and truncated. `PosixLogDirectory` is the real one; the simulator's
// `SimulatedLogDirectory` keeps unsynced writes apart so that a crash can lose or tear them.

/// A directory of segment files.
public protocol LogDirectory: AnyObject {
    /// The names of the files in the directory, sorted.
    func fileNames() throws(StorageError) -> [String]
    /// Opens `name`, creating it (empty) when `create` says so and it is missing.
    func open(_ name: String, create: Bool) throws(StorageError) -> any LogFile
    func remove(_ name: String) throws(StorageError)
    /// Makes the directory's entries (new and removed files) durable.
    func sync() throws(StorageError)
}

/// One segment file.
public protocol LogFile: AnyObject {
    /// The file's length in bytes, preallocated space included.
    func length() throws(StorageError) -> Int
    func read(at offset: Int, count: Int) throws(StorageError) -> [UInt8]
    func write(_ bytes: [UInt8], at offset: Int) throws(StorageError)
    /// Reserves `length` bytes on the device (reading as zeros): `diskFull` when it cannot.
    func allocate(length: Int) throws(StorageError)
    func truncate(length: Int) throws(StorageError)
    /// Makes what was written durable (fdatasync).
    func sync() throws(StorageError)
    func close()
}
