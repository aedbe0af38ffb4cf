import Foundation
import Warren
import WarrenAMQP

/// `warren dead list|show|replay|purge`: inspect and replay dead letters.
struct DeadCommand: WarrenCommand {
    static let name = "dead"
    static let abstract = "List, show, replay or purge dead-lettered jobs"
    static let help = """
        Usage: warren dead list [--queue Q] [--limit N] [--json]
               warren dead show ID [--queue Q]
               warren dead replay (--id ID | --all) [--queue Q] [--task T] [--limit N]
               warren dead purge --queue Q --yes
               (all take --config FILE; Q is a queue name from the configuration, e.g. transactions)

        list    Id, task, error type, error, attempts and failed-at of dead letters, oldest first. The messages stay
                where they are (fetched, then returned to the queue).
        show    Every header and the body of the dead letter with message id ID.
        replay  Sends matching dead letters back to the queue they came from with a fresh attempt count and the
                failure headers removed. Each copy is confirmed by the broker before its dead letter is acked, so an
                interrupted replay loses nothing and duplicates at most the one job in flight.
        purge   Deletes every message in Q's dead queue; needs --yes.
        """

    enum Action {
        case list(limit: Int, json: Bool)
        case show(id: String)
        case replay(id: String?, task: String?, limit: Int)
        case purge
    }

    let configuration: WarrenConfiguration
    let queues: [QueueSettings]
    let action: Action

    init(arguments: inout CommandLineArguments, environment: [String: String]) throws {
        configuration = try CLI.loadConfiguration(
            path: try arguments.option("--config") ?? "Config/warren.json", environment: environment)
        let queueName = try arguments.option("--queue")
        let limit = try arguments.option("--limit", as: Int.self)
        let id = try arguments.option("--id")
        let task = try arguments.option("--task")
        let json = arguments.flag("--json")
        let all = arguments.flag("--all")
        let yes = arguments.flag("--yes")
        if let queueName {
            guard let queue = configuration.queues.first(where: { $0.name == queueName }) else {
                let known = configuration.queues.map(\.name).joined(separator: ", ")
                throw UsageError("--queue \(queueName): no such queue in the configuration (\(known))")
            }
            queues = [queue]
        } else {
            queues = configuration.queues
        }
        switch arguments.positional() {
        case "list":
            action = .list(limit: limit ?? 50, json: json)
        case "show":
            guard let id = arguments.positional() else { throw UsageError("dead show needs a message id") }
            action = .show(id: id)
        case "replay":
            guard (id != nil) != all else { throw UsageError("dead replay needs exactly one of --id ID or --all") }
            action = .replay(id: id, task: task, limit: limit ?? Int.max)
        case "purge":
            guard queueName != nil else { throw UsageError("dead purge needs --queue") }
            guard yes else { throw UsageError("dead purge deletes messages for good; add --yes") }
            action = .purge
        case let other?:
            throw UsageError("unknown dead command '\(other)' (list, show, replay or purge)")
        case nil:
            throw UsageError("missing dead command (list, show, replay or purge)")
        }
    }

    /// A dead letter as ops read it.
    struct Letter: Encodable {
        var queue: String
        var id: String
        var task: String
        var errorType: String
        var error: String
        var attempts: Int?
        var failedAt: String?
        var originQueue: String?
    }

    /// An `x-death` `time` (an AMQP timestamp) as RFC 3339, for letters the broker dead-lettered.
    static func rfc3339(_ value: FieldValue) -> String? {
        guard case .timestamp(let date) = value else { return nil }
        return date.formatted(.iso8601)
    }

    static func letter(_ delivery: Delivery, queue: String) -> Letter {
        let headers = delivery.properties.headers ?? [:]
        let death = headers["x-death"]?.arrayValue?.first?.tableValue
        return Letter(
            queue: queue, id: delivery.properties.messageID ?? "(none)",
            task: headers[WarrenHeader.routingKey]?.stringValue ?? headers[WarrenHeader.task]?.stringValue
                ?? death?["routing-keys"]?.arrayValue?.first?.stringValue ?? delivery.routingKey,
            errorType: headers[WarrenHeader.errorType]?.stringValue ?? death?["reason"]?.stringValue.map {
                "broker:\($0)"
            } ?? "unknown",
            error: headers[WarrenHeader.error]?.stringValue ?? "dead-lettered by the broker",
            attempts: headers[WarrenHeader.attempts]?.intValue.map(Int.init),
            failedAt: headers[WarrenHeader.failedAt]?.stringValue ?? death?["time"].flatMap(Self.rfc3339),
            originQueue: headers[WarrenHeader.originQueue]?.stringValue ?? death?["queue"]?.stringValue)
    }

