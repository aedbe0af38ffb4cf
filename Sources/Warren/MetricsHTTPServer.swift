import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// What a ``MetricsHTTPServer`` route answers with.
public struct HTTPResponse: Sendable, Equatable {
    /// The content type of the Prometheus text exposition format, version 0.0.4.
    public static let prometheusContentType = "text/plain; version=0.0.4; charset=utf-8"

    public var status: Int
    public var contentType: String
    public var body: String

    public init(status: Int = 200, contentType: String = "text/plain; charset=utf-8", body: String) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    /// Plain UTF-8 text.
    public static func text(_ body: String, status: Int = 200) -> HTTPResponse {
        HTTPResponse(status: status, body: body)
    }

    /// A 200 with Prometheus exposition text, e.g. ``PrometheusText/text``.
    public static func prometheus(_ body: String) -> HTTPResponse {
        HTTPResponse(status: 200, contentType: prometheusContentType, body: body)
    }
}

/// Why a ``MetricsHTTPServer`` could not start listening.
public struct MetricsHTTPServerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The host and port the server was asked to listen on.
    public let host: String
    public let port: Int
    /// The failing call (`socket`, `bind`, `listen`…), or `start` when no system call failed.
    public let operation: String
    /// The `errno` the call failed with (`EADDRINUSE` when the port is taken); 0 when no system call failed.
    public let code: Int32
    public let message: String

    public var description: String { "metrics HTTP server cannot listen on \(host):\(port): \(message)" }
}

/// A minimal HTTP/1.1 server for `/metrics` and health checks, on POSIX sockets and a thread of its own.
///
/// ```swift
/// let server = MetricsHTTPServer(port: 9090) { method, path in
///     path == "/metrics" ? .prometheus(snapshot.prometheusText) : nil
/// }
/// try server.start()  // throws, naming 127.0.0.1:9090, when the port is taken
/// defer { server.stop() }
/// ```
///
/// It answers GET and HEAD, one connection at a time, and closes every connection after its response (which always
/// carries `Content-Length` and `Connection: close`). The query string is dropped before routing. A route that returns
/// nil is a 404; an unparsable request (bad request line, no HTTP version, a head over 8 KiB, a malformed header) is a
/// 400; any other method is a 405 with `Allow: GET, HEAD`. A client has 2 s to send its request head and 2 s to take
/// the response, so a stuck client holds up the others for no longer than that.
///
/// - Important: `routes` runs on the server's thread, one request at a time: keep it quick (render a snapshot), and
///   never call ``stop()`` from it. The server's methods may be called from any thread. ``stop()`` (also run by
///   `deinit`) blocks until the server's thread has ended, which takes milliseconds.
public final class MetricsHTTPServer: Sendable {
    /// The longest request head (request line and headers) accepted.
    static let maximumHeadBytes = 8192
    /// How long a client has to send its request head, and separately to take the response.
    static let clientTimeout: Duration = .seconds(2)

    /// The IPv4 address listened on, e.g. `127.0.0.1`, or `0.0.0.0` for all interfaces.
    public let host: String
    private let requestedPort: Int
    private let routes: @Sendable (_ method: String, _ path: String) -> HTTPResponse?
    private let phase = Mutex(Phase.idle)
    /// Entered when the thread starts, left when it has closed the listener.
    private let threadEnded = DispatchGroup()

    private enum Phase {
        case idle
        case running(port: Int, wakeWriter: Int32)
        case stopped(port: Int)
    }

    /// - Parameters:
    ///   - host: an IPv4 address (`localhost` means `127.0.0.1`).
    ///   - port: 0 for a port the system picks; read it from ``port`` after ``start()``.
    ///   - routes: given the method (`GET` or `HEAD`) and the path without its query string, the response, or nil
    ///     for a 404. For HEAD the body is measured and not sent.
    public init(
        host: String = "127.0.0.1", port: Int,
        routes: @escaping @Sendable (_ method: String, _ path: String) -> HTTPResponse?
    ) {
        self.host = host
        self.requestedPort = port
        self.routes = routes
    }

    deinit {
        stop()
    }

    /// The port listened on: the one the system picked for port 0 once started, otherwise the one asked for.
    public var port: Int {
        phase.withLock { phase in
            switch phase {
            case .idle: requestedPort
            case .running(let port, _), .stopped(let port): port
            }
        }
    }

