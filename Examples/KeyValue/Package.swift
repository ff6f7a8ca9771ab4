// swift-tools-version:6.2
//
// A replicated key-value store over HTTP: the Lockstep embedding API as a service uses it. Its own
// package, so the library never depends on Hummingbird or AsyncHTTPClient.
import PackageDescription

let strictSwift: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "KeyValue",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "KeyValueStore", targets: ["KeyValueStore"]),
        .executable(name: "kv-server", targets: ["kv-server"]),
        .executable(name: "kv-load", targets: ["kv-load"]),
        .executable(name: "kv-check", targets: ["kv-check"]),
    ],
    dependencies: [
        .package(name: "lockstep", path: "../.."),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // The state machine: a value, no IO (what every member applies in the total order).
        .target(
            name: "KeyValueStore",
            dependencies: [.product(name: "Lockstep", package: "lockstep")],
            swiftSettings: strictSwift
        ),
        // A member: the ReplicatedGroup and the HTTP API in one ServiceGroup.
        .executableTarget(
            name: "kv-server",
            dependencies: [
                "KeyValueStore",
                .product(name: "Lockstep", package: "lockstep"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),
        // The load generator (and its in-process raw baseline), with a history for the checker.
        .executableTarget(
            name: "kv-load",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),
        // The linearizability checker over a kv-load history.
        .executableTarget(
            name: "kv-check",
            dependencies: [
                .product(name: "LockstepLinearizability", package: "lockstep"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSwift
        ),
    ]
)
