/// The limits of a member's log.
public struct LogSettings: Sendable, Equatable {
    /// Each segment is preallocated to this size; a record never spans two.
    public var segmentBytes = 64 * 1_024 * 1_024
    /// The longest record body; recovery takes a longer length for damage.
    public var recordBytesMax = 16 * 1_024 * 1_024
    /// Appends not yet on disk, at most (beyond it `append` answers `backPressure`).
    public var pendingBytesMax = 64 * 1_024 * 1_024

    public init() {}

    /// Why these limits cannot work together, if they cannot.
    public func validate() throws(StorageError) {
        let overhead = LogFormat.segmentHeaderBytes + LogFormat.recordHeaderBytes * 2 + LogFormat.commitBodyBytes
        guard recordBytesMax > 0, segmentBytes >= recordBytesMax + overhead else {
            throw StorageError(
                .invalidSettings,
                "segmentBytes (\(segmentBytes)) must hold a record of recordBytesMax (\(recordBytesMax)) "
                    + "and a commit (\(overhead) bytes)")
        }
        guard pendingBytesMax >= recordBytesMax else {
            throw StorageError(.invalidSettings, "pendingBytesMax (\(pendingBytesMax)) must be at least recordBytesMax")
        }
    }
}
