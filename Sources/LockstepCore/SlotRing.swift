// Per-sender storage for messages received but not yet released. Slots outside the live range
// are always `nil`, which is also how a null message is stored: a run of nulls costs no
// writes at all.

struct SlotRing: Sendable {
    private var slots: [Payload?]
    private let mask: UInt64

    /// A ring that can hold at least `capacity` consecutive indices.
    init(capacity: Int) {
        precondition(capacity >= 1, "ring capacity \(capacity) must be positive")
        var size = 1
        while size < capacity { size <<= 1 }
        slots = Array(repeating: nil, count: size)
        mask = UInt64(size - 1)
    }

    @inline(__always)
    subscript(index: UInt64) -> Payload? {
        get { slots[Int(truncatingIfNeeded: index & mask)] }
        set { slots[Int(truncatingIfNeeded: index & mask)] = newValue }
    }

    /// Returns the slot's content and empties it.
    @inline(__always)
    mutating func take(_ index: UInt64) -> Payload? {
        // swap moves the reference out: no retain/release pair per delivered message.
        var payload: Payload? = nil
        swap(&payload, &slots[Int(truncatingIfNeeded: index & mask)])
        return payload
    }
}
