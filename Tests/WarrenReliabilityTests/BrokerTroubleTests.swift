import Foundation
import Testing
import Warren
import WarrenTestSupport

extension Reliability {
    @Suite struct BrokerTrouble {
        /// A queue's depth through the harness's client, waiting (up to 30 s) for it to be reconnected.
        static func depthOnceReconnected(_ h: WorkerHarness, _ queue: String) async throws -> UInt32 {
            let deadline = ContinuousClock.now + .seconds(30)
            while true {
                do {
                    return try await h.queueDepth(queue)
                } catch  where ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(200))
                }
            }
        }

        /// 20,000 jobs drained by 3 worker processes while every worker connection is closed 5 times and the
        /// broker application is stopped and started once (quorum queues survive it): every job completes, and the
        /// workers resume by themselves. The trouble is triggered by progress (5%, 10%, … of the jobs done,
        /// the restart after the 5th round and 40%), so it lands during the load on any machine.
        @Test func everyJobCompletesThroughConnectionClosesAndABrokerRestart() async throws {
            let count = 20_000
            let prefetch = 16
            try await WorkerHarness.with(
                "rel-broker", queueJSON: #"{"name": "work", "tasks": ["warren.diag.#"], "deliveryLimit": 50}"#,
                workerJSON: #""prefetch": \#(prefetch), "reconnectMaxDelay": "2s""#
            ) { h in
                let fleet = WorkerFleet(h)
                do {
                    // 15 ms jobs: ~25 s of work for 12 handlers, long enough for 5 close rounds (each needs the
                    // reconnected connections to show in the management API, ~2 s) and the restart.
                    try await fleet.enqueue(count, milliseconds: 15)
                    for _ in 0..<3 { try fleet.start() }
                    var closeRounds = 0
                    var connectionsClosed = 0
                    var restarted = false
                    var restartSeconds = 0.0
                    let started = ContinuousClock.now
                    let done = try await fleet.waitForAll(count, timeout: .seconds(180)) {
                        let percent = Set(fleet.completions()).count * 100 / count
                        if closeRounds < 5, percent >= (closeRounds + 1) * 5 {
                            // Only rounds that closed something count (a reconnected connection takes ~2 s to
                            // show in the management API).
                            let closed = try await TestBroker.closeConnections(namedWithPrefix: h.prefix + "-w")
                            if closed > 0 {
                                closeRounds += 1
                                connectionsClosed += closed
                            }
                        } else if closeRounds == 5, !restarted, percent >= 40 {
                            restarted = true
                            let restart = ContinuousClock.now
                            try TestBroker.script("ctl", "stop_app")
                            try TestBroker.script("ctl", "start_app")
                            try TestBroker.script("ctl", "await_startup")
                            restartSeconds = (ContinuousClock.now - restart).seconds
                        }
                    }
                    let elapsed = ContinuousClock.now - started
                    let alive = fleet.running.filter { $0.isRunning }.count
                    #expect(alive == 3, "no worker process died")
                    try await fleet.stop()
                    let duplicates = done.count - Set(done).count
                    let reconnects = fleet.all.map {
                        $0.log.components(separatedBy: #""msg":"reconnected""#).count - 1
                    }
                    Reliability.report(
                        "broker-trouble",
                        [
                            "jobs": count, "workers": 3, "closeRounds": closeRounds,
                            "connectionsClosed": connectionsClosed, "brokerRestarts": restarted ? 1 : 0,
                            "restartSeconds": Int(restartSeconds), "lost": count - Set(done).count,
                            "duplicates": duplicates, "seconds": Int(elapsed.seconds),
                            "reconnectsPerWorker": reconnects,
                        ])
                    #expect(closeRounds == 5)
                    // Each worker resumed by itself: 5 closes (some may have missed a worker) and the restart.
                    #expect(reconnects.allSatisfy { $0 >= 2 }, "reconnects per worker: \(reconnects)")
                    #expect(restarted, "the broker was restarted during the load")
                    #expect(Set(done) == Set(0..<count), "every job completed at least once")
                    // The harness's own client went through the restart too: it reconnects by itself.
                    let work = try await Self.depthOnceReconnected(h, h.workQueue)
                    let dead = try await Self.depthOnceReconnected(h, h.deadQueue)
                    #expect(work == 0)
                    #expect(dead == 0, "no job was dead-lettered")
                } catch {
                    fleet.killAll()
                    throw error
                }
            }
        }
    }
}
