import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenCoordinator
import WarrenTestSupport

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

@Suite("Coordinator metrics over HTTP and on the metrics exchange")
struct MetricsTests {
    static func get(_ port: Int, _ path: String) async throws -> (status: Int, body: String) {
        // A unique query (the server ignores it) and no local cache: every poll reaches the server.
        let url = try #require(URL(string: "http://127.0.0.1:\(port)\(path)?nocache=\(UUID().uuidString)"))
        var request = URLRequest(url: url)
        request.cachePolicy = .reloadIgnoringLocalCacheData
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    @Test func scrapeShowsQueueDepthsSnapshotArrivesAndHealthzFollowsTheConnection() async throws {
        let prefix =
            "t-"
            + TestBroker.unique("metrics").replacingOccurrences(of: "test.", with: "")
            .replacingOccurrences(of: ".", with: "-")
        let json = """
            {
              "broker": {"url": "\(TestBroker.url)"},
              "prefix": "\(prefix)",
              "queues": [{"name": "work", "tasks": ["test.#"]}],
              "retryTiers": ["1s"],
              "worker": {"reconnectInitialDelay": "30s", "reconnectMaxDelay": "30s"},
              "coordinator": {"metricsInterval": "1s", "leaderRetryInterval": "300ms"}
            }
            """
        let configuration = try WarrenConfiguration.decode(Data(json.utf8))
        let jobs = try JobClient(configuration: configuration, connectionName: prefix + "-jobs")
        try await jobs.connect()
        try await jobs.declareTopology()
        let raw = try await TestBroker.client(prefix + "-raw")
        let snapshots = Recorder<Data>()
        let snapshotQueue = try await raw.withChannel { channel in
            let queue = try channel.declareQueue("", durable: false, exclusive: true, autoDelete: true).name
            try channel.bindQueue(queue, exchange: configuration.metricsExchange, routingKey: "")
            return queue
        }
        try await raw.consume(queue: snapshotQueue, prefetch: 10) { delivery in
            snapshots.append(delivery.body)
            raw.ack(delivery.tag)
        }
        // Three jobs waiting in the work queue, two letters in its dead queue.
        for n in 0..<3 { try await jobs.enqueue(task: "test.wait", json: Data("{\"n\":\(n)}".utf8)) }
        for _ in 0..<2 {
            try await raw.publish(
                OutgoingMessage(
                    exchange: configuration.deadExchange, routingKey: "\(prefix).work", body: Array("{}".utf8)))
        }

        let service = try CoordinatorService(
            configuration: configuration, logger: Logger(sink: .none), name: prefix + "-coord", metricsPort: 0)
        let running = Task { try await service.run() }
        do {
            // Scrape until the collector has read the queues, then check the figures.
            let deadline = ContinuousClock.now + .seconds(15)
            var samples: [PrometheusSample] = []
            while true {
                if service.metricsPort > 0, let (status, body) = try? await Self.get(service.metricsPort, "/metrics"),
                    status == 200
                {
                    samples = try PrometheusText.parse(body)
                    if samples.contains(where: { $0.name == "warren_queue_messages" }) { break }
                }
                if ContinuousClock.now > deadline { throw TestFailure("no queue metrics within 15 s") }
                try await Task.sleep(for: .milliseconds(50))
            }
            func value(_ name: String, _ labels: [String: String]) -> Double? {
                samples.first { sample in
                    sample.name == name && labels.allSatisfy { key, value in sample.labels[key] == value }
                }?.value
            }
            #expect(value("warren_queue_messages", ["queue": "\(prefix).work", "kind": "work"]) == 3)
            #expect(value("warren_queue_messages", ["queue": "\(prefix).work.dead", "kind": "dead"]) == 2)
            #expect(value("warren_queue_messages", ["queue": "\(prefix).retry.1s", "kind": "retry"]) == 0)
            #expect(value("warren_queue_consumers", ["queue": "\(prefix).work"]) == 0)
            #expect(samples.contains { $0.name == "warren_coordinator_leader" })
            let missing = try await Self.get(service.metricsPort, "/nope")
            #expect(missing.status == 404)
            let health = try await Self.get(service.metricsPort, "/healthz")
            #expect(health.status == 200)

            let body = try #require(try await snapshots.wait(forCount: 1, "a JSON snapshot").first)
            let snapshot = try #require(try JSONSerialization.jsonObject(with: body) as? [String: Any])
            let queues = snapshot["queues"] as? [[String: Any]] ?? []
            #expect(queues.contains { $0["queue"] as? String == "\(prefix).work" && $0["messages"] as? Int == 3 })

            // Drop the coordinator's connection: /healthz answers 503 until it is back (30 s reconnect delay,
            // so a slow rabbitmqctl cannot make the test miss the window).
            let pid = try #require(try TestBroker.connectionPID(named: prefix + "-coord"))
            try TestBroker.script("ctl", "close_connection", pid, "test drops the coordinator")
            var sawUnhealthy = false
            let until = ContinuousClock.now + .seconds(25)
            while ContinuousClock.now < until {
                if try await Self.get(service.metricsPort, "/healthz").status == 503 {
                    sawUnhealthy = true
                    break
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(sawUnhealthy)
        } catch {
            service.shutdown()
            _ = try? await running.value
            throw error
        }
        service.shutdown()
        _ = try? await running.value
        _ = try? await raw.withChannel { channel in
            for queue in ["\(prefix).work", "\(prefix).work.dead", "\(prefix).retry.1s"] {
                _ = try? channel.deleteQueue(queue)
            }
            for exchange in ["jobs", "retry", "dead", "events", "metrics"] {
                try? channel.deleteExchange("\(prefix).\(exchange)")
            }
        }
        await raw.close()
        await jobs.close()
    }
}
