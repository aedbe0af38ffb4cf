import Foundation

/// Tasks for checking a deployment (and for Warren's own process-level tests and benchmarks): `warren.diag.noop`
/// succeeds at once, `warren.diag.sleep` waits, then succeeds; `warren.diag.fail` fails (retryably, or for good).
/// `warren worker --diagnostic-tasks` registers them.
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
    }
}
