// swift-tools-version:6.2
//
// The module graph enforces the house rule "the protocol is a value, IO is a shell":
// `LockstepCore` depends on nothing at all (no Foundation, no NIO, no Dispatch), and everything
// else depends on it, never the reverse. `Tests/LockstepCoreTests/CoreImportsTests.swift` also
// fails the build's tests if a core source file ever imports anything.
import PackageDescription

let strictSwift: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
]

// The core and the simulator are optimized even in debug builds: `swift test` runs thousands of
// simulated schedules, which are about 10x slower unoptimized. Preconditions stay on with -O.
// Tools version 6.2 is what lets a package that depends on Lockstep by version accept this flag
// (6.0 refused it as an unsafe flag; CI's fixture package, tools/check-dependent, checks it).
let optimizedEvenInDebug: [SwiftSetting] = strictSwift + [
    .unsafeFlags(["-O"], .when(configuration: .debug)),
]

let package = Package(
    name: "Lockstep",
    platforms: [.macOS(.v15)],
    products: [
        // The embedding API: a replicated group of the user's own state machine.
        .library(name: "Lockstep", targets: ["Lockstep"]),
        // The user's state machine in the deterministic simulator, with faults.
        .library(name: "LockstepTesting", targets: ["LockstepTesting"]),
        // The raw multicast layer (what the benchmark drives), for those who want bytes.
        .library(name: "LockstepRuntime", targets: ["LockstepRuntime"]),
        .library(name: "LockstepCore", targets: ["LockstepCore"]),
        .library(name: "LockstepChecker", targets: ["LockstepChecker"]),
        .library(name: "LockstepLinearizability", targets: ["LockstepLinearizability"]),
        .library(name: "LockstepSimulator", targets: ["LockstepSimulator"]),
        .library(name: "LockstepWire", targets: ["LockstepWire"]),
        .library(name: "LockstepStorage", targets: ["LockstepStorage"]),
        .executable(name: "lockstep", targets: ["lockstep"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
    ],
    targets: [
        // Sans-IO protocol core: no dependencies, by design.
        .target(
            name: "LockstepCore",
            dependencies: [],
            swiftSettings: optimizedEvenInDebug
        ),
        // The wire format: framing and codec, pure (no IO), fuzzed.
        .target(
            name: "LockstepWire",
            dependencies: ["LockstepCore"],
            swiftSettings: optimizedEvenInDebug
        ),
        // The thin C shell under the RDMA transport: libibverbs and librdmacm loaded at run time
        // (dlopen), built against their headers when present (libibverbs-dev, librdmacm-dev) and
        // as a stand-in that says so when not, so `swift build` works on any machine.
        .target(
            name: "CLockstepVerbs",
            linkerSettings: [.linkedLibrary("dl")]
        ),
        // CRC32C for the log's records: the SSE 4.2 instruction in C (Swift reaches it no other way).
        .target(name: "CLockstepCRC32C"),
        // Durable mode's storage: the checksummed, group-committed log of delivered batches, its
        // recovery, and the file systems under it (the real one and the simulated one).
        .target(
            name: "LockstepStorage",
            dependencies: ["CLockstepCRC32C", "LockstepCore"],
            swiftSettings: optimizedEvenInDebug
        ),
        // The runtime shell: the core on a NIO event loop, TCP or RDMA links between members.
        .target(
            name: "LockstepRuntime",
            dependencies: [
                "CLockstepVerbs",
                "LockstepCore",
                "LockstepStorage",
                "LockstepWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: strictSwift
        ),
        // The embedding API: ReplicatedGroup of a ReplicatedStateMachine over the runtime.
        .target(
            name: "Lockstep",
            dependencies: [
                "LockstepCore",
                "LockstepRuntime",
                "LockstepWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: strictSwift
        ),
        // The user's state machine in the deterministic simulator (LocalGroup).
        .target(
            name: "LockstepTesting",
            dependencies: ["Lockstep", "LockstepCore", "LockstepChecker", "LockstepSimulator"],
            swiftSettings: strictSwift
        ),
        // The delivery checker and the delivery-log format: what the simulator, bench and chaos
        // judge runs by. It knows nothing of how the logs were made.
        .target(
            name: "LockstepChecker",
            dependencies: ["LockstepCore"],
            swiftSettings: optimizedEvenInDebug
        ),
        // A linearizability checker (Wing & Gong with Lowe's memoization, per key) over client
        // histories of a key-value store: what the key-value example's chaos runs are judged by.
        .target(
            name: "LockstepLinearizability",
            dependencies: [],
            swiftSettings: optimizedEvenInDebug
        ),
        // Deterministic simulation of N members running the real core.
        .target(
            name: "LockstepSimulator",
            dependencies: [
                "LockstepCore",
                "LockstepChecker",
                "LockstepStorage",
                .product(name: "HeapModule", package: "swift-collections"),
            ],
            swiftSettings: optimizedEvenInDebug
        ),
        .executableTarget(
            name: "lockstep",
            dependencies: [
                "Lockstep",
                "LockstepLinearizability",
                "LockstepCore",
                "LockstepChecker",
                "LockstepSimulator",
                "LockstepStorage",
                "LockstepWire",
                "LockstepRuntime",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "LockstepCoreTests",
            dependencies: ["LockstepCore", "LockstepSimulator"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "LockstepWireTests",
            dependencies: ["LockstepCore", "LockstepWire"],
            resources: [.copy("FuzzRegressions")],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "LockstepRuntimeTests",
            dependencies: [
                "LockstepCore", "LockstepWire", "LockstepRuntime", "LockstepChecker",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "LockstepTests",
            dependencies: [
                "Lockstep", "LockstepTesting", "LockstepCore", "LockstepRuntime", "LockstepLinearizability",
                "LockstepStorage",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "LockstepLinearizabilityTests",
            dependencies: ["LockstepLinearizability"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "LockstepCheckerTests",
            dependencies: ["LockstepCore", "LockstepChecker"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "LockstepStorageTests",
            dependencies: ["LockstepStorage", "LockstepCore", "LockstepTestSupport"],
            swiftSettings: strictSwift
        ),
        // What the test targets share: running CPU-bound batches off the cooperative pool.
        .target(name: "LockstepTestSupport", path: "Tests/LockstepTestSupport", swiftSettings: strictSwift),
        .testTarget(
            name: "LockstepSimulatorTests",
            dependencies: ["LockstepCore", "LockstepChecker", "LockstepSimulator", "LockstepTestSupport"],
            swiftSettings: strictSwift
        ),
    ]
)
