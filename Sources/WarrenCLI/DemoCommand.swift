import Foundation
import Synchronization
import Warren
import WarrenAMQP
import WarrenExamples

/// `warren demo`: enqueue thousands of example jobs, watch the workers' lifecycle events, report the outcome.
struct DemoCommand: WarrenCommand {
    static let name = "demo"
    static let abstract = "Enqueue example jobs, show progress while workers drain them, and summarise"
    static let help = """
        Usage: warren demo [--config FILE] [--jobs N] [--seed N] [--timeout SECONDS]

        Enqueues N generated example jobs (transactions.classify, documents.stats, demo.greet) with publisher
        confirms. By design about 5% fail once or twice and then succeed, about 1% fail permanently, and about 1%
        are malformed or of an unknown task type: those end in the dead-letter queues with the reason in headers.
        Progress comes from the workers' job.* events on the events exchange (worker.lifecycleEvents must be on);
        start workers first (`warren worker`). Ends with a summary: done, retried, dead by reason, jobs/s.
        Exit status 0 when every job ended as designed, 1 otherwise.

        Options:
          --config FILE      Configuration (default Config/warren.json)
          --jobs N           How many jobs (default 5000)
          --seed N           Seed of the generator (default 1)
          --timeout SECONDS  Give up waiting after this long (default 300)
        """

    let configuration: WarrenConfiguration
    let count: Int
    let seed: UInt64
    let timeout: Double

    init(arguments: inout CommandLineArguments, environment: [String: String]) throws {
        configuration = try CLI.loadConfiguration(
            path: try arguments.option("--config") ?? "Config/warren.json", environment: environment)
        count = try arguments.option("--jobs", as: Int.self) ?? 5000
        seed = try arguments.option("--seed", as: UInt64.self) ?? 1
        timeout = try arguments.option("--timeout", as: Double.self) ?? 300
        guard count > 0 else { throw UsageError("--jobs must be positive") }
        guard configuration.worker.lifecycleEvents else {
            throw ConfigurationFailure(description: "worker.lifecycleEvents: the demo follows job events; turn it on")
        }
    }

    /// What the events said so far.
    struct Tally {
        var succeeded: Set<String> = []
        var retried: Set<String> = []
        var retries = 0
        var dead: [String: String] = [:]  // job id → reason
        var done: Int { succeeded.count + dead.count }
    }

    func run() async throws -> Int32 {
        let jobs = DemoJobsPlan(count: count, seed: seed)
        let client = try JobClient(configuration: configuration, connectionName: "warren-demo")
        try await client.connect()
        try await client.declareTopology()
        let tally = TallyBox()
        let events = try await watchEvents(into: tally)

        print("enqueuing \(count) example jobs (seed \(seed)) to \(configuration.jobsExchange)…")
        let start = ContinuousClock.now
        var failedToEnqueue = 0
        for chunk in stride(from: 0, to: count, by: 500) {
            let slice = jobs.items[chunk..<min(chunk + 500, count)]
            let results = await client.enqueue(batch: slice.map { ($0.job.task, $0.job.body, $0.id) })
            failedToEnqueue += results.compactMap { $0 }.count
        }
        let enqueued = ContinuousClock.now - start
        print(
            "enqueued \(count - failedToEnqueue) jobs in \(String(format: "%.2f", enqueued.seconds)) s "
                + "(\(Int(Double(count) / enqueued.seconds)) jobs/s, publisher confirms)")
        if failedToEnqueue > 0 { print("\(failedToEnqueue) jobs could not be enqueued") }

        let deadline = ContinuousClock.now + .seconds(timeout)
        var lastLine = ""
        while true {
            let snapshot = tally.value.withLock { $0 }
            let line =
                "  done \(snapshot.succeeded.count) · dead \(snapshot.dead.count) · retries \(snapshot.retries) · "
                + "remaining \(count - failedToEnqueue - snapshot.done)"
            if line != lastLine {
                print(line)
                lastLine = line
            }
            if snapshot.done >= count - failedToEnqueue { break }
            if ContinuousClock.now > deadline {
                print("gave up after \(Int(timeout)) s: are workers running? (warren worker --config …)")
                break
            }
            try await Task.sleep(for: .seconds(1))
        }
        let elapsed = ContinuousClock.now - start
        await events.close()
        await client.close()
        return summarise(tally.value.withLock { $0 }, plan: jobs, elapsed: elapsed)
    }

