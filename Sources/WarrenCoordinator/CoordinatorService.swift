import Foundation
import Synchronization
import Warren

/// What `warren coordinator` runs: the scheduler, the metrics collector, and the HTTP listener for `/metrics` and
/// `/healthz` (200 while both broker connections are up, 503 otherwise). The listener runs on a thread of its own,
/// so a slow scrape never holds up the scheduler.
public final class CoordinatorService: Sendable {
    public let coordinator: Coordinator
    public let metrics: MetricsCollector
    let server: MetricsHTTPServer
    let logger: Logger

    /// `metricsPort` overrides `coordinator.metricsPort` (0: an ephemeral port, for tests).
    public init(configuration: WarrenConfiguration, logger: Logger, name: String, metricsPort: Int? = nil) throws {
        self.logger = logger
        coordinator = try Coordinator(configuration: configuration, logger: logger, connectionName: name)
        let metrics = try MetricsCollector(
            configuration: configuration, coordinator: coordinator, logger: logger, connectionName: name + "-metrics")
        self.metrics = metrics
        let coordinator = self.coordinator
        server = MetricsHTTPServer(
            host: configuration.coordinator.metricsHost, port: metricsPort ?? configuration.coordinator.metricsPort
        ) { _, path in
            switch path {
            case "/metrics": .prometheus(metrics.prometheusText())
            case "/healthz":
                coordinator.isConnected && metrics.isConnected
                    ? .text("ok\n") : .text("broker connection down\n", status: 503)
            default: nil
            }
        }
    }

    /// The port `/metrics` listens on (after ``run()`` started it).
    public var metricsPort: Int { server.port }

    /// Starts the listener, the collector and the scheduler; returns after ``shutdown()``.
    public func run() async throws {
        try server.start()
        defer { server.stop() }
        logger.info("metrics listening", ["http.port": "\(server.port)", "http.paths": "/metrics,/healthz"])
        let collecting = Task { try await metrics.run() }
        defer { collecting.cancel() }
        try await coordinator.run()
        collecting.cancel()
        await metrics.close()
    }

    public func shutdown() { coordinator.shutdown() }
}
