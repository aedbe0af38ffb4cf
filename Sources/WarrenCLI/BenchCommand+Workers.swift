import Foundation
import Synchronization
import Warren
import WarrenAMQP

#if canImport(Glibc)
    import Glibc
#endif

/// A no-op job for the worker benchmarks; `sent` is the publisher's monotonic clock in nanoseconds.
struct BenchJob: JobPayload {
    static let taskName = "bench.noop"
    var sent: UInt64?
}

extension BenchCommand {
    /// A Warren configuration of its own (a random prefix) with one work queue for `tasks`.
    func benchConfiguration(tasks: [String]) -> WarrenConfiguration {
        var settings = WarrenConfiguration(
            queues: [QueueSettings(name: "work", tasks: tasks, kind: queueType == "classic" ? .classic : .quorum)])
        settings.prefix = "bench-\(UUID().uuidString.prefix(8).lowercased())"
        settings.brokerURLs = brokerURLs
        settings.worker.concurrency = 16
        settings.worker.prefetch = workerPrefetch
        settings.worker.lifecycleEvents = false
        settings.retryTiers = [.milliseconds(100)]
        settings.retry = RetryPolicy(maxAttempts: 5, baseDelay: .milliseconds(100), jitter: false)
        return settings
    }

    /// Declares the configuration's topology, runs `body`, and deletes every queue and exchange of it afterwards.
    func withTopology<T>(
        _ configuration: WarrenConfiguration, _ body: () async throws -> T
    ) async throws -> T {
        let jobs = try JobClient(configuration: configuration, connectionName: "warren-bench-setup")
        try await jobs.connect()
        try await jobs.declareTopology()
        await jobs.close()
        let result: Result<T, Error>
        do { result = .success(try await body()) } catch { result = .failure(error) }
        try await onThread { [self] in
            let connection = try AMQPConnection.connect(self.connection)
            defer { connection.close() }
            Topology(configuration: configuration).delete(on: try connection.openChannel())
        }
        return try result.get()
    }

    /// Publishes `count` copies of `body` as jobs of `task` through the configuration's jobs exchange, confirmed.
    func prefill(_ configuration: WarrenConfiguration, task: String, body: [UInt8]) async throws {
        _ = try await onThread { [self] in
            try rawPublish(
                queue: configuration.queueName(configuration.queues[0]), body: body, timed: false,
                exchange: configuration.jobsExchange, routingKey: task, declare: false)
        }
    }

    /// Raw confirmed publishes through a jobs exchange, as an enqueue does them on the wire.
    func rawEnqueue(body: [UInt8]) async throws -> Duration {
        let configuration = benchConfiguration(tasks: ["bench.#"])
        return try await withTopology(configuration) {
            try await onThread { [self] in
                try rawPublish(
                    queue: configuration.queueName(configuration.queues[0]), body: body, timed: true,
                    exchange: configuration.jobsExchange, routingKey: BenchJob.taskName, declare: false,
                    mandatory: true)
            }
        }
    }

    /// `JobClient.enqueue(batch:)`: two batches of half the window in flight, each job with a fresh UUID.
    func clientEnqueue(body: [UInt8]) async throws -> Duration {
        let configuration = benchConfiguration(tasks: ["bench.#"])
        let json = Data(body)
        return try await withTopology(configuration) {
            let client = try JobClient(configuration: configuration, connectionName: "warren-bench-enqueue")
            try await client.connect()
            defer { Task { await client.close() } }
            return try await twoBatchesInFlight { n in
                let batch = (0..<n).map { _ in
                    (task: BenchJob.taskName, json: json, id: JobID.random())
                }
                return await client.enqueue(batch: batch).compactMap { $0 }.count
            }
        }
    }

