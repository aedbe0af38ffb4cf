import Foundation
import Synchronization
import WarrenAMQP

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The broker every test talks to: the one `Deploy/local/broker start` runs on loopback.
public enum TestBroker {
    public static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    public static var url: String {
        ProcessInfo.processInfo.environment["WARREN_TEST_AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/%2F"
    }

    public static func uri(_ query: String = "") throws -> AMQPURI {
        try AMQPURI(url + (query.isEmpty ? "" : "?" + query))
    }

    /// A name no other test (or earlier run) uses.
    public static func unique(_ prefix: String) -> String {
        "test.\(prefix).\(UUID().uuidString.prefix(8).lowercased())"
    }

    /// A connected client; the test must `close()` it (use ``withClient(_:query:reconnect:_:)``).
    public static func client(
        _ name: String, query: String = "", reconnect: AMQPClientConfiguration.ReconnectPolicy? = nil
    ) async throws -> AMQPClient {
        let configuration = AMQPClientConfiguration(
            connection: AMQPConnectionConfiguration(uris: [try uri(query)], connectionName: name),
            reconnect: reconnect)
        let client = AMQPClient(configuration: configuration)
        try await client.connect()
        return client
    }

    /// Runs `body` with a connected client, then deletes the named queues and exchanges (whether `body` threw or
    /// not) and closes the client.
    public static func withClient<T>(
        _ name: String, query: String = "", reconnect: AMQPClientConfiguration.ReconnectPolicy? = nil,
        deleting queues: [String] = [], exchanges: [String] = [], _ body: (AMQPClient) async throws -> T
    ) async throws -> T {
        let client = try await client(name, query: query, reconnect: reconnect)
        func cleanUp() async {
            _ = try? await client.withChannel { channel in
                for queue in queues { _ = try? channel.deleteQueue(queue) }
                for exchange in exchanges { try? channel.deleteExchange(exchange) }
            }
            await client.close()
        }
        do {
            let result = try await body(client)
            await cleanUp()
            return result
        } catch {
            await cleanUp()
            throw error
        }
    }

    /// Runs `Deploy/local/broker ARGS…` (e.g. `ctl list_connections`) and returns its standard output.
    @discardableResult
    public static func script(_ arguments: String...) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [repositoryRoot.appendingPathComponent("Deploy/local/broker").path] + arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw TestFailure(
                "Deploy/local/broker \(arguments.joined(separator: " ")) exited \(process.terminationStatus): \(text)")
        }
        return text
    }

    /// Closes every connection whose client-provided name starts with `prefix`, through the management API (much
    /// faster than `rabbitmqctl`, so a test can close connections many times a second); returns how many it closed.
    @discardableResult
    public static func closeConnections(namedWithPrefix prefix: String) async throws -> Int {
        struct Connection: Decodable {
            var name: String
            var userProvidedName: String?
            enum CodingKeys: String, CodingKey {
                case name
                case userProvidedName = "user_provided_name"
            }
        }
        let port = ProcessInfo.processInfo.environment["WARREN_BROKER_MGMT_PORT"] ?? "15672"
        let base = "http://127.0.0.1:\(port)/api/connections"
        func request(_ url: String, method: String) throws -> URLRequest {
            guard let url = URL(string: url) else { throw TestFailure("bad URL \(url)") }
            var request = URLRequest(url: url)
            request.httpMethod = method
            request.setValue(
                "Basic \(Data("guest:guest".utf8).base64EncodedString())", forHTTPHeaderField: "Authorization")
            request.setValue("closed by the test", forHTTPHeaderField: "X-Reason")
            return request
        }
        let (data, _) = try await URLSession.shared.data(
            for: try request(base + "?columns=name,user_provided_name", method: "GET"))
        let connections = try JSONDecoder().decode([Connection].self, from: data)
        var closed = 0
        for connection in connections where connection.userProvidedName?.hasPrefix(prefix) == true {
            let name = connection.name.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? connection.name
            let (_, response) = try await URLSession.shared.data(for: try request("\(base)/\(name)", method: "DELETE"))
            if let http = response as? HTTPURLResponse, http.statusCode == 204 { closed += 1 }
        }
        return closed
    }

    /// The broker's pid for the connection whose client-provided name is `name`.
    public static func connectionPID(named name: String) throws -> String? {
        let listing = try script("ctl", "list_connections", "--quiet", "--no-table-headers", "pid", "client_properties")
        return listing.split(separator: "\n").first { $0.contains("\"\(name)\"") }
            .flatMap { $0.split(separator: "\t").first.map(String.init) }
    }
}

public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Collects values from other threads and lets a test wait, with a deadline, until they satisfy a condition.
public final class Recorder<Value: Sendable>: Sendable {
    private let values = Mutex<[Value]>([])

    public init() {}

    public func append(_ value: Value) { values.withLock { $0.append(value) } }
    public var all: [Value] { values.withLock { $0 } }

    /// Waits until `condition` holds for the values recorded so far; fails naming `what` after `timeout`.
    @discardableResult
    public func wait(
        for what: String, timeout: Duration = .seconds(10), _ condition: ([Value]) -> Bool
    ) async throws -> [Value] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let current = all
            if condition(current) { return current }
            if ContinuousClock.now >= deadline {
                throw TestFailure("timed out after \(timeout) waiting for \(what); have \(current.count) values")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    @discardableResult
    public func wait(forCount count: Int, _ what: String, timeout: Duration = .seconds(10)) async throws -> [Value] {
        try await wait(for: "\(count) \(what)", timeout: timeout) { $0.count >= count }
    }
}

extension AMQPClient {
    /// Records this client's events.
    public func recordEvents() -> Recorder<AMQPClientEvent> {
        let recorder = Recorder<AMQPClientEvent>()
        let events = self.events
        Task.detached {
            for await event in events { recorder.append(event) }
        }
        return recorder
    }

    /// Starts a consumer whose deliveries are recorded.
    public func recordDeliveries(queue: String, prefetch: UInt16 = 100) async throws -> (String, Recorder<Delivery>) {
        let recorder = Recorder<Delivery>()
        let tag = try await consume(queue: queue, prefetch: prefetch) { recorder.append($0) }
        return (tag, recorder)
    }

    public func declareTemporaryQueue(_ name: String, arguments: FieldTable = [:]) async throws {
        try await withChannel { try $0.declareQueue(name, durable: false, autoDelete: false, arguments: arguments) }
    }

    public func deleteQueues(_ names: String...) async {
        _ = try? await withChannel { channel in
            for name in names { try channel.deleteQueue(name) }
        }
    }

    public func getOne(_ queue: String) async throws -> Delivery? {
        try await withChannel { channel in
            guard let (delivery, _) = try channel.get(queue: queue) else { return nil }
            try channel.ack(delivery.tag)
            return delivery
        }
    }
}

extension String {
    public var bytes: [UInt8] { Array(utf8) }
}
