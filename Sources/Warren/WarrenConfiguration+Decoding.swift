import Foundation
import WarrenAMQP

extension WarrenConfiguration {
    /// Loads a JSON configuration file, applies the environment overrides, and validates the result.
    ///
    /// Overrides: `WARREN_AMQP_URL` (one URI or a comma-separated failover list) replaces the broker URIs;
    /// `WARREN_PREFIX` replaces the prefix. Empty values are ignored.
    /// Throws ``WarrenError/configuration(_:)`` naming the key path and the problem.
    ///
    /// ```swift
    /// let configuration = try WarrenConfiguration.load(
    ///     path: "Config/warren.json", environment: ProcessInfo.processInfo.environment)
    /// ```
    public static func load(path: String, environment: [String: String]) throws -> WarrenConfiguration {
        let source = "config file \(path)"
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw WarrenError.configuration("\(source): no such file")
        }
        guard !isDirectory.boolValue else { throw WarrenError.configuration("\(source): is a directory") }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw WarrenError.configuration("\(source): cannot be read (\(error.localizedDescription))")
        }
        return try decode(data, environment: environment, source: source)
    }

    /// Decodes a JSON configuration, applies the environment overrides (see ``load(path:environment:)``), and
    /// validates the result.
    public static func decode(_ data: Data, environment: [String: String] = [:]) throws -> WarrenConfiguration {
        try decode(data, environment: environment, source: nil)
    }

    private static func decode(
        _ data: Data, environment: [String: String], source: String?
    ) throws -> WarrenConfiguration {
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        } catch {
            throw WarrenError.configuration((source.map { "\($0): " } ?? "") + invalidJSONMessage(error, data: data))
        }
        var configuration = try decodeDocument(json)
        try configuration.applyOverrides(environment)
        try configuration.validate()
        return configuration
    }

    private mutating func applyOverrides(_ environment: [String: String]) throws {
        if let value = environment["WARREN_AMQP_URL"] {
            let urls = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter {
                !$0.isEmpty
            }
            for url in urls {
                do {
                    _ = try AMQPURI(url)
                } catch let error as AMQPError {
                    throw WarrenError.configuration("WARREN_AMQP_URL: \(error.message)")
                }
            }
            if !urls.isEmpty { brokerURLs = urls }
        }
        if let value = environment["WARREN_PREFIX"]?.trimmingCharacters(in: .whitespaces), !value.isEmpty {
            guard Self.isValidName(value) else {
                throw WarrenError.configuration("WARREN_PREFIX: \"\(value)\" must match [a-z0-9][a-z0-9_.-]*")
            }
            prefix = value
        }
    }

    /// Foundation's description of a JSON syntax error, with a line and column when it gives a character offset.
    private static func invalidJSONMessage(_ error: Error, data: Data) -> String {
        let description = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? "\(error)"
        guard let range = description.range(of: "character "),
            let offset = Int(description[range.upperBound...].prefix(while: \.isNumber)), offset <= data.count
        else { return "invalid JSON: \(description)" }
        var line = 1
        var lineStart = 0
        for (index, byte) in data.prefix(offset).enumerated() where byte == UInt8(ascii: "\n") {
            line += 1
            lineStart = index + 1
        }
        return "invalid JSON at line \(line), column \(offset - lineStart + 1): \(description)"
    }

    // MARK: The walk over the document

    private static func decodeDocument(_ json: Any) throws -> WarrenConfiguration {
        let root = try ObjectReader(
            json, path: "",
            known: [
                "broker", "prefix", "queues", "worker", "retry", "retryTiers", "tasks", "schedules", "examples",
                "coordinator",
            ])
        var configuration = WarrenConfiguration(queues: [])
        if let broker = try root.object("broker", known: ["url", "urls"]) {
            let url = try broker.string("url")
            let urls = try broker.stringArray("urls")
            switch (url, urls) {
            case (let url?, nil): configuration.brokerURLs = [url]
            case (nil, let urls?): configuration.brokerURLs = urls
            case (.some, .some): throw WarrenError.configuration("broker: give either \"url\" or \"urls\", not both")
            case (nil, nil): throw WarrenError.configuration("broker: expected \"url\" or \"urls\"")
            }
        }
        configuration.prefix = try root.string("prefix") ?? configuration.prefix
        configuration.queues = try root.required(root.array("queues"), "queues").enumerated().map { index, element in
            try decodeQueue(element, path: "queues[\(index)]")
        }
        if let worker = try root.object("worker", known: workerKeys) {
            configuration.worker = try decodeWorker(worker)
        }
        if let retry = try root.object("retry", known: retryKeys) {
            configuration.retry = try decodeRetry(retry)
        }
        if let tiers = try root.array("retryTiers") {
            configuration.retryTiers = try tiers.enumerated().map { index, element in
                try duration(element, path: "retryTiers[\(index)]")
            }
        }
        if let tasks = try root.object("tasks", known: nil) {
            for key in tasks.keys {
                let task = try tasks.object(key, path: "tasks[\"\(key)\"]", known: ["timeLimit"] + retryKeys)
                configuration.tasks[key] = try task.map(decodeTask)
            }
        }
        if let schedules = try root.array("schedules") {
            configuration.schedules = try schedules.enumerated().map { index, element in
                try decodeSchedule(element, path: "schedules[\(index)]")
            }
        }
        if let examples = try root.object("examples", known: ["payeeRulesFile", "reportDirectory"]) {
            configuration.examples.payeeRulesFile =
                try examples.string("payeeRulesFile") ?? configuration.examples.payeeRulesFile
            configuration.examples.reportDirectory =
                try examples.string("reportDirectory") ?? configuration.examples.reportDirectory
        }
        if let coordinator = try root.object(
            "coordinator", known: ["metricsInterval", "metricsPort", "metricsHost", "leaderRetryInterval"])
        {
            var settings = CoordinatorSettings()
            settings.metricsInterval = try coordinator.duration("metricsInterval") ?? settings.metricsInterval
            settings.metricsPort = try coordinator.int("metricsPort") ?? settings.metricsPort
            settings.metricsHost = try coordinator.string("metricsHost") ?? settings.metricsHost
            settings.leaderRetryInterval =
                try coordinator.duration("leaderRetryInterval") ?? settings.leaderRetryInterval
            configuration.coordinator = settings
        }
        return configuration
    }

    private static let workerKeys = [
        "concurrency", "prefetch", "queues", "shutdownGrace", "maxBodyBytes", "heartbeatInterval", "lifecycleEvents",
        "defaultTimeLimit", "metricsPort", "metricsHost", "reconnectInitialDelay", "reconnectMaxDelay",
        "consumerTimeout",
    ]

    private static let retryKeys = ["maxAttempts", "baseDelay", "factor", "maxDelay", "jitter"]

    private static func decodeQueue(_ json: Any, path: String) throws -> QueueSettings {
        let object = try ObjectReader(
            json, path: path, known: ["name", "tasks", "type", "maxPriority", "deliveryLimit"])
        var queue = QueueSettings(
            name: try object.required(object.string("name"), "name"),
            tasks: try object.required(object.stringArray("tasks"), "tasks"))
        queue.kind = try object.choice("type", QueueSettings.Kind.self) ?? queue.kind
        queue.maxPriority = try object.int("maxPriority")
        queue.deliveryLimit = try object.int("deliveryLimit") ?? queue.deliveryLimit
        return queue
    }

    private static func decodeWorker(_ object: ObjectReader) throws -> WorkerSettings {
        var worker = WorkerSettings()
        worker.concurrency = try object.int("concurrency") ?? worker.concurrency
        worker.prefetch = try object.int("prefetch")
        worker.queues = try object.stringArray("queues")
        worker.shutdownGrace = try object.duration("shutdownGrace") ?? worker.shutdownGrace
        worker.maxBodyBytes = try object.int("maxBodyBytes") ?? worker.maxBodyBytes
        worker.heartbeatInterval = try object.duration("heartbeatInterval") ?? worker.heartbeatInterval
        worker.lifecycleEvents = try object.bool("lifecycleEvents") ?? worker.lifecycleEvents
        worker.defaultTimeLimit = try object.duration("defaultTimeLimit")
        worker.metricsPort = try object.int("metricsPort")
        worker.metricsHost = try object.string("metricsHost") ?? worker.metricsHost
        worker.reconnectInitialDelay = try object.duration("reconnectInitialDelay") ?? worker.reconnectInitialDelay
        worker.reconnectMaxDelay = try object.duration("reconnectMaxDelay") ?? worker.reconnectMaxDelay
        worker.consumerTimeout = try object.duration("consumerTimeout") ?? worker.consumerTimeout
        return worker
    }

    private static func decodeRetry(_ object: ObjectReader) throws -> RetryPolicy {
        var retry = RetryPolicy()
        retry.maxAttempts = try object.int("maxAttempts") ?? retry.maxAttempts
        retry.baseDelay = try object.duration("baseDelay") ?? retry.baseDelay
        retry.factor = try object.double("factor") ?? retry.factor
        retry.maxDelay = try object.duration("maxDelay") ?? retry.maxDelay
        retry.jitter = try object.bool("jitter") ?? retry.jitter
        return retry
    }

    private static func decodeTask(_ object: ObjectReader) throws -> TaskSettings {
        TaskSettings(
            timeLimit: try object.duration("timeLimit"),
            maxAttempts: try object.int("maxAttempts"),
            baseDelay: try object.duration("baseDelay"),
            factor: try object.double("factor"),
            maxDelay: try object.duration("maxDelay"),
            jitter: try object.bool("jitter"))
    }

    private static func decodeSchedule(_ json: Any, path: String) throws -> ScheduleSettings {
        let object = try ObjectReader(
            json, path: path, known: ["name", "cron", "timeZone", "task", "payload", "enabled", "missedRuns"])
        var schedule = ScheduleSettings(
            name: try object.required(object.string("name"), "name"),
            cron: try object.required(object.string("cron"), "cron"),
            task: try object.required(object.string("task"), "task"))
        schedule.timeZone = try object.string("timeZone") ?? schedule.timeZone
        if let payload = try object.rawObject("payload") {
            // The payload is the job's data: kept verbatim (comment keys included), with its keys sorted.
            let text = try? JSONSerialization.data(
                withJSONObject: payload, options: [.sortedKeys, .withoutEscapingSlashes])
            schedule.payloadJSON = text.flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
        }
        schedule.enabled = try object.bool("enabled") ?? schedule.enabled
        schedule.missedRuns = try object.choice("missedRuns", ScheduleSettings.MissedRunPolicy.self) ?? .skip
        return schedule
    }

    /// A duration: a string such as `"30s"` or `"1h30m"`, or a non-negative number of seconds.
    fileprivate static func duration(_ json: Any, path: String) throws -> Duration {
        switch JSONValue(json) {
        case .string(let text):
            do {
                return try DurationText.parse(text)
            } catch WarrenError.configuration(let message) {
                throw WarrenError.configuration("\(path): \(message)")
            }
        case .integer(let seconds) where seconds >= 0:
            return .seconds(seconds)
        case .number(let seconds) where seconds >= 0 && seconds < 9e9:
            return .nanoseconds(Int64((seconds * 1e9).rounded()))
        case .integer, .number:
            throw WarrenError.configuration("\(path): must be a non-negative number of seconds, got \(describe(json))")
        default:
            throw WarrenError.configuration(
                "\(path): expected a duration (a string such as \"30s\" or a number of seconds), got \(describe(json))")
        }
    }

    fileprivate static func describe(_ json: Any) -> String {
        switch JSONValue(json) {
        case .null: return "null"
        case .bool(let value): return "\(value)"
        case .integer(let value): return "the number \(value)"
        case .number(let value): return "the number \(value)"
        case .string(let value):
            return value.count > 40 ? "a string (\"\(value.prefix(40))…\")" : "a string (\"\(value)\")"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

/// One JSON value from `JSONSerialization`, told apart by kind (booleans are not numbers here).
private enum JSONValue {
    case null
    case bool(Bool)
    case integer(Int)
    case number(Double)
    case string(String)
    case array([Any])
    case object([String: Any])

    init(_ json: Any) {
        switch json {
        case let string as String:
            self = .string(string)
        case let number as NSNumber:
            let type = String(cString: number.objCType)
            if type == "c" || type == "B" {
                self = .bool(number.boolValue)
            } else if type == "d" || type == "f" {
                self = .number(number.doubleValue)
            } else if type == "Q", let value = Int(exactly: number.uint64Value) {
                self = .integer(value)
            } else if type == "Q" {
                self = .number(number.doubleValue)
            } else {
                self = .integer(number.intValue)
            }
        case let array as [Any]:
            self = .array(array)
        case let object as [String: Any]:
            self = .object(object)
        default:
            self = .null
        }
    }
}

/// A JSON object at a key path, read key by key. Unknown keys are rejected when it is created; keys beginning with
/// `//` or `_comment` are comments and ignored. A `null` value counts as absent (the default applies).
private struct ObjectReader {
    let path: String
    let values: [String: Any]

    /// `known: nil` accepts any key (a map such as `tasks`).
    init(_ json: Any, path: String, known: [String]?) throws {
        guard case .object(let values) = JSONValue(json) else {
            let location = path.isEmpty ? "top level" : path
            throw WarrenError.configuration(
                "\(location): expected an object, got \(WarrenConfiguration.describe(json))")
        }
        self.path = path
        self.values = values.filter { !Self.isComment($0.key) }
        guard let known else { return }
        for key in self.values.keys.sorted() where !known.contains(key) {
            let hint =
                WarrenConfiguration.suggestion(for: key, among: known).map { "did you mean '\($0)'?" }
                ?? "known keys: \(known.joined(separator: ", "))"
            let location = path.isEmpty ? "unknown key '\(key)' at top level" : "\(path): unknown key '\(key)'"
            throw WarrenError.configuration("\(location) (\(hint))")
        }
    }

    static func isComment(_ key: String) -> Bool { key.hasPrefix("//") || key.hasPrefix("_comment") }

    /// The keys, sorted, without comments.
    var keys: [String] { values.keys.sorted() }

    func path(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    private func value(_ key: String) -> Any? {
        guard let value = values[key], !(value is NSNull) else { return nil }
        return value
    }

    private func mismatch(_ key: String, _ expected: String, _ value: Any) -> WarrenError {
        WarrenError.configuration(
            "\(path(key)): expected \(expected), got \(WarrenConfiguration.describe(value))")
    }

    func required<T>(_ value: T?, _ key: String) throws -> T {
        guard let value else { throw WarrenError.configuration("\(path(key)): required key is missing") }
        return value
    }

    func string(_ key: String) throws -> String? {
        guard let value = value(key) else { return nil }
        guard case .string(let string) = JSONValue(value) else { throw mismatch(key, "a string", value) }
        return string
    }

    func int(_ key: String) throws -> Int? {
        guard let value = value(key) else { return nil }
        switch JSONValue(value) {
        case .integer(let integer): return integer
        case .number(let number) where number.rounded() == number && abs(number) < 1e15: return Int(number)
        default: throw mismatch(key, "an integer", value)
        }
    }

    func double(_ key: String) throws -> Double? {
        guard let value = value(key) else { return nil }
        switch JSONValue(value) {
        case .integer(let integer): return Double(integer)
        case .number(let number): return number
        default: throw mismatch(key, "a number", value)
        }
    }

    func bool(_ key: String) throws -> Bool? {
        guard let value = value(key) else { return nil }
        guard case .bool(let bool) = JSONValue(value) else { throw mismatch(key, "true or false", value) }
        return bool
    }

    func duration(_ key: String) throws -> Duration? {
        guard let value = value(key) else { return nil }
        return try WarrenConfiguration.duration(value, path: path(key))
    }

    func choice<Choice: RawRepresentable & CaseIterable>(
        _ key: String, _ type: Choice.Type
    ) throws -> Choice? where Choice.RawValue == String {
        guard let text = try string(key) else { return nil }
        guard let choice = Choice(rawValue: text) else {
            let names = Choice.allCases.map(\.rawValue).joined(separator: ", ")
            throw WarrenError.configuration("\(path(key)): \"\(text)\" is not one of \(names)")
        }
        return choice
    }

    func array(_ key: String) throws -> [Any]? {
        guard let value = value(key) else { return nil }
        guard case .array(let array) = JSONValue(value) else { throw mismatch(key, "an array", value) }
        return array
    }

    func stringArray(_ key: String) throws -> [String]? {
        try array(key)?.enumerated().map { index, element in
            guard case .string(let string) = JSONValue(element) else {
                throw WarrenError.configuration(
                    "\(path(key))[\(index)]: expected a string, got \(WarrenConfiguration.describe(element))")
            }
            return string
        }
    }

    func rawObject(_ key: String) throws -> [String: Any]? {
        guard let value = value(key) else { return nil }
        guard case .object(let object) = JSONValue(value) else { throw mismatch(key, "an object", value) }
        return object
    }

    /// The object under `key`, read at `path` (default: this path plus the key).
    func object(_ key: String, path: String? = nil, known: [String]?) throws -> ObjectReader? {
        guard let value = value(key) else { return nil }
        return try ObjectReader(value, path: path ?? self.path(key), known: known)
    }
}
