import Foundation
import Synchronization
import Warren
import WarrenAMQP

/// `warren bench`: throughput of the AMQP layer against the configured broker, in queues of its own.
struct BenchCommand: WarrenCommand {
    static let name = "bench"
    static let abstract = "Measure publish-with-confirms and consume-and-ack rates against the broker"
    static let help = """
        Usage: warren bench [--count N] [--size BYTES] [--queue-type quorum|classic] [--prefetch N]
                            [--window N] [--scenario NAME]... [--url URI] [--json]

        Runs each scenario against the broker in a temporary queue of its own and prints one row per scenario:
        messages, messages per second, seconds, and this process's peak RSS.

        Scenarios (all by default):
          raw-publish      AMQPConnection on one thread, publisher confirms, a window of --window in flight
          client-publish   AMQPClient.publish(batch), the same window, from async code
          raw-consume      AMQPConnection on one thread, prefetch --prefetch, ack every delivery
          raw-consume-multiple   the same, acking every 50th delivery with multiple
          client-consume   AMQPClient consumer, each delivery acked through the client's mailbox
          worker-drain     a JobWorker (concurrency 16, no-op handler, events off) draining pre-filled jobs

        Options:
          --count N          Messages per scenario (default 100000)
          --size BYTES       Body size (default 100)
          --queue-type T     quorum (default; what Warren's work queues use) or classic
          --prefetch N       Consumer prefetch (default 1000)
          --window N         Unconfirmed publishes in flight (default 1000)
          --scenario NAME    Run only this scenario (repeatable)
          --url URI          Broker URI (default $WARREN_AMQP_URL or amqp://guest:guest@127.0.0.1:5672/%2F)
          --json             Print a JSON array instead of the table
        """

    static let scenarios = [
        "raw-publish", "client-publish", "raw-consume", "raw-consume-multiple", "client-consume", "worker-drain",
    ]

    let connection: AMQPConnectionConfiguration
    /// The broker URIs as given, for a Warren configuration of the worker scenarios.
    let brokerURLs: [String]
    let count: Int
    let size: Int
    let queueType: String
    let prefetch: UInt16
    let window: Int
    let selected: [String]
    let json: Bool

