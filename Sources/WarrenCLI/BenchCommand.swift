import Foundation
import Synchronization
import Warren
import WarrenAMQP

/// `warren bench`: throughput and latency of the AMQP layer and the worker against the configured broker, in
/// queues of its own.
struct BenchCommand: WarrenCommand {
    static let name = "bench"
    static let abstract = "Measure publish, consume, worker throughput and latency against the broker"
    static let help = """
        Usage: warren bench [--count N] [--size BYTES] [--queue-type quorum|classic] [--prefetch N]
                            [--worker-prefetch N] [--window N] [--rate N] [--scenario NAME]... [--url URI] [--json]

        Runs each scenario against the broker in temporary queues of its own (deleted afterwards) and prints one
        row per scenario: messages, messages per second, the ratio to its baseline scenario in the same run,
        latency percentiles where measured, and peak RSS (of this process, or of the worker processes).

        Scenarios (all by default), baseline in brackets:
          raw-publish        AMQPConnection on one thread, publisher confirms, a window of --window in flight
          client-publish     AMQPClient.publish(batch), the same window, from async code          [raw-publish]
          raw-enqueue        raw-publish through a jobs exchange (topic, routing key bench.noop, mandatory) to
                             a work queue: the broker's share of an enqueue
          client-enqueue     JobClient.enqueue(batch:) to the same kind of exchange, same window  [raw-enqueue]
          raw-consume        AMQPConnection on one thread, prefetch --prefetch, ack every delivery
          raw-consume-multiple   the same, acking every 50th delivery with multiple               [raw-consume]
          client-consume     AMQPClient consumer, each delivery acked through the client's mailbox [raw-consume]
          worker-drain       a JobWorker in this process (concurrency 16, no-op handler, events off) draining
                             pre-filled jobs                                                     [raw-consume]
          worker-process     one `warren worker` process (concurrency 16, warren.diag.noop, events off) draining
                             pre-filled jobs; RSS is the worker's                                [raw-consume]
          worker-process-2   the same with two worker processes                                  [raw-consume]
          worker-retry       like worker-drain, but every job fails once and succeeds on its second attempt
                             (100ms retry tier); jobs per second, each counted once             [worker-drain]
          worker-latency     jobs published at a steady --rate (10 s worth, at most --count) to a JobWorker with
                             its default prefetch; p50/p99 of publish -> handler start

        Options:
          --count N          Messages per scenario (default 100000)
          --size BYTES       Body size (default 100)
          --queue-type T     quorum (default; what Warren's work queues use) or classic
          --prefetch N       Consumer prefetch of the raw and client consumers (default 1000)
          --worker-prefetch N  worker.prefetch of the drain and retry scenarios (default: --prefetch)
          --window N         Unconfirmed publishes in flight (default 1000)
          --rate N           Jobs per second of worker-latency (default 1000)
          --scenario NAME    Run only this scenario (repeatable)
          --url URI          Broker URI (default $WARREN_AMQP_URL or amqp://guest:guest@127.0.0.1:5672/%2F)
          --json             Print a JSON array instead of the table
        """

    static let scenarios = [
        "raw-publish", "client-publish", "raw-enqueue", "client-enqueue", "raw-consume", "raw-consume-multiple",
        "client-consume",
        "worker-drain", "worker-process", "worker-process-2", "worker-retry", "worker-latency",
    ]

    /// The scenario each one is compared with, when both run.
    static let baselines = [
        "client-publish": "raw-publish", "client-enqueue": "raw-enqueue", "raw-consume-multiple": "raw-consume",
        "client-consume": "raw-consume", "worker-drain": "raw-consume", "worker-process": "raw-consume",
        "worker-process-2": "raw-consume", "worker-retry": "worker-drain",
    ]

