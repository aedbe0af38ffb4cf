import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

#if canImport(Glibc)
    import Glibc
#endif

extension Reliability {
    /// Scenario 6: jobs that run long. (a) Far longer than the AMQP heartbeat: the connection must stay up and the
    /// job be acked once. (b) Longer than the broker's `consumer_timeout`: the attempt must end as a retryable timeout
    /// before the broker cancels the delivery, and the job end dead-lettered, never loop silently.
    @Suite struct LongJobs {
        static let diagQueue = #"{"name": "work", "tasks": ["warren.diag.#"], "deliveryLimit": 3}"#

        /// Log lines that mean the worker lost a connection or a channel.
        static let connectionTrouble = [
            "connection lost", "reconnect", "the broker closed a channel", "finished after its connection was lost",
        ]

        @Test func aJobFiveHeartbeatsLongIsAckedOnceOnTheSameConnection() async throws {
            try await WorkerHarness.with("longhb", queueJSON: Self.diagQueue) { h in
                // The broker URL asks for a 1-second AMQP heartbeat; the job sleeps 5 s in its handler.
                let json = h.configurationJSON.replacingOccurrences(
                    of: #""url": "\#(TestBroker.url)""#, with: #""url": "\#(TestBroker.url)?heartbeat=1""#)
                #expect(json.contains("?heartbeat=1"))
                let directory = FileManager.default.temporaryDirectory.appendingPathComponent(h.prefix)
                try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                let file = directory.appendingPathComponent("warren-heartbeat.json")
                try Data(json.utf8).write(to: file)

                let name = "\(h.prefix)-w"
                let worker = try ChildProcess(
                    ChildProcess.warren,
                    [
                        "worker", "--config", file.path, "--diagnostic-tasks", "--no-examples", "--log-level", "debug",
                        "--name", name,
                    ], directory: directory, name: "worker")
                defer { if worker.isRunning { worker.signal(SIGKILL) } }
                try await worker.waitForLog("worker started", timeout: .seconds(20))
                let before = try await Self.connections(named: [name + "-consume", name + "-publish"])
                // The broker agreed to the 1-second heartbeat (rabbitmqctl's `timeout` column, in seconds).
                #expect(before.map(\.heartbeat) == ["1", "1"], "negotiated heartbeats: \(before)")

                let started = ContinuousClock.now
                try await h.publishRaw(
                    task: DiagnosticJobs.Sleep.taskName, body: #"{"milliseconds": 5000, "marker": "hb"}"#.bytes,
                    messageID: "long-heartbeat")
                try await worker.waitForOutput("diag.sleep done hb attempt 1", timeout: .seconds(20))
                let jobElapsed = ContinuousClock.now - started
                // Acked: the work queue holds nothing, ready or unacknowledged.
                try await Self.waitUntilEmpty([h.workQueue], timeout: .seconds(10))
                #expect(jobElapsed >= .seconds(5))

                let after = try await Self.connections(named: [name + "-consume", name + "-publish"])
                #expect(after.map(\.pid) == before.map(\.pid), "the broker saw new connections: \(before) → \(after)")
                let log = worker.log
                #expect(Self.count("diag.sleep started", in: log) == 1, "ran more than once:\n\(log)")
                #expect(Self.count("job succeeded", in: log) == 1, "settled more than once:\n\(log)")
                #expect(Self.count("diag.sleep done", in: worker.output) == 1)
                for trouble in Self.connectionTrouble {
                    #expect(!log.contains(trouble), "worker log has '\(trouble)':\n\(log)")
                }
                #expect(try await h.queueDepth(h.deadQueue) == 0)

                worker.signal(SIGTERM)
                #expect(try await worker.waitForExit(timeout: .seconds(15)) == 0)
                Reliability.report(
                    "long-job-heartbeat",
                    [
                        "heartbeatSeconds": 1, "jobSeconds": 5, "runs": 1, "acks": 1, "reconnects": 0,
                        "sameConnections": after.map(\.pid) == before.map(\.pid),
                        "jobElapsedMs": jobElapsed.milliseconds,
                    ])
            }
        }

        /// The end-to-end check against RabbitMQ's real consumer timeout, lowered at runtime to 5 s and evaluated
        /// every 500 ms (RabbitMQ 3.10's `rabbit_channel` reads `consumer_timeout` when a channel opens and checks the
        /// oldest unacknowledged delivery on each channel tick; `channel_tick_interval` is read each time the tick is
        /// re-armed). Both are put back as soon as possible, whatever happens, with a broker-side timer as a backstop.
        @Test func aJobLongerThanTheConsumerTimeoutTimesOutAndIsDeadLetteredInsteadOfLooping() async throws {
            try await WorkerHarness.with(
                "longct", queueJSON: Self.diagQueue, workerJSON: #""consumerTimeout": "5s""#,
                retryJSON: #""maxAttempts": 2"#
            ) { h in
                #expect(h.configuration.worker.maximumTimeLimit == .milliseconds(4500))
                #expect(h.configuration.timeLimit(forTask: DiagnosticJobs.Sleep.taskName) == .milliseconds(4500))
                let directory = FileManager.default.temporaryDirectory.appendingPathComponent(h.prefix)
                let controlQueue = "\(h.prefix).control"
                let control = try await TestBroker.client(h.prefix + "-control")
                do {
                    // Stops its worker and puts the broker's settings back itself, also when it throws.
                    let outcome = try await Self.runAgainstLoweredConsumerTimeout(
                        h, directory: directory, control: control, controlQueue: controlQueue)
                    await control.deleteQueues(controlQueue)
                    await control.close()
                    Reliability.report(
                        "long-job-consumer-timeout",
                        [
                            "brokerConsumerTimeoutMs": 5000, "brokerTickMs": 500, "attemptLimitMs": 4500,
                            "attempts": outcome.attempts, "deadLetter": outcome.reason,
                            "channelsClosedByBroker": 0,
                            "controlChannelClosedAfterMs": outcome.controlClosedAfter.milliseconds,
                            "elapsedMs": outcome.elapsed.milliseconds,
                            "brokerTimeoutLoweredMs": outcome.timeoutLowered.milliseconds,
                        ])
                } catch {
                    await control.deleteQueues(controlQueue)
                    await control.close()
                    throw error
                }
            }
        }

        struct ConsumerTimeoutOutcome {
            var attempts: Int
            var reason: String
            var controlClosedAfter: Duration
            var elapsed: Duration
            /// How long other channels opening on the broker would have got the 5-second timeout.
            var timeoutLowered: Duration
        }

        static func runAgainstLoweredConsumerTimeout(
            _ h: WorkerHarness, directory: URL, control: AMQPClient, controlQueue: String
        ) async throws -> ConsumerTimeoutOutcome {
            let controlEvents = control.recordEvents()
            try await control.declareTemporaryQueue(controlQueue)
            try await control.publish(
                OutgoingMessage(exchange: "", routingKey: controlQueue, body: "never acked".bytes))
            let file = try h.configFile()
            let name = "\(h.prefix)-w"

            // The tick first (it must be short on the channels about to open, and stay short while they live), then
            // the timeout (read only when a channel opens: put back as soon as the two consumers are up).
            let tick = try BrokerSetting.set("channel_tick_interval", to: 500)
            defer { tick.restore() }
            let timeout = try BrokerSetting.set("consumer_timeout", to: 5000)
            let loweredAt = ContinuousClock.now
            defer { timeout.restore() }

            let worker = try ChildProcess(
                ChildProcess.warren,
                [
                    "worker", "--config", file, "--diagnostic-tasks", "--no-examples", "--log-level", "debug", "--name",
                    name,
                ], directory: directory, name: "worker")
            defer { if worker.isRunning { worker.signal(SIGKILL) } }
            // The control: a plain consumer that never acks, on a channel opened while the timeout is 5 s.
            let controlDeliveries = Recorder<Delivery>()
            try await control.consume(queue: controlQueue, prefetch: 1) { controlDeliveries.append($0) }
            try await controlDeliveries.wait(forCount: 1, "the control delivery")
            let controlDeliveredAt = ContinuousClock.now
            try await worker.waitForLog("worker started", timeout: .seconds(20))
            timeout.restore()
            let lowered = ContinuousClock.now - loweredAt
            let before = try await connections(named: [name + "-consume", name + "-publish"])

            let begin = ContinuousClock.now
            try await h.publishRaw(
                task: DiagnosticJobs.Sleep.taskName, body: #"{"milliseconds": 7000, "marker": "ct"}"#.bytes,
                messageID: "longer-than-consumer-timeout")

            // The broker's timeout is real: it closes the control's channel ("delivery acknowledgement … timed out").
            let closed = try await controlEvents.wait(
                for: "the broker to close the control channel", timeout: .seconds(15)
            ) {
                $0.contains { if case .channelClosed = $0 { true } else { false } }
            }
            let controlClosedAfter = ContinuousClock.now - controlDeliveredAt
            let closeError = closed.compactMap { event -> AMQPError? in
                if case .channelClosed(_, let error) = event { error } else { nil }
            }.first
            #expect(closeError?.replyCode == 406, "\(String(describing: closeError))")
            #expect(
                closeError?.message.contains("delivery acknowledgement") == true, "\(String(describing: closeError))")

            // The job: two attempts, each cut off at 4.5 s by the worker, then a dead letter.
            let letter = try #require(try await h.deadLetters(1, timeout: .seconds(30)).first)
            let elapsed = ContinuousClock.now - begin
            let headers = letter.properties.headers ?? [:]
            let reason = headers[WarrenHeader.errorType]?.stringValue ?? ""
            let error = headers[WarrenHeader.error]?.stringValue ?? ""
            #expect(reason == DeadLetterReason.exhausted.rawValue)
            #expect(error.contains("timed out after 4500ms"), "x-warren-error: \(error)")
            #expect(error.contains("2 of 2 attempts"), "x-warren-error: \(error)")
            #expect(letter.properties.messageID == "longer-than-consumer-timeout")
            // No loop: nothing left anywhere, and exactly two attempts ran.
            try await waitUntilEmpty(
                [h.workQueue] + h.configuration.retryTiers.map { h.configuration.retryQueueName(tier: $0) },
                timeout: .seconds(10))
            let log = worker.log
            let starts = log.split(separator: "\n").filter { $0.contains("diag.sleep started") }
            #expect(starts.count == 2, "attempts:\n\(starts.joined(separator: "\n"))")
            for attempt in 1...2 {
                #expect(starts.filter { $0.contains(#""job.attempt":"\#(attempt)""#) }.count == 1)
            }
            #expect(count("job failed; retrying later", in: log) == 1)
            // Every attempt ended before the broker's timeout: no channel closed, same connections throughout.
            for trouble in connectionTrouble {
                #expect(!log.contains(trouble), "worker log has '\(trouble)':\n\(log)")
            }
            let after = try await Self.connections(named: [name + "-consume", name + "-publish"])
            #expect(after.map(\.pid) == before.map(\.pid), "the broker saw new connections: \(before) → \(after)")

            worker.signal(SIGTERM)
            #expect(try await worker.waitForExit(timeout: .seconds(15)) == 0)
            return ConsumerTimeoutOutcome(
                attempts: starts.count, reason: reason, controlClosedAfter: controlClosedAfter, elapsed: elapsed,
                timeoutLowered: lowered)
        }