    init(arguments: inout CommandLineArguments, environment: [String: String]) throws {
        let url = try arguments.option("--url")
        connection = try CLI.connection(url: url, environment: environment, name: "warren-bench")
        brokerURLs = (url ?? environment["WARREN_AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/%2F")
            .split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        count = try arguments.option("--count", as: Int.self) ?? 100_000
        size = try arguments.option("--size", as: Int.self) ?? 100
        queueType = try arguments.option("--queue-type") ?? "quorum"
        prefetch = try arguments.option("--prefetch", as: UInt16.self) ?? 1000
        window = try arguments.option("--window", as: Int.self) ?? 1000
        json = arguments.flag("--json")
        var selected: [String] = []
        while let scenario = try arguments.option("--scenario") {
            guard Self.scenarios.contains(scenario) else {
                throw UsageError("unknown scenario '\(scenario)' (one of \(Self.scenarios.joined(separator: ", ")))")
            }
            selected.append(scenario)
        }
        self.selected = selected.isEmpty ? Self.scenarios : selected
        guard count > 0 else { throw UsageError("--count must be positive") }
        guard size >= 0 else { throw UsageError("--size must not be negative") }
        guard window > 0 else { throw UsageError("--window must be positive") }
        guard ["quorum", "classic"].contains(queueType) else { throw UsageError("--queue-type is quorum or classic") }
    }

    struct Row: Codable {
        var scenario: String
        var messages: Int
        var messagesPerSecond: Int
        var seconds: Double
        var peakRSSMegabytes: Double
    }

    func run() async throws -> Int32 {
        let body = Self.body(size: size)
        var rows: [Row] = []
        for scenario in selected {
            let queue = "warren.bench.\(scenario).\(UUID().uuidString.prefix(8).lowercased())"
            let elapsed: Duration
            switch scenario {
            case "raw-publish":
                elapsed = try await onThread { try rawPublish(queue: queue, body: body, timed: true) }
            case "client-publish":
                elapsed = try await clientPublish(queue: queue, body: body)
            case "raw-consume", "raw-consume-multiple":
                _ = try await onThread { try rawPublish(queue: queue, body: body, timed: false) }
                let every = scenario == "raw-consume" ? 1 : 50
                elapsed = try await onThread { try rawConsume(queue: queue, ackEvery: every) }
            case "worker-drain":
                elapsed = try await workerDrain(body: body)
            case "client-consume":
                _ = try await onThread { try rawPublish(queue: queue, body: body, timed: false) }
                elapsed = try await clientConsume(queue: queue)
            default:
                continue
            }
            try await onThread { try deleteQueue(queue) }
            let seconds = elapsed.seconds
            let row = Row(
                scenario: scenario, messages: count, messagesPerSecond: Int(Double(count) / seconds),
                seconds: (seconds * 1000).rounded() / 1000, peakRSSMegabytes: Self.peakRSSMegabytes())
            rows.append(row)
            if !json { print(Self.format(row, header: rows.count == 1)) }
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(rows), as: UTF8.self))
        }
        return 0
    }

    static func format(_ row: Row, header: Bool) -> String {
        func pad(_ s: String, _ n: Int) -> String { s.padding(toLength: max(n, s.count), withPad: " ", startingAt: 0) }
        func left(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(0, n - s.count)) + s }
        var line = ""
        if header {
            line +=
                pad("scenario", 22) + left("messages", 10) + left("msgs/s", 10) + left("seconds", 10)
                + left("peak RSS MB", 13) + "\n"
        }
        line +=
            pad(row.scenario, 22) + left("\(row.messages)", 10) + left("\(row.messagesPerSecond)", 10)
            + left(String(format: "%.2f", row.seconds), 10) + left(String(format: "%.1f", row.peakRSSMegabytes), 13)
        return line
    }

    /// A JSON body of exactly `size` bytes (at least `{}`).
    static func body(size: Int) -> [UInt8] {
        let prefix = Array(#"{"to":"user@example.com","pad":""#.utf8)
        let suffix = Array(#""}"#.utf8)
        guard size > prefix.count + suffix.count else { return Array("{}".utf8) }
        return prefix + Array(repeating: UInt8(ascii: "x"), count: size - prefix.count - suffix.count) + suffix
    }

    static func peakRSSMegabytes() -> Double {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
            let kilobytes = Double(line.split(separator: " ").dropFirst().first ?? "")
        else { return 0 }
        return (kilobytes / 1024 * 10).rounded() / 10
    }

    private var queueArguments: FieldTable { ["x-queue-type": .string(queueType)] }

    // MARK: Scenarios

    /// Runs blocking work on a thread of its own, never on the cooperative pool.
    private func onThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try work() }) }
        }
    }

    private func deleteQueue(_ queue: String) throws {
        let connection = try AMQPConnection.connect(self.connection)
        defer { connection.close() }
        try connection.openChannel().deleteQueue(queue)
    }

    /// Publishes `count` messages with confirms, keeping `window` unconfirmed; returns the time it took.
    private func rawPublish(
        queue: String, body: [UInt8], timed: Bool, exchange: String = "", routingKey: String? = nil,
        declare: Bool = true
    ) throws -> Duration {
        let connection = try AMQPConnection.connect(self.connection)
        defer { connection.close() }
        let channel = try connection.openChannel()
        if declare { try channel.declareQueue(queue, arguments: queueArguments) }
        try channel.confirmSelect()
        let properties = BasicProperties.persistentJSON
        var published = 0
        var confirmed = 0
        let start = ContinuousClock.now
        while confirmed < count {
            while published < count, published - confirmed < window {
                try channel.publish(
                    exchange: exchange, routingKey: routingKey ?? queue, body: body, properties: properties)
                published += 1
            }
            guard let event = try connection.waitForEvent(timeout: .seconds(30)) else {
                throw AMQPError(.timeout, "no publisher confirm for 30 s")
            }
            switch event {
            case .ack(_, let tag, let multiple): confirmed = multiple ? Int(tag) : confirmed + 1
            case .nack: throw AMQPError(.publishNacked, "the broker nacked a benchmark message")
            case .channelClosed(_, let error), .connectionClosed(let error): throw error
            default: break
            }
        }
        return ContinuousClock.now - start
    }

    private func rawConsume(queue: String, ackEvery: Int) throws -> Duration {
        let connection = try AMQPConnection.connect(self.connection)
        defer { connection.close() }
        let channel = try connection.openChannel()
        try channel.qos(prefetchCount: prefetch)
        let start = ContinuousClock.now
        try channel.consume(queue: queue)
        var received = 0
        while received < count {
            guard let event = try connection.waitForEvent(timeout: .seconds(30)) else {
                throw AMQPError(.timeout, "no delivery for 30 s after \(received)")
            }
            guard case .delivery(let delivery) = event else { continue }
            received += 1
            if received % ackEvery == 0 || received == count {
                try channel.ack(delivery.tag, multiple: ackEvery > 1)
            }
        }
        return ContinuousClock.now - start
    }

    private func clientPublish(queue: String, body: [UInt8]) async throws -> Duration {
        let client = AMQPClient(configuration: .init(connection: connection, reconnect: nil))
        try await client.connect()
        defer { Task { await client.close() } }
        let arguments = queueArguments
        try await client.withChannel { try $0.declareQueue(queue, arguments: arguments) }
        let message = OutgoingMessage(exchange: "", routingKey: queue, body: body, properties: .persistentJSON)
        // Two batches in flight, each half the window, keep the pipe full while one batch's confirms return.
        let batchSize = max(1, window / 2)
        let start = ContinuousClock.now
        let failures = try await withThrowingTaskGroup(of: Int.self) { group in
            let next = SharedCounter()
            for _ in 0..<2 {
                group.addTask {
                    var failed = 0
                    while true {
                        let first = next.value.add(batchSize, ordering: .relaxed).oldValue
                        if first >= count { break }
                        let n = min(batchSize, count - first)
                        failed += await client.publish(Array(repeating: message, count: n)).compactMap { $0 }.count
                    }
                    return failed
                }
            }
            return try await group.reduce(0, +)
        }
        let elapsed = ContinuousClock.now - start
        guard failures == 0 else { throw AMQPError(.publishNacked, "\(failures) benchmark publishes failed") }
        return elapsed
    }

    private func clientConsume(queue: String) async throws -> Duration {
        let client = AMQPClient(configuration: .init(connection: connection, reconnect: nil))
        try await client.connect()
        defer { Task { await client.close() } }
        let received = SharedCounter()
        let total = count
        let start = ContinuousClock.now
        try await withCheckedThrowingContinuation { (done: CheckedContinuation<Void, Error>) in
            Task {
                do {
                    try await client.consume(queue: queue, prefetch: prefetch) { delivery in
                        client.ack(delivery.tag)
                        if received.value.add(1, ordering: .relaxed).newValue == total { done.resume() }
                    }
                } catch {
                    done.resume(throwing: error)
                }
            }
        }
        return ContinuousClock.now - start
    }
}

