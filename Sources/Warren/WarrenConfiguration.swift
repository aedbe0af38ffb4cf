import Foundation
import WarrenAMQP

/// Everything a Warren worker or coordinator needs to know: broker, names, queues, retries, schedules.
///
/// Load it from `Config/warren.json` with ``load(path:environment:)``; `Config/README.md` documents every key.
/// Every value has a documented default except the queues.
///
/// ```swift
/// let configuration = try WarrenConfiguration.load(
///     path: "Config/warren.json", environment: ProcessInfo.processInfo.environment)
/// let queue = configuration.queue(forTask: "email.send")
/// ```
public struct WarrenConfiguration: Sendable, Equatable {
    /// The broker URI used when the configuration names none.
    public static let defaultBrokerURL = "amqp://guest:guest@127.0.0.1:5672/%2F"
    /// The default retry ladder: fixed-TTL tier queues a delayed message hops through.
    public static let defaultRetryTiers: [Duration] = [
        .seconds(1), .seconds(5), .seconds(30), .seconds(120), .seconds(600), .seconds(3600),
    ]

    /// Broker URIs tried in order (failover). JSON: `"broker": {"url": "amqp://..."}` or `{"urls": [...]}`.
    public var brokerURLs: [String]
    /// Name prefix for every exchange and queue; must match `[a-z0-9][a-z0-9_.-]*`.
    public var prefix: String
    /// The work queues and the task types each serves; at least one.
    public var queues: [QueueSettings]
    public var worker: WorkerSettings
    /// The default retry policy; ``tasks`` may override it per task type.
    public var retry: RetryPolicy
    /// TTLs of the retry tier queues: strictly increasing, each at least 100ms.
    public var retryTiers: [Duration]
    /// Per task type overrides, keyed by task type (e.g. `email.send`).
    public var tasks: [String: TaskSettings]
    public var schedules: [ScheduleSettings]
    public var examples: ExampleSettings
    public var coordinator: CoordinatorSettings

    public init(
        brokerURLs: [String] = [WarrenConfiguration.defaultBrokerURL],
        prefix: String = "warren",
        queues: [QueueSettings],
        worker: WorkerSettings = WorkerSettings(),
        retry: RetryPolicy = RetryPolicy(),
        retryTiers: [Duration] = WarrenConfiguration.defaultRetryTiers,
        tasks: [String: TaskSettings] = [:],
        schedules: [ScheduleSettings] = [],
        examples: ExampleSettings = ExampleSettings(),
        coordinator: CoordinatorSettings = CoordinatorSettings()
    ) {
        self.brokerURLs = brokerURLs
        self.prefix = prefix
        self.queues = queues
        self.worker = worker
        self.retry = retry
        self.retryTiers = retryTiers
        self.tasks = tasks
        self.schedules = schedules
        self.examples = examples
        self.coordinator = coordinator
    }

    /// A configuration with these queues and every other setting at its default.
    public init(queues: [QueueSettings]) {
        self.init(brokerURLs: [Self.defaultBrokerURL], prefix: "warren", queues: queues, worker: WorkerSettings())
    }

    // MARK: Derived names

    /// The topic exchange producers publish jobs to.
    public var jobsExchange: String { "\(prefix).jobs" }
    /// The headers exchange that routes delayed messages to the retry tier queues.
    public var retryExchange: String { "\(prefix).retry" }
    /// The direct exchange of dead letters, keyed by origin queue.
    public var deadExchange: String { "\(prefix).dead" }
    /// The topic exchange of worker heartbeats and job lifecycle events.
    public var eventsExchange: String { "\(prefix).events" }
    /// The fanout exchange of the coordinator's metrics snapshots.
    public var metricsExchange: String { "\(prefix).metrics" }

    public func queueName(_ queue: QueueSettings) -> String { "\(prefix).\(queue.name)" }

    public func deadQueueName(_ queue: QueueSettings) -> String { "\(prefix).\(queue.name).dead" }

