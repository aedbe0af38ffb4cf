import Foundation
import Synchronization
import Warren
import WarrenAMQP

/// One test's private Warren: a unique prefix (so its exchanges and queues are its own), a configuration, a
/// publisher for raw messages, and in-process workers. `finish()` stops the workers and deletes everything.
public final class WorkerHarness: Sendable {
    public let prefix: String
    public let configuration: WarrenConfiguration
    public let raw: AMQPClient
    public let jobs: JobClient
    public let logLines = Recorder<String>()
    /// The configuration as JSON, for `warren` commands run as processes.
    public let configurationJSON: String
    private let workers = Mutex<[(JobWorker, Task<Void, Error>)]>([])

    /// `extra` is JSON members merged into the test configuration's top level (e.g. `"tasks": {...}`).
    public init(
        _ name: String, queueJSON: String = #"{"name": "work", "tasks": ["test.#"], "deliveryLimit": 3}"#,
        workerJSON: String = "", retryJSON: String = "", tasksJSON: String = "{}"
    ) async throws {
        prefix =
            "t-"
            + TestBroker.unique(name).replacingOccurrences(of: "test.", with: "").replacingOccurrences(
                of: ".", with: "-")
        let json = """
            {
              "broker": {"url": "\(TestBroker.url)"},
              "prefix": "\(prefix)",
              "queues": [\(queueJSON)],
              "worker": {"concurrency": 4, "shutdownGrace": "5s", "maxBodyBytes": 4096, "heartbeatInterval": "1s",
                         "lifecycleEvents": false\(workerJSON.isEmpty ? "" : ", " + workerJSON)},
              "retry": {"maxAttempts": 3, "baseDelay": "300ms", "factor": 2, "maxDelay": "5s", "jitter": false
                        \(retryJSON.isEmpty ? "" : ", " + retryJSON)},
              "retryTiers": ["200ms", "5s", "30s"],
              "tasks": \(tasksJSON)
            }
            """
        configurationJSON = json
        configuration = try WarrenConfiguration.decode(Data(json.utf8))
        // Reconnecting, so a test that restarts the broker can still clean up.
        raw = try await TestBroker.client(prefix + "-raw", reconnect: .init())
        jobs = try JobClient(configuration: configuration, connectionName: prefix + "-jobs")
        try await jobs.connect()
        try await jobs.declareTopology()
    }

    public var logger: Logger {
        let lines = logLines
        return Logger(sink: Logger.Sink(minimumLevel: .debug) { lines.append($0) })
    }

    public var workQueue: String { "\(prefix).work" }

