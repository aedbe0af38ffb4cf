import Foundation
import Warren
import WarrenCoordinator

#if canImport(Glibc)
    import Glibc
#endif

/// `warren coordinator`: fire the configured schedules (one leader among replicas).
struct CoordinatorCommand: WarrenCommand {
    static let name = "coordinator"
    static let abstract = "Fire cron schedules exactly once across replicas"
    static let help = """
        Usage: warren coordinator [--config FILE] [--log-level LEVEL] [--name NAME] [--metrics-port N]

        Campaigns for leadership through the broker (an exclusive queue); the leader fires the configured
        schedules as normal jobs with message_id <schedule>@<fire time>. Run two or more for high availability: a
        standby takes over within coordinator.leaderRetryInterval of the leader's death, without firing a time
        twice; missed fires follow each schedule's missedRuns policy (skip or once).

        SIGTERM or SIGINT: stop and exit 0 (a standby takes over).

        Options:
          --config FILE        Configuration (default Config/warren.json); WARREN_AMQP_URL overrides the broker
          --log-level LEVEL    debug, info (default), warning or error; JSON lines on standard error
          --name NAME          Connection name shown by the broker (default warren-coordinator)
          --metrics-port N     Port of /metrics and /healthz (overrides coordinator.metricsPort; 0: any free
                               port, logged at start). Give each coordinator on one host its own.

        Exit status: 0 after a stop, 78 for invalid configuration, 1 for any other start-up failure.
        """

    let configuration: WarrenConfiguration
    let logLevel: Logger.Level
    let name: String
    let metricsPort: Int?

    init(arguments: inout CommandLineArguments, environment: [String: String]) throws {
        configuration = try CLI.loadConfiguration(
            path: try arguments.option("--config") ?? "Config/warren.json", environment: environment)
        logLevel = try CLI.logLevel(try arguments.option("--log-level"))
        name = try arguments.option("--name") ?? "warren-coordinator"
        metricsPort = try arguments.option("--metrics-port", as: Int.self)
        if let metricsPort, !(0...65_535).contains(metricsPort) {
            throw UsageError("--metrics-port must be from 0 to 65535")
        }
    }

    func run() async throws -> Int32 {
        let logger = Logger(sink: .standardError(minimumLevel: logLevel), metadata: ["service": "coordinator"])
        let service: CoordinatorService
        do {
            service = try CoordinatorService(
                configuration: configuration, logger: logger, name: name, metricsPort: metricsPort)
        } catch {
            throw ConfigurationFailure(description: "\(error)")
        }
        let signals = SignalWatcher(signals: [SIGTERM, SIGINT]) { signal, count in
            if count == 1 {
                logger.info("signal received; stopping", ["signal": "\(signal)"])
                service.shutdown()
            } else {
                exit(130)
            }
        }
        defer { signals.cancel() }
        do {
            try await service.run()
        } catch {
            logger.error("coordinator cannot start", ["error": "\(error)"])
            return 1
        }
        return 0
    }
}
