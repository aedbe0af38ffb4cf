/// How an ``AMQPClient`` connects and recovers.
public struct AMQPClientConfiguration: Sendable {
    public var connection: AMQPConnectionConfiguration
    /// When set, a lost connection is reopened (URIs tried in order) with exponential backoff between `initialDelay`
    /// and `maximumDelay`, and consumers are restarted. When nil, the client stops after a loss.
    public var reconnect: ReconnectPolicy?

    public struct ReconnectPolicy: Sendable {
        public var initialDelay: Duration
        public var maximumDelay: Duration
        public init(initialDelay: Duration = .milliseconds(200), maximumDelay: Duration = .seconds(5)) {
            self.initialDelay = initialDelay
            self.maximumDelay = maximumDelay
        }
    }

    /// Runs on the owner thread after every connect and reconnect, before consumers are restarted, with the control
    /// channel: declare here what consumers need (a broker restart may have lost non-durable things). When it throws,
    /// the first connect fails with that error; a reconnect counts as failed and is tried again.
    public var onConnect: (@Sendable (AMQPChannel) throws -> Void)?

    public init(
        connection: AMQPConnectionConfiguration, reconnect: ReconnectPolicy? = ReconnectPolicy(),
        onConnect: (@Sendable (AMQPChannel) throws -> Void)? = nil
    ) {
        self.connection = connection
        self.reconnect = reconnect
        self.onConnect = onConnect
    }
}

/// What happened to an ``AMQPClient``'s connection, for logging and for the layer above.
public enum AMQPClientEvent: Sendable {
    /// A connection is open. `generation` counts connections made by this client, from 1.
    case connected(generation: UInt64, endpoint: String)
    /// The connection failed or the broker closed it. The client reconnects when its policy allows.
    case disconnected(AMQPError)
    /// A reconnect attempt failed; another follows after the backoff.
    case reconnectFailed(AMQPError)
    /// The broker closed a channel (error included); the client reopened it where it owns state on it.
    case channelClosed(channel: UInt16, AMQPError)
    /// The broker cancelled a consumer (its queue was deleted, say); the client does not restart it.
    case consumerCancelled(consumerTag: String, queue: String)
    /// An ack/nack/reject for a delivery from an earlier channel or connection was dropped: the broker redelivers.
    case staleOutcomeDropped(DeliveryTag)
    case blocked(reason: String)
    case unblocked
    /// The client was closed and its thread has ended.
    case closed
}

/// A message to publish with ``AMQPClient/publish(_:)``.
public struct OutgoingMessage: Sendable {
    public var exchange: String
    public var routingKey: String
    public var body: [UInt8]
    public var properties: BasicProperties
    public var mandatory: Bool

    public init(
        exchange: String, routingKey: String, body: [UInt8], properties: BasicProperties = .init(),
        mandatory: Bool = false
    ) {
        self.exchange = exchange
        self.routingKey = routingKey
        self.body = body
        self.properties = properties
        self.mandatory = mandatory
    }
}
