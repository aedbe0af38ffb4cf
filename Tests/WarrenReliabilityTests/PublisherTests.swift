import Foundation
import Synchronization
import Testing
import Warren
import WarrenTestSupport

extension Reliability {
    @Suite struct PublisherSide {
        final class Progress: Sendable {
            let confirmed = Mutex<Set<Int>>([])
            let failures = Mutex<[String]>([])
            let next = Atomic<Int>(0)
            let closed = Atomic<Bool>(false)
        }

        /// `JobClient.enqueue` from 4 producers, at least 10,000 jobs, while the client's connection is closed under
        /// it 5 times: each enqueue either returns (confirmed) or throws; a producer retries what threw, as a user
        /// would. Every confirmed job is then run by a worker: no silent loss.
        @Test func everyConfirmedEnqueueIsRunThoughTheConnectionIsClosedUnderIt() async throws {
            let count = 10_000
            try await WorkerHarness.with("rel-pub") { h in
                let progress = Progress()
                let closing = Task {
                    var closes = 0
                    // Close while the producers run, until 5 closes landed on a live connection.
                    while closes < 5 {
                        try await Task.sleep(for: .milliseconds(300))
                        closes += try await TestBroker.closeConnections(namedWithPrefix: h.prefix + "-jobs")
                    }
                    progress.closed.store(true, ordering: .relaxed)
                    return closes
                }
                let started = ContinuousClock.now
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<4 {
                        group.addTask {
                            while true {
                                // At least `count` jobs, and on until the 5th close landed.
                                let n = progress.next.add(1, ordering: .relaxed).oldValue
                                if n >= count, progress.closed.load(ordering: .relaxed) {
                                    progress.next.subtract(1, ordering: .relaxed)
                                    return
                                }
                                while true {
                                    do {
                                        try await h.jobs.enqueue(TestJob(n: n), id: "pub-\(n)")
                                        progress.confirmed.withLock { _ = $0.insert(n) }
                                        // Paced at about 800 jobs/s in all, so that the publishing lasts long
                                        // enough for 5 closes (a reconnected connection takes ~2 s to show in
                                        // the management API).
                                        try await Task.sleep(for: .milliseconds(5))
                                        break
                                    } catch {
                                        progress.failures.withLock { $0.append("\(error)") }
                                        try await Task.sleep(for: .milliseconds(20))
                                    }
                                }
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                let publishSeconds = (ContinuousClock.now - started).components.seconds
                let closes = try await closing.value
                let total = progress.next.load(ordering: .relaxed)
                #expect(progress.confirmed.withLock { $0 } == Set(0..<total), "every job was confirmed in the end")

                let runs = Recorder<Run>()
                try h.startWorker(.recording(runs))
                let ran = try await runs.wait(for: "every confirmed job ran", timeout: .seconds(120)) {
                    Set($0.map(\.n)).count >= total
                }
                let thrown = progress.failures.withLock { $0 }
                let duplicates = ran.count - Set(ran.map(\.n)).count
                Reliability.report(
                    "publisher",
                    [
                        "jobs": total, "closes": closes, "enqueueErrors": thrown.count,
                        "confirmed": progress.confirmed.withLock { $0.count }, "lost": total - Set(ran.map(\.n)).count,
                        "duplicates": duplicates, "publishSeconds": publishSeconds,
                    ])
                #expect(closes >= 5, "the connection was closed under the producers (\(closes) times)")
                #expect(!thrown.isEmpty, "some enqueues in flight at a close threw")
                // A duplicate can only come from an enqueue that threw but had reached the queue.
                #expect(duplicates <= thrown.count)
                #expect(Set(ran.map(\.n)) == Set(0..<total))
            }
        }
    }
}
