import Testing
import WarrenAMQP
import WarrenTestSupport

@Suite("AMQP URI parsing")
struct AMQPURITests {
    @Test func parsesEveryPart() throws {
        let uri = try AMQPURI(
            "amqp://us%40er:p%3Ass@broker.example:5673/my%2Fvhost?heartbeat=7&connection_timeout=2500&frame_max=65536")
        #expect(!uri.isTLS)
        #expect(uri.user == "us@er")
        #expect(uri.password == "p:ss")
        #expect(uri.host == "broker.example")
        #expect(uri.port == 5673)
        #expect(uri.vhost == "my/vhost")
        #expect(uri.heartbeat == 7)
        #expect(uri.connectionTimeout == 2500)
        #expect(uri.frameMax == 65536)
    }

    @Test func appliesDefaults() throws {
        let plain = try AMQPURI("amqp://localhost")
        #expect(plain.user == "guest" && plain.password == "guest")
        #expect(plain.port == 5672 && plain.vhost == "/")
        #expect(plain.heartbeat == AMQPURI.defaultHeartbeat)
        #expect(try AMQPURI("amqp://localhost/").vhost == "/")
        #expect(try AMQPURI("amqps://localhost").port == 5671)
        #expect(try AMQPURI("amqp://h/%2F").vhost == "/")
        #expect(try AMQPURI("amqp://h/staging").vhost == "staging")
    }

    @Test func parsesIPv6AndTLSOptions() throws {
        let uri = try AMQPURI(
            "amqps://u:p@[::1]:5999/v?cacertfile=/ca.pem&certfile=/c.pem&keyfile=/k.pem&verify=verify_none")
        #expect(uri.host == "::1" && uri.port == 5999 && uri.isTLS)
        #expect(uri.tls.caCertificateFile == "/ca.pem")
        #expect(uri.tls.certificateFile == "/c.pem" && uri.tls.keyFile == "/k.pem")
        #expect(!uri.tls.verifyPeer)
        #expect(uri.endpoint == "[::1]:5999")
    }

    @Test(arguments: [
        ("http://localhost", "scheme 'http'"),
        ("localhost:5672", "expected amqp://"),
        ("amqp://h:99999", "port '99999'"),
        ("amqp://h/a/b", "one path segment"),
        ("amqp://h?heartbeat=x", "heartbeat=x"),
        ("amqp://h?frobnicate=1", "unknown option 'frobnicate'"),
        ("amqp://h/%zz", "percent-escape in the vhost"),
        ("amqps://h?certfile=/c.pem", "certfile and keyfile"),
    ])
    func rejectsInvalidURIsNamingThePart(uri: String, expected: String) {
        #expect {
            try AMQPURI(uri)
        } throws: { error in
            let error = error as! AMQPError
            return error.code == .invalidConfiguration && error.description.contains(expected)
        }
    }

    @Test func neverShowsThePassword() throws {
        let uri = try AMQPURI("amqp://alice:s3cr3t-pw@h:5672/prod")
        #expect(uri.description == "amqp://alice:***@h:5672/prod")
        #expect(!"\(uri)".contains("s3cr3t-pw"))
        // A parse error about another part never echoes the password either.
        #expect {
            try AMQPURI("amqp://alice:s3cr3t-pw@h:notaport/prod")
        } throws: { error in
            !"\(error)".contains("s3cr3t-pw")
        }
    }

    @Test func parsesAFailoverList() throws {
        let configuration = try AMQPConnectionConfiguration(url: "amqp://a:1, amqp://b:2")
        #expect(configuration.uris.map(\.endpoint) == ["a:1", "b:2"])
    }
}
