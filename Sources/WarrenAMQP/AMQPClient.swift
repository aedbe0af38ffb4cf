internal import CRabbitMQ
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A connection to RabbitMQ owned by a dedicated OS thread, usable from any task.
///
/// The thread is the only caller of rabbitmq-c for this connection, and it never runs job code: it reads frames,
/// keeps heartbeats flowing, and runs the commands other threads post to it (ack, nack, publish, declare) after a
/// wake-up through an eventfd. Work done elsewhere can therefore block for as long as it likes without costing the
/// connection its heartbeat. Consuming and publishing should use two clients: broker flow control blocks publishers,
/// and acks must not stall behind them.
///
/// Deliveries carry a ``DeliveryTag`` stamped with the channel's epoch. After a reconnect or a channel reopen, an
/// ``ack(_:multiple:)`` for an older delivery is dropped (the broker has requeued that message) and reported as
/// ``AMQPClientEvent/staleOutcomeDropped(_:)``.
///
/// ```swift
/// let client = AMQPClient(configuration: .init(connection: try .init(url: "amqp://127.0.0.1")))
/// try await client.connect()
/// try await client.withChannel { try $0.declareQueue("work") }
/// try await client.publish(OutgoingMessage(exchange: "", routingKey: "work", body: Array("hi".utf8)))
/// await client.close()
/// ```
///
/// - Important: Call ``close()`` when done; the thread runs until then.
public final class AMQPClient: Sendable {
    public let configuration: AMQPClientConfiguration
    /// Connection lifecycle events. Buffered (newest 10,000 kept), so nobody has to listen.
    public let events: AsyncStream<AMQPClientEvent>
    let mailbox: Mailbox

    public init(configuration: AMQPClientConfiguration) {
        self.configuration = configuration
        let (stream, sink) = AsyncStream.makeStream(of: AMQPClientEvent.self, bufferingPolicy: .bufferingNewest(10_000))
        self.events = stream
        self.mailbox = Mailbox(events: sink)
    }

    deinit {
        _ = mailbox.post(.close(nil))
    }

    /// Opens the first connection (trying each URI in order) and starts the owner thread. Throws the connection error
    /// when no broker accepts; it does not retry at start-up, so bad configuration fails fast.
    public func connect() async throws {
        precondition(mailbox.claimStart(), "AMQPClient.connect() called twice")
        let configuration = self.configuration
        let mailbox = self.mailbox
        try await withCheckedThrowingContinuation { (started: CheckedContinuation<Void, Error>) in
            let thread = Thread {
                ConnectionOwner(configuration: configuration, mailbox: mailbox).run(started: started)
            }
            thread.name = "warren-amqp-\(configuration.connection.connectionName ?? "client")"
            thread.start()
        }
    }

    /// Whether a connection is open right now.
    public var isConnected: Bool { mailbox.isConnected }

