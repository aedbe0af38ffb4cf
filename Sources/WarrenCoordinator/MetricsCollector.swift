import Foundation
import Synchronization
import Warren
import WarrenAMQP

/// Gathers Warren's metrics: queue depths and consumers (passive declares, no management plugin needed), workers
/// and job outcomes from the events exchange, and the coordinator's schedules. Renders Prometheus text and a JSON
/// snapshot, which it publishes to the metrics exchange every `coordinator.metricsInterval`.
public final class MetricsCollector: Sendable {
    public let configuration: WarrenConfiguration
    let coordinator: Coordinator?
    let client: AMQPClient
    let logger: Logger
    private let state = Mutex(State())

    /// Job durations are bucketed by these upper bounds, in seconds.
    public static let durationBuckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

    public struct QueueSample: Sendable, Codable, Equatable {
        public var queue: String
        public var kind: String
        public var messages: Int
        public var consumers: Int
    }

    struct WorkerSeen {
        var fields: [String: String]
        var at: Date
    }

    struct State {
        var queues: [QueueSample] = []
        var workers: [String: WorkerSeen] = [:]
        var jobs: [String: [String: Int]] = [:]  // task → outcome → count
        var durations: [String: (counts: [Int], sum: Double, count: Int)] = [:]  // task → histogram
        var collectedAt: Date?
    }

    public init(configuration: WarrenConfiguration, coordinator: Coordinator?, logger: Logger, connectionName: String)
        throws
    {
        self.configuration = configuration
        self.coordinator = coordinator
        self.logger = logger
        client = try configuration.makeAMQPClient(connectionName: connectionName)
    }

    public var isConnected: Bool { client.isConnected }

    /// Every Warren queue with its kind.
    var queues: [(name: String, kind: String)] {
        let c = configuration
        return c.queues.map { (c.queueName($0), "work") } + c.retryTiers.map { (c.retryQueueName(tier: $0), "retry") }
            + c.queues.map { (c.deadQueueName($0), "dead") }
    }

    /// Connects, follows events, and collects + publishes every interval until cancelled.
    public func run() async throws {
        try await client.connect()
        defer { Task { [client] in await client.close() } }
        try await followEvents()
        while !Task.isCancelled {
            await collect()
            await publishSnapshot()
            try? await Task.sleep(for: configuration.coordinator.metricsInterval)
        }
    }

    public func close() async { await client.close() }

    private func followEvents() async throws {
        let exchange = configuration.eventsExchange
        let queue = try await client.withChannel { channel in
            let queue = try channel.declareQueue("", durable: false, exclusive: true, autoDelete: true).name
            try channel.bindQueue(queue, exchange: exchange, routingKey: "worker.heartbeat")
            try channel.bindQueue(queue, exchange: exchange, routingKey: "job.*")
            return queue
        }
        try await client.consume(queue: queue, prefetch: 1000) { [self] delivery in
            client.ack(delivery.tag)
            guard let fields = (try? JSONSerialization.jsonObject(with: delivery.body)) as? [String: String] else {
                return
            }
            state.withLock { s in Self.record(delivery.routingKey, fields, into: &s) }
        }
    }

    static func record(_ event: String, _ fields: [String: String], into s: inout State) {
        switch event {
        case "worker.heartbeat":
            if let worker = fields["worker"] { s.workers[worker] = WorkerSeen(fields: fields, at: Date()) }
        case "job.succeeded", "job.retrying", "job.dead":
            let task = fields["task"] ?? "unknown"
            let outcome = ["job.succeeded": "succeeded", "job.retrying": "retried", "job.dead": "dead"][event] ?? "?"
            s.jobs[task, default: [:]][outcome, default: 0] += 1
            if event == "job.succeeded", let ms = fields["durationMs"].flatMap(Double.init) {
                let seconds = ms / 1000
                var histogram = s.durations[task] ?? (Array(repeating: 0, count: durationBuckets.count), 0, 0)
                if let index = durationBuckets.firstIndex(where: { seconds <= $0 }) { histogram.counts[index] += 1 }
                histogram.sum += seconds
                histogram.count += 1
                s.durations[task] = histogram
            }
        default:
            break
        }
    }

