import Foundation
import Synchronization
import Testing

@testable import Warren

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
#if canImport(Glibc)
    import Glibc
#endif

/// The metrics server over real TCP: a raw socket client, so the tests can also send what no HTTP client would.
@Suite("Metrics HTTP server")
struct MetricsHTTPServerTests {
    private static let metricsBody = """
        # HELP warren_up Whether the worker runs.
        # TYPE warren_up gauge
        warren_up{queue="warren.email"} 1

        """

    /// Serves `/metrics` and `/healthz`, records what was routed, and stops the server afterwards.
    private func withServer(
        _ body: (MetricsHTTPServer, _ routed: @Sendable () -> [String]) async throws -> Void
    ) async throws {
        let routed = Mutex<[String]>([])
        let server = MetricsHTTPServer(port: 0) { method, path in
            routed.withLock { $0.append("\(method) \(path)") }
            switch path {
            case "/metrics": return .prometheus(Self.metricsBody)
            case "/healthz": return .text("ok\n")
            default: return nil
            }
        }
        try server.start()
        defer { server.stop() }
        try await body(server) { routed.withLock { $0 } }
    }

    @Test func getMetricsAnswersTheTextWithLengthAndConnectionClose() async throws {
        try await withServer { server, routed in
            #expect(server.port > 0)
            let port = server.port
            let response = try await onThread {
                try RawHTTPClient.exchange(
                    port: port, "GET /metrics?debug=1&x=2 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n")
            }
            #expect(response.statusLine == "HTTP/1.1 200 OK")
            #expect(response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
            #expect(response.headers["content-length"] == "\(Self.metricsBody.utf8.count)")
            #expect(response.headers["connection"] == "close")
            #expect(response.body == Self.metricsBody)
            #expect(
                try PrometheusText.parse(response.body) == [
                    PrometheusSample(name: "warren_up", labels: ["queue": "warren.email"], value: 1)
                ])
            #expect(routed() == ["GET /metrics"])
        }
    }

    @Test func aRealHTTPClientReadsTheMetrics() async throws {
        try await withServer { server, _ in
            let url = try #require(URL(string: "http://127.0.0.1:\(server.port)/metrics"))
            let (data, response) = try await URLSession.shared.data(from: url)
            let http = try #require(response as? HTTPURLResponse)
            #expect(http.statusCode == 200)
            #expect(http.value(forHTTPHeaderField: "Content-Type") == HTTPResponse.prometheusContentType)
            #expect(String(decoding: data, as: UTF8.self) == Self.metricsBody)
        }
    }

    @Test func anUnknownPathIs404() async throws {
        try await withServer { server, routed in
            let port = server.port
            let response = try await onThread { try RawHTTPClient.exchange(port: port, "GET /nope HTTP/1.1\r\n\r\n") }
            #expect(response.statusLine == "HTTP/1.1 404 Not Found")
            #expect(response.body == "not found\n")
            #expect(response.headers["content-length"] == "10")
            #expect(routed() == ["GET /nope"])
        }
    }

    @Test(arguments: [
        ("hello\r\n\r\n", "is not \"METHOD /path HTTP/1.1\""),
        ("GET /metrics\r\n\r\n", "has no HTTP version"),
        ("GET metrics HTTP/1.1\r\n\r\n", "is not a path starting with /"),
        ("GET /metrics HTTP/2.0\r\n\r\n", "is not HTTP/1.1 or HTTP/1.0"),
        ("GET  /metrics HTTP/1.1\r\n\r\n", "is not \"METHOD /path HTTP/1.1\""),
        ("G(T /metrics HTTP/1.1\r\n\r\n", "is not a token"),
        ("GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", "a header line is not \"Name: value\""),
        ("GET /metrics HTTP/1.1\r\n folded: header\r\n\r\n", "a header line is not \"Name: value\""),
        ("GET /metrics HTTP/1.1\r\nX-A: b\u{1}c\r\n\r\n", "a header value has control characters"),
        ("\r\n\r\n", "the request line is empty"),
        ("GET /metrics HTTP/1.1\r\n", "the connection ended inside the request head"),
    ])
    func aMalformedRequestIs400AndIsNotRouted(request: String, reason: String) async throws {
        try await withServer { server, routed in
            let port = server.port
            let response = try await onThread {
                try RawHTTPClient.exchange(port: port, request, closeWriting: true)
            }
            #expect(response.statusLine == "HTTP/1.1 400 Bad Request")
            #expect(response.body.hasPrefix("bad request: ") && response.body.contains(reason), "\(response.body)")
            #expect(response.headers["connection"] == "close")
            #expect(routed().isEmpty)
        }
    }

    @Test func aRequestHeadOver8KiBIs400() async throws {
        try await withServer { server, routed in
            let port = server.port
            let padding = String(repeating: "a", count: 9000)
            let response = try await onThread {
                try RawHTTPClient.exchange(port: port, "GET /metrics HTTP/1.1\r\nX-Padding: \(padding)\r\n\r\n")
            }
            #expect(response.statusLine == "HTTP/1.1 400 Bad Request")
            #expect(response.body == "bad request: the request head is larger than 8192 bytes\n")
            #expect(routed().isEmpty)
        }
    }

    @Test func anotherMethodIs405WithAllow() async throws {
        try await withServer { server, routed in
            let port = server.port
            let response = try await onThread {
                try RawHTTPClient.exchange(port: port, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            }
            #expect(response.statusLine == "HTTP/1.1 405 Method Not Allowed")
            #expect(response.headers["allow"] == "GET, HEAD")
            #expect(routed().isEmpty)
        }
    }

    @Test func headSendsTheHeadersOfGetAndNoBody() async throws {
        try await withServer { server, routed in
            let port = server.port
            let response = try await onThread {
                try RawHTTPClient.exchange(port: port, "HEAD /metrics HTTP/1.1\r\n\r\n")
            }
            #expect(response.statusLine == "HTTP/1.1 200 OK")
            #expect(response.headers["content-length"] == "\(Self.metricsBody.utf8.count)")
            #expect(response.headers["content-type"] == HTTPResponse.prometheusContentType)
            #expect(response.raw.hasSuffix("\r\n\r\n") && response.body.isEmpty)
            #expect(routed() == ["HEAD /metrics"])
        }
    }

    @Test func bareLineFeedsAndHTTP10AreAccepted() async throws {
        try await withServer { server, _ in
            let port = server.port
            let response = try await onThread { try RawHTTPClient.exchange(port: port, "GET /healthz HTTP/1.0\n\n") }
            #expect(response.statusLine == "HTTP/1.1 200 OK")
            #expect(response.headers["content-type"] == "text/plain; charset=utf-8")
            #expect(response.body == "ok\n")
        }
    }

    @Test func manyRequestsInARowAreAllAnswered() async throws {
        try await withServer { server, routed in
            let port = server.port
            let statuses = try await onThread {
                try (0..<50).map { _ in
                    try RawHTTPClient.exchange(port: port, "GET /metrics HTTP/1.1\r\n\r\n").statusLine
                }
            }
            #expect(statuses == Array(repeating: "HTTP/1.1 200 OK", count: 50))
            #expect(routed().count == 50)
        }
    }

    @Test func aSilentClientIsDroppedAndDoesNotKeepOthersWaiting() async throws {
        try await withServer { server, _ in
            let port = server.port
            let (silentOutcome, elapsed, response) = try await onThread {
                let silent = try RawHTTPClient.connect(port: port)
                defer { close(silent) }
                let started = ContinuousClock.now
                let response = try RawHTTPClient.exchange(port: port, "GET /healthz HTTP/1.1\r\n\r\n")
                let elapsed = ContinuousClock.now - started
                return (try RawHTTPClient.readToEnd(silent), elapsed, response)
            }
            #expect(response.body == "ok\n")
            #expect(elapsed < .seconds(3), "the second client waited \(elapsed)")
            #expect(silentOutcome.isEmpty, "the silent client was closed without an answer")
        }
    }

    @Test func aClientThatStopsMidHeadGets408AndOthersAreServed() async throws {
        try await withServer { server, _ in
            let port = server.port
            let (stalledResponse, elapsed, response) = try await onThread {
                let stalled = try RawHTTPClient.connect(port: port)
                defer { close(stalled) }
                try RawHTTPClient.send(stalled, "GET /metrics HTTP/1.1\r\nHost: x\r\n")
                let started = ContinuousClock.now
                let response = try RawHTTPClient.exchange(port: port, "GET /healthz HTTP/1.1\r\n\r\n")
                let elapsed = ContinuousClock.now - started
                return (RawHTTPClient.Response(try RawHTTPClient.readToEnd(stalled)), elapsed, response)
            }
            #expect(response.body == "ok\n")
            #expect(elapsed < .seconds(3), "the second client waited \(elapsed)")
            #expect(stalledResponse.statusLine == "HTTP/1.1 408 Request Timeout")
        }
    }

    @Test func afterStopConnectingFailsAndStopIsIdempotent() async throws {
        let server = MetricsHTTPServer(port: 0) { _, _ in .text("ok\n") }
        try server.start()
        let port = server.port
        let held = try await onThread { try RawHTTPClient.connect(port: port) }
        defer { close(held) }
        // The held connection keeps the thread inside a request (most likely); stop must not wait for its timeout.
        let started = ContinuousClock.now
        server.stop()
        server.stop()
        #expect(ContinuousClock.now - started < .seconds(1))
        #expect(server.port == port)
        #expect(throws: RawHTTPClient.Failure(call: "connect", code: ECONNREFUSED)) {
            try RawHTTPClient.connect(port: port)
        }
        #expect(throws: MetricsHTTPServerError.self) { try server.start() }
    }

    @Test func aSecondServerOnTheSamePortThrowsNamingIt() throws {
        let first = MetricsHTTPServer(port: 0) { _, _ in nil }
        try first.start()
        defer { first.stop() }
        let second = MetricsHTTPServer(port: first.port) { _, _ in nil }
        let error = #expect(throws: MetricsHTTPServerError.self) { try second.start() }
        #expect(error?.code == EADDRINUSE)
        #expect(error?.operation == "bind")
        #expect(error?.description.contains("127.0.0.1:\(first.port)") == true, "\(String(describing: error))")
    }

    @Test func aHostThatIsNotAnIPv4AddressIsRejected() {
        let server = MetricsHTTPServer(host: "metrics.example", port: 0) { _, _ in nil }
        let error = #expect(throws: MetricsHTTPServerError.self) { try server.start() }
        #expect(error?.description.contains("metrics.example:0") == true)
        #expect(error?.description.contains("is not an IPv4 address") == true)
    }

    @Test func requestHeadsAreParsedAndTheirEndFound() throws {
        let head = Array("GET /metrics?a=b#frag HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        #expect(HTTPRequestHead.endOfHead(in: head) == head.count)
        #expect(HTTPRequestHead.endOfHead(in: Array("GET / HTTP/1.1\r\n\r".utf8)) == nil)
        #expect(HTTPRequestHead.endOfHead(in: Array("GET / HTTP/1.1\n\nrest".utf8)) == 16)
        #expect(
            try HTTPRequestHead.parse(head[...])
                == HTTPRequestHead(method: "GET", path: "/metrics", version: "HTTP/1.1"))
    }
}

