import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The state and loop of an ``AMQPClient``'s owner thread. Created on that thread and never leaves it.
final class ConnectionOwner {
    static let controlChannel: UInt16 = 1
    static let publishChannel: UInt16 = 2

    let configuration: AMQPClientConfiguration
    let mailbox: Mailbox
    private var connection: AMQPConnection?
    private var generation: UInt64 = 0
    private var running = true
    private var lastError = AMQPError(.connectionLost, "not connected")
    private var closeWaiters: [CheckedContinuation<Void, Never>] = []
    private var closedByCaller = false

    private struct Consumer {
        var spec: ConsumerSpec
        var channel: UInt16
    }
    /// Active consumers by tag.
    private var consumers: [String: Consumer] = [:]
    /// Channels whose consumer was cancelled; kept open so acks of their deliveries still work, reused later.
    private var idleConsumerChannels: [UInt16] = []
    private var nextConsumerChannel: UInt16 = 3
    private let confirms = ConfirmTracker()
    /// Ack coalescing per consumer channel (see ``AckWindow``).
    private var ackWindows: [UInt16: AckWindow] = [:]

    init(configuration: AMQPClientConfiguration, mailbox: Mailbox) {
        self.configuration = configuration
        self.mailbox = mailbox
    }

    private func emit(_ event: AMQPClientEvent) { mailbox.events.yield(event) }

    /// The generation of the open connection (0 before the first).
    var currentGeneration: UInt64 { generation }

    func channel(_ id: UInt16) throws -> AMQPChannel {
        guard let connection, connection.isOpen else { throw lastError }
        return try connection.channel(id)
    }

    // MARK: Loop

    func run(started: CheckedContinuation<Void, Error>) {
        do {
            try open()
        } catch {
            started.resume(throwing: error)
            finish(error as? AMQPError ?? AMQPError(.closed, "the first connection failed: \(error)"))
            return
        }
        started.resume()
        while running {
            for command in mailbox.take() {
                execute(command)
            }
            flushAcks()
            guard running else { break }
            guard let connection, connection.isOpen else {
                if let error = connection?.closeError { lost(error) }
                if running { reconnect() }
                continue
            }
            var handled = 0
            do {
                while handled < 256, let event = try connection.nextEvent() {
                    handle(event)
                    handled += 1
                }
            } catch {
                lost(error as? AMQPError ?? AMQPError(.connectionLost, "\(error)"))
                continue
            }
            if !connection.isOpen {
                lost(connection.closeError ?? lastError)
                continue
            }
            if handled == 256 || connection.hasBufferedInput || mailbox.hasCommands { continue }
            wait(socket: connection.socketDescriptor, timeout: pollInterval(connection))
        }
        finish(closedByCaller ? AMQPError(.closed, "the AMQP client was closed") : lastError)
    }

    private func pollInterval(_ connection: AMQPConnection) -> Int32 {
        // A quarter of the heartbeat keeps heartbeats on time; never longer than a second.
        connection.heartbeat > 0 ? Int32(min(connection.heartbeat * 250, 1000)) : 1000
    }

    /// Sleeps until the socket is readable, a command is posted, or `timeout` milliseconds pass.
    private func wait(socket: Int32, timeout: Int32) {
        var fds = [
            pollfd(fd: mailbox.wakeDescriptor, events: Int16(POLLIN), revents: 0),
            pollfd(fd: socket, events: Int16(POLLIN), revents: 0),
        ]
        _ = poll(&fds, socket >= 0 ? 2 : 1, timeout)
        if fds[0].revents != 0 { mailbox.clearWake() }
    }

    private func open() throws {
        let connection = try AMQPConnection.connect(configuration.connection)
        if let onConnect = configuration.onConnect {
            do {
                try onConnect(try connection.channel(Self.controlChannel))
            } catch {
                connection.close()
                throw error
            }
        }
        self.connection = connection
        generation += 1
        mailbox.setConnected(true)
        emit(.connected(generation: generation, endpoint: connection.uri.endpoint))
    }

    private func lost(_ error: AMQPError) {
        connection?.close()
        connection = nil
        lastError = error
        mailbox.setConnected(false)
        confirms.failAll(error)
        emit(.disconnected(error))
        if configuration.reconnect == nil { running = false }
    }