    /// Reads every queue's depth and consumer count.
    public func collect() async {
        let queues = self.queues
        let samples = try? await client.withChannel { channel in
            queues.compactMap { queue -> QueueSample? in
                guard let info = try? channel.declareQueue(queue.name, passive: true) else { return nil }
                return QueueSample(
                    queue: queue.name, kind: queue.kind, messages: Int(info.messageCount),
                    consumers: Int(info.consumerCount))
            }
        }
        if let samples {
            state.withLock { s in
                s.queues = samples
                s.collectedAt = Date()
            }
        }
    }

    /// The queue figures of the last ``collect()``.
    public var queueSamples: [QueueSample] { state.withLock { $0.queues } }

    /// Connects and follows worker events without publishing snapshots (for `warren status`).
    public func start() async throws {
        try await client.connect()
        try await followEvents()
    }

    /// Workers whose last heartbeat is no older than three heartbeat intervals, by worker id.
    public var liveWorkers: [String: [String: String]] {
        let horizon = Date().addingTimeInterval(-3 * configuration.worker.heartbeatInterval.seconds)
        return state.withLock { s in s.workers.filter { $0.value.at >= horizon }.mapValues(\.fields) }
    }

    /// The metrics in Prometheus text exposition format.
    public func prometheusText() -> String {
        let s = state.withLock { $0 }
        var text = PrometheusText()
        text.gauge(
            "warren_queue_messages", help: "Messages ready in each Warren queue.",
            s.queues.map { (["queue": $0.queue, "kind": $0.kind], Double($0.messages)) })
        text.gauge(
            "warren_queue_consumers", help: "Consumers of each Warren queue.",
            s.queues.map { (["queue": $0.queue, "kind": $0.kind], Double($0.consumers)) })
        text.gauge(
            "warren_workers_up", help: "Workers that sent a heartbeat within three intervals.",
            [([:], Double(liveWorkers.count))])
        text.counter(
            "warren_jobs_total", help: "Jobs by task and outcome, from worker events since this coordinator started.",
            s.jobs.sorted { $0.key < $1.key }.flatMap { task, outcomes in
                outcomes.sorted { $0.key < $1.key }.map { (["task": task, "outcome": $0.key], Double($0.value)) }
            })
        text.histogram(
            "warren_job_duration_seconds", help: "Handler run time of succeeded jobs.", buckets: Self.durationBuckets,
            s.durations.sorted { $0.key < $1.key }.map {
                (["task": $0.key], $0.value.counts, $0.value.sum, $0.value.count)
            })
        if let coordinator {
            let last = coordinator.lastFireTimes
            let next = coordinator.nextFireTimes()
            let counts = coordinator.fireCounts
            let names = coordinator.schedules.map(\.settings.name)
            text.gauge(
                "warren_schedule_last_fire_timestamp_seconds", help: "Last fire time of each schedule (this leader).",
                names.compactMap { name in last[name].map { (["schedule": name], $0.timeIntervalSince1970) } })
            text.gauge(
                "warren_schedule_next_fire_timestamp_seconds", help: "Next fire time of each enabled schedule.",
                names.compactMap { name in next[name].map { (["schedule": name], $0.timeIntervalSince1970) } })
            text.counter(
                "warren_schedule_fires_total", help: "Fires published by this coordinator.",
                names.map { (["schedule": $0], Double(counts[$0] ?? 0)) })
            text.gauge(
                "warren_coordinator_leader", help: "1 while this coordinator is the leader.",
                [([:], coordinator.isLeader ? 1 : 0)])
        }
        return text.text
    }

    /// The JSON snapshot published to the metrics exchange.
    public func snapshotJSON() -> Data {
        let s = state.withLock { $0 }
        var object: [String: Any] = [
            "ts": Date().formatted(.iso8601),
            "queues": s.queues.map {
                ["queue": $0.queue, "kind": $0.kind, "messages": $0.messages, "consumers": $0.consumers]
                    as [String: Any]
            },
            "workers": Array(liveWorkers.values),
            "jobs": s.jobs,
        ]
        if let coordinator {
            object["leader"] = coordinator.isLeader
            object["schedules"] = coordinator.nextFireTimes().mapValues { $0.formatted(.iso8601) }
        }
        return (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
    }

    private func publishSnapshot() async {
        let message = OutgoingMessage(
            exchange: configuration.metricsExchange, routingKey: "", body: Array(snapshotJSON()),
            properties: BasicProperties(contentType: "application/json", deliveryMode: .transient))
        do {
            try await client.publish(message)
        } catch {
            logger.debug("metrics snapshot not published", ["error": "\(error)"])
        }
    }
}