        @Test func aTimeLimitAtTheConsumerTimeoutStopsTheWorkerAtStartUpNamingTheKey() async throws {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                TestBroker.unique("longcfg"))
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let cases = [
                (
                    #""worker": {"consumerTimeout": "10m", "defaultTimeLimit": "10m"}"#,
                    "worker.defaultTimeLimit: must be at most 9m (worker.consumerTimeout 10m minus a margin of 1m),"
                        + " got 10m"
                ),
                (
                    #""tasks": {"warren.diag.sleep": {"timeLimit": "2h"}}"#,
                    #"tasks["warren.diag.sleep"].timeLimit: must be at most 29m"#
                ),
            ]
            for (index, (extra, expected)) in cases.enumerated() {
                let file = directory.appendingPathComponent("bad\(index).json")
                let json = #"{"queues": [{"name": "work", "tasks": ["warren.diag.#"]}], \#(extra)}"#
                try Data(json.utf8).write(to: file)
                let (status, output) = try ChildProcess.run(
                    ChildProcess.warren.path, ["worker", "--config", file.path, "--diagnostic-tasks", "--no-examples"])
                #expect(status == 78, "exit status \(status): \(output)")
                #expect(output.contains(expected), "output: \(output)")
            }
        }

        // MARK: Helpers