    /// Binds, listens, and starts serving on a new thread. Returns once connections are being accepted.
    ///
    /// Throws ``MetricsHTTPServerError`` naming `host:port`, e.g. when the port is in use (`EADDRINUSE`), the host is
    /// not an IPv4 address, or the server was stopped. Calling it twice is a programmer error.
    public func start() throws {
        try phase.withLock { phase throws(MetricsHTTPServerError) in
            switch phase {
            case .idle: break
            case .running: preconditionFailure("MetricsHTTPServer.start() called twice")
            case .stopped:
                throw failure("start", 0, "the server was stopped; create a new one")
            }
            let (listener, boundPort) = try openListener()
            var pipeEnds: [Int32] = [-1, -1]
            guard pipe(&pipeEnds) == 0 else {
                let code = errno
                close(listener)
                throw failure("pipe", code)
            }
            for end in pipeEnds { configure(end) }
            let loop = MetricsHTTPServeLoop(listener: listener, wakeReader: pipeEnds[0], routes: routes)
            let threadEnded = self.threadEnded
            threadEnded.enter()
            let thread = Thread {
                loop.run()
                threadEnded.leave()
            }
            thread.name = "warren-metrics-http-\(boundPort)"
            thread.start()
            phase = .running(port: boundPort, wakeWriter: pipeEnds[1])
        }
    }

    /// Closes the listener and ends the server's thread, abandoning a request in progress; afterwards connecting
    /// fails. Idempotent; blocks until the thread has ended.
    public func stop() {
        let wakeWriter: Int32? = phase.withLock { phase in
            switch phase {
            case .idle:
                phase = .stopped(port: requestedPort)
                return nil
            case .running(let port, let wakeWriter):
                phase = .stopped(port: port)
                return wakeWriter
            case .stopped:
                return nil
            }
        }
        if let wakeWriter {
            var byte: UInt8 = 1
            _ = write(wakeWriter, &byte, 1)
        }
        threadEnded.wait()
        if let wakeWriter { close(wakeWriter) }
    }

    private func failure(_ operation: String, _ code: Int32, _ message: String? = nil) -> MetricsHTTPServerError {
        var text = message ?? "\(operation): \(String(cString: strerror(code))) (errno \(code))"
        if code == EADDRINUSE { text += "; is another process listening on port \(requestedPort)?" }
        return MetricsHTTPServerError(host: host, port: requestedPort, operation: operation, code: code, message: text)
    }

    /// A bound, listening, non-blocking IPv4 socket, and its port.
    private func openListener() throws(MetricsHTTPServerError) -> (descriptor: Int32, port: Int) {
        guard (0...65_535).contains(requestedPort) else {
            throw failure("start", 0, "the port is not in 0...65535")
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(requestedPort)).bigEndian
        guard inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host, &address.sin_addr) == 1 else {
            throw failure("start", 0, "\"\(host)\" is not an IPv4 address; write e.g. 127.0.0.1 or 0.0.0.0")
        }
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw failure("socket", errno) }
        var listening = false
        defer { if !listening { close(descriptor) } }
        var one: Int32 = 1
        guard setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw failure("setsockopt(SO_REUSEADDR)", errno)
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else { throw failure("bind", errno) }
        guard listen(descriptor, 64) == 0 else { throw failure("listen", errno) }
        configure(descriptor)
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        guard named == 0 else { throw failure("getsockname", errno) }
        listening = true
        return (descriptor, Int(UInt16(bigEndian: actual.sin_port)))
    }
}

/// Makes a descriptor non-blocking and close-on-exec (Glibc's Swift module offers neither `accept4` nor `pipe2`).
private func configure(_ descriptor: Int32) {
    _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
    _ = fcntl(descriptor, F_SETFD, fcntl(descriptor, F_GETFD) | FD_CLOEXEC)
}

/// The server's thread: accepts and serves one connection at a time until a byte arrives on the wake pipe.
///
/// It owns the listener and the wake pipe's read end, and closes them when it returns.
private struct MetricsHTTPServeLoop: Sendable {
    let listener: Int32
    let wakeReader: Int32
    let routes: @Sendable (_ method: String, _ path: String) -> HTTPResponse?

    /// What waiting on a client socket came to.
    private enum Readiness {
        case ready
        case timedOut
        case stopping
    }

