// Runs an async function to its end on the calling thread. LocalGroup is synchronous (the
// simulator is a loop on the test's thread), while a machine's `writeSnapshot` and `restore`
// are async because a runtime streams them over a connection. In the simulator they write to
// and read from memory (`MemorySnapshot`), so they never wait on anything: run on an executor
// of our own that runs each job inline, they finish before this returns. Blocking the thread on
// a Task instead would need a second thread, and deadlocks a cooperative pool whose threads all
// run such tests. A snapshot that does truly wait (on an actor, a sleep, a file) is not
// supported here: it is reported as an error, never waited for.

import Synchronization

/// A task executor that queues jobs for `runQueued` to run on the calling thread.
private final class InlineExecutor: TaskExecutor, Sendable {
    private let jobs = Mutex<[UnownedJob]>([])

    func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        jobs.withLock { $0.append(unowned) }
    }

    func runQueued() {
        while let job = jobs.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) {
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

/// Where the task leaves its result (a class: a `Mutex` cannot be captured itself).
private final class Outcome<T: Sendable>: Sendable {
    let result = Mutex<Result<T, any Error>?>(nil)
}

/// Why `runToCompletion` has no result.
struct SuspendedError: Error, CustomStringConvertible {
    var description: String {
        "it waited on something outside the simulation (an actor, a sleep, IO): a LocalGroup snapshot must not"
    }
}

/// Runs `body` to its end now; fails if it suspended on anything but its own inline jobs.
func runToCompletion<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) -> Result<T, any Error> {
    let executor = InlineExecutor()
    let outcome = Outcome<T>()
    Task(executorPreference: executor) {
        let result: Result<T, any Error>
        do { result = .success(try await body()) } catch { result = .failure(error) }
        outcome.result.withLock { $0 = result }
    }
    executor.runQueued()
    return outcome.result.withLock { $0 } ?? .failure(SuspendedError())
}
