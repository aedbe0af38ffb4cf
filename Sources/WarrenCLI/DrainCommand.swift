import Foundation
import Synchronization
import WarrenAMQP

/// `warren drain`: consume messages from a queue, print each as one JSON line, and acknowledge it.
struct DrainCommand: WarrenCommand {
    static let name = "drain"
    static let abstract = "Consume messages from a queue, print each as a JSON line, and ack it"
    static let help = """
        Usage: warren drain --queue Q [--count N] [--timeout SECONDS] [--url URI]

        Consumes from queue Q (which must exist), prints one JSON object per message (routing key, message id,
        content type, headers, body as text) and acknowledges it after printing. Stops after N messages
        (default: runs until interrupted) or when no message arrived for --timeout seconds (exit 1 if fewer than
        N arrived).
        """

    let connection: AMQPConnectionConfiguration
    let queue: String
    let count: Int?
    let timeout: Double

    init(arguments: inout CommandLineArguments, environment: [String: String]) throws {
        connection = try CLI.connection(
            url: try arguments.option("--url"), environment: environment, name: "warren-drain")
        guard let queue = try arguments.option("--queue") else { throw UsageError("--queue is required") }
        self.queue = queue
        count = try arguments.option("--count", as: Int.self)
        timeout = try arguments.option("--timeout", as: Double.self) ?? 30
        if let count, count <= 0 { throw UsageError("--count must be positive") }
    }

    struct Line: Encodable {
        var routingKey: String
        var messageID: String?
        var contentType: String?
        var redelivered: Bool
        var headers: [String: String]
        var body: String
    }

    func run() async throws -> Int32 {
        let client = AMQPClient(configuration: .init(connection: connection, reconnect: .init()))
        try await client.connect()
        let received = Mutex<(count: Int, last: ContinuousClock.Instant)>((0, .now))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let limit = count
        try await client.consume(queue: queue, prefetch: 10) { delivery in
            let accepted = received.withLock { state -> Bool in
                if let limit, state.count >= limit { return false }
                state.count += 1
                state.last = .now
                return true
            }
            guard accepted else {
                client.reject(delivery.tag, requeue: true)
                return
            }
            let line = Line(
                routingKey: delivery.routingKey, messageID: delivery.properties.messageID,
                contentType: delivery.properties.contentType, redelivered: delivery.redelivered,
                headers: (delivery.properties.headers ?? [:]).entries.mapValues { "\($0)" },
                body: String(decoding: delivery.body, as: UTF8.self))
            if let data = try? encoder.encode(line) { FileHandle.standardOutput.write(data + Data("\n".utf8)) }
            client.ack(delivery.tag)
        }
        while true {
            try await Task.sleep(for: .milliseconds(50))
            let (n, last) = received.withLock { ($0.count, $0.last) }
            if let limit = count, n >= limit { break }
            if ContinuousClock.now - last > .seconds(timeout) {
                await client.close()
                if let limit = count {
                    CLI.printError("warren drain: only \(n) of \(limit) messages arrived within \(timeout) s")
                    return 1
                }
                return 0
            }
        }
        await client.close()
        return 0
    }
}
