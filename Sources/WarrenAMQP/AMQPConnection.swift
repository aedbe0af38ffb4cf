internal import CRabbitMQ
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// AMQP method numbers (class << 16 | method). rabbitmq-c defines them as casting macros, which Swift does not import.
enum AMQPMethod {
    static let connectionClose: UInt32 = 0x000A_0032
    static let connectionCloseOK: UInt32 = 0x000A_0033
    static let connectionBlocked: UInt32 = 0x000A_003C
    static let connectionUnblocked: UInt32 = 0x000A_003D
    static let channelFlow: UInt32 = 0x0014_0014
    static let channelFlowOK: UInt32 = 0x0014_0015
    static let channelClose: UInt32 = 0x0014_0028
    static let channelCloseOK: UInt32 = 0x0014_0029
    static let basicCancel: UInt32 = 0x003C_001E
    static let basicCancelOK: UInt32 = 0x003C_001F
    static let basicReturn: UInt32 = 0x003C_0032
    static let basicDeliver: UInt32 = 0x003C_003C
    static let basicGetEmpty: UInt32 = 0x003C_0048
    static let basicAck: UInt32 = 0x003C_0050
    static let basicNack: UInt32 = 0x003C_0078
}

/// One AMQP connection: a socket, its rabbitmq-c state, and the channels opened on it.
///
/// - Important: Not thread-safe, and deliberately not `Sendable`. Exactly one thread owns a connection and makes every
///   call on it; heartbeats are sent and checked only while that thread is inside a call (``nextEvent()`` or any
///   operation). ``AMQPClient`` provides such a thread. Call ``close()`` when done.
public final class AMQPConnection {
    private var state: amqp_connection_state_t?
    public let uri: AMQPURI
    /// The heartbeat interval in seconds the broker and client agreed on; 0 when disabled.
    public private(set) var heartbeat: Int = 0
    /// Why the connection became unusable, once it has.
    public private(set) var closeError: AMQPError?

    let arena = CallArena()
    struct ChannelState {
        var epoch: UInt64
        var confirms = false
        var nextPublishSequence: UInt64 = 1
    }
    /// Channels open on the wire. A channel the broker closed is absent here and reopened on its next use.
    var openChannels: [UInt16: ChannelState] = [:]
    private var allocatedChannels: Set<UInt16> = []

    /// The Warren version advertised in client properties.
    public static let clientVersion = "0.1.0"

    /// Connects to the first URI in `configuration` that accepts, in order.
    ///
    /// Each failure is distinct: ``AMQPError/Code/connectionRefused``, ``AMQPError/Code/hostNotFound``,
    /// ``AMQPError/Code/timeout``, ``AMQPError/Code/tls``, ``AMQPError/Code/authenticationFailed``,
    /// ``AMQPError/Code/vhostNotAllowed``. When several URIs all fail, the error has the last one's code and a message
    /// listing every endpoint's failure.
    public static func connect(_ configuration: AMQPConnectionConfiguration) throws -> AMQPConnection {
        var failures: [AMQPError] = []
        for uri in configuration.uris {
            do {
                return try AMQPConnection(
                    uri: uri, connectionName: configuration.connectionName, rpcTimeout: configuration.rpcTimeout)
            } catch let error as AMQPError {
                failures.append(error)
            }
        }
        if failures.count == 1 { throw failures[0] }
        var error = failures[failures.count - 1]
        error.message =
            "no broker accepted the connection: " + failures.map { $0.description }.joined(separator: "; ")
        error.operation = nil
        throw error
    }

    public init(uri: AMQPURI, connectionName: String? = nil, rpcTimeout: Duration = .seconds(30)) throws {
        self.uri = uri
        guard let state = amqp_new_connection() else {
            throw AMQPError(.protocolError, "rabbitmq-c could not allocate a connection")
        }
        self.state = state
        do {
            try open(state, connectionName: connectionName, rpcTimeout: rpcTimeout)
        } catch {
            amqp_destroy_connection(state)
            self.state = nil
            throw error
        }
    }