    /// The queue holding the last fire of a schedule (the coordinator's state, `x-max-length` 1).
    public func scheduleStateQueueName(_ schedule: String) -> String { "\(prefix).schedule.\(schedule).last" }
    public func retryQueueName(tier: Duration) -> String { "\(prefix).retry.\(DurationText.format(tier))" }

    // MARK: Effective settings per task type

    /// The retry policy for a task type: its override fields in ``tasks`` merged over ``retry``.
    public func retryPolicy(forTask task: String) -> RetryPolicy {
        guard let override = tasks[task] else { return retry }
        return override.merged(over: retry)
    }

    /// The time limit of one attempt of a task type: its `timeLimit`, else `worker.defaultTimeLimit`, and never
    /// longer than ``WorkerSettings/maximumTimeLimit`` (the broker's consumer timeout minus a margin), so an attempt
    /// ends as a retryable timeout before the broker would cancel its delivery. Never nil.
    public func timeLimit(forTask task: String) -> Duration? {
        let cap = worker.maximumTimeLimit
        guard let configured = tasks[task]?.timeLimit ?? worker.defaultTimeLimit else { return cap }
        return min(configured, cap)
    }

    /// The queue whose bindings match this task type (`*` one word, `#` zero or more), first in configuration order.
    public func queue(forTask task: String) -> QueueSettings? {
        queues.first { $0.matches(task: task) }
    }
}

/// A work queue and the task types it serves.
public struct QueueSettings: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case quorum
        case classic
    }

    /// The queue's name without the prefix: `[a-z0-9][a-z0-9_.-]*`, unique.
    public var name: String
    /// Binding patterns on the jobs exchange, e.g. `["email.*", "report.daily"]`; at least one.
    public var tasks: [String]
    /// JSON `"type"`; quorum by default.
    public var kind: Kind
    /// Classic queues only: the highest message priority, 1...255; nil means no priorities.
    public var maxPriority: Int?
    /// Quorum queues: deliveries of one message before the broker dead-letters it (poison-message safety net).
    public var deliveryLimit: Int

    public init(name: String, tasks: [String], kind: Kind = .quorum, maxPriority: Int? = nil, deliveryLimit: Int = 20) {
        self.name = name
        self.tasks = tasks
        self.kind = kind
        self.maxPriority = maxPriority
        self.deliveryLimit = deliveryLimit
    }

    /// Whether one of this queue's binding patterns matches the task type, as the topic exchange would route it.
    public func matches(task: String) -> Bool {
        tasks.contains { Self.topicPattern($0, matches: task) }
    }

    /// AMQP topic matching: words are dot-separated, `*` matches exactly one word, `#` zero or more.
    static func topicPattern(_ pattern: String, matches routingKey: String) -> Bool {
        let patternWords = pattern.split(separator: ".", omittingEmptySubsequences: false)
        let keyWords = routingKey.split(separator: ".", omittingEmptySubsequences: false)
        // matched[j]: the pattern words so far match the first j words of the key.
        var matched = [Bool](repeating: false, count: keyWords.count + 1)
        matched[0] = true
        for word in patternWords {
            var next = [Bool](repeating: false, count: keyWords.count + 1)
            for j in 0...keyWords.count {
                switch word {
                case "#":
                    next[j] = matched[j] || (j > 0 && next[j - 1])
                case "*":
                    next[j] = j > 0 && matched[j - 1]
                default:
                    next[j] = j > 0 && matched[j - 1] && keyWords[j - 1] == word
                }
            }
            matched = next
        }
        return matched[keyWords.count]
    }

    /// Whether `pattern` is a binding pattern: dot-separated words of `[A-Za-z0-9_-]`, `*` or `#`.
    static func isValidPattern(_ pattern: String) -> Bool {
        pattern.split(separator: ".", omittingEmptySubsequences: false).allSatisfy {
            $0 == "*" || $0 == "#" || isTaskWord($0)
        }
    }

    /// Whether `task` is a task type: dot-separated words of `[A-Za-z0-9_-]`, no wildcards.
    static func isValidTaskName(_ task: String) -> Bool {
        task.split(separator: ".", omittingEmptySubsequences: false).allSatisfy(isTaskWord)
    }

    private static func isTaskWord(_ word: Substring) -> Bool {
        !word.isEmpty && word.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }
    }
}