    func run() {
        defer {
            close(listener)
            close(wakeReader)
        }
        while true {
            switch wait(for: listener, POLLIN, until: nil) {
            case .stopping: return
            case .timedOut: continue
            case .ready: break
            }
            let client = accept(listener, nil, nil)
            if client < 0 {
                // Out of descriptors or memory: back off instead of spinning on a listener that stays readable.
                if [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(errno),
                    wait(for: -1, POLLIN, until: .now + .milliseconds(100)) == .stopping
                {
                    return
                }
                continue
            }
            configure(client)
            let keepServing = serve(client)
            close(client)
            if !keepServing { return }
        }
    }

    /// Reads one request head, answers it, and drains what the client still sends. False when the server is stopping.
    private func serve(_ client: Int32) -> Bool {
        let deadline = ContinuousClock.now + MetricsHTTPServer.clientTimeout
        var head: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        var headEnd: Int?
        while headEnd == nil {
            guard head.count < MetricsHTTPServer.maximumHeadBytes else { break }
            switch wait(for: client, POLLIN, until: deadline) {
            case .stopping: return false
            case .timedOut:
                // A connection that never sent anything (a port check, a pre-connect) is closed without an answer.
                return head.isEmpty ? true : respond(HTTPResponse.text("request timeout\n", status: 408), to: client)
            case .ready: break
            }
            let received = recv(client, &chunk, chunk.count, 0)
            if received < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { continue }
                return true
            }
            if received == 0 {
                guard !head.isEmpty else { return true }
                return respond(
                    .text("bad request: the connection ended inside the request head\n", status: 400), to: client)
            }
            let searchFrom = max(0, head.count - 3)
            head += chunk[0..<received]
            headEnd = HTTPRequestHead.endOfHead(in: head, searchingFrom: searchFrom)
        }
        guard let headEnd, headEnd <= MetricsHTTPServer.maximumHeadBytes else {
            let reason = "the request head is larger than \(MetricsHTTPServer.maximumHeadBytes) bytes"
            return respond(.text("bad request: \(reason)\n", status: 400), to: client)
        }
        let request: HTTPRequestHead
        do {
            request = try HTTPRequestHead.parse(head[..<headEnd])
        } catch {
            return respond(.text("bad request: \(error.reason)\n", status: 400), to: client)
        }
        guard request.method == "GET" || request.method == "HEAD" else {
            let response = HTTPResponse.text("method \(request.method) not allowed; use GET or HEAD\n", status: 405)
            return respond(response, to: client, extraHeaders: "Allow: GET, HEAD\r\n")
        }
        let response = routes(request.method, request.path) ?? .text("not found\n", status: 404)
        return respond(response, to: client, sendBody: request.method != "HEAD")
    }

    /// Sends the response, then closes our side and drains the client's, so the kernel does not answer its unread
    /// bytes with a reset that could destroy the response. False when the server is stopping.
    private func respond(
        _ response: HTTPResponse, to client: Int32, sendBody: Bool = true, extraHeaders: String = ""
    ) -> Bool {
        let status = (100...599).contains(response.status) ? response.status : 500
        let contentType = response.contentType.filter { !$0.isNewline }
        let body = Array(response.body.utf8)
        let head =
            "HTTP/1.1 \(status) \(Self.reasonPhrase(status))\r\nContent-Type: \(contentType)\r\n"
            + "Content-Length: \(body.count)\r\nConnection: close\r\n\(extraHeaders)\r\n"
        let bytes = Array(head.utf8) + (sendBody ? body : [])
        let deadline = ContinuousClock.now + MetricsHTTPServer.clientTimeout
        var sent = 0
        while sent < bytes.count {
            let written = bytes[sent...].withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written >= 0 {
                sent += written
                continue
            }
            guard errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR else { return true }
            switch wait(for: client, POLLOUT, until: deadline) {
            case .ready: continue
            case .timedOut: return true
            case .stopping: return false
            }
        }
        shutdown(client, Int32(SHUT_WR))
        let lingerDeadline = ContinuousClock.now + .milliseconds(250)
        var scratch = [UInt8](repeating: 0, count: 4096)
        var drained = 0
        while drained < 65_536 {
            let received = recv(client, &scratch, scratch.count, 0)
            if received > 0 {
                drained += received
            } else if received == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                break
            } else if wait(for: client, POLLIN, until: lingerDeadline) != .ready {
                break
            }
        }
        return true
    }

    /// Waits until `descriptor` is ready for `events`, the deadline passes, or the wake pipe says stop. A negative
    /// descriptor only waits for the deadline or the wake pipe.
    private func wait(for descriptor: Int32, _ events: Int32, until deadline: ContinuousClock.Instant?) -> Readiness {
        while true {
            var timeout: Int32 = -1
            if let deadline {
                let remaining = ContinuousClock.now.duration(to: deadline)
                guard remaining > .zero else { return .timedOut }
                let (seconds, attoseconds) = remaining.components
                timeout = Int32(min(seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1, 60_000))
            }
            var descriptors = [
                pollfd(fd: wakeReader, events: Int16(POLLIN), revents: 0),
                pollfd(fd: descriptor, events: Int16(events), revents: 0),
            ]
            let ready = poll(&descriptors, descriptor >= 0 ? 2 : 1, timeout)
            if ready < 0 {
                guard errno == EINTR else { return .stopping }
                continue
            }
            if descriptors[0].revents != 0 { return .stopping }
            if ready > 0 { return .ready }
        }
    }

    private static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 201: "Created"
        case 202: "Accepted"
        case 204: "No Content"
        case 301: "Moved Permanently"
        case 302: "Found"
        case 304: "Not Modified"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 429: "Too Many Requests"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 503: "Service Unavailable"
        default: "Status \(status)"
        }
    }
}

