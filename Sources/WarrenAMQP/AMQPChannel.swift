internal import CRabbitMQ
import Foundation

/// A channel of an ``AMQPConnection``: declarations, bindings, publishing, consuming and acknowledgements.
///
/// A channel the broker closed (for example after a failed declare) is reopened transparently on its next use, with a
/// new epoch: consumers and confirm mode of the old incarnation are gone, and tags of its deliveries are stale.
///
/// - Important: Same threading contract as its connection: use it only on the connection's owner thread.
public struct AMQPChannel {
    let connection: AMQPConnection
    public let id: UInt16

    init(connection: AMQPConnection, id: UInt16) {
        self.connection = connection
        self.id = id
    }

    /// Closes the channel and frees its number.
    public func close() throws { try connection.closeChannel(id) }

    /// The channel's current epoch (changes whenever it is reopened), or nil when closed.
    public var epoch: UInt64? { connection.epoch(ofChannel: id) }

    // MARK: Exchanges

    public func declareExchange(
        _ name: String, type: ExchangeType, durable: Bool = true, autoDelete: Bool = false, isInternal: Bool = false,
        passive: Bool = false, arguments: FieldTable = [:]
    ) throws {
        try connection.rpc("exchange.declare '\(name)'", channel: id) { state, arena in
            _ = amqp_exchange_declare(
                state, id, arena.bytes(name), arena.bytes(type.rawValue), passive ? 1 : 0, durable ? 1 : 0,
                autoDelete ? 1 : 0, isInternal ? 1 : 0, arena.table(arguments))
        }
    }

    public func deleteExchange(_ name: String, ifUnused: Bool = false) throws {
        try connection.rpc("exchange.delete '\(name)'", channel: id) { state, arena in
            _ = amqp_exchange_delete(state, id, arena.bytes(name), ifUnused ? 1 : 0)
        }
    }

    /// Binds exchange `destination` to `source` (a RabbitMQ extension).
    public func bindExchange(
        _ destination: String, to source: String, routingKey: String, arguments: FieldTable = [:]
    ) throws {
        try connection.rpc("exchange.bind '\(destination)' to '\(source)'", channel: id) { state, arena in
            _ = amqp_exchange_bind(
                state, id, arena.bytes(destination), arena.bytes(source), arena.bytes(routingKey),
                arena.table(arguments))
        }
    }

    // MARK: Queues

    /// Declares a queue (or with `passive`, checks it exists) and returns its ready-message and consumer counts.
    /// An empty name asks the broker to generate one.
    @discardableResult
    public func declareQueue(
        _ name: String, durable: Bool = true, exclusive: Bool = false, autoDelete: Bool = false,
        passive: Bool = false, arguments: FieldTable = [:]
    ) throws -> QueueInfo {
        let info = try connection.rpc("queue.declare '\(name)'", channel: id) { state, arena -> QueueInfo? in
            guard
                let ok = amqp_queue_declare(
                    state, id, arena.bytes(name), passive ? 1 : 0, durable ? 1 : 0, exclusive ? 1 : 0,
                    autoDelete ? 1 : 0, arena.table(arguments))
            else { return nil }
            return QueueInfo(
                name: String(amqp: ok.pointee.queue), messageCount: ok.pointee.message_count,
                consumerCount: ok.pointee.consumer_count)
        }
        guard let info else { throw AMQPError(.protocolError, "queue.declare returned no declare-ok") }
        return info
    }

    public func bindQueue(_ queue: String, exchange: String, routingKey: String, arguments: FieldTable = [:]) throws {
        try connection.rpc("queue.bind '\(queue)' to '\(exchange)'", channel: id) { state, arena in
            _ = amqp_queue_bind(
                state, id, arena.bytes(queue), arena.bytes(exchange), arena.bytes(routingKey), arena.table(arguments))
        }
    }

