import Foundation

/// A job's payload: the JSON body a producer publishes, decoded. The task name is the routing key producers use.
///
/// ```swift
/// struct SendEmail: JobPayload {
///     static let taskName = "email.send"
///     var to: String
///     var subject: String
/// }
/// registry.register(SendEmail.self) { email, context in
///     context.logger.info("sending", ["email.to": email.to])
///     try await mailer.send(email)
/// }
/// ```
public protocol JobPayload: Codable, Sendable {
    /// The task type: the routing key on `warren.jobs`, e.g. `email.send`.
    static var taskName: String { get }
}

/// What a handler knows about the job it runs.
public struct JobContext: Sendable {
    /// The job id: the message's `message_id`, or one the worker made up when the producer sent none.
    public var id: String
    /// The task type (the routing key the producer used).
    public var taskName: String
    /// Which attempt this is, from 1.
    public var attempt: Int
    /// How many attempts the job gets in all.
    public var maxAttempts: Int
    /// When the producer enqueued the job (the message timestamp), if it said.
    public var queuedAt: Date?
    /// The routing key the job was published with.
    public var routingKey: String
    /// The queue the job came from.
    public var queue: String
    /// After this instant the handler is cancelled and the attempt fails as a timeout (nil: no time limit).
    public var deadline: ContinuousClock.Instant?
    /// The message headers, as the producer (and earlier attempts) set them.
    public var headers: [String: String]
    /// A logger whose lines carry `job.id`, `job.name`, `job.attempt`.
    public var logger: Logger

    public var isLastAttempt: Bool { attempt >= maxAttempts }
}

/// Thrown by a handler to fail a job for good: it is dead-lettered at once, without retries.
public struct PermanentJobError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A handler for one payload type.
public typealias JobHandler<Payload: JobPayload> = @Sendable (Payload, JobContext) async throws -> Void

/// The task types a worker can run, each with its handler.
public struct JobRegistry: Sendable {
    struct Entry: Sendable {
        var taskName: String
        /// Decodes the body and runs the handler. Throws ``JobDecodingError`` when the body does not fit.
        var run: @Sendable (Data, JobContext) async throws -> Void
    }
    private(set) var entries: [String: Entry] = [:]
    private(set) var duplicates: [String] = []

    public init() {}

    /// Registers `handler` for `Payload.taskName`. Registering a task name twice is a programmer error that
    /// ``JobWorker`` reports at start-up.
    public mutating func register<Payload: JobPayload>(
        _ type: Payload.Type, handler: @escaping JobHandler<Payload>
    ) {
        let name = Payload.taskName
        if entries[name] != nil { duplicates.append(name) }
        entries[name] = Entry(taskName: name) { body, context in
            let payload: Payload
            do {
                payload = try jobDecoder.decode(Payload.self, from: body)
            } catch {
                throw JobDecodingError(taskName: name, underlying: error)
            }
            try await handler(payload, context)
        }
    }

    public var taskNames: [String] { entries.keys.sorted() }

    func entry(for taskName: String) -> Entry? { entries[taskName] }

    /// Throws when a task name was registered twice.
    func validate() throws {
        if let name = duplicates.first {
            throw WarrenError.configuration("task '\(name)' is registered twice; each task name has one handler")
        }
    }
}

/// One decoder for every job: it holds no per-decode state, and making one per job costs an allocation.
private let jobDecoder = JSONDecoder()

/// A body that is not JSON, or not the shape the payload type needs.
struct JobDecodingError: Error, CustomStringConvertible {
    var taskName: String
    var underlying: Error

    var description: String {
        switch underlying {
        case DecodingError.dataCorrupted(let context) where context.codingPath.isEmpty:
            return "body is not valid JSON"
        case DecodingError.keyNotFound(let key, let context):
            return "body does not fit \(taskName): missing key '\(Self.path(context.codingPath + [key]))'"
        case DecodingError.typeMismatch(let type, let context):
            return "body does not fit \(taskName): '\(Self.path(context.codingPath))' is not \(type)"
        case DecodingError.valueNotFound(let type, let context):
            return "body does not fit \(taskName): '\(Self.path(context.codingPath))' is null, expected \(type)"
        case DecodingError.dataCorrupted(let context):
            return "body does not fit \(taskName): '\(Self.path(context.codingPath))': \(context.debugDescription)"
        default:
            return "body does not fit \(taskName): \(underlying)"
        }
    }

    private static func path(_ keys: [CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            .replacingOccurrences(of: ".[", with: "[")
    }
}

/// Errors of the Warren runtime itself.
public enum WarrenError: Error, Sendable, CustomStringConvertible {
    /// Invalid configuration or registration, found at start-up.
    case configuration(String)
    /// The broker's topology conflicts with the configuration.
    case topology(String)

    public var description: String {
        switch self {
        case .configuration(let message): "configuration error: \(message)"
        case .topology(let message): "topology error: \(message)"
        }
    }
}
