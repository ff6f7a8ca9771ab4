// Identifiers and time for the sans-IO core. Time is an input (a `Timestamp` handed in with
// `tick`), never read from a clock here, so the simulator can drive the same code with a
// virtual clock.

/// A member's identity, stable across views (a restarted process gets a new one).
public struct MemberID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public static func < (a: MemberID, b: MemberID) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "m\(rawValue)" }
}

/// A view's number. Views are totally ordered epochs of membership; every data batch and every
/// row carries the view id it belongs to, so traffic from another view is recognised.
public struct ViewID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public static func < (a: ViewID, b: ViewID) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "v\(rawValue)" }
}

/// A point on a monotonic clock, in nanoseconds since an arbitrary origin chosen by the shell.
public struct Timestamp: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var nanoseconds: UInt64
    public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }
    public static let zero = Timestamp(nanoseconds: 0)
    public static func < (a: Timestamp, b: Timestamp) -> Bool { a.nanoseconds < b.nanoseconds }
    public var description: String { "t\(nanoseconds)ns" }

    /// `self + duration`, saturating instead of trapping (a duration far in the future is "never").
    public func adding(_ duration: Duration) -> Timestamp {
        let (addedNanoseconds, overflow) = nanoseconds.addingReportingOverflow(duration.nanosecondsClamped)
        return Timestamp(nanoseconds: overflow ? UInt64.max : addedNanoseconds)
    }
}

extension Duration {
    /// The duration in whole nanoseconds, clamped to `0...UInt64.max`.
    public var nanosecondsClamped: UInt64 {
        let (seconds, attoseconds) = components
        if seconds < 0 { return 0 }
        let (wholeNanoseconds, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return UInt64.max }
        let (total, overflow2) = wholeNanoseconds.addingReportingOverflow(UInt64(attoseconds / 1_000_000_000))
        return overflow2 ? UInt64.max : total
    }
}
