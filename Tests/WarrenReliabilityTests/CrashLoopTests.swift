import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

#if canImport(Glibc)
    import Glibc
#endif

extension Reliability {
    /// Scenario 5: a crash-looping handler. A job whose handler kills the worker process (`warren.diag.crash`,
    /// `abort()`) among good jobs, on a quorum queue with `deliveryLimit` 3; the test is the supervisor (systemd's
    /// `Restart=always`) and restarts the worker each time it dies. The quorum delivery limit is what ends the loop:
    /// each crash returns the unacknowledged message, and once it was delivered `deliveryLimit + 1` times the broker
    /// dead-letters it (`x-death` reason `delivery_limit`; `warren dead list` shows `broker:delivery_limit`).
    ///
    /// With prefetch 1 the crash job is the only one unacknowledged when the process dies. With a larger prefetch
    /// the jobs delivered beside it are returned too, and their delivery count rises with each crash: some reach the
    /// limit and are dead-lettered with it (the second test measures it; `warren dead replay` brings them back).
    @Suite struct CrashLoop {
        static let deliveryLimit = 3
        static let queueJSON =
            #"{"name": "work", "tasks": ["test.#", "warren.diag.#"], "deliveryLimit": \#(deliveryLimit)}"#

        @Test func aCrashingJobIsDeadLetteredByTheDeliveryLimitAndTheOthersComplete() async throws {
            let started = ContinuousClock.now
            try await Self.supervise("crashloop", concurrency: 1) { h, run in
                // Only the crash job is dead; every good job ran, exactly once.
                #expect(run.dead.map(\.id) == [run.crashID], "dead: \(run.dead.map(\.id))")
                for (_, marker) in run.good {
                    #expect(run.ran[marker] == 1, "\(marker) ran \(run.ran[marker] ?? 0) times")
                }

                // What an operator sees: `warren dead list` names the broker's reason.
                let listed = try #require(run.dead.first)
                #expect(listed.task == DiagnosticJobs.Crash.taskName)
                #expect(listed.errorType == "broker:delivery_limit")
                #expect(listed.originQueue == h.workQueue)
                // When: the broker's x-death time, as RFC 3339.
                let failedAt = try #require(listed.failedAt)
                #expect(try Date(failedAt, strategy: .iso8601).timeIntervalSinceNow > -120)

                // The dead letter itself: dead-lettered by the broker (x-death), not by a worker.
                let letter = try #require(try await h.deadLetters(1).first)
                let headers = letter.properties.headers ?? [:]
                let death = try #require(headers["x-death"]?.arrayValue?.first?.tableValue, "\(headers)")
                #expect(death["reason"] == .string("delivery_limit"))
                #expect(death["queue"] == .string(h.workQueue))
                #expect(headers["x-first-death-reason"] == .string("delivery_limit"))
                #expect(headers[WarrenHeader.errorType] == nil)
                #expect(letter.properties.messageID == run.crashID)
                #expect(try JSONDecoder().decode(DiagnosticJobs.Crash.self, from: letter.body).marker == "boom")
                Reliability.report(
                    "crashloop",
                    [
                        "deliveryLimit": Self.deliveryLimit, "prefetch": 1, "good": run.good.count,
                        "crashes": run.crashes,
                        "restarts": run.restarts,
                        "deliveryCounts": run.deliveryCounts.map(String.init).joined(separator: ","),
                        "dead": run.dead.count, "deadReason": death["reason"]?.stringValue ?? "?",
                        "seconds": String(format: "%.1f", Reliability.seconds(ContinuousClock.now - started)),
                    ])
            }
        }

        @Test func withPrefetchTheJobsBesideTheCrashMayDieWithItButNoneIsLost() async throws {
            let started = ContinuousClock.now
            try await Self.supervise("crashloop-prefetch", concurrency: 4) { h, run in
                // Each good job ran, or was dead-lettered by the delivery limit beside the crash job: none lost.
                let deadIDs = Set(run.dead.map(\.id))
                let collateral = run.good.filter { deadIDs.contains($0.id) }
                for (id, marker) in run.good {
                    #expect(run.ran[marker] != nil || deadIDs.contains(id), "\(marker) neither ran nor is dead")
                }
                #expect(run.dead.allSatisfy { $0.errorType == "broker:delivery_limit" }, "\(run.dead.map(\.errorType))")
                #expect(collateral.count <= 3, "more dead beside the crash job than the prefetch window holds")
                Reliability.report(
                    "crashloop-prefetch",
                    [
                        "deliveryLimit": Self.deliveryLimit, "prefetch": 4, "good": run.good.count,
                        "crashes": run.crashes,
                        "restarts": run.restarts, "collateralDead": collateral.count,
                        "collateralRanBeforeDying": collateral.filter { run.ran[$0.marker] != nil }.count,
                        "seconds": String(format: "%.1f", Reliability.seconds(ContinuousClock.now - started)),
                    ])
            }
        }

