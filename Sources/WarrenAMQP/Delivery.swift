import Foundation
import Synchronization

/// Identifies one delivery on one incarnation of one channel.
///
/// `epoch` changes every time a channel is opened (on every reconnect and every channel reopen), so an outcome for a
/// delivery from before the change is recognised as stale and dropped instead of acking an unknown tag: the broker
/// has already requeued that message.
public struct DeliveryTag: Sendable, Hashable, CustomStringConvertible {
    public let value: UInt64
    public let channel: UInt16
    public let epoch: UInt64

    public init(value: UInt64, channel: UInt16, epoch: UInt64) {
        self.value = value
        self.channel = channel
        self.epoch = epoch
    }

    public var description: String { "\(epoch).\(channel).\(value)" }

    private static let epochs = Atomic<UInt64>(0)
    static func nextEpoch() -> UInt64 { epochs.add(1, ordering: .relaxed).newValue }
}

/// A message delivered by basic.deliver or basic.get, deep-copied out of rabbitmq-c.
public struct Delivery: Sendable {
    public var tag: DeliveryTag
    /// Empty for basic.get.
    public var consumerTag: String
    public var exchange: String
    public var routingKey: String
    public var redelivered: Bool
    public var properties: BasicProperties
    public var body: Data

    public init(
        tag: DeliveryTag, consumerTag: String, exchange: String, routingKey: String, redelivered: Bool,
        properties: BasicProperties, body: Data
    ) {
        self.tag = tag
        self.consumerTag = consumerTag
        self.exchange = exchange
        self.routingKey = routingKey
        self.redelivered = redelivered
        self.properties = properties
        self.body = body
    }
}

/// A `mandatory` message the broker could not route, sent back with basic.return.
public struct ReturnedMessage: Sendable {
    public var replyCode: UInt16
    public var replyText: String
    public var exchange: String
    public var routingKey: String
    public var properties: BasicProperties
    public var body: Data
}

/// The broker's answer to a queue declare.
public struct QueueInfo: Sendable, Hashable {
    public var name: String
    /// Messages ready for delivery (not counting unacknowledged ones).
    public var messageCount: UInt32
    public var consumerCount: UInt32
}

/// Everything that can arrive from the broker outside a synchronous round trip.
public enum AMQPEvent: Sendable {
    case delivery(Delivery)
    case ack(channel: UInt16, deliveryTag: UInt64, multiple: Bool)
    case nack(channel: UInt16, deliveryTag: UInt64, multiple: Bool)
    case returned(channel: UInt16, ReturnedMessage)
    /// The broker cancelled a consumer (its queue was deleted, or a quorum queue lost its leader).
    case consumerCancelled(channel: UInt16, consumerTag: String)
    /// The broker closed a channel; close-ok has been sent and the channel will be reopened on next use.
    case channelClosed(channel: UInt16, AMQPError)
    /// The broker closed the connection; close-ok has been sent and the connection is unusable.
    case connectionClosed(AMQPError)
    /// The broker blocked publishing on this connection (a resource alarm).
    case blocked(reason: String)
    case unblocked
}

/// Exchange kinds RabbitMQ ships.
public struct ExchangeType: RawRepresentable, Sendable, Hashable, ExpressibleByStringLiteral {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }

    public static let direct = ExchangeType(rawValue: "direct")
    public static let fanout = ExchangeType(rawValue: "fanout")
    public static let topic = ExchangeType(rawValue: "topic")
    public static let headers = ExchangeType(rawValue: "headers")
}
