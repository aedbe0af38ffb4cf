import Foundation
import Warren
import WarrenAMQP

/// `warren topology apply|check`.
struct TopologyCommand: WarrenCommand {
    static let name = "topology"
    static let abstract = "Declare Warren's exchanges and queues, or compare the broker with the configuration"
    static let help = """
        Usage: warren topology apply [--config FILE]
               warren topology check [--config FILE]
               warren topology export [--config FILE] [--vhost VHOST]

        apply   Declares every exchange, queue and binding of the configuration (idempotent; what workers do at
                start). A queue that exists with other arguments fails, naming the argument and both values.
        check   Changes nothing. Reports each exchange or queue that is missing, or exists with other arguments
                than the configuration's; exit 1 on any drift, 0 when the broker matches. (Bindings are not
                compared: AMQP cannot read them back without the management API.)
        export  Prints the topology as RabbitMQ definitions JSON (exchanges, queues with arguments, bindings) for
                `rabbitmqctl import_definitions FILE` or the management UI; vhost default "/".
        """

    enum Action {
        case apply, check
        case export(vhost: String)
    }
    let configuration: WarrenConfiguration
    let action: Action

    init(arguments: inout CommandLineArguments, environment: [String: String]) throws {
        configuration = try CLI.loadConfiguration(
            path: try arguments.option("--config") ?? "Config/warren.json", environment: environment)
        let vhost = try arguments.option("--vhost") ?? "/"
        switch arguments.positional() {
        case "apply": action = .apply
        case "check": action = .check
        case "export": action = .export(vhost: vhost)
        case let other?: throw UsageError("unknown topology command '\(other)' (apply, check or export)")
        case nil: throw UsageError("missing topology command (apply, check or export)")
        }
    }

    func run() async throws -> Int32 {
        let topology = Topology(configuration: configuration)
        if case .export(let vhost) = action {
            let data = try JSONSerialization.data(
                withJSONObject: topology.definitions(vhost: vhost),
                options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
            return 0
        }
        let client = try configuration.makeAMQPClient(connectionName: "warren-topology")
        try await client.connect()
        defer { Task { await client.close() } }
        if case .apply = action {
            try await client.withChannel { try topology.declare(on: $0) }
            print("declared the topology of prefix '\(configuration.prefix)'")
            return 0
        }
        let c = configuration
        var problems: [String] = []
        var checked = 0
        let exchanges: [(String, ExchangeType)] = [
            (c.jobsExchange, .topic), (c.retryExchange, .headers), (c.deadExchange, .direct),
            (c.eventsExchange, .topic), (c.metricsExchange, .fanout),
        ]
        var queues: [(String, FieldTable)] = c.retryTiers.map {
            (c.retryQueueName(tier: $0), topology.retryQueueArguments(tier: $0))
        }
        for queue in c.queues {
            queues.append((c.queueName(queue), topology.workQueueArguments(queue)))
            queues.append((c.deadQueueName(queue), topology.deadQueueArguments(queue)))
        }
        for (name, type) in exchanges {
            checked += 1
            do {
                try await client.withChannel { try $0.declareExchange(name, type: type, passive: true) }
                // It exists: an active declare with our type and flags changes nothing, or fails on a difference.
                try await client.withChannel { try $0.declareExchange(name, type: type) }
            } catch let error as AMQPError {
                problems.append(Self.describe(kind: "exchange", name: name, error))
            }
        }
        for (name, arguments) in queues {
            checked += 1
            do {
                try await client.withChannel { try $0.declareQueue(name, passive: true) }
                try await client.withChannel { try $0.declareQueue(name, arguments: arguments) }
            } catch let error as AMQPError {
                problems.append(Self.describe(kind: "queue", name: name, error))
            }
        }
        for problem in problems { print("drift  \(problem)") }
        print("\(checked - problems.count) of \(checked) exchanges and queues match the configuration")
        return problems.isEmpty ? 0 : 1
    }

    static func describe(kind: String, name: String, _ error: AMQPError) -> String {
        if error.code == .notFound { return "\(kind) '\(name)' is missing" }
        if error.code == .preconditionFailed { return Topology.explain(error) }
        return "\(kind) '\(name)': \(error)"
    }
}
