import WarrenAMQP

extension WarrenConfiguration {
    /// An ``AMQPClient`` for this configuration's broker URIs (tried in order) with the worker's reconnect backoff.
    /// A bad URI is a ``WarrenError/configuration(_:)`` naming `broker.url` (never echoing the password).
    public func makeAMQPClient(
        connectionName: String, onConnect: (@Sendable (AMQPChannel) throws -> Void)? = nil
    ) throws -> AMQPClient {
        let uris: [AMQPURI]
        do {
            uris = try brokerURLs.map { try AMQPURI($0) }
        } catch let error as AMQPError {
            throw WarrenError.configuration("broker.url: \(error.message)")
        }
        return AMQPClient(
            configuration: AMQPClientConfiguration(
                connection: AMQPConnectionConfiguration(uris: uris, connectionName: connectionName),
                reconnect: .init(initialDelay: worker.reconnectInitialDelay, maximumDelay: worker.reconnectMaxDelay),
                onConnect: onConnect))
    }
}
