import Dispatch
import Foundation
import Warren
import WarrenExamples

#if canImport(Glibc)
    import Glibc
#endif

/// `warren worker`: run jobs from the configured queues until SIGTERM or SIGINT.
struct WorkerCommand: WarrenCommand {
    static let name = "worker"
    static let abstract = "Run jobs from the configured queues until SIGTERM/SIGINT"
    static let help = """
        Usage: warren worker [--config FILE] [--concurrency N] [--queues A,B] [--log-level LEVEL]
                             [--diagnostic-tasks] [--no-examples] [--name NAME]

        Declares Warren's topology, consumes the work queues and runs the example handlers (transactions.classify,
        documents.stats, reports.daily, demo.greet). Each job is acknowledged only after its handler returned;
        failures are retried through the TTL ladder or dead-lettered with the reason in headers.

        SIGTERM or SIGINT: stop taking jobs, let the ones in flight finish within worker.shutdownGrace, ack them,
        exit 0. A second signal exits at once (status 130); unfinished jobs are then redelivered by the broker.

        Options:
          --config FILE        Configuration (default Config/warren.json); WARREN_AMQP_URL overrides the broker
          --concurrency N      Jobs in flight at once (overrides worker.concurrency)
          --queues A,B         Consume only these queues (overrides worker.queues)
          --log-level LEVEL    debug, info (default), warning or error; logs are JSON lines on standard error
          --diagnostic-tasks   Also run warren.diag.noop, .sleep, .fail and .crash (for checking a deployment,
                               `warren bench` and tests; .crash aborts the process: not for untrusted producers)
          --no-examples        Do not run the example handlers (they need examples.payeeRulesFile)
          --name NAME          Connection name prefix shown by the broker (default warren-worker)

        Exit status: 0 after a graceful stop, 78 for invalid configuration, 1 for any other start-up failure.
        """

    let configuration: WarrenConfiguration
    let logLevel: Logger.Level
    let diagnosticTasks: Bool
    let examples: Bool
    let name: String

    init(arguments: inout CommandLineArguments, environment: [String: String]) throws {
        var configuration = try CLI.loadConfiguration(
            path: try arguments.option("--config") ?? "Config/warren.json", environment: environment)
        if let concurrency = try arguments.option("--concurrency", as: Int.self) {
            configuration.worker.concurrency = concurrency
        }
        if let queues = try arguments.option("--queues") {
            configuration.worker.queues = queues.split(separator: ",").map(String.init)
        }
        logLevel = try CLI.logLevel(try arguments.option("--log-level"))
        diagnosticTasks = arguments.flag("--diagnostic-tasks")
        examples = !arguments.flag("--no-examples")
        name = try arguments.option("--name") ?? "warren-worker"
        do {
            try configuration.validate()
        } catch {
            throw ConfigurationFailure(description: "\(error)")
        }
        self.configuration = configuration
    }

    func run() async throws -> Int32 {
        let logger = Logger(sink: .standardError(minimumLevel: logLevel), metadata: ["service": "worker"])
        var registry = JobRegistry()
        if examples {
            do {
                let examples = try ExampleJobs(
                    payeeRulesFile: configuration.examples.payeeRulesFile,
                    reportDirectory: configuration.examples.reportDirectory)
                examples.register(into: &registry)
            } catch {
                throw ConfigurationFailure(description: "examples: \(error)")
            }
        }
        if diagnosticTasks { DiagnosticJobs.register(into: &registry) }
        let worker = try JobWorker(
            configuration: configuration, registry: registry, logger: logger, connectionName: name)
        let signals = SignalWatcher(signals: [SIGTERM, SIGINT]) { signal, count in
            if count == 1 {
                logger.info("signal received; shutting down gracefully", ["signal": "\(signal)"])
                worker.shutdown()
            } else {
                logger.warning("second signal; exiting now", ["signal": "\(signal)"])
                exit(130)
            }
        }
        defer { signals.cancel() }
        do {
            try await worker.run()
        } catch let error as WarrenError {
            logger.error("worker cannot start", ["error": "\(error)"])
            if case .configuration = error { return 78 }
            return 1
        } catch {
            logger.error("worker cannot start", ["error": "\(error)"])
            return 1
        }
        return 0
    }
}

/// Invalid configuration found by a command: exit status 78 (EX_CONFIG), one line.
struct ConfigurationFailure: Error, CustomStringConvertible {
    let description: String
}

/// Delivers SIGTERM/SIGINT to a closure (with how many signals arrived so far) instead of killing the process.
final class SignalWatcher {
    private let sources: [any DispatchSourceSignal]

    init(signals: [Int32], handler: @escaping @Sendable (Int32, Int) -> Void) {
        let queue = DispatchQueue(label: "warren.signals")
        let counter = SharedCounter()
        sources = signals.map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler {
                handler(number, counter.value.add(1, ordering: .relaxed).newValue)
            }
            source.resume()
            return source
        }
    }

    func cancel() {
        for source in sources { source.cancel() }
    }
}
