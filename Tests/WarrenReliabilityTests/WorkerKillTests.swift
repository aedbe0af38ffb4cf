import Foundation
import Testing
import Warren
import WarrenTestSupport

extension Reliability {
    @Suite struct WorkerKills {
        /// 20,000 jobs, 3 worker processes, a random one SIGKILLed every 1–2 s and restarted: every job completes
        /// at least once, and the duplicates are bounded by what the killed workers held unacknowledged.
        @Test func everyJobCompletesWhileWorkersAreKilled() async throws {
            let count = 20_000
            let prefetch = 16
            try await WorkerHarness.with(
                "rel-kill", queueJSON: #"{"name": "work", "tasks": ["warren.diag.#"], "deliveryLimit": 50}"#,
                workerJSON: #""prefetch": \#(prefetch)"#
            ) { h in
                let fleet = WorkerFleet(h)
                do {
                    try await fleet.enqueue(count, milliseconds: 6)
                    for _ in 0..<3 { try fleet.start() }
                    var kills = 0
                    var nextKill = ContinuousClock.now + .milliseconds(Int.random(in: 1000...2000))
                    let started = ContinuousClock.now
                    let done = try await fleet.waitForAll(count, timeout: .seconds(150)) {
                        guard ContinuousClock.now >= nextKill, let victim = fleet.running.randomElement() else {
                            return
                        }
                        try await fleet.kill(victim)
                        kills += 1
                        try fleet.start()
                        nextKill = ContinuousClock.now + .milliseconds(Int.random(in: 1000...2000))
                    }
                    let elapsed = ContinuousClock.now - started
                    try await fleet.stop()
                    let duplicates = done.count - Set(done).count
                    Reliability.report(
                        "worker-kills",
                        [
                            "jobs": count, "workers": 3, "kills": kills, "lost": count - Set(done).count,
                            "duplicates": duplicates, "duplicateBound": kills * prefetch,
                            "seconds": Int(elapsed.components.seconds),
                        ])
                    #expect(Set(done) == Set(0..<count), "every job completed at least once")
                    #expect(kills >= 2, "the drain outlasted at least two kills (\(kills))")
                    // A killed worker held at most `prefetch` unacknowledged deliveries; only those can run twice.
                    #expect(duplicates <= kills * prefetch, "\(duplicates) duplicates after \(kills) kills")
                    #expect(try await h.queueDepth(h.workQueue) == 0)
                    #expect(try await h.queueDepth(h.deadQueue) == 0, "no job was dead-lettered")
                } catch {
                    fleet.killAll()
                    throw error
                }
            }
        }
    }
}