    public func unbindQueue(_ queue: String, exchange: String, routingKey: String, arguments: FieldTable = [:]) throws {
        try connection.rpc("queue.unbind '\(queue)' from '\(exchange)'", channel: id) { state, arena in
            _ = amqp_queue_unbind(
                state, id, arena.bytes(queue), arena.bytes(exchange), arena.bytes(routingKey), arena.table(arguments))
        }
    }

    /// Deletes a queue and returns how many messages it held.
    @discardableResult
    public func deleteQueue(_ name: String, ifUnused: Bool = false, ifEmpty: Bool = false) throws -> UInt32 {
        try connection.rpc("queue.delete '\(name)'", channel: id) { state, arena in
            amqp_queue_delete(state, id, arena.bytes(name), ifUnused ? 1 : 0, ifEmpty ? 1 : 0)?.pointee.message_count
        } ?? 0
    }

    /// Removes every ready message from a queue and returns how many there were.
    @discardableResult
    public func purgeQueue(_ name: String) throws -> UInt32 {
        try connection.rpc("queue.purge '\(name)'", channel: id) { state, arena in
            amqp_queue_purge(state, id, arena.bytes(name))?.pointee.message_count
        } ?? 0
    }

    // MARK: Consuming

    /// Limits unacknowledged deliveries per consumer created after this call on this channel. Always per-consumer
    /// (`global = false`): a global limit would let one slow consumer starve the others on the channel.
    public func qos(prefetchCount: UInt16) throws {
        try connection.rpc("basic.qos", channel: id) { state, _ in
            _ = amqp_basic_qos(state, id, 0, prefetchCount, 0)
        }
    }

    /// Starts a consumer and returns its tag (the broker's when `consumerTag` is empty). Deliveries arrive as
    /// ``AMQPEvent/delivery(_:)`` from ``AMQPConnection/nextEvent()``.
    @discardableResult
    public func consume(
        queue: String, consumerTag: String = "", noAck: Bool = false, exclusive: Bool = false,
        arguments: FieldTable = [:]
    ) throws -> String {
        try connection.rpc("basic.consume '\(queue)'", channel: id) { state, arena in
            let ok = amqp_basic_consume(
                state, id, arena.bytes(queue), arena.bytes(consumerTag), 0, noAck ? 1 : 0, exclusive ? 1 : 0,
                arena.table(arguments))
            return ok.map { String(amqp: $0.pointee.consumer_tag) } ?? consumerTag
        }
    }

    public func cancel(consumerTag: String) throws {
        try connection.rpc("basic.cancel '\(consumerTag)'", channel: id) { state, arena in
            _ = amqp_basic_cancel(state, id, arena.bytes(consumerTag))
        }
    }

    /// Fetches one message with basic.get; nil when the queue is empty. `messageCount` is what remains ready.
    public func get(queue: String, noAck: Bool = false) throws -> (delivery: Delivery, messageCount: UInt32)? {
        let state = try connection.usableState()
        try connection.openChannel(id)
        let reply = connection.arena.scoped { arena in amqp_basic_get(state, id, arena.bytes(queue), noAck ? 1 : 0) }
        try connection.check(reply, operation: "basic.get '\(queue)'", channel: id)
        guard reply.reply.id != AMQPMethod.basicGetEmpty, let decoded = reply.reply.decoded else { return nil }
        let ok = decoded.assumingMemoryBound(to: amqp_basic_get_ok_t.self).pointee
        let exchange = String(amqp: ok.exchange)
        let routingKey = String(amqp: ok.routing_key)
        let (properties, body) = try connection.readContent(channel: id, operation: "basic.get '\(queue)'")
        let tag = DeliveryTag(value: ok.delivery_tag, channel: id, epoch: epoch ?? 0)
        let delivery = Delivery(
            tag: tag, consumerTag: "", exchange: exchange, routingKey: routingKey, redelivered: ok.redelivered != 0,
            properties: properties, body: body)
        return (delivery, ok.message_count)
    }

    // MARK: Acknowledgements