/// How a worker process runs: concurrency, shutdown, limits, events, metrics, reconnects.
public struct WorkerSettings: Sendable, Equatable {
    /// Handlers running at once, 1...10000.
    public var concurrency: Int
    /// Unacknowledged deliveries the broker may send; nil means ``concurrency``. 1...65535.
    public var prefetch: Int?
    /// Names of the queues this worker consumes; nil means all of them.
    public var queues: [String]?
    /// How long running jobs may take to finish after a shutdown request before they are cancelled.
    public var shutdownGrace: Duration
    /// Larger message bodies are dead-lettered unread. 1...134_217_728.
    public var maxBodyBytes: Int
    /// Interval of `worker.heartbeat` events; at least 1s.
    public var heartbeatInterval: Duration
    /// Whether to publish `job.succeeded`, `job.retrying` and `job.dead` events on the events exchange.
    public var lifecycleEvents: Bool
    /// Time limit of tasks that set none; nil means only the cap below ``consumerTimeout``.
    public var defaultTimeLimit: Duration?
    /// The broker's `consumer_timeout` (RabbitMQ's default: 30 minutes): an unacknowledged delivery older than this
    /// makes the broker close the channel and requeue it. Must match the broker's setting; every attempt's time
    /// limit is capped at ``maximumTimeLimit``, below it.
    public var consumerTimeout: Duration
    /// Port of the worker's Prometheus endpoint; nil means off.
    public var metricsPort: Int?
    public var metricsHost: String
    /// First delay before reconnecting after the connection is lost; doubles up to ``reconnectMaxDelay``.
    public var reconnectInitialDelay: Duration
    public var reconnectMaxDelay: Duration

    public init(
        concurrency: Int = 16,
        prefetch: Int? = nil,
        queues: [String]? = nil,
        shutdownGrace: Duration = .seconds(30),
        maxBodyBytes: Int = 1_048_576,
        heartbeatInterval: Duration = .seconds(10),
        lifecycleEvents: Bool = true,
        defaultTimeLimit: Duration? = nil,
        metricsPort: Int? = nil,
        metricsHost: String = "127.0.0.1",
        reconnectInitialDelay: Duration = .milliseconds(200),
        reconnectMaxDelay: Duration = .seconds(10),
        consumerTimeout: Duration = WorkerSettings.defaultConsumerTimeout
    ) {
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.queues = queues
        self.shutdownGrace = shutdownGrace
        self.maxBodyBytes = maxBodyBytes
        self.heartbeatInterval = heartbeatInterval
        self.lifecycleEvents = lifecycleEvents
        self.defaultTimeLimit = defaultTimeLimit
        self.metricsPort = metricsPort
        self.metricsHost = metricsHost
        self.reconnectInitialDelay = reconnectInitialDelay
        self.reconnectMaxDelay = reconnectMaxDelay
        self.consumerTimeout = consumerTimeout
    }

    /// RabbitMQ's default `consumer_timeout`: 30 minutes.
    public static let defaultConsumerTimeout: Duration = .seconds(1800)

    /// The margin kept between an attempt's time limit and ``consumerTimeout``: the smaller of 10% of it and one
    /// minute, so the retry copy (or dead letter) is confirmed and the original acked before the broker's timeout.
    public var consumerTimeoutMargin: Duration { min(consumerTimeout / 10, .seconds(60)) }

    /// The longest time limit an attempt gets: ``consumerTimeout`` minus ``consumerTimeoutMargin`` (29m with the
    /// defaults). It applies even when no time limit is configured.
    public var maximumTimeLimit: Duration { consumerTimeout - consumerTimeoutMargin }
}

