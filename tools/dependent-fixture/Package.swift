// swift-tools-version:6.0
//
// An outside package that depends on Lockstep by version, as a user's service would: CI
// (tools/check-dependent) points LOCKSTEP_URL at a tagged copy of the repository, resolves,
// builds and runs it. It is written with the README's embedding example, nothing more.
import Foundation
import PackageDescription

let lockstep = ProcessInfo.processInfo.environment["LOCKSTEP_URL"] ?? "https://github.com/lockstep/lockstep"
let version = ProcessInfo.processInfo.environment["LOCKSTEP_VERSION"] ?? "0.1.0"

let package = Package(
    name: "CounterService",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(url: lockstep, from: Version(stringLiteral: version)),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
    ],
    targets: [
        .executableTarget(
            name: "CounterService",
            dependencies: [
                .product(name: "Lockstep", package: "lockstep"),
                .product(name: "LockstepTesting", package: "lockstep"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        )
    ]
)
