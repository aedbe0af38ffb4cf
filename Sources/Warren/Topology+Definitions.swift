import Foundation
import WarrenAMQP

extension Topology {
    /// The topology as RabbitMQ definitions (`rabbitmqctl import_definitions`, or the management UI's import):
    /// exchanges, queues with their arguments, and bindings, in virtual host `vhost`. Users, permissions and
    /// policies are the operator's (see Deploy/rabbitmq/).
    public func definitions(vhost: String) -> [String: Any] {
        let c = configuration
        func exchange(_ name: String, _ type: ExchangeType) -> [String: Any] {
            [
                "name": name, "vhost": vhost, "type": type.rawValue, "durable": true, "auto_delete": false,
                "internal": false, "arguments": [String: Any](),
            ]
        }
        func queue(_ name: String, _ arguments: FieldTable) -> [String: Any] {
            ["name": name, "vhost": vhost, "durable": true, "auto_delete": false, "arguments": Self.json(arguments)]
        }
        func binding(_ source: String, _ destination: String, _ key: String, _ arguments: FieldTable = [:])
            -> [String: Any]
        {
            [
                "source": source, "vhost": vhost, "destination": destination, "destination_type": "queue",
                "routing_key": key, "arguments": Self.json(arguments),
            ]
        }
        let exchanges = [
            exchange(c.jobsExchange, .topic), exchange(c.retryExchange, .headers), exchange(c.deadExchange, .direct),
            exchange(c.eventsExchange, .topic), exchange(c.metricsExchange, .fanout),
        ]
        var queues: [[String: Any]] = []
        var bindings: [[String: Any]] = []
        for tier in c.retryTiers {
            let name = c.retryQueueName(tier: tier)
            queues.append(queue(name, retryQueueArguments(tier: tier)))
            bindings.append(binding(c.retryExchange, name, "", retryBindingArguments(tier: tier)))
        }
        for settings in c.queues {
            let name = c.queueName(settings)
            let dead = c.deadQueueName(settings)
            queues.append(queue(dead, deadQueueArguments(settings)))
            bindings.append(binding(c.deadExchange, dead, name))
            queues.append(queue(name, workQueueArguments(settings)))
            for pattern in settings.tasks { bindings.append(binding(c.jobsExchange, name, pattern)) }
        }
        return [
            "vhosts": [["name": vhost]], "exchanges": exchanges, "queues": queues, "bindings": bindings,
            "policies": [[String: Any]](),
        ]
    }

    /// A field table as JSON values (what definitions files carry).
    static func json(_ table: FieldTable) -> [String: Any] {
        table.entries.mapValues { value -> Any in
            switch value {
            case .bool(let b): b
            case .string(let s): s
            case .double(let d): d
            case .float(let f): Double(f)
            default: value.intValue.map { Int($0) as Any } ?? value.stringValue ?? "\(value)"
            }
        }
    }
}