/// Exponential backoff with a cap and full jitter.
public struct RetryPolicy: Sendable, Equatable {
    /// Attempts in all, the first included, 1...1000.
    public var maxAttempts: Int
    /// The delay after the first failed attempt (before jitter).
    public var baseDelay: Duration
    /// Each further delay is this many times the previous one; at least 1.
    public var factor: Double
    /// No delay is longer; at least ``baseDelay``.
    public var maxDelay: Duration
    /// Full jitter: the delay is uniformly random between zero and the computed delay.
    public var jitter: Bool

    public init(
        maxAttempts: Int = 5, baseDelay: Duration = .seconds(1), factor: Double = 2,
        maxDelay: Duration = .seconds(3600),
        jitter: Bool = true
    ) {
        self.maxAttempts = maxAttempts
        self.baseDelay = baseDelay
        self.factor = factor
        self.maxDelay = maxDelay
        self.jitter = jitter
    }

    /// The delay before attempt `attempt + 1` after attempt `attempt` (from 1) failed.
    ///
    /// `min(maxDelay, baseDelay * factor^(attempt-1))`; with ``jitter`` a uniform random value in `[0, that]` drawn
    /// from `random`.
    public func delay(afterAttempt attempt: Int, random: inout some RandomNumberGenerator) -> Duration {
        let capped = cappedDelay(afterAttempt: attempt)
        guard jitter, capped > .zero else { return capped }
        let limit = DurationText.nanoseconds(of: capped) ?? Int64.max
        return .nanoseconds(Int64.random(in: 0...limit, using: &random))
    }

    /// ``delay(afterAttempt:random:)`` with the system's random number generator.
    public func delay(afterAttempt attempt: Int) -> Duration {
        var random = SystemRandomNumberGenerator()
        return delay(afterAttempt: attempt, random: &random)
    }

    private func cappedDelay(afterAttempt attempt: Int) -> Duration {
        let exponent = Double(max(1, attempt) - 1)
        let seconds = DurationText.seconds(of: baseDelay) * pow(max(1, factor), exponent)
        guard seconds.isFinite, seconds < DurationText.seconds(of: maxDelay) else { return maxDelay }
        if exponent == 0 { return baseDelay }
        return .nanoseconds(Int64((seconds * 1e9).rounded()))
    }
}

/// Per task type overrides; a nil field keeps the default.
public struct TaskSettings: Sendable, Equatable {
    /// Time limit of one attempt (overrides `worker.defaultTimeLimit`).
    public var timeLimit: Duration?
    public var maxAttempts: Int?
    public var baseDelay: Duration?
    public var factor: Double?
    public var maxDelay: Duration?
    public var jitter: Bool?

    public init(
        timeLimit: Duration? = nil, maxAttempts: Int? = nil, baseDelay: Duration? = nil, factor: Double? = nil,
        maxDelay: Duration? = nil, jitter: Bool? = nil
    ) {
        self.timeLimit = timeLimit
        self.maxAttempts = maxAttempts
        self.baseDelay = baseDelay
        self.factor = factor
        self.maxDelay = maxDelay
        self.jitter = jitter
    }

    /// `policy` with this override's retry fields replacing its own.
    func merged(over policy: RetryPolicy) -> RetryPolicy {
        RetryPolicy(
            maxAttempts: maxAttempts ?? policy.maxAttempts,
            baseDelay: baseDelay ?? policy.baseDelay,
            factor: factor ?? policy.factor,
            maxDelay: maxDelay ?? policy.maxDelay,
            jitter: jitter ?? policy.jitter
        )
    }
}

/// A cron schedule the coordinator fires as a job.
public struct ScheduleSettings: Sendable, Equatable {
    /// What to do about fires missed while no coordinator was leading: skip them, or fire once to catch up.
    public enum MissedRunPolicy: String, Sendable, CaseIterable {
        case skip
        case once
    }

