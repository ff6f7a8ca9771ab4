// The HTTP API over a member's ReplicatedGroup: each route is one submit or one read, and every
// GroupError becomes the HTTP status a client can act on (retry elsewhere, back off, fix the call).

import Foundation
import Hummingbird
import KeyValueStore
import Lockstep

struct KeyValueAPI: Sendable {
    let group: ReplicatedGroup<KeyValueStore>
    /// Largest PUT body, in bytes.
    let valueBytesMax: Int

    /// The body of `POST /kv/{key}/cas`.
    struct CompareAndSetRequest: Decodable {
        /// nil (JSON null or absent): swap only when the key is absent.
        var expected: String?
        var new: String
    }

    func register(on router: Router<BasicRequestContext>) {
        router.put("/kv/:key") { request, context in try await put(request, context) }
        router.get("/kv/:key") { request, context in try await get(request, context) }
        router.delete("/kv/:key") { _, context in
            let key = try context.parameters.require("key")
            return await submit(.delete(key: key))
        }
        router.post("/kv/:key/cas") { request, context in try await compareAndSet(request, context) }
    }

    func put(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let key = try context.parameters.require("key")
        var body = try await request.body.collect(upTo: valueBytesMax)
        let value = body.readString(length: body.readableBytes) ?? ""
        return await submit(.put(key: key, value: value))
    }

    func get(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let key = try context.parameters.require("key")
        let consistency: ReadConsistency
        switch request.uri.queryParameters.get("consistency") ?? "linearizable" {
        case "linearizable": consistency = .linearizable
        case "local": consistency = .local
        case let other: return Self.text(.badRequest, "consistency must be linearizable or local, not \(other)")
        }
        do {
            guard let value = try await group.state(consistency)[key] else { return Response(status: .notFound) }
            return Self.text(.ok, value)
        } catch {
            return Self.response(for: error)
        }
    }

    func compareAndSet(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let key = try context.parameters.require("key")
        let body: CompareAndSetRequest
        do {
            body = try await request.decode(as: CompareAndSetRequest.self, context: context)
        } catch {
            return Self.text(.badRequest, "expected {\"expected\": string or null, \"new\": string}")
        }
        return await submit(.compareAndSet(key: key, expected: body.expected, new: body.new))
    }

    /// Submits and waits until this member has applied the command (then every member has it at
    /// the same position, and it survives what a majority survives).
    func submit(_ command: KeyValueStore.Command) async -> Response {
        do {
            switch try await group.submit(command).response {
            case .ok: return Response(status: .noContent)
            case .swapped(let swapped):
                return Response(
                    status: .ok, headers: [.contentType: "application/json"],
                    body: ResponseBody(byteBuffer: ByteBuffer(string: "{\"swapped\":\(swapped)}")))
            }
        } catch {
            return Self.response(for: error)
        }
    }

    /// What each failure tells the client. 503: try another member or later (a write that timed
    /// out or met a minority may still be applied); 429: back off; 4xx: the call itself is wrong.
    static func response(for error: GroupError) -> Response {
        switch error.code {
        case .minority, .timedOut, .removed, .closed, .joinFailed, .startFailed, .storageFailed:
            return text(.serviceUnavailable, error.description)
        case .sendQueueFull:
            return text(.tooManyRequests, error.description)
        case .invalidConfiguration, .commandRefused:
            return text(.badRequest, error.description)
        case .commandTooLarge:
            return text(.contentTooLarge, error.description)
        }
    }

    static func text(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(
            status: status, headers: [.contentType: "text/plain; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}