    private func reconnect() {
        guard let policy = configuration.reconnect else {
            running = false
            return
        }
        var delay = policy.initialDelay
        while running {
            // Sleep the whole backoff: a wake-up (a command posted meanwhile, failed at once while disconnected)
            // must not cut it short, or a busy client would reconnect without any delay.
            let deadline = ContinuousClock.now + delay
            while running, ContinuousClock.now < deadline {
                let remaining = (deadline - ContinuousClock.now).components
                let milliseconds = remaining.seconds * 1000 + remaining.attoseconds / 1_000_000_000_000_000
                wait(socket: -1, timeout: Int32(max(1, milliseconds)))
                for command in mailbox.take() { execute(command) }
            }
            guard running else { return }
            do {
                try open()
                restoreConsumers()
                return
            } catch {
                let error = error as? AMQPError ?? AMQPError(.connectionLost, "\(error)")
                lastError = error
                emit(.reconnectFailed(error))
                delay = min(delay * 2, policy.maximumDelay)
            }
        }
    }

    private func restoreConsumers() {
        for (tag, consumer) in consumers.sorted(by: { $0.value.channel < $1.value.channel }) {
            restart(tag: tag, consumer)
        }
    }

    /// Starts `consumer` again on its channel (reopened with a new epoch). A consumer that cannot be restarted, for
    /// example because its queue is gone, is dropped and reported as cancelled.
    private func restart(tag: String, _ consumer: Consumer) {
        do {
            let channel = try self.channel(consumer.channel)
            try channel.qos(prefetchCount: consumer.spec.prefetch)
            try channel.consume(
                queue: consumer.spec.queue, consumerTag: tag, exclusive: consumer.spec.exclusive,
                arguments: consumer.spec.arguments)
        } catch {
            consumers[tag] = nil
            emit(.consumerCancelled(consumerTag: tag, queue: consumer.spec.queue))
        }
    }

    private func finish(_ error: AMQPError) {
        connection?.close()
        connection = nil
        confirms.failAll(error)
        for command in mailbox.stop(error) { command.fail(error) }
        emit(.closed)
        mailbox.events.finish()
        for waiter in closeWaiters { waiter.resume() }
        closeWaiters = []
    }

    // MARK: Commands

    private func execute(_ command: Command) {
        if case .close(let waiter) = command {
            if let waiter { closeWaiters.append(waiter) }
            closedByCaller = true
            running = false
            return
        }
        guard let connection, connection.isOpen else {
            switch command {
            case .ack(let tag, _), .nack(let tag, _, _), .reject(let tag, _): emit(.staleOutcomeDropped(tag))
            default: command.fail(lastError)
            }
            return
        }
        switch command {
        case .ack(let tag, let multiple):
            if !multiple, var window = ackWindows[tag.channel], window.epoch == tag.epoch {
                // Sent in flushAcks(), coalesced with the acks of the jobs completed before it.
                window.settle(tag.value, needsAck: true)
                ackWindows[tag.channel] = window
            } else {
                if multiple { ackWindows[tag.channel]?.settleThrough(tag.value, epoch: tag.epoch) }
                settle(tag) { try $0.ack(tag, multiple: multiple) }
            }
        case .nack(let tag, let multiple, let requeue):
            settled(tag, multiple: multiple)
            settle(tag) { try $0.nack(tag, multiple: multiple, requeue: requeue) }
        case .reject(let tag, let requeue):
            settled(tag, multiple: false)
            settle(tag) { try $0.reject(tag, requeue: requeue) }
        case .publish(let message, let confirmed):
            do {
                let sequence = try publish(message, on: connection)
                confirms.add(sequence, message, .single(confirmed))
            } catch {
                confirmed.resume(throwing: error)
            }
        case .publishFenced(let message, let required, let confirmed):
            guard required == generation else {
                confirmed.resume(
                    throwing: AMQPError(
                        .connectionLost,
                        "not published: the connection of generation \(required) was replaced by \(generation)"))
                return
            }
            do {
                let sequence = try publish(message, on: connection)
                confirms.add(sequence, message, .single(confirmed))
            } catch {
                confirmed.resume(throwing: error)
            }
        case .publishBatch(let messages, let done):
            let batch = BatchConfirmation(count: messages.count, done: done)
            for (index, message) in messages.enumerated() {
                do {
                    let sequence = try publish(message, on: connection)
                    confirms.add(sequence, message, .batch(batch, index))
                } catch {
                    batch.complete(index, error as? AMQPError)
                }
            }
        case .consume(let spec, let started):
            let id = idleConsumerChannels.popLast() ?? allocateConsumerChannel()
            do {
                let channel = try connection.channel(id)
                try channel.qos(prefetchCount: spec.prefetch)
                let tag = try channel.consume(
                    queue: spec.queue, consumerTag: spec.tag, exclusive: spec.exclusive, arguments: spec.arguments)
                consumers[tag] = Consumer(spec: spec, channel: id)
                started.resume(returning: tag)
            } catch {
                if connection.isOpen { idleConsumerChannels.append(id) }
                started.resume(throwing: error)
            }
        case .cancel(let tag, let done):
            guard let consumer = consumers.removeValue(forKey: tag) else {
                done.resume(throwing: AMQPError(.notFound, "no consumer with tag '\(tag)'"))
                return
            }
            do {
                try connection.channel(consumer.channel).cancel(consumerTag: tag)
                idleConsumerChannels.append(consumer.channel)
                done.resume()
            } catch {
                done.resume(throwing: error)
            }
        case .perform(let work):
            work.run(self)
        case .close:
            break
        }
    }

