import Foundation
import Warren
import WarrenAMQP
import WarrenCoordinator

/// `warren status`: queues, schedules and (optionally) workers at a glance.
struct StatusCommand: WarrenCommand {
    static let name = "status"
    static let abstract = "Show every Warren queue (ready, consumers), schedules' next fires, and workers"
    static let help = """
        Usage: warren status [--config FILE] [--json] [--workers] [--watch SECONDS]

        One row per Warren queue: kind (work, retry, dead), messages ready, consumers. Then each enabled
        schedule's next fire. Figures come from passive declares, so no management plugin is needed.

        Options:
          --workers          Also list the workers heard from: listens for one worker.heartbeatInterval first
          --json             One JSON object instead of the tables
          --watch SECONDS    Refresh every SECONDS until interrupted
        """

    let configuration: WarrenConfiguration
    let json: Bool
    let workers: Bool
    let watch: Double?

    init(arguments: inout CommandLineArguments, environment: [String: String]) throws {
        configuration = try CLI.loadConfiguration(
            path: try arguments.option("--config") ?? "Config/warren.json", environment: environment)
        json = arguments.flag("--json")
        workers = arguments.flag("--workers")
        watch = try arguments.option("--watch", as: Double.self)
        if let watch, watch < 0.5 { throw UsageError("--watch must be at least 0.5 seconds") }
    }

    func run() async throws -> Int32 {
        let collector = try MetricsCollector(
            configuration: configuration, coordinator: nil, logger: Logger(sink: .none), connectionName: "warren-status"
        )
        do {
            try await collector.start()
        } catch let error as AMQPError where error.code == .notFound {
            // The collector binds to the events exchange: missing means Warren's topology was never declared here.
            CLI.printError(
                "warren status: \(configuration.eventsExchange) does not exist: no worker or `warren topology apply` "
                    + "has declared prefix '\(configuration.prefix)' on this broker yet")
            await collector.close()
            return 1
        }
        if workers { try await Task.sleep(for: configuration.worker.heartbeatInterval + .milliseconds(500)) }
        repeat {
            await collector.collect()
            if json {
                print(try render(json: collector))
            } else {
                print(render(table: collector))
            }
            if let watch { try await Task.sleep(for: .milliseconds(Int(watch * 1000))) }
        } while watch != nil
        await collector.close()
        return 0
    }

    private func nextFires() -> [(String, Date)] {
        let now = Date()
        return configuration.schedules.filter(\.enabled).compactMap { settings in
            guard let cron = try? CronExpression(settings.cron),
                let next = cron.next(after: now, in: TimeZone(identifier: settings.timeZone) ?? .gmt)
            else { return nil }
            return (settings.name, next)
        }
    }

    private func render(table collector: MetricsCollector) -> String {
        let samples = collector.queueSamples
        let width = max(5, samples.map(\.queue.count).max() ?? 0)
        var lines = ["QUEUE".padding(toLength: width, withPad: " ", startingAt: 0) + "  KIND   READY  CONSUMERS"]
        for sample in samples {
            lines.append(
                sample.queue.padding(toLength: width, withPad: " ", startingAt: 0) + "  "
                    + sample.kind.padding(toLength: 5, withPad: " ", startingAt: 0)
                    + String(format: " %6d %10d", sample.messages, sample.consumers))
        }
        if samples.count < configuration.queues.count * 2 + configuration.retryTiers.count {
            lines.append("(missing queues are not shown: warren topology check)")
        }
        let fires = nextFires()
        if !fires.isEmpty {
            lines.append("")
            lines.append("SCHEDULE  NEXT FIRE")
            for (name, next) in fires { lines.append("\(name)  \(next.formatted(.iso8601))") }
        }
        if workers {
            lines.append("")
            let live = collector.liveWorkers
            lines.append("WORKERS (\(live.count) heard from)")
            for (id, fields) in live.sorted(by: { $0.key < $1.key }) {
                lines.append(
                    "\(id)  in flight \(fields["inFlight"] ?? "?")/\(fields["concurrency"] ?? "?")  "
                        + "processed \(fields["jobs.processed"] ?? "?")  queues \(fields["queues"] ?? "?")")
            }
        }
        return lines.joined(separator: "\n")
    }

    private func render(json collector: MetricsCollector) throws -> String {
        var object: [String: Any] = [
            "queues": collector.queueSamples.map {
                ["queue": $0.queue, "kind": $0.kind, "messages": $0.messages, "consumers": $0.consumers]
                    as [String: Any]
            },
            "schedules": Dictionary(uniqueKeysWithValues: nextFires().map { ($0.0, $0.1.formatted(.iso8601)) }),
        ]
        if workers { object["workers"] = collector.liveWorkers }
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }
}
