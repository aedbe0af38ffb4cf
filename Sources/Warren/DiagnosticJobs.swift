import Foundation

/// Tasks for checking a deployment (and for Warren's own process-level tests and benchmarks): `warren.diag.noop`
/// succeeds at once, `warren.diag.sleep` waits, then succeeds; `warren.diag.fail` fails (retryably, or for good);
/// `warren.diag.crash` kills the worker process. `warren worker --diagnostic-tasks` registers them.
public enum DiagnosticJobs {
    /// Does nothing and succeeds: the cost of a job is then Warren's own (`warren bench` uses it).
    public struct Noop: JobPayload {
        public static let taskName = "warren.diag.noop"
        public init() {}
    }

    public struct Sleep: JobPayload {
        public static let taskName = "warren.diag.sleep"
        public var milliseconds: Int
        /// Written to standard output as `diag.sleep done <marker>` when the job finishes, if set.
        public var marker: String?
        public init(milliseconds: Int, marker: String? = nil) {
            self.milliseconds = milliseconds
            self.marker = marker
        }
    }

    public struct Fail: JobPayload {
        public static let taskName = "warren.diag.fail"
        public var permanent: Bool
        public init(permanent: Bool) { self.permanent = permanent }
    }

    /// Kills its own process with `abort()`: a handler that crashes the worker every time it runs. It exists to test
    /// the quorum queue's delivery limit (`deliveryLimit`), which is what stops such a job from crash-looping every
    /// worker forever: each crash returns the unacknowledged message to the queue, and after the limit the broker
    /// dead-letters it (with `x-death` reason `delivery_limit`). Only `--diagnostic-tasks` registers it; never
    /// register it in a deployment's own workers.
    ///
    /// Before aborting it writes `diag.crash <marker> attempt <N> delivery-count <C>` to standard output (`C` is the
    /// broker's `x-delivery-count`, 0 on the first delivery), so a test can count the crashes.
    public struct Crash: JobPayload {
        public static let taskName = "warren.diag.crash"
        public var marker: String?
        public init(marker: String? = nil) { self.marker = marker }
    }

    struct DiagnosticFailure: Error, CustomStringConvertible {
        var description: String { "warren.diag.fail failed on purpose" }
    }

    public static func register(into registry: inout JobRegistry) {
        registry.register(Noop.self) { _, _ in }
        registry.register(Sleep.self) { job, context in
            context.logger.info("diag.sleep started", ["job.sleep_ms": "\(job.milliseconds)"])
            // Deliberately not cancellable: it stands for a handler that must not be cut off mid-way.
            try? await Task.sleep(for: .milliseconds(job.milliseconds))
            if let marker = job.marker {
                FileHandle.standardOutput.write(Data("diag.sleep done \(marker) attempt \(context.attempt)\n".utf8))
            }
        }
        registry.register(Fail.self) { job, _ in
            if job.permanent { throw PermanentJobError("warren.diag.fail failed on purpose, permanently") }
            throw DiagnosticFailure()
        }
        registry.register(Crash.self) { job, context in
            let count = context.headers["x-delivery-count"] ?? "0"
            let line = "diag.crash \(job.marker ?? "-") attempt \(context.attempt) delivery-count \(count)\n"
            // Unbuffered: the line is out before the process dies.
            FileHandle.standardOutput.write(Data(line.utf8))
            context.logger.error("diag.crash: aborting the worker process on purpose")
            abort()
        }
    }
}
