import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

#if canImport(Glibc)
    import Glibc
#endif

extension Reliability {
    /// Scenario 4: poison and hostile input. Over a thousand bad messages, published raw as any producer could, go
    /// to a real `warren worker` process with good jobs in between. What a user sees: the worker neither exits nor
    /// stalls, every good job runs, and each bad message is accounted for exactly once: dead-lettered with the
    /// reason for its defect, run (when it is in fact a valid job), or parked in the retry ladder (a `not-before`
    /// centuries ahead).
    ///
    /// What the worker does with the less obvious kinds (checked here, and what `JobWorker.process` does):
    /// - The content type is not read: a valid JSON body runs whatever `content_type` (or none) says.
    /// - Unknown or extra headers, thousands of them, are carried along: a valid job with them runs.
    /// - A missing or empty message id gets an invented one, which the dead letter carries (except after an invalid
    ///   Warren header: a known issue below).
    /// - A future `x-warren-not-before` waits in the largest tier (`1h` here), hop after hop, however far ahead:
    ///   RFC 3339 up to year 9999, epoch milliseconds up to year 3000. Epoch milliseconds from year 3000 on, negative,
    ///   or unparsable: dead, `malformed`. One in the past runs at once.
    /// - 10 MB bodies (over `worker.maxBodyBytes`, 1 MiB) are dead-lettered `oversized` unread, whole; peak RSS of the
    ///   worker stays under 200 MB (about 90 MB measured, prefetch 4).
    @Suite struct PoisonInput {
        @Test func everyBadMessageIsDeadRunOrParkedAndTheWorkerKeepsGoing() async throws {
            let started = ContinuousClock.now
            try await WorkerHarness.with("poison", queueJSON: PoisonCase.queueJSON) { h in
                let config = try Reliability.workerConfigurationFile(
                    for: h, queueJSON: PoisonCase.queueJSON, workerJSON: #""concurrency": 4"#,
                    retryTiers: ["1s", "1h"])
                try await Reliability.withWorkerProcesses(h, config) { start in
                    let worker = try start("poison")
                    try await Reliability.waitUntilConsuming(h, worker)
                    try await run(h, config, worker, started: started)
                }
            }
        }

