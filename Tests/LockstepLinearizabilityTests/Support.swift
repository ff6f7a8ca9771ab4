// Helpers shared by the tests: compact constructors and a seeded generator of
// histories that are linearizable by construction.

@testable import LockstepLinearizability

func op(_ client: Int, _ input: KVInput, _ call: UInt64, _ returned: UInt64?, _ output: KVOutput?) -> Operation {
    Operation(client: client, input: input, call: call, returned: returned, output: output)
}

func put(_ client: Int, _ key: String, _ value: String, _ call: UInt64, _ returned: UInt64?) -> Operation {
    op(client, .put(key: key, value: value), call, returned, returned == nil ? nil : .ok)
}

func get(_ client: Int, _ key: String, _ value: String?, _ call: UInt64, _ returned: UInt64) -> Operation {
    op(client, .get(key: key), call, returned, .value(value))
}

/// SplitMix64: tiny, seedable, good enough for test generation.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}

struct HistoryShape {
    var operationCount: Int
    var keys: [String]
    var clients: Int
    /// Chance that a write gets no answer (it then takes effect or not, 50/50).
    var pendingProbability: Double = 0.05
    var gapMax: UInt64 = 20
    var halfDurationMax: UInt64 = 30
}

/// Generates a history by running every operation against a true atomic map
/// at a random instant inside its [call, return] interval, so it is
/// linearizable by construction. Each client issues operations one at a time;
/// the client that is free earliest goes next, so up to `clients` operations
/// overlap. Every written value is unique.
func generateHistory(_ shape: HistoryShape, rng: inout SeededGenerator) -> [Operation] {
    struct Planned {
        var operation: Operation
        var linearizationPoint: UInt64
        var takesEffect: Bool
    }
    var clientFreeAt = Array(repeating: UInt64(0), count: shape.clients)
    var writtenValues: [String: [String]] = [:]
    var planned: [Planned] = []
    var valueCounter = 0
    for _ in 0..<shape.operationCount {
        let client = clientFreeAt.indices.min { clientFreeAt[$0] < clientFreeAt[$1] } ?? 0
        let call = clientFreeAt[client] + UInt64.random(in: 0...shape.gapMax, using: &rng)
        let point = call + UInt64.random(in: 0...shape.halfDurationMax, using: &rng)
        let returned = point + UInt64.random(in: 0...shape.halfDurationMax, using: &rng)
        let key = shape.keys.randomElement(using: &rng) ?? "k"
        let input: KVInput
        let roll = Double.random(in: 0..<1, using: &rng)
        if roll < 0.4 {
            input = .get(key: key)
        } else if roll < 0.7 {
            valueCounter += 1
            input = .put(key: key, value: "v\(valueCounter)")
        } else if roll < 0.85 {
            valueCounter += 1
            // Expect a recent value (or absent) so that swaps do succeed.
            let recent = writtenValues[key, default: []].suffix(3)
            let expected: String? = Bool.random(using: &rng) ? recent.randomElement(using: &rng) : nil
            input = .compareAndSet(key: key, expected: expected, new: "v\(valueCounter)")
        } else {
            input = .delete(key: key)
        }
        if case .put(_, let value) = input { writtenValues[key, default: []].append(value) }
        if case .compareAndSet(_, _, let value) = input { writtenValues[key, default: []].append(value) }
        let isWrite: Bool
        if case .get = input { isWrite = false } else { isWrite = true }
        let pending = isWrite && Double.random(in: 0..<1, using: &rng) < shape.pendingProbability
        let takesEffect = !pending || Bool.random(using: &rng)
        planned.append(
            Planned(
                operation: Operation(
                    client: client, input: input, call: call, returned: pending ? nil : returned, output: nil),
                linearizationPoint: point,
                takesEffect: takesEffect))
        // A client whose request got no answer moves on (as a restarted
        // client would) without waiting for it.
        clientFreeAt[client] = (pending ? point : returned) + 1
    }
    let order = planned.indices.sorted {
        planned[$0].linearizationPoint != planned[$1].linearizationPoint
            ? planned[$0].linearizationPoint < planned[$1].linearizationPoint : $0 < $1
    }
    var store: [String: String] = [:]
    for index in order where planned[index].takesEffect {
        let output: KVOutput
        switch planned[index].operation.input {
        case .put(let key, let value):
            store[key] = value
            output = .ok
        case .get(let key):
            output = .value(store[key])
        case .delete(let key):
            store[key] = nil
            output = .ok
        case .compareAndSet(let key, let expected, let new):
            let swaps = store[key] == expected
            if swaps { store[key] = new }
            output = .swapped(swaps)
        }
        if planned[index].operation.returned != nil {
            planned[index].operation.output = output
        }
    }
    return planned.map(\.operation)
}