/// A counter shared by concurrent tasks.
final class SharedCounter: Sendable {
    let value = Atomic<Int>(0)
}

/// A no-op job for the worker benchmark.
struct BenchJob: JobPayload {
    static let taskName = "bench.noop"
    var to: String?
}

extension BenchCommand {
    /// Pre-fills `count` jobs, then times one JobWorker (concurrency 16, no-op handler, lifecycle events off) until
    /// every handler has run.
    func workerDrain(body: [UInt8]) async throws -> Duration {
        let prefix = "bench-\(UUID().uuidString.prefix(8).lowercased())"
        var settings = WarrenConfiguration(
            queues: [QueueSettings(name: "work", tasks: ["bench.#"], kind: queueType == "classic" ? .classic : .quorum)]
        )
        settings.prefix = prefix
        settings.brokerURLs = brokerURLs
        settings.worker.concurrency = 16
        if let prefetch = ProcessInfo.processInfo.environment["WARREN_BENCH_WORKER_PREFETCH"].flatMap(Int.init) {
            settings.worker.prefetch = prefetch
        }
        settings.worker.lifecycleEvents = false
        settings.retryTiers = [.seconds(1)]
        let configuration = settings
        let jobs = try JobClient(configuration: configuration, connectionName: "warren-bench-setup")
        try await jobs.connect()
        try await jobs.declareTopology()
        await jobs.close()
        let queue = configuration.queueName(configuration.queues[0])
        _ = try await onThread { [self] in
            try rawPublish(
                queue: queue, body: body, timed: false, exchange: configuration.jobsExchange,
                routingKey: BenchJob.taskName, declare: false)
        }
        let done = SharedCounter()
        let total = count
        let finished = Once()
        var registry = JobRegistry()
        registry.register(BenchJob.self) { _, _ in
            if done.value.add(1, ordering: .relaxed).newValue == total { finished.signal() }
        }
        let worker = try JobWorker(
            configuration: configuration, registry: registry, logger: Logger(sink: .none),
            connectionName: "warren-bench-worker")
        let start = ContinuousClock.now
        let running = Task { try await worker.run() }
        await finished.wait()
        let elapsed = ContinuousClock.now - start
        worker.shutdown()
        try await running.value
        try await onThread { [self] in
            let connection = try AMQPConnection.connect(self.connection)
            defer { connection.close() }
            let channel = try connection.openChannel()
            for name in [
                queue, configuration.deadQueueName(configuration.queues[0]),
                configuration.retryQueueName(tier: .seconds(1)),
            ] {
                try channel.deleteQueue(name)
            }
            for exchange in [
                configuration.jobsExchange, configuration.retryExchange, configuration.deadExchange,
                configuration.eventsExchange, configuration.metricsExchange,
            ] {
                try channel.deleteExchange(exchange)
            }
        }
        return elapsed
    }
}

/// A one-shot signal awaited by one task.
final class Once: Sendable {
    private let state = Mutex<(signalled: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))

    func signal() {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.signalled = true
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume()
    }

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { s -> Bool in
                if s.signalled { return true }
                s.waiter = continuation
                return false
            }
            if ready { continuation.resume() }
        }
    }
}
