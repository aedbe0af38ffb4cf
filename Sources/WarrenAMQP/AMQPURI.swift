import Foundation

/// A parsed AMQP URI, as RabbitMQ's URI specification defines it.
///
/// `amqp://user:password@host:port/vhost?heartbeat=10&connection_timeout=5000&frame_max=131072`
///
/// - The vhost is the single path segment, percent-decoded (`%2F` is `/`). No path, or an empty one, means the default
///   vhost `/` (as pika and Bunny read it).
/// - Query options: `heartbeat` (seconds, 0 disables), `connection_timeout` (milliseconds), `frame_max` (bytes),
///   `channel_max`, and for `amqps` `cacertfile`, `certfile`, `keyfile`, `verify` (`verify_peer` or `verify_none`),
///   `server_name_indication` (accepted; rabbitmq-c always sends the host name). An unknown option is an error that
///   names it.
/// - ``description`` never shows the password.
public struct AMQPURI: Sendable, Hashable, CustomStringConvertible {
    public var isTLS: Bool
    public var user: String
    public var password: String
    public var host: String
    public var port: Int
    public var vhost: String
    /// Heartbeat interval in seconds proposed to the broker; 0 disables heartbeats.
    public var heartbeat: Int
    /// TCP connect and handshake timeout, in milliseconds.
    public var connectionTimeout: Int
    public var frameMax: Int
    public var channelMax: Int
    public var tls: TLSOptions

    /// Certificate options for `amqps://` connections.
    public struct TLSOptions: Sendable, Hashable {
        /// PEM file of the CA that signed the broker's certificate. Without it the system's trust store is not read;
        /// set `verifyPeer = false` to connect without verification (never in production).
        public var caCertificateFile: String?
        public var certificateFile: String?
        public var keyFile: String?
        public var verifyPeer: Bool
        public var verifyHostname: Bool

        public init(
            caCertificateFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil,
            verifyPeer: Bool = true, verifyHostname: Bool = true
        ) {
            self.caCertificateFile = caCertificateFile
            self.certificateFile = certificateFile
            self.keyFile = keyFile
            self.verifyPeer = verifyPeer
            self.verifyHostname = verifyHostname
        }
    }

    public static let defaultHeartbeat = 30
    public static let defaultConnectionTimeout = 10_000
    public static let defaultFrameMax = 131_072
    public static let defaultChannelMax = 2047

    public init(
        isTLS: Bool = false, user: String = "guest", password: String = "guest", host: String = "127.0.0.1",
        port: Int? = nil, vhost: String = "/", heartbeat: Int = AMQPURI.defaultHeartbeat,
        connectionTimeout: Int = AMQPURI.defaultConnectionTimeout, frameMax: Int = AMQPURI.defaultFrameMax,
        channelMax: Int = AMQPURI.defaultChannelMax, tls: TLSOptions = TLSOptions()
    ) {
        self.isTLS = isTLS
        self.user = user
        self.password = password
        self.host = host
        self.port = port ?? (isTLS ? 5671 : 5672)
        self.vhost = vhost
        self.heartbeat = heartbeat
        self.connectionTimeout = connectionTimeout
        self.frameMax = frameMax
        self.channelMax = channelMax
        self.tls = tls
    }

