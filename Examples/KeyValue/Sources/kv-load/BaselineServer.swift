// The raw baseline: the same HTTP stack (Hummingbird, same routes) in this process, answering 204
// at once without replication, measured with the same clients in the same run. The gap between it
// and kv-server is what replication costs (plus the servers' share of the two cores).

import Hummingbird
import Logging
import ServiceLifecycle

enum BaselineServer {
    static func measure(plan: LoadPlan, port: Int) async throws -> LoadResult {
        let router = Router()
        router.put("/kv/:key") { _, _ in Response(status: .noContent) }
        router.get("/kv/:key") { _, _ in Response(status: .noContent) }
        router.delete("/kv/:key") { _, _ in Response(status: .noContent) }
        router.post("/kv/:key/cas") { _, _ in Response(status: .noContent) }
        var logger = Logger(label: "kv-load-baseline")
        logger.logLevel = .warning
        let (running, ready) = AsyncStream.makeStream(of: Void.self)
        let app = Application(
            router: router,
            configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: port)),
            onServerRunning: { _ in ready.yield() },
            logger: logger
        )
        let services = ServiceGroup(configuration: ServiceGroupConfiguration(services: [app], logger: logger))
        let server = Task {
            defer { ready.finish() }
            try await services.run()
        }
        var started = false
        for await _ in running {
            started = true
            break
        }
        guard started else {
            try await server.value  // the reason it stopped (the port is taken, say)
            throw BaselineError(message: "the baseline server on 127.0.0.1:\(port) stopped before it served")
        }
        var runner = LoadRunner(plan: plan, targets: ["http://127.0.0.1:\(port)"], recordHistory: false)
        runner.acceptNoContentForGet = true
        let result: LoadResult
        do {
            result = try await runner.run()
        } catch {
            await services.triggerGracefulShutdown()
            throw error
        }
        await services.triggerGracefulShutdown()
        try await server.value
        return result
    }
}

struct BaselineError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