    private func allocateConsumerChannel() -> UInt16 {
        defer { nextConsumerChannel += 1 }
        return nextConsumerChannel
    }

    private func settle(_ tag: DeliveryTag, _ outcome: (AMQPChannel) throws -> Bool) {
        guard let connection else { return }
        let channel = AMQPChannel(connection: connection, id: tag.channel)
        do {
            if try !outcome(channel) { emit(.staleOutcomeDropped(tag)) }
        } catch {
            // A socket failure: the loop sees the dead connection and reconnects; the broker requeues the message.
            emit(.staleOutcomeDropped(tag))
        }
    }

    /// Records a nack or reject (sent at once) in the ack window, so later coalesced acks can pass it.
    private func settled(_ tag: DeliveryTag, multiple: Bool) {
        guard var window = ackWindows[tag.channel], window.epoch == tag.epoch else { return }
        if multiple {
            window.settleThrough(tag.value, epoch: tag.epoch)
        } else {
            window.settle(tag.value, needsAck: false)
        }
        ackWindows[tag.channel] = window
    }

    /// Sends the acks collected in this command batch: one `multiple` ack for the settled prefix of each consumer
    /// channel, single acks for completed jobs above a gap (a job still running). Never holds an ack back, so a
    /// long job cannot make its neighbours' acks wait and exhaust the prefetch window.
    private func flushAcks() {
        guard let connection, connection.isOpen else { return }
        for (id, var window) in ackWindows where window.hasWork {
            let (through, singles) = window.drain()
            ackWindows[id] = window
            if let through {
                let tag = DeliveryTag(value: through, channel: id, epoch: window.epoch)
                settle(tag) { try $0.ack(tag, multiple: true) }
            }
            for value in singles {
                let tag = DeliveryTag(value: value, channel: id, epoch: window.epoch)
                settle(tag) { try $0.ack(tag, multiple: false) }
            }
        }
    }

    private func publish(_ message: OutgoingMessage, on connection: AMQPConnection) throws -> UInt64 {
        let channel = try connection.channel(Self.publishChannel)
        if !channel.isConfirming {
            try channel.confirmSelect()
            confirms.reset()
        }
        guard
            let sequence = try channel.publish(
                exchange: message.exchange, routingKey: message.routingKey, body: message.body,
                properties: message.properties, mandatory: message.mandatory)
        else { throw AMQPError(.protocolError, "publish channel is not in confirm mode") }
        return sequence
    }

    // MARK: Events

