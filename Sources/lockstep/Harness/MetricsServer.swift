// `lockstep node --metrics-port`: the member's metrics (RuntimeMetrics, through swift-metrics)
// in Prometheus's text format, over a minimal HTTP/1.1 server on NIO: GET /metrics answers, any
// other path is 404. One registry per process; the member's runtime gets its factory.

import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus

final class MetricsServer: Sendable {
    let registry: PrometheusCollectorRegistry
    private let channel: Channel

    private init(channel: Channel, registry: PrometheusCollectorRegistry) {
        self.channel = channel
        self.registry = registry
    }

    var factory: PrometheusMetricsFactory { PrometheusMetricsFactory(registry: registry) }
    var port: Int { channel.localAddress?.port ?? 0 }

    /// Listens on `host:port` (port 0: any free port; see `port`).
    static func start(host: String, port: Int, group: EventLoopGroup) async throws -> MetricsServer {
        let registry = PrometheusCollectorRegistry()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMapThrowing {
                    try channel.pipeline.syncOperations.addHandler(MetricsHandler(registry: registry))
                }
            }
            .bind(host: host, port: port).get()
        return MetricsServer(channel: channel, registry: registry)
    }

    func close() async { try? await channel.close() }
}

/// Answers GET /metrics with the registry's text; used on one channel's event loop.
private final class MetricsHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    private let registry: PrometheusCollectorRegistry
    private var path = ""
    private var keepAlive = true

    init(registry: PrometheusCollectorRegistry) { self.registry = registry }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            path = head.uri
            keepAlive = head.isKeepAlive
        case .body: break
        case .end:
            let found = path == "/metrics" || path.hasPrefix("/metrics?")
            var body = context.channel.allocator.buffer(capacity: 4_096)
            if found { body.writeBytes(registry.emitToBuffer()) } else { body.writeString("not found: try /metrics\n") }
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: found ? "text/plain; version=0.0.4" : "text/plain")
            headers.add(name: "Content-Length", value: "\(body.readableBytes)")
            let head = HTTPResponseHead(version: .http1_1, status: found ? .ok : .notFound, headers: headers)
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            let keepAlive = self.keepAlive
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
                if !keepAlive { channel.close(promise: nil) }
            }
        }
    }
}