    /// Closes the connection and ends the owner thread. Pending publishes fail; unacknowledged deliveries return to
    /// their queues.
    public func close() async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            if !mailbox.post(.close(done)) { done.resume() }
        }
    }

    /// Runs `body` on the owner thread with the client's control channel (declarations, bindings, basic.get…).
    /// Keep it short: the connection reads nothing else while it runs.
    @discardableResult
    public func withChannel<T: Sendable>(_ body: @escaping @Sendable (AMQPChannel) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (result: CheckedContinuation<T, Error>) in
            submit(
                .perform(
                    Work(
                        run: { owner in
                            do {
                                let channel = try owner.channel(ConnectionOwner.controlChannel)
                                result.resume(returning: try body(channel))
                            } catch {
                                result.resume(throwing: error)
                            }
                        },
                        fail: { result.resume(throwing: $0) })))
        }
    }

    /// Publishes with a publisher confirm and returns once the broker has taken responsibility for the message.
    ///
    /// Throws ``AMQPError/Code/publishNacked`` on a nack, ``AMQPError/Code/unroutable`` when a `mandatory` message was
    /// returned, the broker's error when it closed the channel (e.g. 404 for a missing exchange), or the connection
    /// error when the connection was lost before the confirm arrived. A message that returned without error is safe.
    public func publish(_ message: OutgoingMessage) async throws {
        try await withCheckedThrowingContinuation { (confirmed: CheckedContinuation<Void, Error>) in
            submit(.publish(message, confirmed))
        }
    }

    /// Publishes with a confirm only if the client is still on connection `generation` (from
    /// ``withChannel(generation:_:)``); otherwise throws ``AMQPError/Code/connectionLost`` without publishing.
    ///
    /// A fencing token: whoever acquired something tied to a connection (an exclusive queue, say) publishes only
    /// while that same connection lives. The check runs on the owner thread together with the publish.
    public func publish(_ message: OutgoingMessage, onlyOnGeneration generation: UInt64) async throws {
        try await withCheckedThrowingContinuation { (confirmed: CheckedContinuation<Void, Error>) in
            submit(.publishFenced(message, generation, confirmed))
        }
    }

    /// Like ``withChannel(_:)``, also passing the connection generation (1 for the first connection, +1 per
    /// reconnect) on which `body` runs.
    @discardableResult
    public func withChannel<T: Sendable>(
        generation body: @escaping @Sendable (AMQPChannel, UInt64) throws -> T
    ) async throws -> T {
        try await withCheckedThrowingContinuation { (result: CheckedContinuation<T, Error>) in
            submit(
                .perform(
                    Work(
                        run: { owner in
                            do {
                                let channel = try owner.channel(ConnectionOwner.controlChannel)
                                result.resume(returning: try body(channel, owner.currentGeneration))
                            } catch {
                                result.resume(throwing: error)
                            }
                        },
                        fail: { result.resume(throwing: $0) })))
        }
    }

    /// Publishes many messages pipelined on one channel and waits for all their confirms. Element `i` of the result
    /// is nil when message `i` was confirmed, or its error.
    public func publish(_ messages: [OutgoingMessage]) async -> [AMQPError?] {
        guard !messages.isEmpty else { return [] }
        return await withCheckedContinuation { (done: CheckedContinuation<[AMQPError?], Never>) in
            submit(.publishBatch(messages, done))
        }
    }

    /// Starts a consumer with a per-consumer prefetch. `handler` runs on the owner thread for every delivery: it must
    /// return quickly (hand the delivery to other work). The consumer is restarted after a reconnect or a channel
    /// reopen, with the same tag.
    @discardableResult
    public func consume(
        queue: String, prefetch: UInt16, consumerTag: String = "", exclusive: Bool = false,
        arguments: FieldTable = [:], handler: @escaping @Sendable (Delivery) -> Void
    ) async throws -> String {
        let spec = ConsumerSpec(
            queue: queue, prefetch: prefetch, tag: consumerTag, exclusive: exclusive, arguments: arguments,
            handler: handler)
        return try await withCheckedThrowingContinuation { (started: CheckedContinuation<String, Error>) in
            submit(.consume(spec, started))
        }
    }

    /// Starts a consumer whose deliveries arrive on an `AsyncStream`.
    public func consume(
        queue: String, prefetch: UInt16, consumerTag: String = "", exclusive: Bool = false, arguments: FieldTable = [:]
    ) async throws -> (tag: String, deliveries: AsyncStream<Delivery>) {
        let (stream, sink) = AsyncStream.makeStream(of: Delivery.self)
        let tag = try await consume(
            queue: queue, prefetch: prefetch, consumerTag: consumerTag, exclusive: exclusive, arguments: arguments
        ) { sink.yield($0) }
        return (tag, stream)
    }

    /// Cancels a consumer. Its channel stays open so deliveries already received can still be acknowledged.
    public func cancel(consumerTag: String) async throws {
        try await withCheckedThrowingContinuation { (done: CheckedContinuation<Void, Error>) in
            submit(.cancel(consumerTag, done))
        }
    }

    /// Acknowledges a delivery (with `multiple`, every earlier one on its channel too). Never blocks; a stale tag is
    /// dropped.
    public func ack(_ tag: DeliveryTag, multiple: Bool = false) {
        submit(.ack(tag, multiple: multiple))
    }

    public func nack(_ tag: DeliveryTag, multiple: Bool = false, requeue: Bool) {
        submit(.nack(tag, multiple: multiple, requeue: requeue))
    }

    public func reject(_ tag: DeliveryTag, requeue: Bool) {
        submit(.reject(tag, requeue: requeue))
    }

    private func submit(_ command: Command) {
        if !mailbox.post(command) { command.fail(mailbox.stopError) }
    }
}