/// The parts of an HTTP/1.x request head that the metrics server routes on, validated.
struct HTTPRequestHead: Equatable {
    /// Why a request head was rejected with a 400.
    struct Rejection: Error, Equatable {
        let reason: String
    }

    var method: String
    /// The request target without its query string or fragment.
    var path: String
    var version: String

    /// The index just past the empty line that ends a request head (CRLF CRLF, or a bare LF LF), if it has arrived.
    static func endOfHead(in bytes: [UInt8], searchingFrom start: Int = 0) -> Int? {
        let newline = UInt8(ascii: "\n")
        var index = max(start, 0)
        while let found = bytes[index...].firstIndex(of: newline) {
            let next = found + 1
            if next < bytes.count, bytes[next] == newline { return next + 1 }
            if next + 1 < bytes.count, bytes[next] == UInt8(ascii: "\r"), bytes[next + 1] == newline { return next + 2 }
            index = next
        }
        return nil
    }

    /// Parses a complete request head, up to and including its empty line.
    static func parse(_ head: ArraySlice<UInt8>) throws(Rejection) -> HTTPRequestHead {
        var lines = head.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { line in
            line.last == UInt8(ascii: "\r") ? line.dropLast() : line
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        guard let requestLine = lines.first, !requestLine.isEmpty else {
            throw Rejection(reason: "the request line is empty")
        }
        guard requestLine.allSatisfy({ (0x20...0x7E).contains($0) }) else {
            throw Rejection(reason: "the request line has control or non-ASCII characters")
        }
        let text = String(decoding: requestLine, as: UTF8.self)
        let quoted = "\"\(text.prefix(100))\""
        let parts = text.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3 else {
            throw Rejection(
                reason: parts.count == 2
                    ? "the request line \(quoted) has no HTTP version"
                    : "the request line \(quoted) is not \"METHOD /path HTTP/1.1\"")
        }
        guard !parts[0].isEmpty, parts[0].utf8.allSatisfy(isTokenByte) else {
            throw Rejection(reason: "the method in \(quoted) is not a token")
        }
        guard parts[1].hasPrefix("/") else {
            throw Rejection(reason: "the request target in \(quoted) is not a path starting with /")
        }
        guard parts[2] == "HTTP/1.1" || parts[2] == "HTTP/1.0" else {
            throw Rejection(reason: "the HTTP version in \(quoted) is not HTTP/1.1 or HTTP/1.0")
        }
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex,
                line[..<colon].allSatisfy(isTokenByte)
            else {
                throw Rejection(reason: "a header line is not \"Name: value\"")
            }
            guard line[(colon + 1)...].allSatisfy({ $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7F) }) else {
                throw Rejection(reason: "a header value has control characters")
            }
        }
        let path = parts[1].prefix { $0 != "?" && $0 != "#" }
        return HTTPRequestHead(method: String(parts[0]), path: String(path), version: String(parts[2]))
    }

    /// RFC 9110 `tchar`: what methods and header names are made of.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default:
            "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}