    private func summarise(_ tally: Tally, plan: DemoJobsPlan, elapsed: Duration) -> Int32 {
        var reasons: [String: Int] = [:]
        for reason in tally.dead.values { reasons[reason, default: 0] += 1 }
        var unexpected = 0
        for item in plan.items {
            let ended: DemoJob.Expected? =
                tally.dead[item.id] != nil
                ? .dead
                : tally.succeeded.contains(item.id)
                    ? (tally.retried.contains(item.id) ? .retriesThenSucceeds : .succeeds) : nil
            if ended != item.job.expected { unexpected += 1 }
        }
        print("")
        print(
            "summary (\(String(format: "%.1f", elapsed.seconds)) s, \(Int(Double(tally.done) / elapsed.seconds)) jobs/s end to end)"
        )
        print("  jobs       \(plan.items.count)")
        print(
            "  succeeded  \(tally.succeeded.count) (of which \(tally.retried.subtracting(tally.dead.keys).count) after retries)"
        )
        print("  retries    \(tally.retries)")
        print("  dead       \(tally.dead.count)")
        for (reason, n) in reasons.sorted(by: { $0.key < $1.key }) {
            print("    \(reason.padding(toLength: 13, withPad: " ", startingAt: 0)) \(n)")
        }
        print("  dead letters are in the *.dead queues, with x-warren-error / x-warren-error-type headers")
        if unexpected == 0 {
            print("every job ended as designed")
            return 0
        }
        print("\(unexpected) jobs did not end as designed (or not yet)")
        return 1
    }

    /// Consumes job.* events into `tally` through a private, exclusive queue.
    private func watchEvents(into tally: TallyBox) async throws -> AMQPClient {
        let uris = try configuration.brokerURLs.map { try AMQPURI($0) }
        let events = AMQPClient(
            configuration: .init(connection: .init(uris: uris, connectionName: "warren-demo-events"), reconnect: nil))
        try await events.connect()
        let exchange = configuration.eventsExchange
        let queue = try await events.withChannel { channel in
            let queue = try channel.declareQueue("", durable: false, exclusive: true, autoDelete: true).name
            try channel.bindQueue(queue, exchange: exchange, routingKey: "job.*")
            return queue
        }
        try await events.consume(queue: queue, prefetch: 1000) { delivery in
            events.ack(delivery.tag)
            guard
                let object = try? JSONSerialization.jsonObject(with: delivery.body) as? [String: String],
                let id = object["jobID"]
            else { return }
            tally.value.withLock { t in
                switch delivery.routingKey {
                case "job.succeeded": t.succeeded.insert(id)
                case "job.retrying":
                    t.retried.insert(id)
                    t.retries += 1
                case "job.dead": t.dead[id] = object["reason"] ?? "?"
                default: break
                }
            }
        }
        return events
    }
}

/// The tally shared with the event consumer.
final class TallyBox: Sendable {
    let value = Mutex(DemoCommand.Tally())
}

/// The demo's jobs with ids that tie events back to the design.
struct DemoJobsPlan {
    struct Item {
        var id: String
        var job: DemoJob
    }
    let items: [Item]

    init(count: Int, seed: UInt64) {
        let run = UUID().uuidString.prefix(8).lowercased()
        items = ExampleJobs.demoJobs(count: count, seed: seed).enumerated().map {
            Item(id: "demo-\(run)-\($0.offset)", job: $0.element)
        }
    }
}
