// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Warren",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "warren", targets: ["WarrenCLI"]),
        .library(name: "Warren", targets: ["Warren"]),
        .library(name: "WarrenAMQP", targets: ["WarrenAMQP"]),
    ],
    targets: [
        // The only C in the package: rabbitmq-c, found through pkg-config.
        .systemLibrary(
            name: "CRabbitMQ",
            pkgConfig: "librabbitmq",
            providers: [.apt(["librabbitmq-dev"])]
        ),
        // Safe Swift over rabbitmq-c. The only module that imports CRabbitMQ.
        .target(
            name: "WarrenAMQP",
            dependencies: ["CRabbitMQ"]
        ),
        // Jobs, topology, the worker and the publisher.
        .target(
            name: "Warren",
            dependencies: ["WarrenAMQP"]
        ),
        // Cron schedules fired once across replicas (leader election through the broker), and metrics.
        .target(
            name: "WarrenCoordinator",
            dependencies: ["Warren", "WarrenAMQP"]
        ),
        // The example handlers the demo runs.
        .target(
            name: "WarrenExamples",
            dependencies: ["Warren"]
        ),
        .executableTarget(
            name: "WarrenCLI",
            dependencies: ["Warren", "WarrenCoordinator", "WarrenExamples", "WarrenAMQP"]
        ),
        // Helpers shared by the test targets: the test broker, recorders that wait with deadlines.
        .target(
            name: "WarrenTestSupport",
            dependencies: ["Warren", "WarrenAMQP"],
            path: "Tests/WarrenTestSupport"
        ),
        .testTarget(
            name: "WarrenAMQPTests",
            dependencies: ["WarrenAMQP", "WarrenTestSupport"]
        ),
        .testTarget(
            name: "WarrenTests",
            dependencies: ["Warren", "WarrenAMQP", "WarrenExamples", "WarrenTestSupport"]
        ),
        // Load and chaos scenarios (kills, broker restarts, hostile input): run after the others, one at a time.
        .testTarget(
            name: "WarrenReliabilityTests",
            dependencies: ["Warren", "WarrenAMQP", "WarrenTestSupport"]
        ),
        .testTarget(
            name: "WarrenCoordinatorTests",
            dependencies: ["WarrenCoordinator", "Warren", "WarrenAMQP", "WarrenTestSupport"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