    private func open(_ state: amqp_connection_state_t, connectionName: String?, rpcTimeout: Duration) throws {
        let endpoint = "connect \(uri.endpoint)"
        let socket: OpaquePointer?
        if uri.isTLS {
            socket = amqp_ssl_socket_new(state)
            guard let socket else { throw AMQPError(.tls, "could not create a TLS socket", operation: endpoint) }
            if let ca = uri.tls.caCertificateFile {
                guard amqp_ssl_socket_set_cacert(socket, ca) == AMQP_STATUS_OK.rawValue else {
                    throw AMQPError(.tls, "could not load CA certificate file \(ca)", operation: endpoint)
                }
            }
            if let cert = uri.tls.certificateFile, let key = uri.tls.keyFile {
                guard amqp_ssl_socket_set_key(socket, cert, key) == AMQP_STATUS_OK.rawValue else {
                    throw AMQPError(
                        .tls, "could not load client certificate \(cert) and key \(key)", operation: endpoint)
                }
            }
            amqp_ssl_socket_set_verify_peer(socket, uri.tls.verifyPeer ? 1 : 0)
            amqp_ssl_socket_set_verify_hostname(socket, uri.tls.verifyHostname ? 1 : 0)
        } else {
            socket = amqp_tcp_socket_new(state)
            guard socket != nil else {
                throw AMQPError(.protocolError, "could not create a socket", operation: endpoint)
            }
        }
        var connectTimeout = timeval(milliseconds: uri.connectionTimeout)
        let status = amqp_socket_open_noblock(socket, uri.host, Int32(uri.port), &connectTimeout)
        if status == AMQP_STATUS_SOCKET_ERROR.rawValue {
            // rabbitmq-c closes the socket before returning, so errno no longer tells refused from unreachable.
            throw AMQPError(
                .connectionRefused, "nothing accepted a TCP connection (is the broker running and listening there?)",
                operation: endpoint)
        }
        if status != AMQP_STATUS_OK.rawValue {
            throw Self.error(status: status, operation: endpoint)
        }
        amqp_set_handshake_timeout(state, &connectTimeout)
        var rpc = timeval(milliseconds: Int(rpcTimeout.components.seconds * 1000))
        amqp_set_rpc_timeout(state, &rpc)

        var properties: FieldTable = [
            "product": "Warren",
            "version": .string(Self.clientVersion),
            "platform": "Swift",
            "capabilities": .table([
                "consumer_cancel_notify": true,
                "connection.blocked": true,
                "publisher_confirms": true,
                "basic.nack": true,
                "authentication_failure_close": true,
                "exchange_exchange_bindings": true,
                "per_consumer_qos": true,
            ]),
        ]
        if let connectionName { properties["connection_name"] = .string(connectionName) }
        let reply = arena.scoped { arena in
            var table = arena.table(properties)
            return warren_amqp_login_plain(
                state, uri.vhost, Int32(uri.channelMax), Int32(uri.frameMax), Int32(uri.heartbeat), &table, uri.user,
                uri.password)
        }
        do {
            try check(reply, operation: "login to \(uri.endpoint) vhost '\(uri.vhost)'", channel: 0)
        } catch var error as AMQPError {
            // Give login failures their own codes: a caller must tell a bad password from a missing vhost.
            if error.replyCode == 530 || (error.replyCode == 403 && error.message.contains("vhost")) {
                error.code = .vhostNotAllowed
            } else if error.replyCode == 403 {
                error.code = .authenticationFailed
            } else if error.code == .connectionLost {
                error.message += " (the broker closed the socket during the handshake: wrong port, or not AMQP?)"
            }
            throw error
        }
        heartbeat = Int(amqp_get_heartbeat(state))
    }

    deinit {
        if let state { amqp_destroy_connection(state) }
    }

    /// Closes the connection politely when it is still usable, then frees everything. Idempotent.
    public func close() {
        guard let state else { return }
        if closeError == nil {
            _ = amqp_connection_close(state, Int32(AMQP_REPLY_SUCCESS))
            closeError = AMQPError(.closed, "connection closed by the client")
        }
        amqp_destroy_connection(state)
        self.state = nil
        openChannels.removeAll()
    }

