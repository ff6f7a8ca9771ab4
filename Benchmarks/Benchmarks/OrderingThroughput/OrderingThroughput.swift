// Messages ordered and delivered per second by the cores of 3 members, all sending 64-byte
// messages, exchanging through zero-cost in-memory links, driven from one thread; and
// allocations per delivered message.
//
// One benchmark iteration is one delivered message (counted at every member: 3 members
// delivering one message each is 3 iterations), so "throughput" reads directly as deliveries
// per second in total and mallocCountTotal / iterations is allocations per delivery.

import Benchmark
import LockstepCore

/// Three members wired back to back: a batch one member emits is handed to the other two at once.
struct ZeroCostGroup {
    var cores: [OrderingCore]
    var effects: [Effect] = []
    let memberCount: Int

    init(memberCount: Int, window: Int) {
        var configuration = Configuration()
        configuration.windowMessagesMax = window
        let ids = (1...memberCount).map { MemberID(UInt64($0)) }
        do {
            let view = try View(id: ViewID(1), members: ids)
            cores = try ids.indices.map { try OrderingCore(configuration: configuration, view: view, memberRank: $0) }
        } catch {
            fatalError("benchmark setup: \(error)")
        }
        self.memberCount = memberCount
        effects.reserveCapacity(4 * window)
    }

    /// Runs rounds (every member sends what its window admits, polls, and its sends reach the
    /// others) until at least `deliveries` messages have been delivered in total. `makePayload`
    /// supplies each message.
    mutating func exchange(deliveries target: Int, makePayload: () -> Payload) -> Int {
        var delivered = 0
        while delivered < target {
            for rank in 0..<memberCount {
                let capacity = cores[rank].sendCapacity
                for _ in 0..<capacity {
                    do { try cores[rank].send(makePayload()) } catch { fatalError("send: \(error)") }
                }
                effects.removeAll(keepingCapacity: true)
                cores[rank].poll(into: &effects)
                for effect in effects {
                    switch effect {
                    case .sendData(let batch):
                        for to in 0..<memberCount where to != rank {
                            do { try cores[to].receive(.data(batch), fromMemberRank: rank) } catch {
                                fatalError("\(error)")
                            }
                        }
                    case .sendRow(let row):
                        for to in 0..<memberCount where to != rank {
                            do { try cores[to].receive(.row(row), fromMemberRank: rank) } catch {
                                fatalError("\(error)")
                            }
                        }
                    case .deliver(let delivery):
                        blackHole(delivery.payload.count)
                        delivered += 1
                    case .armTimer, .wedged, .installView, .removed, .minority, .raggedTrim:
                        break
                    }
                }
            }
        }
        return delivered
    }
}

let sharedPayload: Payload = [UInt8](repeating: 0x5A, count: 64)[...]

let benchmarks: @Sendable () -> Void = {
    let metrics: [BenchmarkMetric] = [.throughput, .wallClock, .mallocCountTotal, .cpuTotal]
    Benchmark.defaultConfiguration = .init(
        metrics: metrics, timeUnits: .milliseconds, warmupIterations: 1, scalingFactor: .mega,
        maxDuration: .seconds(10), maxIterations: 10)

    // Raw baseline for the ratio: per delivery, only what any shell must do with no protocol at
    // all: append a deliver effect holding the payload to the effects buffer and read it back.
    Benchmark("baseline: effects buffer round trip, no protocol") { benchmark in
        var effects: [Effect] = []
        effects.reserveCapacity(4_096)
        var delivered = 0
        let target = benchmark.scaledIterations.count
        benchmark.startMeasurement()
        while delivered < target {
            effects.removeAll(keepingCapacity: true)
            for k in 0..<1_024 {
                effects.append(
                    .deliver(
                        Delivery(
                            viewID: ViewID(1), sender: MemberID(1), senderRank: 0, index: UInt64(k),
                            globalSequence: UInt64(k), payload: sharedPayload)))
            }
            for effect in effects {
                if case .deliver(let delivery) = effect {
                    blackHole(delivery.payload.count)
                    delivered += 1
                }
            }
        }
        benchmark.stopMeasurement()
    }

    // The core's own cost: the application hands the same 64-byte buffer every time.
    Benchmark("3 members, all send, 64 B, window 1024: core only") { benchmark in
        var group = ZeroCostGroup(memberCount: 3, window: 1_024)
        benchmark.startMeasurement()
        let delivered = group.exchange(deliveries: benchmark.scaledIterations.count) { sharedPayload }
        benchmark.stopMeasurement()
        blackHole(delivered)
    }

    // The same with a fresh 64-byte payload allocated per message, as an application would.
    Benchmark("3 members, all send, 64 B, window 1024: fresh payload per message") { benchmark in
        var group = ZeroCostGroup(memberCount: 3, window: 1_024)
        var counter: UInt8 = 0
        benchmark.startMeasurement()
        let delivered = group.exchange(deliveries: benchmark.scaledIterations.count) {
            counter &+= 1
            return [UInt8](repeating: counter, count: 64)[...]
        }
        benchmark.stopMeasurement()
        blackHole(delivered)
    }

    Benchmark("3 members, all send, 64 B, window 64: core only") { benchmark in
        var group = ZeroCostGroup(memberCount: 3, window: 64)
        benchmark.startMeasurement()
        let delivered = group.exchange(deliveries: benchmark.scaledIterations.count) { sharedPayload }
        benchmark.stopMeasurement()
        blackHole(delivered)
    }
}
