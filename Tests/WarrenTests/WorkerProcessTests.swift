import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// `warren worker` as a process: signals, kills, and producers in other languages.
@Suite("warren worker as a process")
struct WorkerProcessTests {
    @Test func sigtermDuringASlowJobFinishesItAcksItAndExitsZero() async throws {
        try await WorkerHarness.with("sigterm", queueJSON: WorkerProcess.queueJSON) { h in
            let worker = try WorkerProcess(h, name: "a")
            try await worker.waitUntilConsuming()
            try await h.jobs.enqueue(DiagnosticJobs.Sleep(milliseconds: 3000, marker: "slow-1"))
            try await worker.waitForLog("diag.sleep started")
            worker.signal(SIGTERM)
            let status = try await worker.waitForExit(timeout: .seconds(15))
            #expect(status == 0)
            #expect(worker.output.contains("diag.sleep done slow-1 attempt 1"))
            #expect(worker.log.contains("every job in flight finished"))
            // The signal arrived while the job ran.
            #expect(worker.log.contains(#""jobs.in_flight":"1""#))
            #expect(try await h.queueDepth(h.workQueue) == 0)
            #expect(try await h.queueDepth(h.deadQueue) == 0)
        }
    }

    @Test func sigkillDuringAJobRedeliversItToAnotherWorker() async throws {
        try await WorkerHarness.with("sigkill", queueJSON: WorkerProcess.queueJSON) { h in
            let first = try WorkerProcess(h, name: "first")
            try await first.waitUntilConsuming()
            // Long enough that the kill lands mid-job even on a loaded 2-core machine.
            try await h.jobs.enqueue(DiagnosticJobs.Sleep(milliseconds: 6000, marker: "killed-1"))
            try await first.waitForLog("diag.sleep started")
            first.signal(SIGKILL)
            _ = try await first.waitForExit(timeout: .seconds(5))
            #expect(!first.output.contains("diag.sleep done killed-1"))
            let second = try WorkerProcess(h, name: "second")
            try await second.waitForOutput("diag.sleep done killed-1", timeout: .seconds(30))
            second.signal(SIGTERM)
            #expect(try await second.waitForExit(timeout: .seconds(15)) == 0)
            #expect(try await h.queueDepth(h.workQueue) == 0)
        }
    }

    @Test func jobsFromPythonPikaAndTheShellsAmqpPublishAreRun() async throws {
        try await WorkerHarness.with("polyglot", queueJSON: WorkerProcess.queueJSON) { h in
            let worker = try WorkerProcess(h, name: "poly")
            try await worker.waitUntilConsuming()
            // The README's producers, run as written, pointed at this test's exchange.
            let python = try WorkerProcess.run(
                "/usr/bin/python3",
                [
                    TestBroker.repositoryRoot.appendingPathComponent("Deploy/examples/producer_pika.py").path,
                    "--url", TestBroker.url, "--exchange", h.configuration.jobsExchange, "--task", "demo.greet",
                    "--payload", #"{"name": "Pythonista"}"#,
                ])
            #expect(python.status == 0, "\(python.output)")
            #expect(python.output.contains("enqueued demo.greet"))
            let shell = try WorkerProcess.run(
                "/usr/bin/amqp-publish",
                [
                    "--url", TestBroker.url.replacingOccurrences(of: "/%2F", with: ""), "-e",
                    h.configuration.jobsExchange, "-r", "demo.greet", "-p", "-C", "application/json", "-b",
                    #"{"name": "Shellfish"}"#,
                ])
            #expect(shell.status == 0, "\(shell.output)")
            try await worker.waitForLog("hello, Pythonista")
            try await worker.waitForLog("hello, Shellfish")
            // amqp-publish sets no message id: the worker made one up, and the job ran all the same.
            let line = worker.log.split(separator: "\n").first { $0.contains("hello, Shellfish") } ?? ""
            #expect(line.contains("\"job.id\":\""))
            worker.signal(SIGTERM)
            #expect(try await worker.waitForExit(timeout: .seconds(15)) == 0)
            #expect(try await h.queueDepth(h.deadQueue) == 0)
        }
    }

    @Test func invalidConfigurationFailsAtStartUpNamingTheKey() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("warren-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("bad.json")
        try Data(#"{"queues": [{"name": "q", "tasks": ["a.*"], "type": "fifo"}]}"#.utf8).write(to: file)
        let result = try WorkerProcess.run(WorkerProcess.executable.path, ["worker", "--config", file.path])
        #expect(result.status == 78)
        #expect(result.output.contains("queues[0].type"))
        #expect(result.output.split(separator: "\n").count == 1)
    }
}

/// A `warren worker` child process for a harness: its configuration file points at the harness's prefix.
final class WorkerProcess: Sendable {
    static let queueJSON = #"{"name": "work", "tasks": ["test.#", "warren.diag.#", "demo.#"], "deliveryLimit": 3}"#
    static let executable = ChildProcess.warren

    let child: ChildProcess
    let harness: WorkerHarness

    init(_ harness: WorkerHarness, name: String) throws {
        self.harness = harness
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("\(harness.prefix)-\(name)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let config = directory.appendingPathComponent("warren.json")
        let rules = TestBroker.repositoryRoot.appendingPathComponent("Config/examples/payee-rules.csv").path
        try Data(
            """
            {
              "broker": {"url": "\(TestBroker.url)"},
              "prefix": "\(harness.prefix)",
              "queues": [\(Self.queueJSON)],
              "worker": {"concurrency": 2, "shutdownGrace": "10s", "heartbeatInterval": "1s"},
              "retryTiers": ["200ms", "5s", "30s"],
              "examples": {"payeeRulesFile": "\(rules)", "reportDirectory": "\(directory.path)/reports"}
            }
            """.utf8
        ).write(to: config)
        child = try ChildProcess(
            Self.executable,
            ["worker", "--config", config.path, "--diagnostic-tasks", "--name", "\(harness.prefix)-\(name)"],
            directory: directory, name: "worker")
    }

    var output: String { child.output }
    var log: String { child.log }
    func signal(_ number: Int32) { child.signal(number) }
    func waitForLog(_ text: String) async throws { try await child.waitForLog(text) }
    func waitForOutput(_ text: String, timeout: Duration) async throws {
        try await child.waitForOutput(text, timeout: timeout)
    }
    func waitForExit(timeout: Duration) async throws -> Int32 { try await child.waitForExit(timeout: timeout) }

    /// Waits until the worker consumes its queue (the broker counts its consumer).
    func waitUntilConsuming(timeout: Duration = .seconds(20)) async throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            let consumers = try? await harness.raw.withChannel { [queue = harness.workQueue] in
                try $0.declareQueue(queue, passive: true).consumerCount
            }
            if (consumers ?? 0) > 0 { return }
            if !child.isRunning { throw TestFailure("the worker exited early: \(log)") }
            if ContinuousClock.now > deadline { throw TestFailure("the worker did not consume in time: \(log)") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        try ChildProcess.run(executable, arguments)
    }
}