    /// Unique; part of the fired job's `message_id` (`<name>@<fire time>`).
    public var name: String
    /// The cron expression (parsed by the coordinator).
    public var cron: String
    /// A time zone identifier such as `Europe/Berlin`.
    public var timeZone: String
    /// The task type of the fired job.
    public var task: String
    /// The job payload: a JSON object as text (JSON `"payload"`).
    public var payloadJSON: String
    public var enabled: Bool
    /// JSON `"missedRuns"`.
    public var missedRuns: MissedRunPolicy

    public init(
        name: String, cron: String, timeZone: String = "UTC", task: String, payloadJSON: String = "{}",
        enabled: Bool = true, missedRuns: MissedRunPolicy = .skip
    ) {
        self.name = name
        self.cron = cron
        self.timeZone = timeZone
        self.task = task
        self.payloadJSON = payloadJSON
        self.enabled = enabled
        self.missedRuns = missedRuns
    }
}

/// How the coordinator publishes metrics and competes for leadership.
public struct CoordinatorSettings: Sendable, Equatable {
    /// How often queue depths are collected and the snapshot is published.
    public var metricsInterval: Duration
    /// Port of the Prometheus `/metrics` and `/healthz` endpoint.
    public var metricsPort: Int
    public var metricsHost: String
    /// How often a standby coordinator tries to take the leader lock.
    public var leaderRetryInterval: Duration

    public init(
        metricsInterval: Duration = .seconds(10), metricsPort: Int = 9464, metricsHost: String = "127.0.0.1",
        leaderRetryInterval: Duration = .seconds(2)
    ) {
        self.metricsInterval = metricsInterval
        self.metricsPort = metricsPort
        self.metricsHost = metricsHost
        self.leaderRetryInterval = leaderRetryInterval
    }
}

/// Settings of the example handlers the demo runs.
public struct ExampleSettings: Sendable, Equatable {
    /// CSV of payee classification rules; a relative path is resolved against the current directory.
    public var payeeRulesFile: String
    /// Where the report example writes its files.
    public var reportDirectory: String

    public init(
        payeeRulesFile: String = "Config/examples/payee-rules.csv", reportDirectory: String = "/tmp/warren-reports"
    ) {
        self.payeeRulesFile = payeeRulesFile
        self.reportDirectory = reportDirectory
    }
}

// MARK: - Validation

extension WarrenConfiguration {
    /// Checks every value's range and the references between sections.
    ///
    /// Throws ``WarrenError/configuration(_:)`` whose message starts with the key path of the first problem, e.g.
    /// `worker.concurrency: must be between 1 and 10000, got 0`.
    public func validate() throws {
        try validateBroker()
        try Self.check(Self.isValidName(prefix), "prefix", "\(quoted(prefix)) must match [a-z0-9][a-z0-9_.-]*")
        try validateQueues()
        try validateWorker()
        try Self.validate(retry, at: "retry", overridden: nil)
        try validateRetryTiers()
        try validateTasks()
        try validateSchedules()
        try validateCoordinator()
        try Self.check(!examples.payeeRulesFile.isEmpty, "examples.payeeRulesFile", "must not be empty")
        try Self.check(!examples.reportDirectory.isEmpty, "examples.reportDirectory", "must not be empty")
    }

    private func validateBroker() throws {
        try Self.check(!brokerURLs.isEmpty, "broker.urls", "must list at least one broker URL")
        for (index, url) in brokerURLs.enumerated() {
            let path = brokerURLs.count == 1 ? "broker.url" : "broker.urls[\(index)]"
            do {
                _ = try AMQPURI(url)
            } catch let error as AMQPError {
                throw WarrenError.configuration("\(path): \(error.message)")
            }
        }
    }

