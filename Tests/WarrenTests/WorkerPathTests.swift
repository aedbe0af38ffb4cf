import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

/// One test for every path a message can take through a worker, against the real broker.
@Suite("Worker: every path a message can take")
struct WorkerPathTests {
    @Test func successIsAckedAndNothingIsLeft() async throws {
        try await WorkerHarness.with("success") { h in
            let runs = Recorder<Run>()
            try h.startWorker(.recording(runs))
            let id = try await h.jobs.enqueue(TestJob(n: 1))
            let run = try #require(try await runs.wait(forCount: 1, "the run").first)
            #expect(run.id == id && run.attempt == 1)
            try await h.eventuallyEmpty(h.workQueue)
            #expect(try await h.queueDepth(h.deadQueue) == 0)
        }
    }

    @Test func retryThenSuccessWithTheAttemptHeaderAndTheDelayOfThePolicy() async throws {
        // baseDelay 300ms, no jitter: the second attempt runs 300 ms later, through the 200ms tier twice:
        // at most one smallest tier (200 ms) late.
        try await WorkerHarness.with("retry") { h in
            let runs = Recorder<Run>()
            try h.startWorker(.recording(runs))
            try await h.jobs.enqueue(TestJob(n: 1, behaviour: "fail-until-2"))
            let both = try await runs.wait(forCount: 2, "two attempts")
            #expect(both.map(\.attempt) == [1, 2])
            #expect(both[1].headers[WarrenHeader.attempt] == "2")
            #expect(both[1].headers[WarrenHeader.lastError] == "simulated failure")
            #expect(both[0].id == both[1].id)
            let delay = both[1].at.timeIntervalSince(both[0].at)
            #expect(delay >= 0.3, "retried after \(delay) s")
            // Never early; late by at most the smallest tier, plus scheduling slack on a loaded 2-core CI machine
            // (measured up to 3.4 s there). The next tier is 5 s: a hop through it would take ≥ 5.3 s and fail this.
            #expect(delay < 5.0, "retried after \(delay) s")
            try await h.eventuallyEmpty(h.workQueue)
            // Each hop went to exactly one tier: no copy waits in another tier queue.
            for tier in h.configuration.retryTiers {
                #expect(try await h.queueDepth(h.configuration.retryQueueName(tier: tier)) == 0, "tier \(tier)")
            }
        }
    }

    @Test func exhaustedRetriesAreDeadLetteredWithEveryReasonHeader() async throws {
        try await WorkerHarness.with("exhausted", retryJSON: #""baseDelay": "100ms""#) { h in
            let runs = Recorder<Run>()
            try h.startWorker(.recording(runs))
            let id = try await h.jobs.enqueue(TestJob(n: 7, behaviour: "fail-until-99"))
            let letter = try #require(try await h.deadLetters(1).first)
            #expect(runs.all.map(\.attempt) == [1, 2, 3])
            let headers = try #require(letter.properties.headers)
            #expect(headers[WarrenHeader.errorType] == .string("exhausted"))
            #expect(headers[WarrenHeader.error]?.stringValue?.contains("failed 3 of 3 attempts") == true)
            #expect(headers[WarrenHeader.error]?.stringValue?.contains("simulated failure") == true)
            #expect(headers[WarrenHeader.attempts]?.intValue == 3)
            #expect(headers[WarrenHeader.originQueue] == .string(h.workQueue))
            #expect(headers[WarrenHeader.routingKey] == .string("test.job"))
            #expect(headers[WarrenHeader.failedAt]?.stringValue.flatMap { try? Date($0, strategy: .iso8601) } != nil)
            #expect(letter.properties.messageID == id)
            #expect(try JSONDecoder().decode(TestJob.self, from: letter.body).n == 7)
            // One log line says so (written just after the dead letter was confirmed).
            try await h.logLines.wait(for: "the dead-letter log line") { lines in
                lines.contains { $0.contains("job dead-lettered") && $0.contains(id) }
            }
        }
    }

    @Test func permanentErrorIsDeadLetteredAtOnce() async throws {
        try await WorkerHarness.with("permanent") { h in
            let runs = Recorder<Run>()
            try h.startWorker(.recording(runs))
            try await h.jobs.enqueue(TestJob(n: 1, behaviour: "permanent"))
            let letter = try #require(try await h.deadLetters(1).first)
            #expect(runs.all.count == 1)
            #expect(letter.properties.headers?[WarrenHeader.errorType] == .string("permanent"))
            #expect(letter.properties.headers?[WarrenHeader.error] == .string("job 1 cannot ever succeed"))
            #expect(letter.properties.headers?[WarrenHeader.attempts]?.intValue == 1)
        }
    }