    /// Writes the configuration to a file for `warren --config`.
    public func configFile() throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(prefix)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("warren.json")
        try Data(configurationJSON.utf8).write(to: file)
        return file.path
    }

    /// Runs the built `warren` with `arguments` to completion.
    public func warren(_ arguments: String...) throws -> (status: Int32, output: String) {
        try ChildProcess.run(ChildProcess.warren.path, arguments)
    }
    public var deadQueue: String { "\(prefix).work.dead" }

    /// Starts an in-process worker running `registry`'s handlers.
    @discardableResult
    public func startWorker(_ registry: JobRegistry, name: String = "worker") throws -> JobWorker {
        let worker = try JobWorker(
            configuration: configuration, registry: registry, logger: logger.with(["test.worker": name]),
            connectionName: "\(prefix)-\(name)")
        let task = Task { try await worker.run() }
        workers.withLock { $0.append((worker, task)) }
        return worker
    }

    /// Publishes a raw message to the jobs exchange (what a producer in any language does).
    public func publishRaw(
        task: String, body: [UInt8], headers: FieldTable? = nil, messageID: String? = UUID().uuidString,
        contentType: String? = "application/json", timestamp: Date? = nil, expiration: String? = nil
    ) async throws {
        try await raw.publish(
            OutgoingMessage(
                exchange: configuration.jobsExchange, routingKey: task, body: body,
                properties: BasicProperties(
                    contentType: contentType, headers: headers, deliveryMode: .persistent, expiration: expiration,
                    messageID: messageID, timestamp: timestamp),
                mandatory: true))
    }

    /// Waits for `count` messages in the dead queue and returns them (acked, so they are gone).
    public func deadLetters(_ count: Int, timeout: Duration = .seconds(15)) async throws -> [Delivery] {
        let recorder = Recorder<Delivery>()
        let tag = try await raw.consume(queue: deadQueue, prefetch: 100) { recorder.append($0) }
        defer { Task { [raw] in try? await raw.cancel(consumerTag: tag) } }
        let letters = try await recorder.wait(forCount: count, "dead letters in \(deadQueue)", timeout: timeout)
        for letter in letters { raw.ack(letter.tag) }
        return letters
    }

    public func queueDepth(_ queue: String) async throws -> UInt32 {
        try await raw.withChannel { try $0.declareQueue(queue, passive: true).messageCount }
    }

    /// Stops every worker gracefully and waits until each `run()` returned; rethrows a worker's error.
    public func finishWorkers() async throws {
        let running = workers.withLock { $0 }
        for (worker, _) in running { worker.shutdown() }
        for (_, task) in running { try await task.value }
    }

    /// Stops every worker gracefully and deletes this test's exchanges and queues.
    public func finish() async {
        try? await finishWorkers()
        if ProcessInfo.processInfo.environment["WARREN_TEST_DUMP_LOGS"] != nil {
            print(logLines.all.joined(separator: "\n"))
        }
        let topology = Topology(configuration: configuration)
        _ = try? await raw.withChannel { topology.delete(on: $0) }
        await jobs.close()
        await raw.close()
    }

    /// Runs `body` with a harness and always cleans up.
    public static func with<T>(
        _ name: String, queueJSON: String = #"{"name": "work", "tasks": ["test.#"], "deliveryLimit": 3}"#,
        workerJSON: String = "", retryJSON: String = "", tasksJSON: String = "{}",
        _ body: (WorkerHarness) async throws -> T
    ) async throws -> T {
        let harness = try await WorkerHarness(
            name, queueJSON: queueJSON, workerJSON: workerJSON, retryJSON: retryJSON, tasksJSON: tasksJSON)
        do {
            let result = try await body(harness)
            await harness.finish()
            return result
        } catch {
            await harness.finish()
            throw error
        }
    }
}

/// A job the tests enqueue; its handler does what `behaviour` says.
public struct TestJob: JobPayload {
    public static let taskName = "test.job"
    public var n: Int
    /// "ok" (the default when absent), "fail-until-N" (retryable error on attempts < N), "permanent", "sleep-MS"
    public var behaviour: String = "ok"

    public init(n: Int, behaviour: String = "ok") {
        self.n = n
        self.behaviour = behaviour
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        n = try container.decode(Int.self, forKey: .n)
        behaviour = try container.decodeIfPresent(String.self, forKey: .behaviour) ?? "ok"
    }
}

/// What a handler saw: one record per run.
public struct Run: Sendable {
    public var n: Int
    public var id: String
    public var attempt: Int
    public var at: Date
    public var headers: [String: String]
}

public struct SimulatedFailure: Error, CustomStringConvertible {
    public var description: String { "simulated failure" }
}

extension JobRegistry {
    /// A registry whose `test.job` handler records each run in `runs` and behaves as the payload says.
    public static func recording(_ runs: Recorder<Run>) -> JobRegistry {
        var registry = JobRegistry()
        registry.register(TestJob.self) { job, context in
            runs.append(Run(n: job.n, id: context.id, attempt: context.attempt, at: Date(), headers: context.headers))
            switch job.behaviour {
            case "permanent":
                throw PermanentJobError("job \(job.n) cannot ever succeed")
            case let b where b.hasPrefix("fail-until-"):
                if context.attempt < Int(b.dropFirst("fail-until-".count)) ?? 0 { throw SimulatedFailure() }
            case let b where b.hasPrefix("sleep-"):
                try await Task.sleep(for: .milliseconds(Int(b.dropFirst("sleep-".count)) ?? 0))
            default:
                break
            }
        }
        return registry
    }
}