    private func handle(_ event: AMQPEvent) {
        switch event {
        case .delivery(let delivery):
            let tag = delivery.tag
            if ackWindows[tag.channel]?.epoch == tag.epoch {
                ackWindows[tag.channel]?.delivered(tag.value)
            } else {
                ackWindows[tag.channel] = AckWindow(epoch: tag.epoch, first: tag.value)
            }
            if let consumer = consumers[delivery.consumerTag] {
                consumer.spec.handler(delivery)
            } else if let connection {
                settled(tag, multiple: false)
                // Its consumer was cancelled after the broker sent it: give it back.
                _ = try? AMQPChannel(connection: connection, id: delivery.tag.channel).reject(
                    delivery.tag, requeue: true)
            }
        case .ack(let channel, let tag, let multiple):
            if channel == Self.publishChannel { confirms.resolve(tag, multiple: multiple, error: nil) }
        case .nack(let channel, let tag, let multiple):
            if channel == Self.publishChannel {
                confirms.resolve(
                    tag, multiple: multiple, error: AMQPError(.publishNacked, "the broker nacked the message"))
            }
        case .returned(let channel, let message):
            if channel == Self.publishChannel { confirms.returned(message) }
        case .consumerCancelled(let channel, let tag):
            if let consumer = consumers.removeValue(forKey: tag) {
                idleConsumerChannels.append(channel)
                emit(.consumerCancelled(consumerTag: tag, queue: consumer.spec.queue))
            }
        case .channelClosed(let channel, let error):
            emit(.channelClosed(channel: channel, error))
            if channel == Self.publishChannel {
                confirms.failAll(error)
            } else if let (tag, consumer) = consumers.first(where: { $0.value.channel == channel }) {
                restart(tag: tag, consumer)
            }
        case .connectionClosed(let error):
            lost(error)
        case .blocked(let reason):
            emit(.blocked(reason: reason))
        case .unblocked:
            emit(.unblocked)
        }
    }
}

// MARK: - Publisher confirms

/// Completes a batch publish once every message in it is confirmed or failed. Used on the owner thread only.
final class BatchConfirmation {
    private var results: [AMQPError?]
    private var remaining: Int
    private let done: CheckedContinuation<[AMQPError?], Never>

    init(count: Int, done: CheckedContinuation<[AMQPError?], Never>) {
        results = Array(repeating: nil, count: count)
        remaining = count
        self.done = done
    }

    func complete(_ index: Int, _ error: AMQPError?) {
        results[index] = error
        remaining -= 1
        if remaining == 0 { done.resume(returning: results) }
    }
}

/// Publishes awaiting a confirm, in publish-sequence order.
///
/// A basic.return arrives before the ack of the same message; it is matched to the oldest unconfirmed mandatory
/// publish with the same exchange and routing key, which is that message unless bindings changed between two such
/// publishes in flight.
final class ConfirmTracker {
    enum Completion {
        case single(CheckedContinuation<Void, Error>)
        case batch(BatchConfirmation, Int)
    }
    private struct Pending {
        var completion: Completion
        var mandatory: Bool
        var exchange: String
        var routingKey: String
        var returned: ReturnedMessage?
    }
    /// `pending[head]` is publish sequence `base`.
    private var pending: [Pending?] = []
    private var head = 0
    private var base: UInt64 = 1

    func reset() {
        precondition(head == pending.count, "confirm tracker reset with publishes in flight")
        pending.removeAll(keepingCapacity: true)
        head = 0
        base = 1
    }

    func add(_ sequence: UInt64, _ message: OutgoingMessage, _ completion: Completion) {
        assert(sequence == base + UInt64(pending.count - head), "publish sequence out of step")
        pending.append(
            Pending(
                completion: completion, mandatory: message.mandatory,
                exchange: message.mandatory ? message.exchange : "",
                routingKey: message.mandatory ? message.routingKey : "", returned: nil))
    }

    func resolve(_ tag: UInt64, multiple: Bool, error: AMQPError?) {
        if multiple {
            while head < pending.count, base <= tag {
                if let p = pending[head] { complete(p, error) }
                pending[head] = nil
                head += 1
                base += 1
            }
        } else if tag >= base {
            let index = head + Int(tag - base)
            if index < pending.count, let p = pending[index] {
                complete(p, error)
                pending[index] = nil
            }
            while head < pending.count, pending[head] == nil {
                head += 1
                base += 1
            }
        }
        if head == pending.count {
            pending.removeAll(keepingCapacity: true)
            head = 0
        } else if head > 4096 {
            pending.removeFirst(head)
            head = 0
        }
    }

