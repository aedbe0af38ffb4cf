import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

@Suite("Worker start-up, events, and jobs that outlive their connection")
struct WorkerStartupAndEventsTests {
    @Test func aQueueOnTheBrokerWithOtherArgumentsFailsStartUpNamingBothValues() async throws {
        // The harness declared the work queue with deliveryLimit 3; this configuration asks for 5.
        try await WorkerHarness.with("conflict") { h in
            let json =
                #"{"broker": {"url": "\#(TestBroker.url)"}, "prefix": "\#(h.prefix)", "retryTiers": ["200ms", "5s", "30s"], "queues": [{"name": "work", "tasks": ["test.#"], "deliveryLimit": 5}]}"#
            let changed = try WarrenConfiguration.decode(Data(json.utf8))
            let worker = try JobWorker(configuration: changed, registry: .recording(Recorder()), logger: h.logger)
            await #expect {
                try await worker.run()
            } throws: { error in
                guard case WarrenError.topology(let message) = error else { return false }
                return message.contains("queue '\(h.workQueue)'") && message.contains("x-delivery-limit = 3")
                    && message.contains("asks for x-delivery-limit = 5")
            }
        }
    }

    @Test func registeringATaskTwiceIsCaughtAtStartUp() throws {
        var registry = JobRegistry()
        registry.register(TestJob.self) { _, _ in }
        registry.register(TestJob.self) { _, _ in }
        let configuration = try WarrenConfiguration.decode(
            Data(#"{"queues": [{"name": "work", "tasks": ["test.#"]}]}"#.utf8))
        #expect {
            try JobWorker(configuration: configuration, registry: registry, logger: Logger(sink: .none))
        } throws: { error in
            "\(error)".contains("task 'test.job' is registered twice")
        }
    }

    @Test func workerPublishesHeartbeatsAndLifecycleEvents() async throws {
        try await WorkerHarness.with("events", workerJSON: #""lifecycleEvents": true"#) { h in
            let events = Recorder<(String, [String: String])>()
            let queue = try await h.raw.withChannel { [exchange = h.configuration.eventsExchange] channel in
                let queue = try channel.declareQueue("", durable: false, exclusive: true, autoDelete: true).name
                try channel.bindQueue(queue, exchange: exchange, routingKey: "#")
                return queue
            }
            try await h.raw.consume(queue: queue, prefetch: 100) { delivery in
                let fields = (try? JSONSerialization.jsonObject(with: delivery.body)) as? [String: String] ?? [:]
                events.append((delivery.routingKey, fields))
                h.raw.ack(delivery.tag)
            }
            let runs = Recorder<Run>()
            try h.startWorker(.recording(runs))
            let ok = try await h.jobs.enqueue(TestJob(n: 1))
            let bad = try await h.jobs.enqueue(TestJob(n: 2, behaviour: "permanent"))
            let all = try await events.wait(for: "a heartbeat and both jobs' events") { all in
                all.contains { $0.0 == "worker.heartbeat" } && all.contains { $0.0 == "job.succeeded" }
                    && all.contains { $0.0 == "job.dead" }
            }
            let heartbeat = try #require(all.first { $0.0 == "worker.heartbeat" }?.1)
            for key in [
                "host", "pid", "queues", "concurrency", "inFlight", "jobs.processed", "rssBytes", "uptimeSeconds",
            ] {
                #expect(heartbeat[key] != nil, "heartbeat has \(key)")
            }
            #expect(heartbeat["queues"] == h.workQueue)
            #expect(all.first { $0.0 == "job.succeeded" }?.1["jobID"] == ok)
            let dead = try #require(all.first { $0.0 == "job.dead" }?.1)
            #expect(dead["jobID"] == bad && dead["reason"] == "permanent")
        }
    }

    @Test func aJobFinishingAfterItsConnectionWasLostIsNotAckedButRedelivered() async throws {
        try await WorkerHarness.with("outlive") { h in
            let runs = Recorder<Run>()
            try h.startWorker(.recording(runs), name: "outlived")
            // Long enough that `rabbitmqctl close_connection` (slow under load) lands while the job runs.
            try await h.jobs.enqueue(TestJob(n: 1, behaviour: "sleep-5000"))
            try await runs.wait(forCount: 1, "the slow job to start")
            let pid = try #require(try TestBroker.connectionPID(named: "\(h.prefix)-outlived-consume"))
            try TestBroker.script("ctl", "close_connection", pid, "test closes it under a running job")
            // The first run finishes on a dead connection: its ack is dropped and the log says so; the broker
            // redelivers the message, and it runs again.
            try await h.logLines.wait(for: "the dropped-ack warning", timeout: .seconds(15)) { lines in
                lines.contains { $0.contains("not acked, the broker redelivers it") }
            }
            let again = try await runs.wait(forCount: 2, "the redelivered run", timeout: .seconds(20))
            #expect(again.map(\.n) == [1, 1])
            #expect(again[1].attempt == 1)
            try await h.eventuallyEmpty(h.workQueue)
        }
    }

    @Test func workerServesItsOwnMetricsWhenAPortIsConfigured() async throws {
        try await WorkerHarness.with("workermetrics", workerJSON: #""metricsPort": 0"#) { h in
            let runs = Recorder<Run>()
            let worker = try h.startWorker(.recording(runs))
            try await h.jobs.enqueue(TestJob(n: 1))
            try await h.jobs.enqueue(TestJob(n: 2, behaviour: "permanent"))
            _ = try await h.deadLetters(1)
            try await runs.wait(forCount: 2, "both jobs")
            let deadline = ContinuousClock.now + .seconds(10)
            while worker.metricsPort == nil {
                if ContinuousClock.now > deadline { throw TestFailure("the worker's metrics listener did not start") }
                try await Task.sleep(for: .milliseconds(20))
            }
            let port = try #require(worker.metricsPort)
            // The dead letter is counted just after the broker confirmed it.
            try await h.logLines.wait(for: "the dead letter to be counted") { _ in
                worker.counters.dead.load(ordering: .relaxed) == 1
            }
            let result = try ChildProcess.run(
                "/usr/bin/python3",
                [
                    "-c",
                    "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:\(port)/metrics').read().decode())",
                ])
            let samples = try PrometheusText.parse(result.output)
            func value(_ outcome: String) -> Double? {
                samples.first { $0.name == "warren_worker_jobs_total" && $0.labels["outcome"] == outcome }?.value
            }
            #expect(value("succeeded") == 1)
            #expect(value("dead") == 1)
            #expect(samples.contains { $0.name == "warren_worker_jobs_in_flight" })
            #expect(samples.first { $0.name == "warren_worker_connected" }?.value == 1)
        }
    }
}
