import Foundation
import Warren
import WarrenAMQP

/// One schedule fire as a consumer of the work queue sees it.
public struct Fire: Sendable {
    public var messageID: String
    /// `x-warren-fire-time` (RFC 3339).
    public var fireTime: String
    /// `x-warren-catch-up`.
    public var catchUp: Bool
    public var receivedAt: Date
}

extension Fire {
    /// Declares the configuration's topology and records every fire that reaches its first work queue.
    public static func record(_ client: AMQPClient, _ configuration: WarrenConfiguration) async throws -> Recorder<Fire>
    {
        let jobs = try JobClient(configuration: configuration, connectionName: configuration.prefix + "-setup")
        try await jobs.connect()
        try await jobs.declareTopology()
        await jobs.close()
        let fires = Recorder<Fire>()
        try await client.consume(queue: configuration.queueName(configuration.queues[0]), prefetch: 100) { delivery in
            let headers = delivery.properties.headers ?? [:]
            fires.append(
                Fire(
                    messageID: delivery.properties.messageID ?? "",
                    fireTime: headers["x-warren-fire-time"]?.stringValue ?? "",
                    catchUp: headers["x-warren-catch-up"] == .bool(true), receivedAt: Date()))
            client.ack(delivery.tag)
        }
        return fires
    }
}