    /// Acknowledges a delivery. Returns false, sending nothing, when the tag is stale: it belongs to an earlier
    /// incarnation of this channel, whose unacknowledged messages the broker has already requeued.
    @discardableResult
    public func ack(_ tag: DeliveryTag, multiple: Bool = false) throws -> Bool {
        guard let state = try current(tag) else { return false }
        try connection.checkStatus(amqp_basic_ack(state, id, tag.value, multiple ? 1 : 0), operation: "basic.ack")
        return true
    }

    @discardableResult
    public func nack(_ tag: DeliveryTag, multiple: Bool = false, requeue: Bool) throws -> Bool {
        guard let state = try current(tag) else { return false }
        try connection.checkStatus(
            amqp_basic_nack(state, id, tag.value, multiple ? 1 : 0, requeue ? 1 : 0), operation: "basic.nack")
        return true
    }

    @discardableResult
    public func reject(_ tag: DeliveryTag, requeue: Bool) throws -> Bool {
        guard let state = try current(tag) else { return false }
        try connection.checkStatus(amqp_basic_reject(state, id, tag.value, requeue ? 1 : 0), operation: "basic.reject")
        return true
    }

    private func current(_ tag: DeliveryTag) throws -> OpaquePointer? {
        precondition(tag.channel == id, "delivery tag \(tag) belongs to channel \(tag.channel), not \(id)")
        let state = try connection.usableState()
        guard let epoch, epoch == tag.epoch else { return nil }
        return state
    }

    // MARK: Publishing

    /// Puts the channel in publisher-confirm mode; publishes are then numbered from 1 and acked or nacked by the
    /// broker as ``AMQPEvent/ack(channel:deliveryTag:multiple:)`` / ``AMQPEvent/nack(channel:deliveryTag:multiple:)``.
    public func confirmSelect() throws { try connection.setConfirmMode(id) }

    /// Whether the channel is open and in confirm mode.
    public var isConfirming: Bool { connection.openChannels[id]?.confirms == true }

    /// Publishes a message. Returns its publish sequence number when the channel is in confirm mode.
    ///
    /// A failed publish (unknown exchange, say) is reported by the broker asynchronously, as a channel close.
    @discardableResult
    public func publish(
        exchange: String, routingKey: String, body: some ContiguousBytes, properties: BasicProperties = .init(),
        mandatory: Bool = false
    ) throws -> UInt64? {
        let state = try connection.usableState()
        // rabbitmq-c sends the method frame before it encodes the header frame: a header table too large for one
        // frame would fail half-sent and leave the connection unusable. Refuse such a publish before sending.
        if let headers = properties.headers {
            let frameMax = Int(amqp_get_frame_max(state))
            let size = headers.encodedSize
            if frameMax > 0, size > frameMax - Self.propertiesAllowance {
                throw AMQPError(
                    .contentTooLarge,
                    "headers of \(size) bytes do not fit one frame (frame_max \(frameMax)); nothing was sent",
                    operation: "basic.publish to '\(exchange)'")
            }
        }
        let channelState = try connection.openChannel(id)
        let status = connection.arena.scoped { arena in
            var cProperties = arena.properties(properties)
            return body.withUnsafeBytes { raw in
                amqp_basic_publish(
                    state, id, arena.bytes(exchange), arena.bytes(routingKey), mandatory ? 1 : 0, 0, &cProperties,
                    amqp_bytes_t(len: raw.count, bytes: UnsafeMutableRawPointer(mutating: raw.baseAddress)))
            }
        }
        try connection.checkStatus(status, operation: "basic.publish to '\(exchange)'")
        guard channelState.confirms else { return nil }
        connection.bumpPublishSequence(id)
        return channelState.nextPublishSequence
    }
}

extension AMQPChannel {
    /// Room kept in a header frame for everything but the headers table (frame and content header fields, and the
    /// other properties as short strings).
    static let propertiesAllowance = 8 * 1024
}

extension AMQPConnection {
    func bumpPublishSequence(_ id: UInt16) {
        openChannels[id]?.nextPublishSequence += 1
    }
}