    /// Whether the connection can still be used.
    public var isOpen: Bool { state != nil && closeError == nil }

    /// The socket's file descriptor, to `poll()` for readability; -1 when closed.
    public var socketDescriptor: Int32 {
        guard let state else { return -1 }
        return amqp_get_sockfd(state)
    }

    /// Whether rabbitmq-c holds received bytes or frames that ``nextEvent()`` will return without reading the socket.
    var hasBufferedInput: Bool {
        guard let state else { return false }
        return amqp_frames_enqueued(state) != 0 || amqp_data_in_buffer(state) != 0
    }

    // MARK: - Channels

    /// Allocates a channel number and opens it on the wire.
    public func openChannel() throws -> AMQPChannel {
        var id: UInt16 = 1
        while allocatedChannels.contains(id) { id += 1 }
        try openChannel(id)
        return AMQPChannel(connection: self, id: id)
    }

    /// Opens channel `id` (or returns it when already open); used by owners that manage channel numbers themselves.
    public func channel(_ id: UInt16) throws -> AMQPChannel {
        try openChannel(id)
        return AMQPChannel(connection: self, id: id)
    }

    @discardableResult
    func openChannel(_ id: UInt16) throws -> ChannelState {
        let state = try usableState()
        if let channel = openChannels[id] { return channel }
        allocatedChannels.insert(id)
        _ = amqp_channel_open(state, id)
        try check(amqp_get_rpc_reply(state), operation: "channel.open", channel: id)
        let channel = ChannelState(epoch: DeliveryTag.nextEpoch())
        openChannels[id] = channel
        return channel
    }

    func closeChannel(_ id: UInt16) throws {
        allocatedChannels.remove(id)
        guard openChannels[id] != nil, let state = try? usableState() else { return }
        openChannels[id] = nil
        try check(amqp_channel_close(state, id, Int32(AMQP_REPLY_SUCCESS)), operation: "channel.close", channel: id)
    }

    func setConfirmMode(_ id: UInt16) throws {
        let state = try usableState()
        if openChannels[id]?.confirms == true { return }
        _ = amqp_confirm_select(state, id)
        try check(amqp_get_rpc_reply(state), operation: "confirm.select", channel: id)
        openChannels[id]?.confirms = true
        openChannels[id]?.nextPublishSequence = 1
    }

    /// The current epoch of an open channel, or nil when it is closed.
    public func epoch(ofChannel id: UInt16) -> UInt64? { openChannels[id]?.epoch }

    // MARK: - Calling the library

    func usableState() throws -> amqp_connection_state_t {
        if let closeError { throw closeError }
        guard let state else { throw AMQPError(.closed, "connection is closed") }
        return state
    }

    /// Runs `body` with the C state and the call arena, then turns the call's RPC reply into a thrown error.
    func rpc<T>(
        _ operation: String, channel: UInt16, _ body: (amqp_connection_state_t, CallArena) -> T
    ) throws -> T {
        let state = try usableState()
        try openChannel(channel)
        let result = arena.scoped { body(state, $0) }
        try check(amqp_get_rpc_reply(state), operation: operation, channel: channel)
        return result
    }

    /// Turns a negative status of an `int`-returning call into a thrown error; a socket failure kills the connection.
    func checkStatus(_ status: Int32, operation: String) throws {
        guard status < 0 else { return }
        let error = Self.error(status: status, operation: operation)
        markDead(error)
        throw error
    }