/// Runs blocking socket work on a thread of its own, never on the cooperative pool.
private func onThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try work() }) }
    }
}

/// A blocking TCP client on raw sockets; every read gives up after 10 s.
private enum RawHTTPClient {
    struct Failure: Error, Equatable {
        let call: String
        let code: Int32
    }

    struct Response {
        let raw: String
        let statusLine: String
        /// Lowercased names.
        let headers: [String: String]
        let body: String

        init(_ bytes: [UInt8]) {
            raw = String(decoding: bytes, as: UTF8.self)
            let parts = raw.components(separatedBy: "\r\n\r\n")
            let head = parts[0].components(separatedBy: "\r\n")
            statusLine = head[0]
            var headers: [String: String] = [:]
            for line in head.dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...]
                    .trimmingCharacters(in: .whitespaces)
            }
            self.headers = headers
            body = parts.dropFirst().joined(separator: "\r\n\r\n")
        }
    }

    static func connect(port: Int) throws -> Int32 {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw Failure(call: "socket", code: errno) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port)).bigEndian
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            let code = errno
            close(descriptor)
            throw Failure(call: "connect", code: code)
        }
        return descriptor
    }

    static func send(_ descriptor: Int32, _ text: String) throws {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let written = bytes[sent...].withUnsafeBytes {
                Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            guard written > 0 else { throw Failure(call: "send", code: errno) }
            sent += written
        }
    }

    /// Everything the server sends until it closes the connection.
    static func readToEnd(_ descriptor: Int32) throws -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let received = recv(descriptor, &chunk, chunk.count, 0)
            if received == 0 { return bytes }
            guard received > 0 else { throw Failure(call: "recv", code: errno) }
            bytes += chunk[0..<received]
        }
    }

    /// Connects, sends `request` (then half-closes when asked), and reads the response to the end.
    static func exchange(port: Int, _ request: String, closeWriting: Bool = false) throws -> Response {
        let descriptor = try connect(port: port)
        defer { close(descriptor) }
        try send(descriptor, request)
        if closeWriting { shutdown(descriptor, Int32(SHUT_WR)) }
        return Response(try readToEnd(descriptor))
    }
}
