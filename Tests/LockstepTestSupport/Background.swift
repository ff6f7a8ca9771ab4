// CPU-bound test work (batches of simulated schedules, long checker searches) runs here: on
// threads of its own, at most two at once, at a lower priority. On the cooperative pool (as
// wide as the machine: two threads here) a few such batches held every thread for a minute, and
// the in-process members beside them, whose tests await on that pool, were starved into false
// suspicions and missed deadlines (CI, issue 13: four timing tests failed on a slower machine).

import Foundation

/// How many CPU-bound batches run at once, whatever the number of tests that ask.
private let batchSlots = DispatchSemaphore(value: 2)

/// The niceness of a batch's thread: below the members, the processes and the pool, so that
/// what is timed gets the CPU first and the batches take what is left.
private let batchNiceness: Int32 = 5

/// Runs `work` on a thread of its own at a lower priority and returns its result; the caller's
/// task waits without holding a thread of the pool. `work` must not record issues (`#expect`
/// needs the test's task): return what the test checks.
public func runBatch<Result: Sendable>(_ work: @escaping @Sendable () -> Result) async -> Result {
    await withCheckedContinuation { continuation in
        let thread = Thread {
            batchSlots.wait()
            defer { batchSlots.signal() }
            // On Linux a nice value belongs to a thread, and 0 names the calling one: this lowers
            // this thread only.
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, batchNiceness)
            continuation.resume(returning: work())
        }
        // The simulator recurses no deeper than the cooperative pool allows, but give it room.
        thread.stackSize = 16 << 20
        thread.start()
    }
}