        static func count(_ text: String, in log: String) -> Int {
            log.split(separator: "\n").filter { $0.contains(text) }.count
        }

        struct BrokerConnection: CustomStringConvertible {
            var pid: String
            var heartbeat: String
            var description: String { "\(pid) (heartbeat \(heartbeat))" }
        }

        /// The broker's connection pid and heartbeat timeout for each client-provided name; waits until all exist.
        static func connections(named names: [String]) async throws -> [BrokerConnection] {
            let deadline = ContinuousClock.now + .seconds(15)
            while true {
                let listing = try TestBroker.script(
                    "ctl", "list_connections", "--quiet", "--no-table-headers", "pid", "timeout", "client_properties")
                let lines = listing.split(separator: "\n")
                let found = names.compactMap { name -> BrokerConnection? in
                    guard let line = lines.first(where: { $0.contains("\"\(name)\"") }) else { return nil }
                    let fields = line.split(separator: "\t")
                    guard fields.count >= 2 else { return nil }
                    return BrokerConnection(pid: String(fields[0]), heartbeat: String(fields[1]))
                }
                if found.count == names.count { return found }
                if ContinuousClock.now > deadline {
                    throw TestFailure("the broker lists no connections named \(names) (found \(found))")
                }
                try await Task.sleep(for: .milliseconds(200))
            }
        }

