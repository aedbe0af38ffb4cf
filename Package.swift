// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Warren",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "warren", targets: ["WarrenCLI"]),
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
        .executableTarget(
            name: "WarrenCLI",
            dependencies: ["WarrenAMQP"]
        ),
        .testTarget(
            name: "WarrenAMQPTests",
            dependencies: ["WarrenAMQP"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
