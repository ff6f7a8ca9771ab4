// swift-tools-version:6.1
//
// Micro benchmarks, in their own package so the library never depends on the harness
// (swift-nio does the same). The ordering core is compiled here from the main package's sources
// (Sources/LockstepCore is a symlink): a path dependency on ".." would name the package by the
// checkout's directory, which differs between clones. The core has no dependencies, so this
// builds exactly the code the library ships.
//
// Run: cd Benchmarks && swift package benchmark   (see ../bench-results/README.md)
import PackageDescription

let package = Package(
    name: "LockstepBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .target(
            name: "LockstepCore",
            path: "Sources/LockstepCore",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "OrderingThroughput",
            dependencies: [
                "LockstepCore",
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/OrderingThroughput",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
