// Time as the harness measures it: elapsed seconds on the continuous clock, and CLOCK_MONOTONIC
// nanoseconds (the clock the members' reports use).

#if canImport(Glibc)
    import Glibc
#endif

extension Duration {
    /// This duration in seconds.
    var inSeconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// Seconds since it was made.
struct Stopwatch {
    let start = ContinuousClock.now

    var elapsedSeconds: Double { (ContinuousClock.now - start).inSeconds }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock NIODeadline uses, shared by every process here.
func monotonicNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}