    let connection: AMQPConnectionConfiguration
    /// The broker URIs as given, for a Warren configuration of the worker scenarios.
    let brokerURLs: [String]
    let count: Int
    let size: Int
    let queueType: String
    let prefetch: UInt16
    let workerPrefetch: Int
    let window: Int
    let rate: Int
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
        workerPrefetch = try arguments.option("--worker-prefetch", as: Int.self) ?? Int(prefetch)
        window = try arguments.option("--window", as: Int.self) ?? 1000
        rate = try arguments.option("--rate", as: Int.self) ?? 1000
        json = arguments.flag("--json")
        var selected: [String] = []
        while let scenario = try arguments.option("--scenario") {
            guard Self.scenarios.contains(scenario) else {
                throw UsageError("unknown scenario '\(scenario)' (one of \(Self.scenarios.joined(separator: ", ")))")
            }
            selected.append(scenario)
        }
        self.selected = selected.isEmpty ? Self.scenarios : Self.scenarios.filter(selected.contains)
        guard count > 0 else { throw UsageError("--count must be positive") }
        guard size >= 0 else { throw UsageError("--size must not be negative") }
        guard window > 0 else { throw UsageError("--window must be positive") }
        guard (1...65535).contains(workerPrefetch) else { throw UsageError("--worker-prefetch must be 1...65535") }
        guard rate > 0 else { throw UsageError("--rate must be positive") }
        guard ["quorum", "classic"].contains(queueType) else { throw UsageError("--queue-type is quorum or classic") }
    }

    /// What one scenario measured.
    struct Measurement {
        var messages: Int
        var elapsed: Duration
        /// Latencies in milliseconds, for the scenarios that measure them.
        var latencies: [Double] = []
        /// Peak RSS of the processes measured, when not this one.
        var peakRSSMegabytes: Double?
    }

    struct Row: Codable {
        var scenario: String
        var messages: Int
        var messagesPerSecond: Int
        var seconds: Double
        var baseline: String?
        var ratio: Double?
        var p50Milliseconds: Double?
        var p99Milliseconds: Double?
        var peakRSSMegabytes: Double
    }

    func run() async throws -> Int32 {
        let body = Self.body(size: size)
        var rows: [Row] = []
        for scenario in selected {
            let queue = "warren.bench.\(scenario).\(UUID().uuidString.prefix(8).lowercased())"
            let measurement: Measurement
            switch scenario {
            case "raw-publish":
                measurement = .init(
                    messages: count,
                    elapsed: try await onThread { try rawPublish(queue: queue, body: body, timed: true) })
            case "client-publish":
                measurement = .init(messages: count, elapsed: try await clientPublish(queue: queue, body: body))
            case "raw-enqueue":
                measurement = .init(messages: count, elapsed: try await rawEnqueue(body: body))
            case "client-enqueue":
                measurement = .init(messages: count, elapsed: try await clientEnqueue(body: body))
            case "raw-consume", "raw-consume-multiple":
                _ = try await onThread { try rawPublish(queue: queue, body: body, timed: false) }
                let every = scenario == "raw-consume" ? 1 : 50
                measurement = .init(
                    messages: count, elapsed: try await onThread { try rawConsume(queue: queue, ackEvery: every) })
            case "client-consume":
                _ = try await onThread { try rawPublish(queue: queue, body: body, timed: false) }
                measurement = .init(messages: count, elapsed: try await clientConsume(queue: queue))
            case "worker-drain":
                measurement = try await workerDrain(body: body, failFirstAttempt: false)
            case "worker-retry":
                measurement = try await workerDrain(body: body, failFirstAttempt: true)
            case "worker-process":
                measurement = try await workerProcesses(1, body: body)
            case "worker-process-2":
                measurement = try await workerProcesses(2, body: body)
            case "worker-latency":
                measurement = try await workerLatency(body: body)
            default:
                continue
            }
            if !scenario.hasPrefix("worker-") { try await onThread { try deleteQueue(queue) } }
            var row = Row(
                scenario: scenario, messages: measurement.messages,
                messagesPerSecond: Int(Double(measurement.messages) / max(measurement.elapsed.seconds, 1e-6)),
                seconds: (measurement.elapsed.seconds * 1000).rounded() / 1000,
                peakRSSMegabytes: measurement.peakRSSMegabytes ?? Self.peakRSSMegabytes())
            if let baseline = Self.baselines[scenario], let base = rows.first(where: { $0.scenario == baseline }) {
                row.baseline = baseline
                row.ratio =
                    (Double(row.messagesPerSecond) / Double(max(1, base.messagesPerSecond)) * 100).rounded()
                    / 100
            }
            if !measurement.latencies.isEmpty {
                let sorted = measurement.latencies.sorted()
                func percentile(_ p: Double) -> Double {
                    (sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] * 100).rounded() / 100
                }
                row.p50Milliseconds = percentile(0.50)
                row.p99Milliseconds = percentile(0.99)
            }
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
        func milliseconds(_ value: Double?) -> String { value.map { String(format: "%.2f", $0) } ?? "" }
        var line = ""
        if header {
            line +=
                pad("scenario", 22) + left("messages", 9) + left("msgs/s", 9) + left("seconds", 9)
                + left("ratio", 7) + "  " + pad("(baseline)", 16) + left("p50 ms", 8) + left("p99 ms", 8)
                + left("RSS MB", 8) + "\n"
        }
        line +=
            pad(row.scenario, 22) + left("\(row.messages)", 9) + left("\(row.messagesPerSecond)", 9)
            + left(String(format: "%.2f", row.seconds), 9)
            + left(row.ratio.map { String(format: "%.2f", $0) } ?? "", 7) + "  "
            + pad(row.baseline.map { "(\($0))" } ?? "", 16) + left(milliseconds(row.p50Milliseconds), 8)
            + left(milliseconds(row.p99Milliseconds), 8) + left(String(format: "%.1f", row.peakRSSMegabytes), 8)
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

    var queueArguments: FieldTable { ["x-queue-type": .string(queueType)] }

    // MARK: Scenarios

    /// Runs blocking work on a thread of its own, never on the cooperative pool.
    func onThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
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
    func rawPublish(
        queue: String, body: [UInt8], timed: Bool, exchange: String = "", routingKey: String? = nil,
        declare: Bool = true, mandatory: Bool = false
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
                    exchange: exchange, routingKey: routingKey ?? queue, body: body, properties: properties,
                    mandatory: mandatory)
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
        return try await twoBatchesInFlight { n in
            await client.publish(Array(repeating: message, count: n)).compactMap { $0 }.count
        }
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