        /// Header tables within a few hundred bytes of `frame_max` (128 KiB), from a foreign producer: valid AMQP as
        /// published, but with the worker's `x-warren-*` headers added, or the broker's `x-delivery-count` on a
        /// redelivery, no longer one frame. Found by this suite: the worker then could not publish the dead letter,
        /// requeued the job, and its redelivery broke the consumer connection. Now the worker drops the producer's
        /// headers from the dead letter (and says so): each is dead at once with Warren's reason, nothing lost, the
        /// worker keeps running, and a good job published after them runs.
        @Test func headerTablesAtTheFrameLimitAreNotLostAndTheWorkerRecovers() async throws {
            let started = ContinuousClock.now
            try await WorkerHarness.with("poison-frame", queueJSON: PoisonCase.queueJSON) { h in
                let config = try Reliability.workerConfigurationFile(
                    for: h, queueJSON: PoisonCase.queueJSON, workerJSON: #""concurrency": 4"#,
                    retryTiers: ["1s", "1h"])
                try await Reliability.withWorkerProcesses(h, config) { start in
                    let worker = try start("frame")
                    try await Reliability.waitUntilConsuming(h, worker)
                    // Up to 8 bytes short of frame_max: one more and rabbitmq-c 0.11 cannot read the delivery at all
                    // (the consumer connection drops on it; the quorum delivery limit then dead-letters it, nothing
                    // lost, as the README says). A foreign producer (pika): Warren's own client refuses, before sending, a header table that
                    // does not fit one frame with room to spare, so these come from another language, as in the
                    // field. Each in a connection of its own: the broker closes one whose frame is too large.
                    let script = #"""
                        import pika, sys
                        url, exchange, key = sys.argv[1:4]
                        for pad in range(700, 861, 20):
                            try:
                                connection = pika.BlockingConnection(pika.URLParameters(url))
                                channel = connection.channel()
                                channel.confirm_delivery()
                                headers = {"k%d" % (1000 + i): "v" * 990 for i in range(130)}
                                headers["pad"] = "p" * pad
                                channel.basic_publish(exchange, key, b"not json", pika.BasicProperties(
                                    content_type="application/json", headers=headers, delivery_mode=2,
                                    message_id="frame-%d" % pad), mandatory=True)
                                print("published", pad, flush=True)
                                connection.close()
                            except Exception as error:
                                print("refused", pad, type(error).__name__, flush=True)
                        """#
                    let pika = try ChildProcess.run(
                        "/usr/bin/python3",
                        ["-c", script, TestBroker.url, h.configuration.jobsExchange, DiagnosticJobs.Sleep.taskName])
                    #expect(pika.status == 0, "\(pika.output)")
                    let published = pika.output.split(separator: "\n").filter { $0.hasPrefix("published") }.count
                    #expect(published >= 5)
                    let goodPublished = ContinuousClock.now
                    try await h.publishRaw(
                        task: DiagnosticJobs.Sleep.taskName, body: PoisonCase.sleepBody(marker: "after-frame"))
                    try await worker.waitForOutput("diag.sleep done after-frame", timeout: .seconds(45))
                    let goodLatency = Reliability.seconds(ContinuousClock.now - goodPublished)
                    try await Reliability.waitUntil("every near-limit message dead", timeout: .seconds(30), worker) {
                        let dead = (try? await h.queueDepth(h.deadQueue)) ?? 0
                        let work = (try? await h.queueDepth(h.workQueue)) ?? 0
                        return dead == published && work == 0 ? nil : "\(dead) of \(published) dead, \(work) waiting"
                    }
                    #expect(worker.isRunning)
                    let list = try h.warren("dead", "list", "--config", config.path, "--json")
                    // Dead-lettered by the worker (one log line each, with Warren's reason); the rest by the broker's
                    // delivery limit (x-death only).
                    let brokerDead = published - (worker.log.components(separatedBy: "job dead-lettered").count - 1)
                    let reconnects = worker.log.components(separatedBy: "connection lost; reconnecting").count - 1
                    let publishFailures =
                        worker.log.components(separatedBy: "could not publish the dead letter").count - 1
                    // Each is dead-lettered by the worker on its first delivery, the producer's headers dropped and
                    // counted (x-warren-headers-dropped), so no redelivery grows past the frame limit.
                    #expect(publishFailures == 0, "dead letters the worker could not publish")
                    #expect(reconnects == 0, "consumer connections lost to an undecodable delivery")
                    #expect(list.status == 0, "warren dead list: \(list.output.prefix(300))")
                    #expect(brokerDead == 0, "dead-lettered by the delivery limit, without Warren's reason")
                    let letters = try await h.deadLetters(published)
                    for letter in letters {
                        let headers = letter.properties.headers ?? [:]
                        #expect(headers[WarrenHeader.errorType]?.stringValue == "malformed")
                        #expect(
                            headers[WarrenHeader.headersDropped]?.stringValue?.hasPrefix("131 headers") == true,
                            "\(headers[WarrenHeader.headersDropped].map { "\($0)" } ?? "no x-warren-headers-dropped")")
                    }
                    Reliability.report(
                        "poison-frame",
                        [
                            "published": published, "dead": published, "publishFailures": publishFailures,
                            "reconnects": reconnects, "deadListStatus": list.status, "brokerDead": brokerDead,
                            "goodLatencySeconds": String(format: "%.1f", goodLatency),
                            "seconds": String(format: "%.1f", Reliability.seconds(ContinuousClock.now - started)),
                        ])
                    worker.signal(SIGTERM)
                    #expect(try await worker.waitForExit(timeout: .seconds(20)) == 0)
                }
            }
        }

        // swift-format-ignore: FunctionBodyLength
        private func run(
            _ h: WorkerHarness, _ config: Reliability.WorkerConfigurationFile, _ worker: ChildProcess,
            started: ContinuousClock.Instant
        ) async throws {
            let bad = PoisonCase.generate()
            let goodEvery = 10
            var goodMarkers: [String] = []
            let publishStarted = ContinuousClock.now
            for (index, poison) in bad.enumerated() {
                try await h.raw.publish(poison.message(index: index, exchange: h.configuration.jobsExchange))
                if index % goodEvery == goodEvery - 1 || index == bad.count - 1 {
                    let marker = "good-\(goodMarkers.count)"
                    goodMarkers.append(marker)
                    try await h.publishRaw(
                        task: DiagnosticJobs.Sleep.taskName, body: PoisonCase.sleepBody(marker: marker))
                }
            }
            let publishSeconds = Reliability.seconds(ContinuousClock.now - publishStarted)

            let expectedRan = bad.indices.filter { bad[$0].outcome == .ran }
            let expectedDead = bad.indices.filter { bad[$0].outcome.isDead }
            let expectedParked = bad.indices.filter { bad[$0].outcome == .parked }
            let parkingTier = config.configuration.retryQueueName(tier: .seconds(3600))
            let shortTier = config.configuration.retryQueueName(tier: .seconds(1))
            let wanted = Set(goodMarkers + expectedRan.map { "bad-\($0)" })

            // Everything settles: each marker printed, the dead and parked counts reached, the work queue empty.
            try await Reliability.waitUntil("every outcome", timeout: .seconds(75), worker) {
                guard worker.isRunning else { return nil }
                let missing = wanted.subtracting(Reliability.sleepMarkers(worker.output).keys)
                let dead = (try? await h.queueDepth(h.deadQueue)) ?? 0
                let parked = (try? await h.queueDepth(parkingTier)) ?? 0
                let work = (try? await h.queueDepth(h.workQueue)) ?? 0
                if missing.isEmpty && dead == expectedDead.count && parked == expectedParked.count && work == 0 {
                    return nil
                }
                return "\(missing.count) markers missing (\(missing.sorted().prefix(5))), dead \(dead) of "
                    + "\(expectedDead.count), parked \(parked) of \(expectedParked.count), \(work) in the work queue"
            }
            // The worker never exited or stalled; it still runs now.
            #expect(worker.isRunning, "the worker exited: \(worker.log.suffix(2000))")
            let peakRSSMB = Reliability.peakRSSMegabytes(pid: worker.process.processIdentifier)
            worker.signal(SIGTERM)
            #expect(try await worker.waitForExit(timeout: .seconds(20)) == 0)

            // Once the worker is gone, nothing moves: the counts are exact.
            #expect(try await h.queueDepth(h.workQueue) == 0)
            #expect(try await h.queueDepth(shortTier) == 0)
            let ran = Reliability.sleepMarkers(worker.output)
            for marker in goodMarkers {
                #expect(ran[marker] == 1, "good job \(marker) ran \(ran[marker] ?? 0) times")
            }
            let ranBad = bad.indices.filter { ran["bad-\($0)"] != nil }
            #expect(ranBad == expectedRan, "ran: \(Set(ranBad).symmetricDifference(expectedRan).sorted())")
            #expect(ranBad.allSatisfy { ran["bad-\($0)"] == 1 }, "a valid bad message ran twice")

            let letters = try await Reliability.drain(h, h.deadQueue)
            let parked = try await Reliability.drain(h, parkingTier)
            let deadCases = letters.compactMap(PoisonCase.index)
            let parkedCases = parked.compactMap(PoisonCase.index)
            #expect(letters.count == expectedDead.count && deadCases.count == letters.count)
            #expect(deadCases.sorted() == expectedDead, "dead: \(Set(deadCases).symmetricDifference(expectedDead))")
            #expect(parkedCases.sorted() == expectedParked)
            // Nothing unaccounted for: each bad message ended in exactly one place.
            #expect(bad.count == letters.count + ranBad.count + parked.count)
            #expect(Set(deadCases).isDisjoint(with: ranBad) && Set(parkedCases).isDisjoint(with: ranBad))

            // Each dead letter: the reason of its defect, an error, and a message id.
            var wrongReasons: [String] = []
            var noIDAfterInvalidHeader: [Int] = []
            for letter in letters {
                guard let index = PoisonCase.index(letter) else { continue }
                let poison = bad[index]
                let headers = letter.properties.headers ?? [:]
                let reason = headers[WarrenHeader.errorType]?.stringValue
                if case .dead(let expected) = poison.outcome, reason != expected.rawValue {
                    wrongReasons.append("\(index) \(poison.kind): \(reason ?? "none"), not \(expected.rawValue)")
                }
                #expect(headers[WarrenHeader.error]?.stringValue?.isEmpty == false, "case \(index) has no error")
                let id = letter.properties.messageID ?? ""
                if poison.invalidHeader && (poison.messageID ?? "").isEmpty {
                    if id.isEmpty { noIDAfterInvalidHeader.append(index) }
                } else if let given = poison.messageID, !given.isEmpty {
                    #expect(id == given, "case \(index) \(poison.kind) lost its message id")
                } else {
                    #expect(!id.isEmpty, "case \(index) \(poison.kind): no invented message id")
                }
                if poison.kind == "oversized-10MB" { #expect(letter.body.count == 10 << 20) }
            }
            #expect(wrongReasons.isEmpty, "\(wrongReasons.count) wrong reasons: \(wrongReasons.prefix(20))")
            // A message without an id whose Warren headers are invalid (no envelope) still gets an invented id.
            #expect(noIDAfterInvalidHeader.isEmpty, "\(noIDAfterInvalidHeader.count) dead letters without a message id")

            let peakBoundMB = 200
            #expect(peakRSSMB > 0 && peakRSSMB < peakBoundMB, "peak RSS \(peakRSSMB) MB")
            Reliability.report(
                "poison",
                [
                    "bad": bad.count, "good": goodMarkers.count, "dead": letters.count, "ran": ranBad.count,
                    "parked": parked.count, "kinds": Set(bad.map(\.kind)).count,
                    "deadWithoutID": noIDAfterInvalidHeader.count, "peakRSSMB": peakRSSMB, "boundMB": peakBoundMB,
                    "publishSeconds": String(format: "%.1f", publishSeconds),
                    "seconds": String(format: "%.1f", Reliability.seconds(ContinuousClock.now - started)),
                ])
        }
    }
}

/// One generated bad message and what the worker must make of it.
struct PoisonCase {
    enum Outcome: Equatable {
        case dead(DeadLetterReason)
        case ran
        case parked

        var isDead: Bool { if case .dead = self { true } else { false } }
    }

    static let queueJSON = #"{"name": "work", "tasks": ["test.#", "warren.diag.#"], "deliveryLimit": 3}"#
    /// Carries the case's index, so its dead letter or parked copy can be told apart (headers survive both).
    static let caseHeader = "poison-case"

    var kind: String
    var task = DiagnosticJobs.Sleep.taskName
    /// The body; `nil` is a valid sleep job whose marker is `bad-<index>` (so a run shows on standard output).
    var body: [UInt8]?
    var headers: FieldTable = [:]
    var messageID: String? = UUID().uuidString
    var contentType: String? = "application/json"
    var contentEncoding: String?
    var outcome: Outcome
    /// A Warren header is invalid (the worker dead-letters before reading the message id).
    var invalidHeader = false

    /// The case index a dead letter or parked copy carries.
    static func index(_ delivery: Delivery) -> Int? {
        delivery.properties.headers?[caseHeader]?.intValue.map { Int($0) }
    }

    static func sleepBody(marker: String) -> [UInt8] { Array(#"{"milliseconds":0,"marker":"\#(marker)"}"#.utf8) }

    func message(index: Int, exchange: String) -> OutgoingMessage {
        var headers = headers
        headers[Self.caseHeader] = .int64(Int64(index))
        return OutgoingMessage(
            exchange: exchange, routingKey: task, body: body ?? Self.sleepBody(marker: "bad-\(index)"),
            properties: BasicProperties(
                contentType: contentType, contentEncoding: contentEncoding, headers: headers,
                deliveryMode: .persistent, messageID: messageID),
            mandatory: true)
    }

    // swift-format-ignore: FunctionBodyLength
    /// The bad messages, shuffled (a fixed seed, so a failure reproduces).
    static func generate() -> [PoisonCase] {
        var rng = SplitMix64(seed: 0x5EED_0007)
        var cases: [PoisonCase] = []
        func add(_ count: Int, _ make: (Int) -> PoisonCase) { for i in 0..<count { cases.append(make(i)) } }
        let malformed = Outcome.dead(.malformed)
        let valid = Array(#"{"milliseconds":0,"marker":"m"}"#.utf8)

        // Not JSON at all.
        let texts = ["hello", "", " ", "{", "}", "nul", "tru", "1 2", "{'a': 1}", "<job/>", "NaN", "Infinity", "--"]
        add(120) { i in
            let text = i < texts.count ? texts[i] : "not json \(i) " + String(repeating: "x", count: i % 50)
            return PoisonCase(kind: "not-json", body: Array(text.utf8), outcome: malformed)
        }
        add(40) { _ in
            PoisonCase(
                kind: "random-bytes",
                body: (0..<Int.random(in: 1...300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) },
                outcome: malformed)
        }
        // Truncated JSON: every strict prefix of a JSON object is invalid.
        add(120) { i in
            let full = Array(#"{"milliseconds":0,"marker":"truncated-\#(i)","extra":[1,2,{"x":null}]}"#.utf8)
            return PoisonCase(
                kind: "truncated", body: Array(full.prefix(Int.random(in: 1..<full.count, using: &rng))),
                outcome: malformed)
        }
        // JSON of the wrong shape for warren.diag.sleep.
        let shapes = [
            "[]", "[1,2]", #""a string""#, "42", "null", "true", "{}", #"{"marker":"x"}"#, #"{"millis":0}"#,
            #"[{"milliseconds":0}]"#,
        ]
        add(100) { i in PoisonCase(kind: "wrong-shape", body: Array(shapes[i % shapes.count].utf8), outcome: malformed)
        }
        // Deep nesting: a decoder without a depth limit would overflow its stack.
        add(3) { _ in
            PoisonCase(
                kind: "deep-array",
                body: Array(repeating: UInt8(ascii: "["), count: 100_000)
                    + Array(repeating: UInt8(ascii: "]"), count: 100_000), outcome: malformed)
        }
        add(3) { _ in
            PoisonCase(
                kind: "deep-object",
                body: Array(String(repeating: #"{"a":"#, count: 50_000).utf8) + Array("1".utf8)
                    + Array(repeating: UInt8(ascii: "}"), count: 50_000), outcome: malformed)
        }
        // Wrong types.
        let types = [
            #"{"milliseconds":"zero"}"#, #"{"milliseconds":true}"#, #"{"milliseconds":1.5}"#,
            #"{"milliseconds":1e300}"#, #"{"milliseconds":99999999999999999999999}"#, #"{"milliseconds":null}"#,
            #"{"milliseconds":0,"marker":5}"#, #"{"milliseconds":0,"marker":["a"]}"#,
            #"{"milliseconds":0,"marker":{"a":1}}"#, #"{"milliseconds":[0]}"#,
        ]
        add(100) { i in PoisonCase(kind: "wrong-type", body: Array(types[i % types.count].utf8), outcome: malformed) }
        // Invalid UTF-8, alone and inside a JSON string.
        add(30) { i in
            PoisonCase(kind: "invalid-utf8", body: [0xC3, 0x28, 0xFF, 0xFE] + Array("\(i)".utf8), outcome: malformed)
        }
        add(30) { _ in
            PoisonCase(
                kind: "invalid-utf8-in-string",
                body: Array(#"{"milliseconds":0,"marker":"x"#.utf8) + [0xFF, 0xC0, 0x80] + Array(#""}"#.utf8),
                outcome: malformed)
        }
        // Bodies over worker.maxBodyBytes (1 MiB by default): a handful of 10 MB, and one byte over.
        add(5) { _ in
            PoisonCase(
                kind: "oversized-10MB",
                body: valid + Array(repeating: UInt8(ascii: " "), count: (10 << 20) - valid.count),
                outcome: .dead(.oversized))
        }
        add(5) { _ in
            PoisonCase(
                kind: "oversized-by-1",
                body: valid + Array(repeating: UInt8(ascii: " "), count: (1 << 20) + 1 - valid.count),
                outcome: .dead(.oversized))
        }
        // Huge header tables (4,000 entries, about 64 KB, under frame_max): valid jobs run with them; bad ones are
        // dead-lettered with them.
        func hugeTable(_ seed: Int) -> FieldTable {
            FieldTable(
                Dictionary(uniqueKeysWithValues: (0..<4000).map { ("h\($0)", FieldValue.string("v\($0 + seed)")) }))
        }
        add(10) { i in PoisonCase(kind: "huge-headers", headers: hugeTable(i), outcome: .ran) }
        add(5) { i in
            PoisonCase(
                kind: "huge-headers-not-json", body: Array("nope".utf8), headers: hugeTable(i), outcome: malformed)
        }
        add(3) { _ in
            PoisonCase(
                kind: "huge-nested-header",
                headers: ["x-nested": .array((0..<3000).map { .int64(Int64($0)) }), "x-table": .table(hugeTable(1))],
                outcome: .ran)
        }
        // Unknown task types: by routing key, or by an x-warren-task header naming one.
        add(100) { i in
            PoisonCase(kind: "unknown-task", task: "test.unknown.t\(i % 7)", body: valid, outcome: .dead(.unknownTask))
        }
        add(20) { _ in
            PoisonCase(
                kind: "unknown-task-header", headers: [WarrenHeader.task: "nobody.home"], outcome: .dead(.unknownTask))
        }
        // Message ids: missing, empty, the longest a shortstr holds, odd characters. Valid jobs run; bad ones are
        // dead-lettered with the id given or, when there was none, an invented one.
        let ids: [String?] = [nil, "", String(repeating: "i", count: 255), " ", "ジョブ-\u{1F4A5}", "a\nb"]
        add(60) { i in PoisonCase(kind: "message-id-valid-job", messageID: ids[i % ids.count], outcome: .ran) }
        add(60) { i in
            PoisonCase(
                kind: "message-id-not-json", body: Array("{oops".utf8), messageID: ids[i % ids.count],
                outcome: malformed)
        }
        add(20) { i in
            PoisonCase(
                kind: "no-id-invalid-header", headers: [WarrenHeader.attempt: "minus one"],
                messageID: i % 2 == 0 ? nil : "",
                outcome: malformed, invalidHeader: true)
        }
        // Content types: the worker does not read content_type (nor content_encoding); valid JSON runs.
        let contentTypes: [String?] = [
            "text/plain", nil, "", "application/xml", "image/png", "application/json; charset=latin1", "\u{1}",
        ]
        add(70) { i in
            PoisonCase(kind: "content-type", contentType: contentTypes[i % contentTypes.count], outcome: .ran)
        }
        add(10) { _ in PoisonCase(kind: "content-encoding-gzip", contentEncoding: "gzip", outcome: .ran) }
        // x-warren-attempt and x-warren-max-attempts that are not a whole number from 1 to 1,000,000.
        let badCounts: [FieldValue] = [
            -1, 0, "abc", "", 1_000_001, .double(1.5), .bool(true), .timestamp(Date()), [1], .table(["a": 1]),
            "-5", "1e3", .int64(Int64.min), .rawString([0xFF, 0x31]), .void,
        ]
        add(105) { i in
            PoisonCase(
                kind: "bad-attempt", headers: [WarrenHeader.attempt: badCounts[i % badCounts.count]],
                outcome: malformed, invalidHeader: true)
        }
        add(30) { i in
            PoisonCase(
                kind: "bad-max-attempts", headers: [WarrenHeader.maxAttempts: badCounts[i % badCounts.count]],
                outcome: malformed, invalidHeader: true)
        }
        // x-warren-not-before: centuries ahead (before year 3000) is parked; unparsable, negative or from year 3000 on
        // is malformed; in the past runs.
        let farFuture: [FieldValue] = [
            "2999-12-31T23:59:59Z", .int64(32_503_679_999_999), "32503679999999", "2900-01-01T00:00:00.123Z",
            .timestamp(Date(timeIntervalSince1970: 16_000_000_000)),
            // The year-3000 limit applies to epoch milliseconds only: an RFC 3339 date after it is parked too.
            "3000-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
        ]
        add(20) { i in
            PoisonCase(
                kind: "not-before-far-future", headers: [WarrenHeader.notBefore: farFuture[i % farFuture.count]],
                outcome: .parked)
        }
        let unparsable: [FieldValue] = [
            "tomorrow", "", "2026-13-45T00:00:00Z", -1, .int64(32_503_680_000_000), .bool(true), .double(1e20),
            "9999999999999999999999",
        ]
        add(45) { i in
            PoisonCase(
                kind: "not-before-unparsable", headers: [WarrenHeader.notBefore: unparsable[i % unparsable.count]],
                outcome: malformed, invalidHeader: true)
        }
        add(10) { i in
            PoisonCase(
                kind: "not-before-past", headers: [WarrenHeader.notBefore: i % 2 == 0 ? 0 : "1970-01-01T00:00:00Z"],
                outcome: .ran)
        }
        // x-warren-expires: unparsable is malformed, past is expired.
        add(20) { i in
            PoisonCase(
                kind: "expires-unparsable", headers: [WarrenHeader.expires: unparsable[i % unparsable.count]],
                outcome: malformed, invalidHeader: true)
        }
        add(10) { _ in PoisonCase(kind: "expires-past", headers: [WarrenHeader.expires: 1000], outcome: .dead(.expired))
        }
        cases.shuffle(using: &rng)
        return cases
    }
}

extension Reliability {
    /// A `warren worker` configuration file written by the test, for the harness's prefix.
    struct WorkerConfigurationFile {
        var path: String
        var directory: URL
        var configuration: WarrenConfiguration
    }

    /// Writes a configuration for `warren worker` processes on the harness's prefix (its `finish()` deletes the
    /// queues and exchanges; ``withWorkerProcesses(_:_:_:)`` the tier queues of `retryTiers`).
    static func workerConfigurationFile(
        for h: WorkerHarness, queueJSON: String, workerJSON: String, retryTiers: [String]
    ) throws -> WorkerConfigurationFile {
        let json = """
            {
              "broker": {"url": "\(TestBroker.url)"},
              "prefix": "\(h.prefix)",
              "queues": [\(queueJSON)],
              "worker": {"shutdownGrace": "10s", "heartbeatInterval": "1s", \(workerJSON)},
              "retry": {"maxAttempts": 3, "baseDelay": "300ms", "factor": 2, "maxDelay": "5s", "jitter": false},
              "retryTiers": [\(retryTiers.map { "\"\($0)\"" }.joined(separator: ", "))]
            }
            """
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("\(h.prefix)-process")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("warren.json")
        try Data(json.utf8).write(to: file)
        return WorkerConfigurationFile(
            path: file.path, directory: directory, configuration: try WarrenConfiguration.decode(Data(json.utf8)))
    }

    /// Runs `body` with a function that starts `warren worker` processes on `config`; afterwards (also on failure)
    /// SIGKILLs those still running and deletes the configuration's tier queues.
    static func withWorkerProcesses<T>(
        _ h: WorkerHarness, _ config: WorkerConfigurationFile,
        _ body: (_ start: (String) throws -> ChildProcess) async throws -> T
    ) async throws -> T {
        var started: [ChildProcess] = []
        func start(_ name: String) throws -> ChildProcess {
            let child = try ChildProcess(
                ChildProcess.warren,
                [
                    "worker", "--config", config.path, "--diagnostic-tasks", "--no-examples", "--name",
                    "\(h.prefix)-\(name)",
                ],
                directory: config.directory, name: name)
            started.append(child)
            return child
        }
        func cleanUp() async {
            for child in started where child.isRunning { child.signal(SIGKILL) }
            let c = config.configuration
            _ = try? await h.raw.withChannel { channel in
                for tier in c.retryTiers { _ = try? channel.deleteQueue(c.retryQueueName(tier: tier)) }
            }
        }
        do {
            let result = try await body(start)
            await cleanUp()
            return result
        } catch {
            await cleanUp()
            throw error
        }
    }

    /// Polls `check` (nil: done; otherwise what is still missing) until it is done or `timeout` passes.
    static func waitUntil(
        _ what: String, timeout: Duration, _ process: ChildProcess, _ check: () async -> String?
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while let missing = await check() {
            if ContinuousClock.now > deadline {
                throw TestFailure(
                    "timed out after \(timeout) waiting for \(what): \(missing); log tail:\n\(process.log.suffix(3000))"
                )
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Waits until the worker process consumes the harness's work queue.
    static func waitUntilConsuming(
        _ h: WorkerHarness, _ worker: ChildProcess, timeout: Duration = .seconds(30)
    ) async throws {
        try await waitUntil("the worker to consume \(h.workQueue)", timeout: timeout, worker) {
            guard worker.isRunning else { return nil }
            let consumers = try? await h.raw.withChannel { [queue = h.workQueue] in
                try $0.declareQueue(queue, passive: true).consumerCount
            }
            return (consumers ?? 0) > 0 ? nil : "no consumer yet"
        }
        if !worker.isRunning { throw TestFailure("the worker exited at start: \(worker.log)") }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// `diag.sleep done <marker> attempt N` lines: how many times each marker was printed.
    static func sleepMarkers(_ output: String) -> [String: Int] {
        var counts: [String: Int] = [:]
        for line in output.split(separator: "\n") {
            let words = line.split(separator: " ")
            guard words.count >= 3, words[0] == "diag.sleep", words[1] == "done" else { continue }
            counts[String(words[2]), default: 0] += 1
        }
        return counts
    }

    /// The peak resident set size of a live process (`VmHWM`), in MB; 0 if it cannot be read.
    static func peakRSSMegabytes(pid: Int32) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
            let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "")
        else { return 0 }
        return kilobytes / 1024
    }

    /// Takes every message of `queue` (basic.get and ack) and returns them.
    static func drain(_ h: WorkerHarness, _ queue: String) async throws -> [Delivery] {
        try await h.raw.withChannel { channel in
            var taken: [Delivery] = []
            while let (delivery, _) = try channel.get(queue: queue) {
                try channel.ack(delivery.tag)
                taken.append(delivery)
            }
            return taken
        }
    }
}