    private func validateQueues() throws {
        try Self.check(!queues.isEmpty, "queues", "must list at least one queue")
        var seen: [String: Int] = [:]
        for (index, queue) in queues.enumerated() {
            let path = "queues[\(index)]"
            try Self.check(
                Self.isValidName(queue.name), "\(path).name", "\(quoted(queue.name)) must match [a-z0-9][a-z0-9_.-]*")
            if let first = seen[queue.name] {
                throw WarrenError.configuration(
                    "\(path).name: duplicate queue name \(quoted(queue.name)) (also queues[\(first)])")
            }
            seen[queue.name] = index
            try Self.check(!queue.tasks.isEmpty, "\(path).tasks", "must list at least one task pattern")
            for (patternIndex, pattern) in queue.tasks.enumerated() {
                try Self.check(
                    QueueSettings.isValidPattern(pattern), "\(path).tasks[\(patternIndex)]",
                    "\(quoted(pattern)) is not a topic pattern (dot-separated words of A-Z a-z 0-9 _ -, or * or #)")
            }
            if let maxPriority = queue.maxPriority {
                try Self.check(
                    queue.kind == .classic, "\(path).maxPriority",
                    "only classic queues have priorities, and \(quoted(queue.name)) is a quorum queue"
                        + " (set \"type\": \"classic\" or remove maxPriority)")
                try Self.checkRange(maxPriority, 1...255, "\(path).maxPriority")
            }
            try Self.checkRange(queue.deliveryLimit, 1...1000, "\(path).deliveryLimit")
        }
    }

    private func validateWorker() throws {
        try Self.checkRange(worker.concurrency, 1...10_000, "worker.concurrency")
        if let prefetch = worker.prefetch { try Self.checkRange(prefetch, 1...65_535, "worker.prefetch") }
        if let names = worker.queues {
            try Self.check(!names.isEmpty, "worker.queues", "must name at least one queue (omit it to consume all)")
            for (index, name) in names.enumerated() where !queues.contains(where: { $0.name == name }) {
                let known = queues.map(\.name)
                let hint = Self.suggestion(for: name, among: known).map { "did you mean '\($0)'? " } ?? ""
                throw WarrenError.configuration(
                    "worker.queues[\(index)]: no queue is named \(quoted(name)) (\(hint)queues are: "
                        + "\(known.joined(separator: ", ")))")
            }
        }
        try Self.checkMinimum(worker.shutdownGrace, .zero, "worker.shutdownGrace")
        try Self.checkRange(worker.maxBodyBytes, 1...134_217_728, "worker.maxBodyBytes")
        try Self.checkMinimum(worker.heartbeatInterval, .seconds(1), "worker.heartbeatInterval")
        try Self.checkMinimum(worker.consumerTimeout, .seconds(1), "worker.consumerTimeout")
        if let limit = worker.defaultTimeLimit {
            try Self.checkMinimum(limit, .milliseconds(1), "worker.defaultTimeLimit")
            try checkBelowConsumerTimeout(limit, "worker.defaultTimeLimit")
        }
        // 0 asks the system for any free port (tests; the log names the one bound).
        if let port = worker.metricsPort { try Self.checkRange(port, 0...65_535, "worker.metricsPort") }
        try Self.check(!worker.metricsHost.isEmpty, "worker.metricsHost", "must not be empty")
        try Self.checkMinimum(worker.reconnectInitialDelay, .milliseconds(1), "worker.reconnectInitialDelay")
        try Self.checkMinimum(
            worker.reconnectMaxDelay, worker.reconnectInitialDelay, "worker.reconnectMaxDelay",
            what: "reconnectInitialDelay")
    }