    func check(_ reply: amqp_rpc_reply_t, operation: String, channel: UInt16) throws {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            let error = Self.error(status: reply.library_error, operation: operation)
            markDead(error)
            throw error
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            guard let decoded = reply.reply.decoded else { break }
            switch reply.reply.id {
            case AMQPMethod.channelClose:
                let close = decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
                let error = brokerError(close.reply_code, close.reply_text, operation: operation, scope: .channel)
                channelClosedByBroker(channel)
                throw error
            case AMQPMethod.connectionClose:
                let close = decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
                let error = brokerError(close.reply_code, close.reply_text, operation: operation, scope: .connection)
                connectionClosedByBroker(error)
                throw error
            default:
                break
            }
        default:
            break
        }
        let error = AMQPError(.protocolError, "unexpected reply from the broker", operation: operation)
        markDead(error)
        throw error
    }

    private func brokerError(
        _ code: UInt16, _ text: amqp_bytes_t, operation: String?, scope: AMQPError.Scope
    ) -> AMQPError {
        AMQPError(
            AMQPError.Code(rawValue: Int(code)), String(amqp: text), replyCode: code, operation: operation, scope: scope
        )
    }

    /// Answers a broker's channel.close (rabbitmq-c does not) and forgets the channel so its next use reopens it.
    private func channelClosedByBroker(_ channel: UInt16) {
        openChannels[channel] = nil
        guard let state, closeError == nil else { return }
        var ok = amqp_channel_close_ok_t()
        let status = amqp_send_method(state, channel, AMQPMethod.channelCloseOK, &ok)
        if status < 0 { markDead(Self.error(status: status, operation: "channel.close-ok")) }
    }

    private func connectionClosedByBroker(_ error: AMQPError) {
        if let state, closeError == nil {
            var ok = amqp_connection_close_ok_t()
            _ = amqp_send_method(state, 0, AMQPMethod.connectionCloseOK, &ok)
        }
        markDead(error)
    }

    func markDead(_ error: AMQPError) {
        if closeError == nil { closeError = error }
        openChannels.removeAll()
    }

    static func error(status: Int32, operation: String) -> AMQPError {
        let text = String(cString: amqp_error_string2(status))
        let code: AMQPError.Code
        switch status {
        case AMQP_STATUS_HOSTNAME_RESOLUTION_FAILED.rawValue: code = .hostNotFound
        case AMQP_STATUS_SOCKET_ERROR.rawValue: code = .connectionLost
        case AMQP_STATUS_TIMEOUT.rawValue: code = .timeout
        case AMQP_STATUS_HEARTBEAT_TIMEOUT.rawValue: code = .heartbeatTimeout
        case AMQP_STATUS_CONNECTION_CLOSED.rawValue, AMQP_STATUS_SOCKET_CLOSED.rawValue: code = .connectionLost
        case AMQP_STATUS_SSL_ERROR.rawValue, AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED.rawValue,
            AMQP_STATUS_SSL_PEER_VERIFY_FAILED.rawValue, AMQP_STATUS_SSL_CONNECTION_FAILED.rawValue:
            code = .tls
        default: code = .protocolError
        }
        return AMQPError(code, text, operation: operation)
    }

    // MARK: - Events

    /// Returns the next event the broker sent, or nil when none is available right now. Never blocks on the socket
    /// (it may block briefly to read the rest of a message whose first frame arrived). Also sends a heartbeat when
    /// one is due and detects the broker's missing heartbeats.
    ///
    /// Throws when the connection fails; a broker's connection.close is returned as ``AMQPEvent/connectionClosed(_:)``
    /// once, and thrown afterwards.
    public func nextEvent() throws -> AMQPEvent? {
        let state = try usableState()
        while true {
            amqp_maybe_release_buffers(state)
            var frame = amqp_frame_t()
            var zero = timeval(tv_sec: 0, tv_usec: 0)
            let status = amqp_simple_wait_frame_noblock(state, &frame, &zero)
            if status == AMQP_STATUS_TIMEOUT.rawValue { return nil }
            try checkStatus(status, operation: "read")
            guard frame.frame_type == UInt8(AMQP_FRAME_METHOD) else { continue }
            let channel = frame.channel
            // Every method rabbitmq-c decodes has fields; a method it cannot decode is not one we handle.
            guard let decoded = frame.payload.method.decoded else { continue }
            switch frame.payload.method.id {
            case AMQPMethod.basicDeliver:
                let method = decoded.assumingMemoryBound(to: amqp_basic_deliver_t.self).pointee
                let consumerTag = String(amqp: method.consumer_tag)
                let exchange = String(amqp: method.exchange)
                let routingKey = String(amqp: method.routing_key)
                let (properties, body) = try readContent(channel: channel, operation: "basic.deliver")
                let epoch = openChannels[channel]?.epoch ?? 0
                return .delivery(
                    Delivery(
                        tag: DeliveryTag(value: method.delivery_tag, channel: channel, epoch: epoch),
                        consumerTag: consumerTag, exchange: exchange, routingKey: routingKey,
                        redelivered: method.redelivered != 0, properties: properties, body: body))
            case AMQPMethod.basicAck:
                let method = decoded.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
                return .ack(channel: channel, deliveryTag: method.delivery_tag, multiple: method.multiple != 0)
            case AMQPMethod.basicNack:
                let method = decoded.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
                return .nack(channel: channel, deliveryTag: method.delivery_tag, multiple: method.multiple != 0)
            case AMQPMethod.basicReturn:
                let method = decoded.assumingMemoryBound(to: amqp_basic_return_t.self).pointee
                let replyCode = method.reply_code
                let replyText = String(amqp: method.reply_text)
                let exchange = String(amqp: method.exchange)
                let routingKey = String(amqp: method.routing_key)
                let (properties, body) = try readContent(channel: channel, operation: "basic.return")
                return .returned(
                    channel: channel,
                    ReturnedMessage(
                        replyCode: replyCode, replyText: replyText, exchange: exchange, routingKey: routingKey,
                        properties: properties, body: body))
            case AMQPMethod.basicCancel:
                let method = decoded.assumingMemoryBound(to: amqp_basic_cancel_t.self).pointee
                let tag = String(amqp: method.consumer_tag)
                if method.nowait == 0 {
                    try arena.scoped { arena in
                        var ok = amqp_basic_cancel_ok_t(consumer_tag: arena.bytes(tag))
                        try checkStatus(
                            amqp_send_method(state, channel, AMQPMethod.basicCancelOK, &ok),
                            operation: "basic.cancel-ok")
                    }
                }
                return .consumerCancelled(channel: channel, consumerTag: tag)
            case AMQPMethod.channelClose:
                let method = decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
                let error = brokerError(method.reply_code, method.reply_text, operation: nil, scope: .channel)
                channelClosedByBroker(channel)
                return .channelClosed(channel: channel, error)
            case AMQPMethod.connectionClose:
                let method = decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
                let error = brokerError(method.reply_code, method.reply_text, operation: nil, scope: .connection)
                connectionClosedByBroker(error)
                return .connectionClosed(error)
            case AMQPMethod.connectionBlocked:
                let method = decoded.assumingMemoryBound(to: amqp_connection_blocked_t.self).pointee
                return .blocked(reason: String(amqp: method.reason))
            case AMQPMethod.connectionUnblocked:
                return .unblocked
            case AMQPMethod.channelFlow:
                let method = decoded.assumingMemoryBound(to: amqp_channel_flow_t.self).pointee
                var ok = amqp_channel_flow_ok_t(active: method.active)
                try checkStatus(
                    amqp_send_method(state, channel, AMQPMethod.channelFlowOK, &ok), operation: "channel.flow-ok")
                continue
            default:
                continue
            }
        }
    }

    /// Waits up to `timeout` for the next event, blocking the calling (owner) thread.
    public func waitForEvent(timeout: Duration) throws -> AMQPEvent? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let event = try nextEvent() { return event }
            let remaining = deadline - ContinuousClock.now
            if remaining <= .zero { return nil }
            var fd = pollfd(fd: socketDescriptor, events: Int16(POLLIN), revents: 0)
            let slice = min(remaining, .milliseconds(250))
            _ = poll(
                &fd, 1, Int32(slice.components.seconds * 1000 + slice.components.attoseconds / 1_000_000_000_000_000))
        }
    }

    func readContent(channel: UInt16, operation: String) throws -> (BasicProperties, Data) {
        let state = try usableState()
        var message = amqp_message_t()
        let reply = amqp_read_message(state, channel, &message, 0)
        try check(reply, operation: operation, channel: channel)
        defer { amqp_destroy_message(&message) }
        return (BasicProperties(amqp: message.properties), Data(amqp: message.body))
    }
}

extension timeval {
    init(milliseconds: Int) {
        self.init(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
    }
}