        /// What the supervisor saw.
        struct Run {
            var crashID: String
            /// Job id and marker of each good job.
            var good: [(id: String, marker: String)]
            /// How many times each marker was printed, by every worker process.
            var ran: [String: Int]
            /// `warren dead list --json` at the end.
            var dead: [DeadListEntry]
            var crashes: Int
            var restarts: Int
            /// The broker's `x-delivery-count` at each crash (0 for the first delivery).
            var deliveryCounts: [Int]
        }

        struct DeadListEntry: Decodable {
            var id: String
            var task: String
            var errorType: String
            var originQueue: String?
            var failedAt: String?
        }

        /// Enqueues 10 good jobs, the crash job and 10 more, then runs worker processes (`concurrency`, prefetch the
        /// same), restarting each one that dies, until the crash job is in the dead queue (seen by `warren dead
        /// list`), every good job ran or is dead too, and the work queue is empty. Checks what holds in every case,
        /// then passes the run to `check` with the last worker still running; stops it afterwards.
        static func supervise(
            _ name: String, concurrency: Int, _ check: (WorkerHarness, Run) async throws -> Void
        ) async throws {
            try await WorkerHarness.with(name, queueJSON: queueJSON) { h in
                let config = try Reliability.workerConfigurationFile(
                    for: h, queueJSON: queueJSON, workerJSON: #""concurrency": \#(concurrency)"#,
                    retryTiers: ["1s", "5s"])
                try await Reliability.withWorkerProcesses(h, config) { start in
                    var good: [(id: String, marker: String)] = []
                    for n in 0..<10 {
                        let job = DiagnosticJobs.Sleep(milliseconds: 0, marker: "good-\(n)")
                        good.append((try await h.jobs.enqueue(job), "good-\(n)"))
                    }
                    let crashID = try await h.jobs.enqueue(DiagnosticJobs.Crash(marker: "boom"))
                    for n in 10..<20 {
                        let job = DiagnosticJobs.Sleep(milliseconds: 0, marker: "good-\(n)")
                        good.append((try await h.jobs.enqueue(job), "good-\(n)"))
                    }

                    var workers = [try start("w0")]
                    var abnormalExits: [String] = []
                    var dead: [DeadListEntry] = []
                    var gaveUp = false
                    try await Reliability.waitUntil(
                        "the crash job dead and every good job settled", timeout: .seconds(60), workers[0]
                    ) {
                        let current = workers[workers.count - 1]
                        if !current.isRunning {
                            let reason = current.process.terminationReason
                            let status = current.process.terminationStatus
                            if reason != .uncaughtSignal || status != SIGABRT {
                                abnormalExits.append("\(reason == .exit ? "exit" : "signal") \(status)")
                            }
                            // Bounded: a crash loop the broker never ends fails here rather than spinning on.
                            guard workers.count <= 2 * deliveryLimit + 2, let next = try? start("w\(workers.count)")
                            else {
                                gaveUp = true
                                return nil
                            }
                            workers.append(next)
                        }
                        let ran = Reliability.sleepMarkers(workers.map(\.output).joined())
                        let work = (try? await h.queueDepth(h.workQueue)) ?? 0
                        dead =
                            (try? h.warren("dead", "list", "--config", config.path, "--json")).flatMap {
                                try? JSONDecoder().decode([DeadListEntry].self, from: Data($0.output.utf8))
                            } ?? []
                        let deadIDs = Set(dead.map(\.id))
                        let unsettled = good.filter { ran[$0.marker] == nil && !deadIDs.contains($0.id) }
                        if deadIDs.contains(crashID) && unsettled.isEmpty && work == 0
                            && workers[workers.count - 1].isRunning
                        {
                            return nil
                        }
                        return "crash job dead: \(deadIDs.contains(crashID)), \(unsettled.count) good jobs unsettled, "
                            + "\(work) in the work queue, \(workers.count - 1) restarts"
                    }
                    let survivor = workers[workers.count - 1]
                    #expect(!gaveUp && survivor.isRunning, "the supervisor gave up after \(workers.count) workers")
                    #expect(abnormalExits.isEmpty, "workers that died otherwise than by abort(): \(abnormalExits)")

                    // Every crash was the crash job's (one line each, printed before abort()), each a new delivery,
                    // and the delivery limit bounds them.
                    let crashes = workers.filter { !$0.isRunning }.count
                    let output = workers.map(\.output).joined()
                    let crashLines = output.split(separator: "\n").filter { $0.hasPrefix("diag.crash boom") }
                    let deliveryCounts = crashLines.compactMap { $0.split(separator: " ").last.flatMap { Int($0) } }
                    #expect(crashLines.count == crashes)
                    #expect(crashes >= 1 && crashes <= deliveryLimit + 1, "\(crashes) crashes")
                    #expect(deliveryCounts == Array(0..<crashes), "x-delivery-count per crash: \(deliveryCounts)")

                    try await check(
                        h,
                        Run(
                            crashID: crashID, good: good, ran: Reliability.sleepMarkers(output), dead: dead,
                            crashes: crashes, restarts: workers.count - 1, deliveryCounts: deliveryCounts))
                    survivor.signal(SIGTERM)
                    #expect(try await survivor.waitForExit(timeout: .seconds(20)) == 0)
                    #expect(try await h.queueDepth(h.workQueue) == 0)
                }
            }
        }
    }
}
