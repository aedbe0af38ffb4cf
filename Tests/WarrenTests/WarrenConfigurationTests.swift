import Foundation
import Testing

@testable import Warren

@Suite struct WarrenConfigurationTests {
    /// The repository root, found from this file's path (Tests/WarrenTests/<file>).
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    static func configPath(_ name: String) -> String {
        repositoryRoot.appendingPathComponent("Config").appendingPathComponent(name).path
    }

    /// The message of the configuration error decoding `json` throws, or nil when it decodes.
    static func errorMessage(_ json: String, environment: [String: String] = [:]) -> String? {
        do {
            _ = try WarrenConfiguration.decode(Data(json.utf8), environment: environment)
            return nil
        } catch WarrenError.configuration(let message) {
            return message
        } catch {
            return "unexpected error: \(error)"
        }
    }

    /// A valid configuration with `extra` top-level members spliced in.
    static func withQueue(_ extra: String = "") -> String {
        #"{"queues": [{"name": "email", "tasks": ["email.*"]}]"# + (extra.isEmpty ? "" : ", \(extra)") + "}"
    }

    // MARK: Shipped files

    @Test func shippedConfigurationLoadsWithEveryOption() throws {
        let configuration = try WarrenConfiguration.load(path: Self.configPath("warren.json"), environment: [:])
        let expected = WarrenConfiguration(
            brokerURLs: ["amqp://guest:guest@127.0.0.1:5672/%2F"],
            prefix: "warren",
            queues: [
                QueueSettings(name: "transactions", tasks: ["transactions.*"]),
                QueueSettings(name: "documents", tasks: ["documents.*"]),
                QueueSettings(name: "reports", tasks: ["reports.*"], kind: .classic, maxPriority: 10),
                QueueSettings(name: "default", tasks: ["demo.#", "misc.*"]),
            ],
            tasks: [
                "documents.stats": TaskSettings(timeLimit: .seconds(10)),
                "transactions.classify": TaskSettings(
                    maxAttempts: 4, baseDelay: .seconds(1), maxDelay: .seconds(10)),
            ],
            schedules: [
                ScheduleSettings(
                    name: "daily-report", cron: "0 6 * * *", timeZone: "Europe/Berlin", task: "reports.daily",
                    payloadJSON: #"{"title":"Daily transactions"}"#, enabled: true, missedRuns: .once),
                ScheduleSettings(
                    name: "demo-report", cron: "*/10 * * * * *", timeZone: "UTC", task: "reports.daily",
                    payloadJSON: #"{"title":"Demo report"}"#, enabled: true, missedRuns: .skip),
            ]
        )
        #expect(configuration == expected)
        #expect(configuration.queue(forTask: "reports.daily")?.name == "reports")
        #expect(configuration.queue(forTask: "demo.sleep.long")?.name == "default")
        #expect(configuration.queue(forTask: "email.send") == nil)
        #expect(
            configuration.retryPolicy(forTask: "transactions.classify")
                == RetryPolicy(maxAttempts: 4, baseDelay: .seconds(1), factor: 2, maxDelay: .seconds(10), jitter: true))
        #expect(configuration.retryPolicy(forTask: "documents.stats") == RetryPolicy())
        #expect(configuration.timeLimit(forTask: "documents.stats") == .seconds(10))
        // No time limit configured: the cap below the broker's consumer timeout (30m − 1m) still applies.
        #expect(configuration.worker.consumerTimeout == .seconds(1800))
        #expect(configuration.timeLimit(forTask: "transactions.classify") == .seconds(29 * 60))
    }

    @Test func minimalConfigurationIsOneQueueAndDefaults() throws {
        let configuration = try WarrenConfiguration.load(
            path: Self.configPath("warren.minimal.json"), environment: [:])
        #expect(configuration == WarrenConfiguration(queues: [QueueSettings(name: "default", tasks: ["#"])]))
        try configuration.validate()
    }

    @Test func defaults() {
        let configuration = WarrenConfiguration(queues: [QueueSettings(name: "q", tasks: ["#"])])
        #expect(configuration.brokerURLs == ["amqp://guest:guest@127.0.0.1:5672/%2F"])
        #expect(configuration.prefix == "warren")
        #expect(
            configuration.retryTiers == [
                .seconds(1), .seconds(5), .seconds(30), .seconds(120), .seconds(600), .seconds(3600),
            ])
        #expect(configuration.tasks.isEmpty)
        #expect(configuration.schedules.isEmpty)
        #expect(configuration.queues[0].kind == .quorum)
        #expect(configuration.queues[0].maxPriority == nil)
        #expect(configuration.queues[0].deliveryLimit == 20)

        let worker = configuration.worker
        #expect(worker.concurrency == 16)
        #expect(worker.prefetch == nil)
        #expect(worker.queues == nil)
        #expect(worker.shutdownGrace == .seconds(30))
        #expect(worker.maxBodyBytes == 1_048_576)
        #expect(worker.heartbeatInterval == .seconds(10))
        #expect(worker.lifecycleEvents)
        #expect(worker.defaultTimeLimit == nil)
        #expect(worker.metricsPort == nil)
        #expect(worker.metricsHost == "127.0.0.1")
        #expect(worker.reconnectInitialDelay == .milliseconds(200))
        #expect(worker.reconnectMaxDelay == .seconds(10))
        #expect(worker.consumerTimeout == .seconds(1800))
        #expect(worker.maximumTimeLimit == .seconds(1740))

        let retry = configuration.retry
        #expect(retry.maxAttempts == 5)
        #expect(retry.baseDelay == .seconds(1))
        #expect(retry.factor == 2)
        #expect(retry.maxDelay == .seconds(3600))
        #expect(retry.jitter)

        #expect(configuration.coordinator.metricsInterval == .seconds(10))
        #expect(configuration.coordinator.metricsPort == 9464)
        #expect(configuration.coordinator.metricsHost == "127.0.0.1")
        #expect(configuration.coordinator.leaderRetryInterval == .seconds(2))
        #expect(configuration.examples.payeeRulesFile == "Config/examples/payee-rules.csv")
        #expect(configuration.examples.reportDirectory == "/tmp/warren-reports")

        let schedule = ScheduleSettings(name: "s", cron: "* * * * *", task: "q")
        #expect(schedule.timeZone == "UTC")
        #expect(schedule.payloadJSON == "{}")
        #expect(schedule.enabled)
        #expect(schedule.missedRuns == .skip)
    }