    /// Checks a policy. For a task override, `overridden` holds the keys the override sets: an error names one of those.
    private static func validate(_ policy: RetryPolicy, at path: String, overridden: Set<String>?) throws {
        func isChecked(_ key: String) -> Bool { overridden?.contains(key) ?? true }
        if isChecked("maxAttempts") { try checkRange(policy.maxAttempts, 1...1000, "\(path).maxAttempts") }
        if isChecked("baseDelay") { try checkMinimum(policy.baseDelay, .zero, "\(path).baseDelay") }
        if isChecked("factor") {
            try check(
                policy.factor.isFinite && policy.factor >= 1, "\(path).factor",
                "must be at least 1, got \(policy.factor)")
        }
        if isChecked("maxDelay") || isChecked("baseDelay"), policy.maxDelay < policy.baseDelay {
            let key = isChecked("maxDelay") ? "maxDelay" : "baseDelay"
            throw WarrenError.configuration(
                "\(path).\(key): maxDelay (\(DurationText.format(policy.maxDelay))) must be at least baseDelay"
                    + " (\(DurationText.format(policy.baseDelay)))")
        }
    }

    private func validateRetryTiers() throws {
        try Self.check(!retryTiers.isEmpty, "retryTiers", "must list at least one tier")
        for (index, tier) in retryTiers.enumerated() {
            let path = "retryTiers[\(index)]"
            try Self.checkMinimum(tier, .milliseconds(100), path)
            try Self.check(
                tier.components.attoseconds % 1_000_000_000_000_000 == 0, path,
                "must be a whole number of milliseconds, got \(DurationText.format(tier))")
            if index > 0, tier <= retryTiers[index - 1] {
                throw WarrenError.configuration(
                    "\(path): tiers must be strictly increasing, but \(DurationText.format(tier)) follows"
                        + " \(DurationText.format(retryTiers[index - 1]))")
            }
        }
    }

    private func validateTasks() throws {
        for task in tasks.keys.sorted() {
            guard let settings = tasks[task] else { continue }
            let path = "tasks[\(quoted(task))]"
            try checkTaskName(task, at: path)
            if let limit = settings.timeLimit {
                try Self.checkMinimum(limit, .milliseconds(1), "\(path).timeLimit")
                try checkBelowConsumerTimeout(limit, "\(path).timeLimit")
            }
            var overridden: Set<String> = []
            if settings.maxAttempts != nil { overridden.insert("maxAttempts") }
            if settings.baseDelay != nil { overridden.insert("baseDelay") }
            if settings.factor != nil { overridden.insert("factor") }
            if settings.maxDelay != nil { overridden.insert("maxDelay") }
            try Self.validate(settings.merged(over: retry), at: path, overridden: overridden)
        }
    }

    private func validateSchedules() throws {
        var seen: [String: Int] = [:]
        for (index, schedule) in schedules.enumerated() {
            let path = "schedules[\(index)]"
            try Self.check(
                Self.isValidScheduleName(schedule.name), "\(path).name",
                "\(quoted(schedule.name)) must match [A-Za-z0-9][A-Za-z0-9_.-]*")
            if let first = seen[schedule.name] {
                throw WarrenError.configuration(
                    "\(path).name: duplicate schedule name \(quoted(schedule.name)) (also schedules[\(first)])")
            }
            seen[schedule.name] = index
            try Self.check(
                !schedule.cron.trimmingCharacters(in: .whitespaces).isEmpty, "\(path).cron", "must not be empty")
            try Self.check(
                TimeZone(identifier: schedule.timeZone) != nil, "\(path).timeZone",
                "unknown time zone \(quoted(schedule.timeZone)) (use an IANA name such as \"Europe/Berlin\" or \"UTC\")"
            )
            try checkTaskName(schedule.task, at: "\(path).task")
            let payload = try? JSONSerialization.jsonObject(with: Data(schedule.payloadJSON.utf8))
            try Self.check(payload is [String: Any], "\(path).payload", "must be a JSON object")
        }
    }

    private func validateCoordinator() throws {
        try Self.checkMinimum(coordinator.metricsInterval, .seconds(1), "coordinator.metricsInterval")
        try Self.checkRange(coordinator.metricsPort, 1...65_535, "coordinator.metricsPort")
        try Self.check(!coordinator.metricsHost.isEmpty, "coordinator.metricsHost", "must not be empty")
        try Self.checkMinimum(
            coordinator.leaderRetryInterval, .milliseconds(100), "coordinator.leaderRetryInterval")
    }

