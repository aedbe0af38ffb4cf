import Foundation
import WarrenAMQP

/// Enqueues jobs from Swift: persistent JSON on the jobs exchange, routing key = task name, with publisher confirms
/// and `mandatory`, so `enqueue` returns only once the broker has the job in a queue, and throws otherwise.
///
/// ```swift
/// let jobs = JobClient(configuration: configuration, logger: logger)
/// try await jobs.connect()
/// let id = try await jobs.enqueue(SendEmail(to: "ada@example.com", subject: "Hi"), delay: .seconds(30))
/// ```
public final class JobClient: Sendable {
    public let configuration: WarrenConfiguration
    let client: AMQPClient

    public init(configuration: WarrenConfiguration, connectionName: String = "warren-client") throws {
        self.configuration = configuration
        client = try configuration.makeAMQPClient(connectionName: connectionName)
    }

    public func connect() async throws { try await client.connect() }
    public func close() async { await client.close() }

    /// Declares Warren's topology (idempotent).
    public func declareTopology() async throws {
        let topology = Topology(configuration: configuration)
        try await client.withChannel { try topology.declare(on: $0) }
    }

    /// Enqueues a job and returns its id once the broker confirmed it.
    @discardableResult
    public func enqueue<Payload: JobPayload>(
        _ payload: Payload, id: String = JobID.random(), delay: Duration? = nil,
        headers: FieldTable = [:], maxAttempts: Int? = nil
    ) async throws -> String {
        let body = try JSONEncoder().encode(payload)
        return try await enqueue(
            task: Payload.taskName, json: body, id: id, delay: delay, headers: headers, maxAttempts: maxAttempts)
    }

    /// Enqueues a job given as JSON text for a task type.
    @discardableResult
    public func enqueue(
        task: String, json: Data, id: String = JobID.random(), delay: Duration? = nil,
        headers: FieldTable = [:], maxAttempts: Int? = nil
    ) async throws -> String {
        try await client.publish(
            message(
                task: task, json: json, id: id, delay: delay, headers: headers,
                maxAttempts: maxAttempts))
        return id
    }

    /// Enqueues many jobs pipelined; element `i` of the result is nil when job `i` was confirmed, or its error.
    public func enqueue(batch: [(task: String, json: Data, id: String)]) async -> [AMQPError?] {
        await client.publish(
            batch.map {
                message(
                    task: $0.task, json: $0.json, id: $0.id, delay: nil, headers: [:],
                    maxAttempts: nil)
            })
    }

    func message(
        task: String, json: Data, id: String, delay: Duration?, headers: FieldTable, maxAttempts: Int?
    ) -> OutgoingMessage {
        var headers = headers
        let now = Date()
        if let delay, delay > .zero {
            headers[WarrenHeader.notBefore] = .int64(now.addingTimeInterval(delay.seconds).epochMilliseconds)
        }
        if let maxAttempts { headers[WarrenHeader.maxAttempts] = .int64(Int64(maxAttempts)) }
        let properties = BasicProperties(
            contentType: "application/json", headers: headers.isEmpty ? nil : headers, deliveryMode: .persistent,
            messageID: id, timestamp: now, appID: "warren")
        return OutgoingMessage(
            exchange: configuration.jobsExchange, routingKey: task, body: Array(json), properties: properties,
            mandatory: true)
    }
}
