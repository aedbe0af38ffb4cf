/// An error from the broker, the network, or rabbitmq-c.
///
/// Broker errors carry the AMQP reply code and the broker's own sentence, e.g.
/// `406 PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue 'q' in vhost '/': received '5' but current is '3'`.
/// Client-side failures (refused connection, heartbeat timeout, nack) use codes above 1000 so they never collide with
/// wire codes. ``description`` never contains credentials.
public struct AMQPError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is. Compare with the named constants.
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }

        // Wire codes (AMQP 0-9-1 reply codes).
        public static let contentTooLarge = Code(rawValue: 311)
        public static let noRoute = Code(rawValue: 312)
        public static let noConsumers = Code(rawValue: 313)
        public static let connectionForced = Code(rawValue: 320)
        public static let invalidPath = Code(rawValue: 402)
        public static let accessRefused = Code(rawValue: 403)
        public static let notFound = Code(rawValue: 404)
        public static let resourceLocked = Code(rawValue: 405)
        public static let preconditionFailed = Code(rawValue: 406)
        public static let frameError = Code(rawValue: 501)
        public static let syntaxError = Code(rawValue: 502)
        public static let commandInvalid = Code(rawValue: 503)
        public static let channelError = Code(rawValue: 504)
        public static let unexpectedFrame = Code(rawValue: 505)
        public static let resourceError = Code(rawValue: 506)
        public static let notAllowed = Code(rawValue: 530)
        public static let notImplemented = Code(rawValue: 540)
        public static let internalError = Code(rawValue: 541)

        // Client-side codes.
        /// The URI or a connection option is invalid.
        public static let invalidConfiguration = Code(rawValue: 1001)
        /// The TCP connection was refused (nothing listens on that host and port).
        public static let connectionRefused = Code(rawValue: 1002)
        /// The host name could not be resolved.
        public static let hostNotFound = Code(rawValue: 1003)
        /// Connecting, the handshake, or an RPC took longer than allowed.
        public static let timeout = Code(rawValue: 1004)
        /// The socket was closed or failed under an open connection.
        public static let connectionLost = Code(rawValue: 1005)
        /// The broker stopped sending heartbeats.
        public static let heartbeatTimeout = Code(rawValue: 1006)
        /// The TLS handshake or certificate verification failed.
        public static let tls = Code(rawValue: 1007)
        /// The broker nacked a published message.
        public static let publishNacked = Code(rawValue: 1008)
        /// A `mandatory` message could not be routed to any queue and came back with basic.return.
        public static let unroutable = Code(rawValue: 1009)
        /// The connection or client was closed by this process.
        public static let closed = Code(rawValue: 1010)
        /// The broker answered with a frame the client did not expect, or rabbitmq-c failed internally.
        public static let protocolError = Code(rawValue: 1011)
        /// Authentication failed: wrong user name or password.
        public static let authenticationFailed = Code(rawValue: 1012)
        /// The virtual host does not exist or the user may not open it.
        public static let vhostNotAllowed = Code(rawValue: 1013)

        public var description: String {
            switch self {
            case .contentTooLarge: "CONTENT_TOO_LARGE"
            case .noRoute: "NO_ROUTE"
            case .noConsumers: "NO_CONSUMERS"
            case .connectionForced: "CONNECTION_FORCED"
            case .invalidPath: "INVALID_PATH"
            case .accessRefused: "ACCESS_REFUSED"
            case .notFound: "NOT_FOUND"
            case .resourceLocked: "RESOURCE_LOCKED"
            case .preconditionFailed: "PRECONDITION_FAILED"
            case .frameError: "FRAME_ERROR"
            case .syntaxError: "SYNTAX_ERROR"
            case .commandInvalid: "COMMAND_INVALID"
            case .channelError: "CHANNEL_ERROR"
            case .unexpectedFrame: "UNEXPECTED_FRAME"
            case .resourceError: "RESOURCE_ERROR"
            case .notAllowed: "NOT_ALLOWED"
            case .notImplemented: "NOT_IMPLEMENTED"
            case .internalError: "INTERNAL_ERROR"
            case .invalidConfiguration: "invalid configuration"
            case .connectionRefused: "connection refused"
            case .hostNotFound: "host not found"
            case .timeout: "timeout"
            case .connectionLost: "connection lost"
            case .heartbeatTimeout: "heartbeat timeout"
            case .tls: "TLS error"
            case .publishNacked: "publish nacked"
            case .unroutable: "unroutable"
            case .closed: "closed"
            case .protocolError: "protocol error"
            case .authenticationFailed: "authentication failed"
            case .vhostNotAllowed: "virtual host not allowed"
            default: "code \(rawValue)"
            }
        }
    }

    /// Whether the broker closed only a channel or the whole connection.
    public enum Scope: Sendable, Hashable {
        case channel
        case connection
        case client
    }

    public var code: Code
    /// The broker's reply text, or a sentence describing a client-side failure.
    public var message: String
    /// The AMQP reply code when the broker sent one.
    public var replyCode: UInt16?
    /// The operation that failed, e.g. `queue.declare` or `connect 127.0.0.1:5672`.
    public var operation: String?
    public var scope: Scope

    public init(
        _ code: Code, _ message: String, replyCode: UInt16? = nil, operation: String? = nil, scope: Scope = .client
    ) {
        self.code = code
        self.message = message
        self.replyCode = replyCode
        self.operation = operation
        self.scope = scope
    }

    /// Whether the connection is unusable after this error and must be reopened.
    public var isConnectionFatal: Bool {
        switch code {
        case .connectionLost, .heartbeatTimeout, .closed, .connectionRefused, .hostNotFound, .tls,
            .authenticationFailed, .vhostNotAllowed:
            return true
        default:
            return scope == .connection
        }
    }

    public var description: String {
        var text = ""
        if let operation { text += "\(operation): " }
        if let replyCode {
            text += "broker closed the \(scope == .channel ? "channel" : "connection") with \(replyCode) "
        } else {
            text += "\(code): "
        }
        text += message
        return text
    }
}