// MARK: - Commands and the mailbox

struct ConsumerSpec: Sendable {
    var queue: String
    var prefetch: UInt16
    var tag: String
    var exclusive: Bool
    var arguments: FieldTable
    var handler: @Sendable (Delivery) -> Void
}

struct Work: Sendable {
    var run: @Sendable (ConnectionOwner) -> Void
    var fail: @Sendable (AMQPError) -> Void
}

enum Command: Sendable {
    case ack(DeliveryTag, multiple: Bool)
    case nack(DeliveryTag, multiple: Bool, requeue: Bool)
    case reject(DeliveryTag, requeue: Bool)
    case publish(OutgoingMessage, CheckedContinuation<Void, Error>)
    case publishFenced(OutgoingMessage, UInt64, CheckedContinuation<Void, Error>)
    case publishBatch([OutgoingMessage], CheckedContinuation<[AMQPError?], Never>)
    case consume(ConsumerSpec, CheckedContinuation<String, Error>)
    case cancel(String, CheckedContinuation<Void, Error>)
    case perform(Work)
    case close(CheckedContinuation<Void, Never>?)

    /// Completes the command's caller with `error` when the command cannot run.
    func fail(_ error: AMQPError) {
        switch self {
        case .ack, .nack, .reject: break
        case .publish(_, let c), .publishFenced(_, _, let c): c.resume(throwing: error)
        case .publishBatch(let messages, let c): c.resume(returning: Array(repeating: error, count: messages.count))
        case .consume(_, let c): c.resume(throwing: error)
        case .cancel(_, let c): c.resume(throwing: error)
        case .perform(let work): work.fail(error)
        case .close(let c): c?.resume()
        }
    }
}

/// The queue through which any thread reaches the owner thread, and the eventfd that wakes it.
final class Mailbox: Sendable {
    private struct State {
        var commands: [Command] = []
        var started = false
        var stopped = false
        var connected = false
        var stopError = AMQPError(.closed, "the AMQP client is not running")
    }
    private let state = Mutex(State())
    let wakeDescriptor: Int32
    let events: AsyncStream<AMQPClientEvent>.Continuation

    init(events: AsyncStream<AMQPClientEvent>.Continuation) {
        self.events = events
        wakeDescriptor = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        precondition(wakeDescriptor >= 0, "eventfd failed: errno \(errno)")
    }

    deinit { Glibc.close(wakeDescriptor) }

    func claimStart() -> Bool {
        state.withLock { s in
            defer { s.started = true }
            return !s.started
        }
    }

    /// Queues a command and wakes the owner. False when the client has stopped (the caller must fail the command).
    func post(_ command: Command) -> Bool {
        let wake: Bool? = state.withLock { s in
            guard !s.stopped, s.started else { return nil }
            s.commands.append(command)
            return s.commands.count == 1
        }
        guard let wake else { return false }
        if wake {
            var one: UInt64 = 1
            _ = write(wakeDescriptor, &one, 8)
        }
        return true
    }

    func take() -> [Command] {
        state.withLock { s in
            let commands = s.commands
            s.commands.removeAll(keepingCapacity: true)
            return commands
        }
    }

    var hasCommands: Bool { state.withLock { !$0.commands.isEmpty } }

    func clearWake() {
        var value: UInt64 = 0
        _ = read(wakeDescriptor, &value, 8)
    }

    var isConnected: Bool { state.withLock { $0.connected } }
    func setConnected(_ connected: Bool) { state.withLock { $0.connected = connected } }
    var stopError: AMQPError { state.withLock { $0.stopError } }

    /// Marks the client stopped and returns the commands that will never run.
    func stop(_ error: AMQPError) -> [Command] {
        state.withLock { s in
            s.stopped = true
            s.connected = false
            s.stopError = error
            let left = s.commands
            s.commands = []
            return left
        }
    }
}
