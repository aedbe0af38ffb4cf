import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// The ops commands, run as the built binary against the real broker.
@Suite("warren ops commands")
struct OpsCLITests {
    private func warren(_ arguments: String...) throws -> (status: Int32, output: String) {
        try ChildProcess.run(ChildProcess.warren.path, arguments)
    }

    @Test func helpAtEveryLevelAndUsageErrorsExit64WithOneLine() throws {
        let top = try warren("--help")
        #expect(top.status == 0)
        for command in ["worker", "coordinator", "enqueue", "dead", "topology", "cron", "demo", "bench"] {
            #expect(top.output.contains("  \(command) "), "warren --help lists \(command)")
            let help = try warren(command, "--help")
            #expect(help.status == 0 && help.output.contains("Usage: warren \(command)"))
        }
        for arguments in [
            ["frobnicate"], ["dead"], ["dead", "purge", "--queue", "work"], ["enqueue"], ["cron", "next"],
        ] {
            let result = try ChildProcess.run(ChildProcess.warren.path, arguments)
            #expect(result.status == 64, "\(arguments)")
            #expect(result.output.split(separator: "\n").count == 1, "\(arguments): \(result.output)")
        }
    }

    @Test func statusOfAPrefixNeverDeclaredSaysSoInOneLine() throws {
        let prefix = "t-" + TestBroker.unique("undeclared").replacingOccurrences(of: ".", with: "-")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(prefix)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("warren.json")
        try Data(
            ##"{"broker": {"url": "\##(TestBroker.url)"}, "prefix": "\##(prefix)", "queues": [{"name": "w", "tasks": ["#"]}]}"##
                .utf8
        ).write(to: file)
        let result = try warren("status", "--config", file.path)
        #expect(result.status == 1)
        #expect(
            result.output
                == "warren status: \(prefix).events does not exist: no worker or `warren topology apply` has declared "
                + "prefix '\(prefix)' on this broker yet\n")
    }

    @Test func enqueuedJobRuns() async throws {
        try await WorkerHarness.with("cli-enqueue") { h in
            let runs = Recorder<Run>()
            try h.startWorker(.recording(runs))
            let result = try h.warren(
                "enqueue", "test.job", "--payload", #"{"n": 77}"#, "--id", "cli-1", "--config",
                try h.configFile())
            #expect(result.status == 0, "\(result.output)")
            #expect(result.output.contains("cli-1"))
            let run = try #require(try await runs.wait(forCount: 1, "the enqueued job").first)
            #expect(run.n == 77 && run.id == "cli-1")
        }
    }

    @Test func topologyCheckReportsAQueueWithAnotherArgument() async throws {
        // The harness declared the work queue with deliveryLimit 3; the checked configuration says 5.
        try await WorkerHarness.with("cli-drift") { h in
            let matching = try h.warren("topology", "check", "--config", try h.configFile())
            #expect(matching.status == 0, "\(matching.output)")
            let drifted = h.configurationJSON.replacingOccurrences(
                of: #""deliveryLimit": 3"#, with: #""deliveryLimit": 5"#)
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("\(h.prefix)-drift.json")
            try Data(drifted.utf8).write(to: file)
            let result = try h.warren("topology", "check", "--config", file.path)
            #expect(result.status == 1)
            #expect(result.output.contains("queue '\(h.workQueue)'") && result.output.contains("x-delivery-limit"))
        }
    }

    @Test func deadLettersAreListedWithoutBeingConsumedThenReplayedToAFixedWorker() async throws {
        try await WorkerHarness.with("cli-replay") { h in
            // A broken deployment: the handler fails these jobs for good.
            let runs = Recorder<Run>()
            let broken = try h.startWorker(.recording(runs), name: "broken")
            for n in 1...3 { try await h.jobs.enqueue(TestJob(n: n, behaviour: "permanent"), id: "replay-\(n)") }
            try await h.logLines.wait(for: "three dead letters") { lines in
                lines.filter { $0.contains("job dead-lettered") }.count == 3
            }
            broken.shutdown()
            try await h.finishWorkers()
            let config = try h.configFile()

            let list = try h.warren("dead", "list", "--queue", "work", "--json", "--config", config)
            #expect(list.status == 0)
            #expect(list.output.contains("replay-1") && list.output.contains("\"errorType\" : \"permanent\""))
            // Listing consumed nothing: the letters it held unacknowledged are back once the broker has processed
            // the closing of its connection (asynchronous, so wait for it).
            let deadline = ContinuousClock.now + .seconds(15)
            var depth = try await h.queueDepth(h.deadQueue)
            while depth != 3, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
                depth = try await h.queueDepth(h.deadQueue)
            }
            #expect(depth == 3, "listing consumed nothing")

            let show = try h.warren("dead", "show", "replay-2", "--queue", "work", "--config", config)
            #expect(show.status == 0 && show.output.contains("x-warren-error: job 2 cannot ever succeed"))

            // The fixed deployment: the same task, a handler that succeeds.
            let fixedRuns = Recorder<Int>()
            var fixed = JobRegistry()
            fixed.register(TestJob.self) { job, _ in fixedRuns.append(job.n) }
            try h.startWorker(fixed, name: "fixed")
            let replay = try h.warren("dead", "replay", "--all", "--queue", "work", "--config", config)
            #expect(replay.status == 0, "\(replay.output)")
            #expect(replay.output.contains("replayed 3 dead letters"))
            let ran = try await fixedRuns.wait(forCount: 3, "the replayed jobs")
            #expect(Set(ran) == [1, 2, 3])
            #expect(try await h.queueDepth(h.deadQueue) == 0)
        }
    }

    @Test func deadPurgeNeedsYes() async throws {
        try await WorkerHarness.with("cli-purge") { h in
            try await h.raw.publish(
                OutgoingMessage(exchange: h.configuration.deadExchange, routingKey: h.workQueue, body: Array("{}".utf8))
            )
            let config = try h.configFile()
            let refused = try h.warren("dead", "purge", "--queue", "work", "--config", config)
            #expect(refused.status == 64 && refused.output.contains("--yes"))
            #expect(try await h.queueDepth(h.deadQueue) == 1)
            let purged = try h.warren("dead", "purge", "--queue", "work", "--yes", "--config", config)
            #expect(purged.status == 0 && purged.output.contains("purged 1 message"))
            #expect(try await h.queueDepth(h.deadQueue) == 0)
        }
    }

    @Test func statusJSONFiguresMatchTheBroker() async throws {
        try await WorkerHarness.with("cli-status") { h in
            for n in 1...2 { try await h.jobs.enqueue(TestJob(n: n)) }
            try await h.raw.publish(
                OutgoingMessage(exchange: h.configuration.deadExchange, routingKey: h.workQueue, body: Array("{}".utf8))
            )
            let result = try h.warren("status", "--json", "--config", try h.configFile())
            #expect(result.status == 0, "\(result.output)")
            let object = try #require(
                try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any])
            let queues = try #require(object["queues"] as? [[String: Any]])
            func messages(_ name: String) -> Int? {
                queues.first { $0["queue"] as? String == name }?["messages"] as? Int
            }
            #expect(messages(h.workQueue) == 2)
            #expect(messages(h.deadQueue) == 1)
            #expect(queues.first { $0["queue"] as? String == h.workQueue }?["kind"] as? String == "work")
        }
    }

    @Test func exportedDefinitionsImportIntoRabbitMQAndMatchTheConfiguration() async throws {
        try await WorkerHarness.with("cli-export") { h in
            let vhost = h.prefix + "-defs"
            let export = try h.warren("topology", "export", "--vhost", vhost, "--config", try h.configFile())
            #expect(export.status == 0)
            var definitions = try #require(
                try JSONSerialization.jsonObject(with: Data(export.output.utf8)) as? [String: Any])
            // The test's guest user needs rights in the new vhost.
            definitions["permissions"] = [
                ["user": "guest", "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"]
            ]
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("\(vhost).json")
            try JSONSerialization.data(withJSONObject: definitions).write(to: file)
            try TestBroker.script("ctl", "import_definitions", file.path)
            defer { _ = try? TestBroker.script("ctl", "delete_vhost", vhost) }
            // The imported topology is exactly the configuration's: check finds no drift in that vhost.
            let url = TestBroker.url.replacingOccurrences(of: "/%2F", with: "/\(vhost)")
            let check = try ChildProcess.run(
                "/usr/bin/env",
                [
                    "WARREN_AMQP_URL=\(url)", ChildProcess.warren.path, "topology", "check", "--config",
                    try h.configFile(),
                ])
            #expect(check.status == 0, "\(check.output)")
            #expect(check.output.contains("match the configuration"))
        }
    }

    @Test func aReplayKilledMidwayLosesNothingAndDuplicatesAtMostOne() async throws {
        try await WorkerHarness.with("cli-replay-kill") { h in
            // Enough that the replay takes seconds: the kill lands mid-way even on a loaded machine.
            let count = 2000
            let letters = (0..<count).map { n in
                OutgoingMessage(
                    exchange: h.configuration.deadExchange, routingKey: h.workQueue, body: Array("{\"n\":\(n)}".utf8),
                    properties: BasicProperties(
                        headers: [
                            WarrenHeader.errorType: "permanent", WarrenHeader.originQueue: .string(h.workQueue),
                            WarrenHeader.routingKey: "test.job",
                        ], messageID: "kill-\(n)"))
            }
            #expect(await h.raw.publish(letters).allSatisfy { $0 == nil })
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(h.prefix)
            let replay = try ChildProcess(
                ChildProcess.warren, ["dead", "replay", "--all", "--queue", "work", "--config", try h.configFile()],
                directory: directory, name: "replay")
            try await replay.waitFor("some replays", timeout: .seconds(20)) {
                replay.output.split(separator: "\n").count >= 20 || !replay.isRunning
            }
            replay.signal(SIGKILL)
            _ = try await replay.waitForExit(timeout: .seconds(5))
            // Every job is either back in the work queue or still a dead letter (the unacked one returns when the
            // killed process's connection closes); at most one is in both.
            var ids: [String] = []
            var perQueue: [Int] = []
            for queue in [h.workQueue, h.deadQueue] {
                let fetched = try await h.raw.withChannel { channel in
                    var ids: [String] = []
                    while let (delivery, _) = try channel.get(queue: queue, noAck: true) {
                        ids.append(delivery.properties.messageID ?? "")
                    }
                    return ids
                }
                ids += fetched
                perQueue.append(fetched.count)
            }
            // The kill landed mid-way: some jobs were replayed, some were not yet.
            #expect(perQueue[0] > 0 && perQueue[1] > 0, "replayed / left: \(perQueue)")
            #expect(Set(ids) == Set((0..<count).map { "kill-\($0)" }), "nothing lost")
            #expect(ids.count - Set(ids).count <= 1, "duplicates: \(ids.count - Set(ids).count)")
        }
    }
}