    @Test func badMessagesAreDeadLetteredWithTheirReasonAndGoodOnesStillRun() async throws {
        try await WorkerHarness.with("malformed") { h in
            let runs = Recorder<Run>()
            try h.startWorker(.recording(runs))
            try await h.publishRaw(task: "test.job", body: "this is not json".bytes, messageID: "not-json")
            try await h.publishRaw(task: "test.job", body: #"{"n": "seven"}"#.bytes, messageID: "wrong-type")
            try await h.publishRaw(task: "test.job", body: #"{"m": 1}"#.bytes, messageID: "wrong-shape")
            try await h.publishRaw(task: "test.nobody", body: #"{"n": 1}"#.bytes, messageID: "unknown-task")
            try await h.publishRaw(
                task: "test.job", body: Array(repeating: UInt8(ascii: " "), count: 5000) + #"{"n":1}"#.bytes,
                messageID: "oversized")
            try await h.publishRaw(
                task: "test.job", body: #"{"n": 1}"#.bytes, headers: [WarrenHeader.attempt: "minus one"],
                messageID: "bad-attempt")
            try await h.publishRaw(task: "test.job", body: #"{"n": 42}"#.bytes, messageID: "good")
            let letters = try await h.deadLetters(6)
            let reasons = Dictionary(
                uniqueKeysWithValues: letters.map {
                    ($0.properties.messageID ?? "?", $0.properties.headers?[WarrenHeader.errorType]?.stringValue ?? "?")
                })
            #expect(
                reasons == [
                    "not-json": "malformed", "wrong-type": "malformed", "wrong-shape": "malformed",
                    "unknown-task": "unknown-task", "oversized": "oversized", "bad-attempt": "malformed",
                ])
            let errors = Dictionary(
                uniqueKeysWithValues: letters.map {
                    ($0.properties.messageID ?? "?", $0.properties.headers?[WarrenHeader.error]?.stringValue ?? "")
                })
            #expect(errors["not-json"] == "body is not valid JSON")
            #expect(errors["wrong-type"]?.contains("'n'") == true)
            #expect(errors["wrong-shape"]?.contains("missing key 'n'") == true)
            #expect(errors["unknown-task"]?.contains("no handler for task type 'test.nobody'") == true)
            #expect(errors["oversized"]?.contains("exceeds worker.maxBodyBytes") == true)
            #expect(errors["bad-attempt"]?.contains(WarrenHeader.attempt) == true)
            // The good job, published last, ran: the worker kept going.
            let good = try await runs.wait(forCount: 1, "the good job")
            #expect(good.map(\.n) == [42])
        }
    }

    @Test func timeoutIsARetryableFailure() async throws {
        try await WorkerHarness.with("timeout", tasksJSON: #"{"test.job": {"timeLimit": "300ms"}}"#) { h in
            let runs = Recorder<Run>()
            try h.startWorker(.recording(runs))
            try await h.jobs.enqueue(TestJob(n: 1, behaviour: "sleep-3000"), maxAttempts: 2)
            let letters = try await h.deadLetters(1)
            #expect(runs.all.map(\.attempt) == [1, 2])
            let error = letters.first?.properties.headers?[WarrenHeader.error]?.stringValue ?? ""
            #expect(error.contains("timed out after 300ms"))
        }
    }

    @Test func notBeforeInTheFutureRunsNoEarlier() async throws {
        try await WorkerHarness.with("notbefore") { h in
            let runs = Recorder<Run>()
            try h.startWorker(.recording(runs))
            let due = Date().addingTimeInterval(1.5)
            try await h.publishRaw(
                task: "test.job", body: #"{"n": 1}"#.bytes,
                headers: [WarrenHeader.notBefore: .string(due.formatted(.iso8601))])
            let enqueuedSecond = Date()
            try await h.jobs.enqueue(TestJob(n: 2), delay: .milliseconds(700))
            let both = try await runs.wait(forCount: 2, "both delayed jobs")
            let first = try #require(both.first { $0.n == 1 })
            let second = try #require(both.first { $0.n == 2 })
            // RFC 3339 in whole seconds: due is at most 1 s early in the header; compare with that.
            #expect(first.at >= due.addingTimeInterval(-1))
            // At most one smallest tier late plus scheduling slack under full CI load; the next tier (5 s) would fail it.
            #expect(first.at.timeIntervalSince(due) < 5.0)
            #expect(second.at >= enqueuedSecond.addingTimeInterval(0.7))
            #expect(second.attempt == 1)
        }
    }

    @Test func expiredJobIsDeadLetteredNotRun() async throws {
        try await WorkerHarness.with("expired") { h in
            let runs = Recorder<Run>()
            try h.startWorker(.recording(runs))
            try await h.publishRaw(
                task: "test.job", body: #"{"n": 1}"#.bytes,
                headers: [WarrenHeader.expires: .int64(Int64(Date().timeIntervalSince1970 * 1000) - 1000)],
                messageID: "late")
            try await h.publishRaw(
                task: "test.job", body: #"{"n": 2}"#.bytes, messageID: "late-too",
                timestamp: Date().addingTimeInterval(-60), expiration: "1000")
            let letters = try await h.deadLetters(2)
            // Dead with the reason "expired": from the worker (x-warren-error-type), or, for the `expiration` one, from
            // the broker itself if it expired the message before the worker took it (x-death, RabbitMQ ≥ 3.10 quorum).
            #expect(
                letters.allSatisfy { letter in
                    let headers = letter.properties.headers ?? [:]
                    return headers[WarrenHeader.errorType] == .string("expired")
                        || headers["x-death"]?.arrayValue?.first?.tableValue?["reason"] == .string("expired")
                })
            #expect(runs.all.isEmpty)
        }
    }

    @Test func twoWorkersShareAQueueWithoutDuplicates() async throws {
        try await WorkerHarness.with("shared") { h in
            let runs = Recorder<Run>()
            try h.startWorker(.recording(runs), name: "a")
            try h.startWorker(.recording(runs), name: "b")
            let count = 300
            let results = await h.jobs.enqueue(
                batch: (0..<count).map {
                    (task: TestJob.taskName, json: try! JSONEncoder().encode(TestJob(n: $0)), id: "job-\($0)")
                })
            #expect(results.allSatisfy { $0 == nil })
            let all = try await runs.wait(forCount: count, "every job")
            #expect(Set(all.map(\.n)).count == count)
            try await h.eventuallyEmpty(h.workQueue)
            #expect(runs.all.count == count, "no job ran twice")
        }
    }

    @Test func gracefulShutdownFinishesTheJobInFlightAndAcksIt() async throws {
        try await WorkerHarness.with("graceful") { h in
            let runs = Recorder<Run>()
            let worker = try h.startWorker(.recording(runs))
            try await h.jobs.enqueue(TestJob(n: 1, behaviour: "sleep-1500"))
            try await runs.wait(forCount: 1, "the slow job to start")
            worker.shutdown()
            try await h.finishWorkers()
            #expect(h.logLines.all.contains { $0.contains("every job in flight finished") })
            #expect(try await h.queueDepth(h.workQueue) == 0)
            #expect(try await h.queueDepth(h.deadQueue) == 0)
        }
    }

    @Test func workerResumesAfterTheBrokerClosesItsConnection() async throws {
        try await WorkerHarness.with("reconnect") { h in
            let runs = Recorder<Run>()
            try h.startWorker(.recording(runs), name: "resilient")
            try await h.jobs.enqueue(TestJob(n: 1))
            try await runs.wait(forCount: 1, "the first job")
            let pid = try #require(try TestBroker.connectionPID(named: "\(h.prefix)-resilient-consume"))
            try TestBroker.script("ctl", "close_connection", pid, "test closes the worker's connection")
            try await h.logLines.wait(for: "the reconnect") { $0.contains { $0.contains("reconnected") } }
            try await h.jobs.enqueue(TestJob(n: 2))
            // Job 1 may run again (its ack can still have been in flight when the connection closed: at least
            // once); job 2, enqueued after the reconnect, must run.
            let after = try await runs.wait(for: "a job after the reconnect") { $0.contains { $0.n == 2 } }
            #expect(Set(after.map(\.n)) == [1, 2])
        }
    }
}

extension WorkerHarness {
    /// Waits until `queue` holds no ready message (what was there has been taken and acked or moved).
    func eventuallyEmpty(_ queue: String, timeout: Duration = .seconds(10)) async throws {
        let deadline = ContinuousClock.now + timeout
        while try await queueDepth(queue) > 0 {
            if ContinuousClock.now > deadline { throw TestFailure("\(queue) still holds messages after \(timeout)") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