    /// Runs `publish(n)` (which returns how many of its n publishes failed) from two tasks at once until `count`
    /// messages were published; returns the time it took. Two batches, each half the window, keep the pipe full
    /// while one batch's confirms return.
    func twoBatchesInFlight(_ publish: @escaping @Sendable (Int) async throws -> Int) async throws -> Duration {
        let batchSize = max(1, window / 2)
        let total = count
        let start = ContinuousClock.now
        let failures = try await withThrowingTaskGroup(of: Int.self) { group in
            let next = SharedCounter()
            for _ in 0..<2 {
                group.addTask {
                    var failed = 0
                    while true {
                        let first = next.value.add(batchSize, ordering: .relaxed).oldValue
                        if first >= total { break }
                        failed += try await publish(min(batchSize, total - first))
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

    /// Pre-fills `count` jobs, then times one JobWorker in this process until every job succeeded. With
    /// `failFirstAttempt`, each job fails once (retried through the 100ms tier) and succeeds on its second attempt.
    func workerDrain(body: [UInt8], failFirstAttempt: Bool) async throws -> Measurement {
        let configuration = benchConfiguration(tasks: ["bench.#"])
        return try await withTopology(configuration) {
            try await prefill(configuration, task: BenchJob.taskName, body: body)
            let done = SharedCounter()
            let total = count
            let finished = Once()
            var registry = JobRegistry()
            registry.register(BenchJob.self) { _, context in
                if failFirstAttempt, context.attempt == 1 { throw BenchFailure() }
                if done.value.add(1, ordering: .relaxed).newValue == total { finished.signal() }
            }
            let elapsed = try await timedWorker(
                configuration, registry: registry, expected: total, done: done, finished: finished
            ) {}
            return Measurement(messages: total, elapsed: elapsed)
        }
    }

    /// Jobs published at a steady `rate` (10 s worth, at most `count`) to a JobWorker with its default prefetch;
    /// the latency is from just before the publish to the handler's first line.
    func workerLatency(body: [UInt8]) async throws -> Measurement {
        var settings = benchConfiguration(tasks: ["bench.#"])
        settings.worker.prefetch = nil
        let configuration = settings
        let total = min(count, rate * 10)
        let padding = String(repeating: "x", count: max(0, body.count - 40))
        return try await withTopology(configuration) {
            let done = SharedCounter()
            let latencies = Mutex<[Double]>([])
            latencies.withLock { $0.reserveCapacity(total) }
            let finished = Once()
            var registry = JobRegistry()
            registry.register(BenchJob.self) { job, _ in
                let now = DispatchTime.now().uptimeNanoseconds
                let sent = job.sent ?? now
                latencies.withLock { $0.append(Double(now &- sent) / 1e6) }
                if done.value.add(1, ordering: .relaxed).newValue == total { finished.signal() }
            }
            let interval = 1.0 / Double(rate)
            let connection = self.connection
            _ = try await timedWorker(
                configuration, registry: registry, expected: total, done: done, finished: finished
            ) {
                // The publisher runs on a thread of its own, without confirms, pacing each publish to its slot.
                Thread.detachNewThread {
                    do {
                        let publisher = try AMQPConnection.connect(connection)
                        defer { publisher.close() }
                        let channel = try publisher.openChannel()
                        let start = DispatchTime.now().uptimeNanoseconds
                        for i in 0..<total {
                            let due = start + UInt64(Double(i) * interval * 1e9)
                            let now = DispatchTime.now().uptimeNanoseconds
                            if due > now { usleep(UInt32((due - now) / 1000)) }
                            let body = #"{"sent":\#(DispatchTime.now().uptimeNanoseconds),"pad":"\#(padding)"}"#
                            try channel.publish(
                                exchange: configuration.jobsExchange, routingKey: BenchJob.taskName,
                                body: Array(body.utf8), properties: .persistentJSON)
                        }
                    } catch {
                        CLI.printError("warren bench: latency publisher failed: \(error)")
                        finished.signal()
                    }
                }
            }
            return Measurement(messages: total, elapsed: .seconds(Double(total) / Double(rate)))
                .with(latencies: latencies.withLock { $0 })
        }
    }

    /// Runs a JobWorker with `registry` until `finished` is signalled (or no job finished for 30 s), calling
    /// `started` once it runs; returns the time from its start until `finished`, or throws when fewer than
    /// `expected` jobs were done.
    private func timedWorker(
        _ configuration: WarrenConfiguration, registry: JobRegistry, expected: Int, done: SharedCounter,
        finished: Once, started: () -> Void
    ) async throws -> Duration {
        let worker = try JobWorker(
            configuration: configuration, registry: registry, logger: Logger(sink: .none),
            connectionName: "warren-bench-worker")
        let start = ContinuousClock.now
        let running = Task { try await worker.run() }
        started()
        let watchdog = Task {
            var last = -1
            while !Task.isCancelled {
                try await Task.sleep(for: .seconds(30))
                let now = done.value.load(ordering: .relaxed)
                if now == last { break }
                last = now
            }
            finished.signal()
        }
        await finished.wait()
        let elapsed = ContinuousClock.now - start
        watchdog.cancel()
        worker.shutdown()
        try await running.value
        let completed = done.value.load(ordering: .relaxed)
        guard completed >= expected else {
            throw BenchError("the worker stalled: \(completed) of \(expected) jobs finished, then none for 30 s")
        }
        return elapsed
    }

    /// Pre-fills `count` `warren.diag.noop` jobs, starts `processes` `warren worker` processes on them and reads
    /// their `/metrics` every 20 ms: the rate is counted from the first finished job to the last, so process
    /// start-up is not in it; RSS is the largest worker's peak.
    func workerProcesses(_ processes: Int, body: [UInt8]) async throws -> Measurement {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "warren-bench-\(UUID().uuidString.prefix(8).lowercased())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let prefix = "bench-\(UUID().uuidString.prefix(8).lowercased())"
        let urls = brokerURLs.joined(separator: ",")
        /// Writes the worker configuration (the broker comes from WARREN_AMQP_URL) and returns its path.
        func configFile(_ name: String, metricsPort: Int?) throws -> String {
            let text = """
                {
                  "prefix": "\(prefix)",
                  "queues": [{ "name": "work", "tasks": ["warren.diag.#"], "type": "\(queueType)" }],
                  "worker": { "concurrency": 16, "prefetch": \(workerPrefetch), "lifecycleEvents": false,
                              "heartbeatInterval": "60s", "metricsPort": \(metricsPort.map(String.init) ?? "null") },
                  "retryTiers": ["1s"]
                }
                """
            let file = directory.appendingPathComponent(name)
            try Data(text.utf8).write(to: file)
            return file.path
        }
        let configuration = try CLI.loadConfiguration(
            path: try configFile("warren.json", metricsPort: nil), environment: ["WARREN_AMQP_URL": urls])
        return try await withTopology(configuration) {
            try await prefill(configuration, task: DiagnosticJobs.Noop.taskName, body: body)
            let ports = try (0..<processes).map { _ in try Self.freePort() }
            var children: [Process] = []
            defer {
                for child in children where child.isRunning { child.terminate() }
            }
            let logs = (0..<processes).map { directory.appendingPathComponent("worker-\($0).log") }
            for (index, port) in ports.enumerated() {
                let child = Process()
                child.executableURL = URL(fileURLWithPath: try Self.executablePath())
                child.arguments = [
                    "worker", "--config", try configFile("warren-\(index).json", metricsPort: port),
                    "--diagnostic-tasks", "--no-examples", "--log-level", "warning",
                    "--name", "warren-bench-worker-\(index)",
                ]
                var environment = ProcessInfo.processInfo.environment
                environment["WARREN_AMQP_URL"] = urls
                child.environment = environment
                _ = FileManager.default.createFile(atPath: logs[index].path, contents: nil)
                let handle = try FileHandle(forWritingTo: logs[index])
                child.standardOutput = handle
                child.standardError = handle
                try child.run()
                children.append(child)
            }
            let total = count
            let spawned = ContinuousClock.now
            var first: (at: ContinuousClock.Instant, done: Int)?
            var last = (at: ContinuousClock.now, done: 0)
            while true {
                try await Task.sleep(for: .milliseconds(20))
                for child in children where !child.isRunning {
                    let index = children.firstIndex { $0 === child } ?? 0
                    let log = try? String(contentsOf: logs[index], encoding: .utf8)
                    throw BenchError(
                        "a worker process exited (status \(child.terminationStatus)): \(log?.suffix(400) ?? "")")
                }
                let succeeded = ports.reduce(0) { $0 + Self.succeededJobs(port: $1) }
                let now = ContinuousClock.now
                if first == nil, succeeded > 0 { first = (now, succeeded) }
                if succeeded > last.done { last = (now, succeeded) }
                if succeeded >= total { break }
                if now - last.at > .seconds(30) {
                    throw BenchError("the worker processes stalled at \(succeeded) of \(total) jobs")
                }
            }
            let rss = children.map { Self.peakRSSMegabytes(pid: $0.processIdentifier) }.max() ?? 0
            for child in children { child.terminate() }
            let exiting = children
            try await onThread { for child in exiting { child.waitUntilExit() } }
            // Too few jobs to see the first one finish before the last: count from the start of the processes.
            guard let first, first.done < total else {
                return Measurement(messages: total, elapsed: last.at - spawned, peakRSSMegabytes: rss)
            }
            return Measurement(messages: total - first.done, elapsed: last.at - first.at, peakRSSMegabytes: rss)
        }
    }

    /// `warren_worker_jobs_total{outcome="succeeded"}` from the worker's `/metrics` on `port`, or 0.
    static func succeededJobs(port: Int) -> Int {
        guard let text = try? HTTPGet.text(port: port, path: "/metrics"),
            let samples = try? PrometheusText.parse(text)
        else { return 0 }
        return Int(
            samples.first { $0.name == "warren_worker_jobs_total" && $0.labels["outcome"] == "succeeded" }?.value ?? 0)
    }

    static func executablePath() throws -> String {
        try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
    }

    /// A TCP port on 127.0.0.1 that was free a moment ago.
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BenchError("socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else { throw BenchError("cannot find a free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// VmHWM of a process, in megabytes.
    static func peakRSSMegabytes(pid: Int32) -> Double {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
            let kilobytes = Double(line.split(separator: " ").dropFirst().first ?? "")
        else { return 0 }
        return (kilobytes / 1024 * 10).rounded() / 10
    }
}

extension BenchCommand.Measurement {
    func with(latencies: [Double]) -> Self {
        var copy = self
        copy.latencies = latencies
        return copy
    }
}

struct BenchFailure: Error, CustomStringConvertible {
    var description: String { "a benchmark job failing its first attempt on purpose" }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A blocking HTTP/1.1 GET on 127.0.0.1, for reading a worker's `/metrics`.
enum HTTPGet {
    static func text(port: Int, path: String) throws -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BenchError("socket() failed") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        guard connected else { throw BenchError("cannot connect to 127.0.0.1:\(port)") }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        guard send(fd, request, request.count, 0) == request.count else { throw BenchError("send failed") }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            response += buffer[0..<n]
        }
        let text = String(decoding: response, as: UTF8.self)
        guard text.hasPrefix("HTTP/1.1 200"), let split = text.range(of: "\r\n\r\n") else {
            throw BenchError("unexpected answer from 127.0.0.1:\(port)\(path)")
        }
        return String(text[split.upperBound...])
    }
}