    @Test func derivedNamesCarryThePrefix() {
        var configuration = WarrenConfiguration(queues: [QueueSettings(name: "email", tasks: ["email.*"])])
        configuration.prefix = "acme"
        let queue = configuration.queues[0]
        #expect(configuration.jobsExchange == "acme.jobs")
        #expect(configuration.retryExchange == "acme.retry")
        #expect(configuration.deadExchange == "acme.dead")
        #expect(configuration.eventsExchange == "acme.events")
        #expect(configuration.metricsExchange == "acme.metrics")
        #expect(configuration.queueName(queue) == "acme.email")
        #expect(configuration.deadQueueName(queue) == "acme.email.dead")
        #expect(configuration.retryQueueName(tier: .seconds(5)) == "acme.retry.5s")
        #expect(configuration.retryQueueName(tier: .seconds(120)) == "acme.retry.2m")
        #expect(configuration.retryQueueName(tier: .milliseconds(500)) == "acme.retry.500ms")
    }

    @Test func decodesEveryKindOfValue() throws {
        let json = """
            {
              "_comment": "comments are ignored at every level",
              "broker": {"urls": ["amqp://a", "amqps://b:5671/vh"]},
              "prefix": "acme",
              "queues": [
                {"//": "a comment", "name": "email", "tasks": ["email.*"], "deliveryLimit": 3},
                {"name": "slow", "tasks": ["report.#"], "type": "classic", "maxPriority": 5}
              ],
              "worker": {"concurrency": 4, "prefetch": 8, "queues": ["slow"], "shutdownGrace": 90,
                         "defaultTimeLimit": "1m30s", "metricsPort": 9100, "heartbeatInterval": 2.5,
                         "consumerTimeout": "2h"},
              "retry": {"maxAttempts": 3, "baseDelay": 0.25, "factor": 1.5, "maxDelay": "1d", "jitter": false},
              "retryTiers": ["250ms", "1s", "1h"],
              "tasks": {"email.send": {"timeLimit": "5s", "jitter": true}},
              "schedules": [{"name": "nightly", "cron": "@daily", "task": "report.nightly",
                             "payload": {"b": [1, true, null], "a": "x"}, "enabled": false}]
            }
            """
        let configuration = try WarrenConfiguration.decode(Data(json.utf8))
        #expect(configuration.brokerURLs == ["amqp://a", "amqps://b:5671/vh"])
        #expect(configuration.prefix == "acme")
        #expect(configuration.queues[0].deliveryLimit == 3)
        #expect(
            configuration.queues[1] == QueueSettings(name: "slow", tasks: ["report.#"], kind: .classic, maxPriority: 5))
        #expect(configuration.worker.concurrency == 4)
        #expect(configuration.worker.prefetch == 8)
        #expect(configuration.worker.queues == ["slow"])
        #expect(configuration.worker.shutdownGrace == .seconds(90))
        #expect(configuration.worker.defaultTimeLimit == .seconds(90))
        #expect(configuration.worker.metricsPort == 9100)
        #expect(configuration.worker.heartbeatInterval == .milliseconds(2500))
        #expect(configuration.worker.consumerTimeout == .seconds(7200))
        #expect(
            configuration.retry
                == RetryPolicy(
                    maxAttempts: 3, baseDelay: .milliseconds(250), factor: 1.5, maxDelay: .seconds(86_400),
                    jitter: false))
        #expect(configuration.retryTiers == [.milliseconds(250), .seconds(1), .seconds(3600)])
        #expect(configuration.tasks == ["email.send": TaskSettings(timeLimit: .seconds(5), jitter: true)])
        #expect(configuration.retryPolicy(forTask: "email.send").jitter)
        #expect(configuration.retryPolicy(forTask: "email.send").maxAttempts == 3)
        #expect(configuration.timeLimit(forTask: "email.other") == .seconds(90))
        #expect(configuration.schedules[0].payloadJSON == #"{"a":"x","b":[1,true,null]}"#)
        #expect(configuration.schedules[0].enabled == false)
        #expect(configuration.schedules[0].timeZone == "UTC")
    }

    // MARK: Environment

    @Test func environmentOverridesBrokerAndPrefix() throws {
        let configuration = try WarrenConfiguration.load(
            path: Self.configPath("warren.minimal.json"),
            environment: ["WARREN_AMQP_URL": "amqp://u:p@one:5672/%2F, amqps://two", "WARREN_PREFIX": "staging"])
        #expect(configuration.brokerURLs == ["amqp://u:p@one:5672/%2F", "amqps://two"])
        #expect(configuration.prefix == "staging")
        #expect(configuration.jobsExchange == "staging.jobs")

        let single = try WarrenConfiguration.decode(
            Data(Self.withQueue(#""broker": {"url": "amqp://file"}"#).utf8),
            environment: ["WARREN_AMQP_URL": "amqp://env"])
        #expect(single.brokerURLs == ["amqp://env"])

        let empty = try WarrenConfiguration.decode(
            Data(Self.withQueue().utf8), environment: ["WARREN_AMQP_URL": "", "WARREN_PREFIX": ""])
        #expect(empty.brokerURLs == [WarrenConfiguration.defaultBrokerURL])
        #expect(empty.prefix == "warren")
    }

    @Test func invalidEnvironmentValuesNameTheVariable() {
        #expect(
            Self.errorMessage(Self.withQueue(), environment: ["WARREN_PREFIX": "Bad Prefix"])
                == #"WARREN_PREFIX: "Bad Prefix" must match [a-z0-9][a-z0-9_.-]*"#)
        let message = Self.errorMessage(Self.withQueue(), environment: ["WARREN_AMQP_URL": "http://u:secret@host"])
        #expect(message?.hasPrefix("WARREN_AMQP_URL: invalid AMQP URI") == true)
        #expect(message?.contains("secret") == false)
    }

    // MARK: Errors

    /// Invalid documents and the exact message each is rejected with.
    static let invalidDocuments: [(json: String, message: String)] = [
        // Wrong types.
        (
            withQueue(#""retry": {"factor": "two"}"#),
            #"retry.factor: expected a number, got a string ("two")"#
        ),
        (withQueue(#""worker": {"concurrency": true}"#), "worker.concurrency: expected an integer, got true"),
        (withQueue(#""worker": {"concurrency": 1.5}"#), "worker.concurrency: expected an integer, got the number 1.5"),
        (
            withQueue(#""worker": {"lifecycleEvents": 1}"#),
            "worker.lifecycleEvents: expected true or false, got the number 1"
        ),
        (withQueue(#""worker": []"#), "worker: expected an object, got an array"),
        (#"{"queues": [{"name": "q", "tasks": ["a", 3]}]}"#, "queues[0].tasks[1]: expected a string, got the number 3"),
        ("[]", "top level: expected an object, got an array"),
        // Required keys.
        ("{}", "queues: required key is missing"),
        (#"{"queues": [{"tasks": ["a"]}]}"#, "queues[0].name: required key is missing"),
        (#"{"queues": []}"#, "queues: must list at least one queue"),
        (#"{"queues": [{"name": "q", "tasks": []}]}"#, "queues[0].tasks: must list at least one task pattern"),
        // Out of range.
        (withQueue(#""worker": {"concurrency": 0}"#), "worker.concurrency: must be between 1 and 10000, got 0"),
        (withQueue(#""worker": {"prefetch": 70000}"#), "worker.prefetch: must be between 1 and 65535, got 70000"),
        (withQueue(#""retry": {"maxAttempts": 0}"#), "retry.maxAttempts: must be between 1 and 1000, got 0"),
        (withQueue(#""retry": {"factor": 0.5}"#), "retry.factor: must be at least 1, got 0.5"),
        (
            withQueue(#""retry": {"baseDelay": "2h"}"#),
            "retry.maxDelay: maxDelay (1h) must be at least baseDelay (2h)"
        ),
        (
            withQueue(#""worker": {"heartbeatInterval": "500ms"}"#),
            "worker.heartbeatInterval: must be at least 1s, got 500ms"
        ),
        (
            withQueue(#""coordinator": {"metricsPort": 0}"#),
            "coordinator.metricsPort: must be between 1 and 65535, got 0"
        ),
        (
            ##"{"queues": [{"name": "q", "tasks": ["#"], "type": "classic", "maxPriority": 300}]}"##,
            "queues[0].maxPriority: must be between 1 and 255, got 300"
        ),
        // Choices.
        (
            #"{"queues": [{"name": "a", "tasks": ["a"]}, {"name": "b", "tasks": ["b"], "type": "fifo"}]}"#,
            #"queues[1].type: "fifo" is not one of quorum, classic"#
        ),
        // Unknown keys.
        (withQueue(#""retrys": {}"#), "unknown key 'retrys' at top level (did you mean 'retry'?)"),
        (withQueue(#""worker": {"concurency": 4}"#), "worker: unknown key 'concurency' (did you mean 'concurrency'?)"),
        (
            withQueue(#""tasks": {"email.send": {"timelimit": "1s"}}"#),
            #"tasks["email.send"]: unknown key 'timelimit' (did you mean 'timeLimit'?)"#
        ),
        (
            withQueue(#""broker": {"host": "x"}"#),
            "broker: unknown key 'host' (known keys: url, urls)"
        ),
        // Queue rules.
        (
            ##"{"queues": [{"name": "q", "tasks": ["#"], "maxPriority": 10}]}"##,
            #"queues[0].maxPriority: only classic queues have priorities, and "q" is a quorum queue"#
                + #" (set "type": "classic" or remove maxPriority)"#
        ),
        (
            #"{"queues": [{"name": "a", "tasks": ["a"]}, {"name": "b", "tasks": ["b"]}, {"name": "a", "tasks": ["c"]}]}"#,
            #"queues[2].name: duplicate queue name "a" (also queues[0])"#
        ),
        (
            #"{"queues": [{"name": "Email", "tasks": ["a"]}]}"#,
            #"queues[0].name: "Email" must match [a-z0-9][a-z0-9_.-]*"#
        ),
        (
            #"{"queues": [{"name": "q", "tasks": ["email..send"]}]}"#,
            #"queues[0].tasks[0]: "email..send" is not a topic pattern (dot-separated words of A-Z a-z 0-9 _ -, or * or #)"#
        ),
        (withQueue(#""prefix": "My App""#), #"prefix: "My App" must match [a-z0-9][a-z0-9_.-]*"#),
        // References.
        (
            withQueue(#""worker": {"queues": ["emial"]}"#),
            #"worker.queues[0]: no queue is named "emial" (did you mean 'email'? queues are: email)"#
        ),
        (
            withQueue(#""tasks": {"sms.send": {"maxAttempts": 2}}"#),
            #"tasks["sms.send"]: no queue serves task "sms.send"; add a matching pattern to some queue's "tasks""#
        ),
        (
            withQueue(#""tasks": {"email.send": {"baseDelay": "2h"}}"#),
            #"tasks["email.send"].baseDelay: maxDelay (1h) must be at least baseDelay (2h)"#
        ),
        (
            withQueue(#""schedules": [{"name": "s", "cron": "* * * * *", "task": "sms.send"}]"#),
            #"schedules[0].task: no queue serves task "sms.send"; add a matching pattern to some queue's "tasks""#
        ),
        (
            withQueue(
                #""schedules": [{"name": "s", "cron": "@daily", "task": "email.a"}, "#
                    + #"{"name": "s", "cron": "@daily", "task": "email.b"}]"#),
            #"schedules[1].name: duplicate schedule name "s" (also schedules[0])"#
        ),
        (
            withQueue(#""schedules": [{"name": "s", "cron": "@daily", "task": "email.a", "missedRuns": "all"}]"#),
            #"schedules[0].missedRuns: "all" is not one of skip, once"#
        ),
        // Durations and time zones.
        (
            withQueue(#""worker": {"shutdownGrace": "30x"}"#),
            #"worker.shutdownGrace: "30x" is not a duration (unknown unit "x"; units are d, h, m, s, ms, us, ns);"#
                + #" write e.g. "250ms", "30s", "2m", "1h30m""#
        ),
        (
            withQueue(#""worker": {"shutdownGrace": "30"}"#),
            #"worker.shutdownGrace: "30" is not a duration (no unit; write "30s"); write e.g. "250ms", "30s", "2m", "1h30m""#
        ),
        (
            withQueue(#""worker": {"shutdownGrace": -1}"#),
            "worker.shutdownGrace: must be a non-negative number of seconds, got the number -1"
        ),
        (
            withQueue(#""retryTiers": ["1s", "5s", "5s"]"#),
            "retryTiers[2]: tiers must be strictly increasing, but 5s follows 5s"
        ),
        (withQueue(#""retryTiers": ["50ms"]"#), "retryTiers[0]: must be at least 100ms, got 50ms"),
        (
            withQueue(
                #""schedules": [{"name": "s", "cron": "@daily", "task": "email.a", "timeZone": "Mars/Olympus"}]"#),
            #"schedules[0].timeZone: unknown time zone "Mars/Olympus" (use an IANA name such as "Europe/Berlin" or "UTC")"#
        ),
        (
            withQueue(#""broker": {"url": "http://host"}"#),
            "broker.url: invalid AMQP URI: scheme 'http' is not amqp or amqps"
        ),
        // Time limits against the broker's consumer timeout.
        (
            withQueue(#""worker": {"defaultTimeLimit": "45m"}"#),
            "worker.defaultTimeLimit: must be at most 29m (worker.consumerTimeout 30m minus a margin of 1m), got 45m;"
                + consumerTimeoutAdvice
        ),
        (
            withQueue(#""tasks": {"email.send": {"timeLimit": "30m"}}"#),
            #"tasks["email.send"].timeLimit: must be at most 29m (worker.consumerTimeout 30m minus a margin of 1m),"#
                + " got 30m;" + consumerTimeoutAdvice
        ),
        (
            withQueue(#""worker": {"consumerTimeout": "5s"}, "tasks": {"email.send": {"timeLimit": "4501ms"}}"#),
            #"tasks["email.send"].timeLimit: must be at most 4500ms (worker.consumerTimeout 5s minus a margin of"#
                + " 500ms), got 4501ms;" + consumerTimeoutAdvice
        ),
        (
            withQueue(#""worker": {"consumerTimeout": "10s", "defaultTimeLimit": "10s"}"#),
            "worker.defaultTimeLimit: must be at most 9s (worker.consumerTimeout 10s minus a margin of 1s), got 10s;"
                + consumerTimeoutAdvice
        ),
        (
            withQueue(#""worker": {"consumerTimeout": "500ms"}"#),
            "worker.consumerTimeout: must be at least 1s, got 500ms"
        ),
    ]

    static let consumerTimeoutAdvice =
        " the broker cancels deliveries unacknowledged for longer (raise its consumer_timeout and"
        + " worker.consumerTimeout together)"

    @Test(arguments: invalidDocuments)
    func invalidConfigurationIsRejectedNamingTheKey(json: String, expected: String) {
        #expect(Self.errorMessage(json) == expected)
    }

    // MARK: The cap below the broker's consumer timeout

    @Test(arguments: [
        // consumerTimeout, the cap: consumerTimeout minus the smaller of 10% and one minute.
        ("30m", Duration.seconds(29 * 60)),
        ("2h", .seconds(7200 - 60)),
        ("10m", .seconds(540)),
        ("5s", .milliseconds(4500)),
        ("1s", .milliseconds(900)),
    ])
    func everyAttemptIsCappedBelowTheConsumerTimeout(consumerTimeout: String, cap: Duration) throws {
        let configuration = try WarrenConfiguration.decode(
            Data(Self.withQueue(#""worker": {"consumerTimeout": "\#(consumerTimeout)"}"#).utf8))
        #expect(configuration.worker.maximumTimeLimit == cap)
        // No time limit configured anywhere: the cap is the limit, never "none".
        #expect(configuration.timeLimit(forTask: "email.send") == cap)
    }

    @Test func configuredTimeLimitsBelowTheCapAreKeptAndTheCapItselfIsAllowed() throws {
        let json = Self.withQueue(
            #""worker": {"consumerTimeout": "5s", "defaultTimeLimit": "2s"}, "#
                + #""tasks": {"email.long": {"timeLimit": "4500ms"}, "email.short": {"timeLimit": "100ms"}}"#)
        let configuration = try WarrenConfiguration.decode(Data(json.utf8))
        #expect(configuration.timeLimit(forTask: "email.send") == .seconds(2))
        #expect(configuration.timeLimit(forTask: "email.long") == .milliseconds(4500))
        #expect(configuration.timeLimit(forTask: "email.short") == .milliseconds(100))
        // Built in code (no validation): the cap still holds.
        var built = WarrenConfiguration(queues: [QueueSettings(name: "q", tasks: ["#"])])
        built.worker.consumerTimeout = .seconds(10)
        built.worker.defaultTimeLimit = .seconds(60)
        #expect(built.timeLimit(forTask: "x") == .seconds(9))
        #expect(throws: WarrenError.self) { try built.validate() }
    }

    @Test func shippedConfigurationDocumentsTheBrokersDefault() throws {
        let text = try String(contentsOfFile: Self.configPath("warren.json"), encoding: .utf8)
        #expect(text.contains(#""consumerTimeout": "30m""#))
    }

    @Test func missingFileAndInvalidJSON() throws {
        #expect(throws: WarrenError.self) {
            try WarrenConfiguration.load(path: "Config/nope.json", environment: [:])
        }
        do {
            _ = try WarrenConfiguration.load(path: "Config/nope.json", environment: [:])
        } catch WarrenError.configuration(let message) {
            #expect(message == "config file Config/nope.json: no such file")
        }

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("warren-config-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("broken.json")
        try Data("{\n  \"queues\": [],\n  x\n}".utf8).write(to: file)
        do {
            _ = try WarrenConfiguration.load(path: file.path, environment: [:])
            Issue.record("a broken file loaded")
        } catch WarrenError.configuration(let message) {
            #expect(message.hasPrefix("config file \(file.path): invalid JSON"))
            #expect(message.contains("line 3") || message.contains("character"))
        }
        #expect(Self.errorMessage("")?.hasPrefix("invalid JSON") == true)
    }

    // MARK: Topic patterns

    @Test(arguments: [
        ("email.*", "email.send", true),
        ("email.*", "email.send.now", false),
        ("email.*", "email", false),
        ("email.#", "email", true),
        ("email.#", "email.send.now", true),
        ("#", "anything.at.all", true),
        ("#", "x", true),
        ("a.#.z", "a.z", true),
        ("a.#.z", "a.b.c.z", true),
        ("a.#.z", "a.b.c", false),
        ("*.send", "sms.send", true),
        ("*.send", "send", false),
        ("report.daily", "report.daily", true),
        ("report.daily", "report.weekly", false),
        ("#.daily", "daily", true),
        ("*.*", "a.b", true),
        ("*.*", "a.b.c", false),
    ])
    func topicPatternMatching(pattern: String, task: String, matches: Bool) {
        #expect(QueueSettings.topicPattern(pattern, matches: task) == matches)
    }

    @Test func firstMatchingQueueInConfigurationOrderWins() {
        let configuration = WarrenConfiguration(queues: [
            QueueSettings(name: "email", tasks: ["email.*"]),
            QueueSettings(name: "all", tasks: ["#"]),
        ])
        #expect(configuration.queue(forTask: "email.send")?.name == "email")
        #expect(configuration.queue(forTask: "email.send.now")?.name == "all")
        #expect(QueueSettings.isValidPattern("a.*.#.b-c_d"))
        #expect(!QueueSettings.isValidPattern("a.b*"))
        #expect(!QueueSettings.isValidPattern(""))
        #expect(!QueueSettings.isValidPattern("a."))
    }

    // MARK: Retry policy

    @Test func delayWithoutJitterDoublesUpToTheCap() {
        let policy = RetryPolicy(baseDelay: .seconds(1), factor: 2, maxDelay: .seconds(10), jitter: false)
        let delays = (1...6).map { policy.delay(afterAttempt: $0) }
        #expect(delays == [.seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(10), .seconds(10)])
        #expect(policy.delay(afterAttempt: 10_000) == .seconds(10))
        let gentle = RetryPolicy(baseDelay: .milliseconds(100), factor: 1.5, maxDelay: .seconds(1), jitter: false)
        #expect(gentle.delay(afterAttempt: 3) == .milliseconds(225))
    }

    @Test func delayWithJitterStaysWithinTheCappedDelay() {
        let policy = RetryPolicy(baseDelay: .seconds(1), factor: 2, maxDelay: .seconds(10), jitter: true)
        var random = SplitMix64(seed: 42)
        var distinct: Set<Duration> = []
        for attempt in 1...6 {
            let capped = Duration.seconds(min(10, 1 << (attempt - 1)))
            for _ in 0..<200 {
                let delay = policy.delay(afterAttempt: attempt, random: &random)
                #expect(delay >= .zero && delay <= capped, "attempt \(attempt): \(delay) outside [0, \(capped)]")
                distinct.insert(delay)
            }
        }
        #expect(distinct.count > 1000)
        var first = SplitMix64(seed: 7)
        var second = SplitMix64(seed: 7)
        #expect(policy.delay(afterAttempt: 3, random: &first) == policy.delay(afterAttempt: 3, random: &second))
    }

    // MARK: Durations

    @Test(arguments: [
        ("250ms", Duration.milliseconds(250)),
        ("30s", .seconds(30)),
        ("2m", .seconds(120)),
        ("1h", .seconds(3600)),
        ("1d", .seconds(86_400)),
        ("1h30m", .seconds(5400)),
        ("1m30s", .seconds(90)),
        ("1.5s", .milliseconds(1500)),
        ("0", .zero),
        ("0s", .zero),
        ("10us", .microseconds(10)),
        ("7ns", .nanoseconds(7)),
    ])
    func durationParsing(text: String, duration: Duration) throws {
        #expect(try DurationText.parse(text) == duration)
    }

    @Test(arguments: ["", "s", "30", "30x", "1.5.2s", "-1s", "1 h", "1H", ".5s", "0.1ns", "999999999999d"])
    func invalidDurationsAreRejected(text: String) {
        #expect(throws: WarrenError.self) { try DurationText.parse(text) }
    }

    @Test(arguments: [
        (Duration.seconds(1), "1s"),
        (.seconds(120), "2m"),
        (.seconds(3600), "1h"),
        (.seconds(90), "90s"),
        (.milliseconds(500), "500ms"),
        (.seconds(86_400), "1d"),
        (.seconds(5400), "90m"),
        (.zero, "0s"),
        (.microseconds(1500), "1500us"),
        (.nanoseconds(3), "3ns"),
    ])
    func durationFormatting(duration: Duration, text: String) throws {
        #expect(DurationText.format(duration) == text)
        #expect(try DurationText.parse(text) == duration)
    }
}