    /// A configured time limit must leave the margin below the broker's consumer timeout: a longer attempt would be
    /// cut off by the broker (channel closed, delivery requeued, the late ack lost) and loop without a trace.
    private func checkBelowConsumerTimeout(_ limit: Duration, _ path: String) throws {
        let maximum = worker.maximumTimeLimit
        try Self.check(
            limit <= maximum, path,
            "must be at most \(DurationText.format(maximum)) (worker.consumerTimeout"
                + " \(DurationText.format(worker.consumerTimeout)) minus a margin of"
                + " \(DurationText.format(worker.consumerTimeoutMargin))), got \(DurationText.format(limit));"
                + " the broker cancels deliveries unacknowledged for longer (raise its consumer_timeout and"
                + " worker.consumerTimeout together)")
    }

    /// A task type must be well formed and routed to some queue, or its jobs would be unroutable.
    private func checkTaskName(_ task: String, at path: String) throws {
        try Self.check(
            QueueSettings.isValidTaskName(task), path,
            "\(quoted(task)) is not a task type (dot-separated words of A-Z a-z 0-9 _ -)")
        try Self.check(
            queue(forTask: task) != nil, path,
            "no queue serves task \(quoted(task)); add a matching pattern to some queue's \"tasks\"")
    }

    // MARK: Helpers shared with decoding

    private static func check(_ condition: Bool, _ path: String, _ message: @autoclosure () -> String) throws {
        if !condition { throw WarrenError.configuration("\(path): \(message())") }
    }

    private static func checkRange(_ value: Int, _ range: ClosedRange<Int>, _ path: String) throws {
        try check(
            range.contains(value), path, "must be between \(range.lowerBound) and \(range.upperBound), got \(value)")
    }

    private static func checkMinimum(
        _ value: Duration, _ minimum: Duration, _ path: String, what: String? = nil
    ) throws {
        let bound = what.map { "\($0) (\(DurationText.format(minimum)))" } ?? DurationText.format(minimum)
        try check(value >= minimum, path, "must be at least \(bound), got \(DurationText.format(value))")
    }

    /// Whether `name` matches `[a-z0-9][a-z0-9_.-]*`.
    static func isValidName(_ name: String) -> Bool {
        guard let first = name.first, first.isASCII, first.isLowercase || first.isNumber else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || "_.-".contains($0)) }
    }

    private static func isValidScheduleName(_ name: String) -> Bool {
        guard let first = name.first, first.isASCII, first.isLetter || first.isNumber else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "_.-".contains($0)) }
    }

    /// The one candidate close to `word` (same letters ignoring case, or a small edit distance), if there is one.
    static func suggestion(for word: String, among candidates: [String]) -> String? {
        if let same = candidates.first(where: { $0.lowercased() == word.lowercased() }) { return same }
        let limit = max(1, min(3, word.count / 3))
        let scored = candidates.map { (candidate: $0, distance: editDistance($0.lowercased(), word.lowercased())) }
        guard let best = scored.min(by: { $0.distance < $1.distance }), best.distance <= limit else { return nil }
        return scored.filter { $0.distance == best.distance }.count == 1 ? best.candidate : nil
    }

    /// Edits (insert, delete, substitute, swap neighbours) that turn `a` into `b`.
    private static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a)
        let b = Array(b)
        guard !a.isEmpty, !b.isEmpty else { return max(a.count, b.count) }
        var beforePrevious = [Int](repeating: 0, count: b.count + 1)
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + [Int](repeating: 0, count: b.count)
            for j in 1...b.count {
                let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
                current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    current[j] = min(current[j], beforePrevious[j - 2] + 1)
                }
            }
            beforePrevious = previous
            previous = current
        }
        return previous[b.count]
    }
}

/// `text` in double quotes, as JSON would write it.
private func quoted(_ text: String) -> String {
    "\"\(text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\""))\""
}