    /// Parses a URI string. Throws ``AMQPError`` with code ``AMQPError/Code/invalidConfiguration`` naming the part
    /// that is wrong (never echoing the password). An `@` in the path or query is such an error (write `%40`): it
    /// means a password with an unescaped `/`, `?` or `@`, whose pieces would otherwise be parsed, and shown, as the
    /// port, vhost or an option.
    public init(_ string: String) throws {
        func invalid(_ reason: String) -> AMQPError {
            AMQPError(.invalidConfiguration, "invalid AMQP URI: \(reason)")
        }
        guard let schemeEnd = string.range(of: "://") else {
            throw invalid("expected amqp://host or amqps://host")
        }
        let scheme = string[..<schemeEnd.lowerBound].lowercased()
        switch scheme {
        case "amqp": isTLS = false
        case "amqps": isTLS = true
        default: throw invalid("scheme '\(scheme)' is not amqp or amqps")
        }
        var rest = Substring(string[schemeEnd.upperBound...])
        // An '@' after the host means a user name or password with an unescaped '/', '?' or '@': the vhost, port or
        // query parsed below would then hold pieces of the password, and an error naming them would show it.
        if let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }), rest[authorityEnd...].contains("@") {
            throw invalid(
                "'@' after the host: percent-encode '/', '?' and '@' in the user name and password (%2F, %3F, %40)")
        }
        var query: Substring = ""
        if let q = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: q)...]
            rest = rest[..<q]
        }
        var path: Substring? = nil
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        var hostPort = rest
        user = "guest"
        password = "guest"
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            hostPort = rest[rest.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                user = try Self.percentDecode(userInfo[..<colon], what: "user name")
                password = try Self.percentDecode(userInfo[userInfo.index(after: colon)...], what: "password")
            } else {
                user = try Self.percentDecode(userInfo, what: "user name")
                password = ""
            }
        }
        var portText: Substring? = nil
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { throw invalid("unterminated IPv6 address") }
            host = String(hostPort[hostPort.index(after: hostPort.startIndex)..<close])
            let after = hostPort[hostPort.index(after: close)...]
            if after.hasPrefix(":") {
                portText = after.dropFirst()
            } else if !after.isEmpty {
                throw invalid("unexpected text after IPv6 address")
            }
        } else if let colon = hostPort.lastIndex(of: ":") {
            host = try Self.percentDecode(hostPort[..<colon], what: "host")
            portText = hostPort[hostPort.index(after: colon)...]
        } else {
            host = try Self.percentDecode(hostPort, what: "host")
        }
        if host.isEmpty { host = "localhost" }
        if let portText {
            guard let p = Int(portText), (1...65535).contains(p) else {
                // Only digits are echoed: in `amqp://user:password` (no host) the "port" is the password.
                let shown = portText.allSatisfy { $0.isASCII && $0.isNumber } ? "port '\(portText)'" : "the port"
                throw invalid("\(shown) is not a number from 1 to 65535")
            }
            port = p
        } else {
            port = isTLS ? 5671 : 5672
        }
        if let path, !path.isEmpty {
            if path.contains("/") { throw invalid("the vhost must be one path segment; write '/' as %2F") }
            vhost = try Self.percentDecode(path, what: "vhost")
        } else {
            vhost = "/"
        }
        heartbeat = Self.defaultHeartbeat
        connectionTimeout = Self.defaultConnectionTimeout
        frameMax = Self.defaultFrameMax
        channelMax = Self.defaultChannelMax
        tls = TLSOptions()
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = try Self.percentDecode(parts[0], what: "query option")
            let value = parts.count > 1 ? try Self.percentDecode(parts[1], what: "query option \(key)") : ""
            func integer(_ range: ClosedRange<Int>) throws -> Int {
                guard let v = Int(value), range.contains(v) else {
                    throw invalid(
                        "option \(key)=\(value) is not a whole number from \(range.lowerBound) to \(range.upperBound)")
                }
                return v
            }
            switch key {
            case "heartbeat": heartbeat = try integer(0...65535)
            case "connection_timeout": connectionTimeout = try integer(1...3_600_000)
            case "frame_max": frameMax = try integer(4096...Int(Int32.max))
            case "channel_max": channelMax = try integer(0...65535)
            case "cacertfile": tls.caCertificateFile = value
            case "certfile": tls.certificateFile = value
            case "keyfile": tls.keyFile = value
            case "verify":
                switch value {
                case "verify_peer": tls.verifyPeer = true
                case "verify_none":
                    tls.verifyPeer = false
                    tls.verifyHostname = false
                default: throw invalid("option verify=\(value) is not verify_peer or verify_none")
                }
            case "server_name_indication", "auth_mechanism":
                break
            default:
                throw invalid("unknown option '\(key)'")
            }
        }
        if (tls.certificateFile == nil) != (tls.keyFile == nil) {
            throw invalid("certfile and keyfile go together")
        }
    }

    static func percentDecode(_ text: Substring, what: String) throws -> String {
        guard text.contains("%") else { return String(text) }
        var bytes: [UInt8] = []
        var utf8 = text.utf8[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "%") {
                guard let hi = utf8.popFirst(), let lo = utf8.popFirst(),
                    let h = hexValue(hi), let l = hexValue(lo)
                else {
                    throw AMQPError(.invalidConfiguration, "invalid AMQP URI: bad percent-escape in the \(what)")
                }
                bytes.append(h << 4 | l)
            } else {
                bytes.append(byte)
            }
        }
        guard let decoded = String(validating: bytes, as: UTF8.self) else {
            throw AMQPError(.invalidConfiguration, "invalid AMQP URI: the \(what) is not UTF-8 after decoding")
        }
        return decoded
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    static func percentEncode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF")
                out += "%" + String(hex[Int(byte >> 4)]) + String(hex[Int(byte & 0xF)])
            }
        }
        return out
    }

    /// `host:port`, with brackets around an IPv6 address.
    public var endpoint: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// The URI with the password replaced by `***`, safe for logs and error messages.
    public var description: String {
        "\(isTLS ? "amqps" : "amqp")://\(Self.percentEncode(user)):***@\(endpoint)/\(Self.percentEncode(vhost))"
    }
}

/// How to reach the broker: one or more URIs tried in order (cluster failover), and how to present this client.
public struct AMQPConnectionConfiguration: Sendable {
    /// Tried in order on every (re)connect; the first that accepts wins.
    public var uris: [AMQPURI]
    /// Shown by `rabbitmqctl list_connections client_properties` and the management UI.
    public var connectionName: String?
    /// Limit for a synchronous broker round trip (declare, bind, close…).
    public var rpcTimeout: Duration

    public init(uris: [AMQPURI], connectionName: String? = nil, rpcTimeout: Duration = .seconds(30)) {
        precondition(!uris.isEmpty, "at least one broker URI is required")
        self.uris = uris
        self.connectionName = connectionName
        self.rpcTimeout = rpcTimeout
    }

    /// Parses one URI or a comma-separated list of them.
    public init(url: String, connectionName: String? = nil, rpcTimeout: Duration = .seconds(30)) throws {
        let parts = url.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !parts.isEmpty else { throw AMQPError(.invalidConfiguration, "invalid AMQP URI: empty") }
        self.init(uris: try parts.map(AMQPURI.init), connectionName: connectionName, rpcTimeout: rpcTimeout)
    }
}