    func returned(_ message: ReturnedMessage) {
        for index in head..<pending.count {
            guard let p = pending[index], p.mandatory, p.returned == nil, p.exchange == message.exchange,
                p.routingKey == message.routingKey
            else { continue }
            pending[index]?.returned = message
            return
        }
    }

    func failAll(_ error: AMQPError) {
        let failing = pending[head...].compactMap { $0 }
        pending.removeAll(keepingCapacity: true)
        head = 0
        base = 1
        for p in failing { complete(p, error) }
    }

    private func complete(_ p: Pending, _ error: AMQPError?) {
        var error = error
        if error == nil, let returned = p.returned {
            error = AMQPError(
                .unroutable,
                "\(returned.replyCode) \(returned.replyText): no queue is bound to exchange '\(returned.exchange)' "
                    + "for routing key '\(returned.routingKey)'")
        }
        switch p.completion {
        case .single(let continuation):
            if let error { continuation.resume(throwing: error) } else { continuation.resume() }
        case .batch(let batch, let index):
            batch.complete(index, error)
        }
    }
}

/// The deliveries of one consumer channel incarnation, for coalescing acks of completed jobs with `multiple`.
///
/// Delivery tags on a channel are dense and increasing. `lowestUnsettled` is the oldest delivery whose outcome is
/// not known yet: every delivery below it is settled, so one `ack(lowestUnsettled - 1, multiple: true)` acks every
/// job completed below it and nothing else (nacked or rejected ones are no longer outstanding at the broker).
struct AckWindow {
    let epoch: UInt64
    private(set) var lowestUnsettled: UInt64
    private var highestDelivered: UInt64
    /// Everything at or below this is acked on the wire.
    private var ackedThrough: UInt64
    /// Settled deliveries above `lowestUnsettled`.
    private var settledAbove: Set<UInt64> = []
    /// Settled by an ack that has not been sent yet.
    private var unsentAcks: Set<UInt64> = []

    init(epoch: UInt64, first: UInt64) {
        self.epoch = epoch
        lowestUnsettled = first
        highestDelivered = first
        ackedThrough = first - 1
    }

    var hasWork: Bool { !unsentAcks.isEmpty }

    mutating func delivered(_ tag: UInt64) { highestDelivered = max(highestDelivered, tag) }

    mutating func settle(_ tag: UInt64, needsAck: Bool) {
        guard tag >= lowestUnsettled else { return }
        if needsAck { unsentAcks.insert(tag) }
        if tag == lowestUnsettled {
            lowestUnsettled += 1
            while settledAbove.remove(lowestUnsettled) != nil { lowestUnsettled += 1 }
        } else {
            settledAbove.insert(tag)
        }
    }

    /// A `multiple` outcome sent by the caller: everything through `tag` is settled.
    mutating func settleThrough(_ tag: UInt64, epoch: UInt64) {
        guard epoch == self.epoch, tag >= lowestUnsettled else { return }
        lowestUnsettled = tag + 1
        while settledAbove.remove(lowestUnsettled) != nil { lowestUnsettled += 1 }
        settledAbove = settledAbove.filter { $0 > tag }
        unsentAcks = unsentAcks.filter { $0 > tag }
        ackedThrough = max(ackedThrough, tag)
    }

    /// What to send now: one `multiple` ack for the settled prefix, and single acks for completed jobs above it.
    ///
    /// The `multiple` ack names the highest *unsent* ack in the prefix, never a tag already acked or nacked:
    /// RabbitMQ answers a `multiple` ack whose own tag is not outstanding with 406 "unknown delivery tag" and closes
    /// the channel (requeueing everything unacked). Every outstanding delivery at or below that tag is a completed
    /// job whose ack is unsent, because everything in the prefix is settled and nacks and single acks were sent.
    mutating func drain() -> (multipleThrough: UInt64?, singles: [UInt64]) {
        let prefixEnd = lowestUnsettled - 1
        let through = unsentAcks.filter { $0 <= prefixEnd }.max()
        ackedThrough = max(ackedThrough, prefixEnd)
        let singles = unsentAcks.filter { $0 > prefixEnd }.sorted()
        unsentAcks = []
        return (through, singles)
    }
}