    func run() async throws -> Int32 {
        let client = try configuration.makeAMQPClient(connectionName: "warren-dead")
        try await client.connect()
        defer { Task { await client.close() } }
        switch action {
        case .list(let limit, let json):
            var letters: [Letter] = []
            for queue in queues {
                let name = configuration.deadQueueName(queue)
                letters += try await peek(client, name, limit: limit).map { Self.letter($0, queue: name) }
            }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try encoder.encode(letters), as: UTF8.self))
            } else if letters.isEmpty {
                print("no dead letters")
            } else {
                for l in letters {
                    print(
                        "\(l.queue)  \(l.id)  \(l.task)  \(l.errorType)  attempts=\(l.attempts.map(String.init) ?? "-")  \(l.failedAt ?? "")"
                    )
                    print("    \(l.error)")
                }
            }
            return 0
        case .show(let id):
            for queue in queues {
                let name = configuration.deadQueueName(queue)
                if let delivery = try await peek(client, name, limit: Int.max).first(where: {
                    $0.properties.messageID == id
                }) {
                    print("queue: \(name)")
                    print("routing key: \(delivery.routingKey)")
                    for (key, value) in (delivery.properties.headers ?? [:]).entries.sorted(by: { $0.key < $1.key }) {
                        print("header \(key): \(value.stringValue ?? "\(value)")")
                    }
                    print("body: \(String(decoding: delivery.body, as: UTF8.self))")
                    return 0
                }
            }
            CLI.printError("warren dead show: no dead letter with id '\(id)'")
            return 1
        case .replay(let id, let task, let limit):
            var replayed = 0
            for queue in queues {
                replayed += try await replay(client, queue: queue, id: id, task: task, limit: limit - replayed)
            }
            print("replayed \(replayed) dead letter\(replayed == 1 ? "" : "s")")
            return 0
        case .purge:
            let name = configuration.deadQueueName(queues[0])
            let count = try await client.withChannel { try $0.purgeQueue(name) }
            print("purged \(count) message\(count == 1 ? "" : "s") from \(name)")
            return 0
        }
    }

    /// Fetches up to `limit` messages without consuming them: each is returned to the queue afterwards.
    private func peek(_ client: AMQPClient, _ queue: String, limit: Int) async throws -> [Delivery] {
        try await client.withChannel { channel in
            var fetched: [Delivery] = []
            while fetched.count < limit, let (delivery, _) = try channel.get(queue: queue) {
                fetched.append(delivery)
            }
            if let last = fetched.last { try channel.nack(last.tag, multiple: true, requeue: true) }
            return fetched
        }
    }

    /// Moves matching dead letters of `queue` back to their origin queue, one confirmed publish at a time.
    private func replay(_ client: AMQPClient, queue: QueueSettings, id: String?, task: String?, limit: Int)
        async throws -> Int
    {
        let deadQueue = configuration.deadQueueName(queue)
        var replayed = 0
        var skipped: DeliveryTag?
        defer {
            // What did not match goes back, in order.
            if let skipped { client.nack(skipped, multiple: true, requeue: true) }
        }
        while replayed < limit {
            guard let delivery = try await client.withChannel({ try $0.get(queue: deadQueue)?.delivery }) else { break }
            let letter = Self.letter(delivery, queue: deadQueue)
            guard id.map({ $0 == letter.id }) ?? true, task.map({ $0 == letter.task }) ?? true else {
                skipped = delivery.tag
                continue
            }
            let origin = letter.originQueue ?? configuration.queueName(queue)
            var headers = delivery.properties.headers ?? [:]
            for key in [
                WarrenHeader.error, WarrenHeader.errorType, WarrenHeader.attempts, WarrenHeader.originQueue,
                WarrenHeader.routingKey, WarrenHeader.failedAt, WarrenHeader.attempt, WarrenHeader.notBefore,
                WarrenHeader.lastError, WarrenHeader.tier, WarrenHeader.expires, "x-death", "x-first-death-exchange",
                "x-first-death-queue", "x-first-death-reason",
            ] {
                headers[key] = nil
            }
            headers[WarrenHeader.task] = .string(letter.task)
            headers["x-warren-replayed-at"] = .string(Date().formatted(.iso8601))
            var properties = delivery.properties
            properties.headers = headers
            properties.expiration = nil
            // Straight to the origin queue through the default exchange; the task type travels in x-warren-task.
            try await client.publish(
                OutgoingMessage(
                    exchange: "", routingKey: origin, body: Array(delivery.body), properties: properties,
                    mandatory: true))
            client.ack(delivery.tag)
            replayed += 1
            print("replayed \(letter.id) (\(letter.task)) to \(origin)")
        }
        return replayed
    }
}
