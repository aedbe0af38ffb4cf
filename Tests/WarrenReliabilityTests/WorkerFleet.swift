import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// `warren worker` processes on a harness's configuration, each job a `warren.diag.sleep` whose marker (the job
/// number) the worker prints when the handler has finished: the union of the outputs of every process, killed or
/// not, is what ran.
final class WorkerFleet {
    let harness: WorkerHarness
    let directory: URL
    private(set) var running: [ChildProcess] = []
    private(set) var all: [ChildProcess] = []
    private var started = 0

    init(_ harness: WorkerHarness) {
        self.harness = harness
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(harness.prefix)
    }

    /// Starts one more worker process (connection names `<prefix>-w<k>-consume` / `-publish`).
    @discardableResult
    func start() throws -> ChildProcess {
        let name = "w\(started)"
        started += 1
        let child = try ChildProcess(
            ChildProcess.warren,
            [
                "worker", "--config", try harness.configFile(), "--diagnostic-tasks", "--no-examples", "--log-level",
                "warning", "--name", "\(harness.prefix)-\(name)",
            ],
            directory: directory, name: name)
        running.append(child)
        all.append(child)
        return child
    }

    /// SIGKILLs `child` and waits until it is gone.
    func kill(_ child: ChildProcess) async throws {
        child.signal(SIGKILL)
        _ = try await child.waitForExit(timeout: .seconds(10))
        running.removeAll { $0 === child }
    }

    /// Every `diag.sleep done <marker>` line printed by any process, in order per process.
    func completions() -> [Int] {
        all.flatMap { child in
            child.output.split(separator: "\n").compactMap { line -> Int? in
                let words = line.split(separator: " ")
                guard words.count >= 3, words[0] == "diag.sleep", words[1] == "done" else { return nil }
                return Int(words[2])
            }
        }
    }

    /// Stops the running processes gracefully (SIGTERM) and expects each to exit 0.
    func stop() async throws {
        for child in running { child.signal(SIGTERM) }
        for child in running {
            let status = try await child.waitForExit(timeout: .seconds(30))
            #expect(status == 0, "a worker exited \(status): \(child.log.suffix(2000))")
        }
        running = []
    }

    /// Kills whatever still runs (after a failure).
    func killAll() {
        for child in running where child.isRunning { child.signal(SIGKILL) }
        running = []
    }

    /// Enqueues jobs `0..<count` (sleeping `milliseconds` each) through JobClient with confirms.
    func enqueue(_ count: Int, milliseconds: Int) async throws {
        for first in stride(from: 0, to: count, by: 1000) {
            let batch = (first..<min(count, first + 1000)).map { n in
                (
                    task: DiagnosticJobs.Sleep.taskName,
                    json: Data(#"{"milliseconds":\#(milliseconds),"marker":"\#(n)"}"#.utf8), id: "job-\(n)"
                )
            }
            let failures = await harness.jobs.enqueue(batch: batch).compactMap { $0 }
            #expect(failures.isEmpty, "enqueue failed: \(failures.prefix(3))")
        }
    }

    /// Waits until every job of `0..<count` completed at least once, or `timeout` passed, calling `chaos` every
    /// 100 ms meanwhile; returns the completions.
    func waitForAll(
        _ count: Int, timeout: Duration, chaos: () async throws -> Void = {}
    ) async throws -> [Int] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let done = completions()
            if Set(done).count >= count { return done }
            guard ContinuousClock.now < deadline else {
                let missing = Set(0..<count).subtracting(done).sorted()
                throw TestFailure(
                    "after \(timeout): \(missing.count) of \(count) jobs never completed (first: \(missing.prefix(10)))"
                        + "; last worker log:\n\(all.last?.log.suffix(3000) ?? "")")
            }
            try await chaos()
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}