        /// Waits until each queue holds no message, ready or unacknowledged (as `rabbitmqctl list_queues` counts).
        static func waitUntilEmpty(_ queues: [String], timeout: Duration) async throws {
            let deadline = ContinuousClock.now + timeout
            while true {
                let listing = try TestBroker.script(
                    "ctl", "list_queues", "--quiet", "--no-table-headers", "name", "messages")
                var depth: [String: Int] = [:]
                for line in listing.split(separator: "\n") {
                    let fields = line.split(separator: "\t")
                    if fields.count == 2 { depth[String(fields[0])] = Int(fields[1]) }
                }
                let busy = queues.filter { (depth[$0] ?? 0) != 0 }
                if busy.isEmpty { return }
                if ContinuousClock.now > deadline {
                    throw TestFailure(
                        "after \(timeout) these queues still hold messages: \(busy.map { "\($0): \(depth[$0] ?? 0)" })")
                }
                try await Task.sleep(for: .milliseconds(300))
            }
        }
    }
}

/// A `rabbit` application setting changed on the running broker for one test and always put back: by ``restore()``
/// (call it from a `defer`), and, should the test process die first, by a broker-side timer that restores the previous
/// value after `backstop` if the setting still holds the test's value.
final class BrokerSetting {
    let key: String
    let value: Int
    /// The Erlang expression that puts the previous value back.
    let restoreExpression: String
    private var restored = false

    private init(key: String, value: Int, restoreExpression: String) {
        self.key = key
        self.value = value
        self.restoreExpression = restoreExpression
    }

    static func read(_ key: String) throws -> String {
        try TestBroker.script("ctl", "eval", "application:get_env(rabbit, \(key)).")
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func set(_ key: String, to value: Int, backstop: Duration = .seconds(90)) throws -> BrokerSetting {
        let previous = try read(key)
        let restore: String
        if previous == "undefined" {
            restore = "application:unset_env(rabbit, \(key))"
        } else if previous.hasPrefix("{ok,"), previous.hasSuffix("}"),
            let number = Int(previous.dropFirst(4).dropLast())
        {
            restore = "application:set_env(rabbit, \(key), \(number))"
        } else {
            throw TestFailure("unexpected value of rabbit.\(key): \(previous); not changing it")
        }
        let setting = BrokerSetting(key: key, value: value, restoreExpression: restore)
        try TestBroker.script(
            "ctl", "eval",
            "application:set_env(rabbit, \(key), \(value)), timer:apply_after(\(backstop.milliseconds), erlang, apply,"
                + " [fun() -> case application:get_env(rabbit, \(key)) of {ok, \(value)} -> \(restore); _ -> ok end"
                + " end, []]).")
        return setting
    }

    /// Puts the previous value back (once); failures are printed, never thrown (this runs in `defer`).
    func restore() {
        guard !restored else { return }
        do {
            try TestBroker.script("ctl", "eval", restoreExpression + ".")
            restored = true
        } catch {
            print("could not restore rabbit.\(key) (\(restoreExpression)): \(error)")
        }
    }
}
