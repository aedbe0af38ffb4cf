import Foundation
import WarrenAMQP

/// Warren's exchanges, queues and bindings for one configuration, declared idempotently.
public struct Topology: Sendable {
    public let configuration: WarrenConfiguration

    public init(configuration: WarrenConfiguration) { self.configuration = configuration }

    /// The arguments of a work queue.
    public func workQueueArguments(_ queue: QueueSettings) -> FieldTable {
        var arguments: FieldTable = [
            "x-queue-type": .string(queue.kind.rawValue),
            "x-dead-letter-exchange": .string(configuration.deadExchange),
            "x-dead-letter-routing-key": .string(configuration.queueName(queue)),
        ]
        switch queue.kind {
        case .quorum:
            arguments["x-delivery-limit"] = .int64(Int64(queue.deliveryLimit))
            arguments["x-dead-letter-strategy"] = "at-least-once"
            arguments["x-overflow"] = "reject-publish"
        case .classic:
            if let priority = queue.maxPriority { arguments["x-max-priority"] = .int64(Int64(priority)) }
        }
        return arguments
    }

    public func deadQueueArguments(_ queue: QueueSettings) -> FieldTable {
        ["x-queue-type": .string(queue.kind.rawValue)]
    }

    public func retryQueueArguments(tier: Duration) -> FieldTable {
        [
            "x-queue-type": "classic",
            "x-message-ttl": .int64(Int64(tier.milliseconds)),
            "x-dead-letter-exchange": "",
        ]
    }

    public func retryBindingArguments(tier: Duration) -> FieldTable {
        ["x-match": "all", WarrenHeader.tier: .string(DurationText.format(tier))]
    }

    /// Deletes every queue and exchange of this configuration that exists (what ``declare(on:)`` makes, and the
    /// coordinator's schedule state queues), messages included: for tests and benchmarks that tear down a prefix of
    /// their own. Missing ones are skipped.
    public func delete(on channel: AMQPChannel) {
        let c = configuration
        let queues =
            c.queues.flatMap { [c.queueName($0), c.deadQueueName($0)] }
            + c.retryTiers.map { c.retryQueueName(tier: $0) }
            + c.schedules.map { c.scheduleStateQueueName($0.name) }
        for queue in queues { _ = try? channel.deleteQueue(queue) }
        for exchange in [c.jobsExchange, c.retryExchange, c.deadExchange, c.eventsExchange, c.metricsExchange] {
            try? channel.deleteExchange(exchange)
        }
    }

    /// Declares everything on `channel`. A queue or exchange that exists with other arguments fails with a
    /// ``WarrenError/topology(_:)`` naming the queue, the argument, the broker's value and the configuration's.
    public func declare(on channel: AMQPChannel) throws {
        let c = configuration
        try translating {
            try channel.declareExchange(c.jobsExchange, type: .topic)
            try channel.declareExchange(c.retryExchange, type: .headers)
            try channel.declareExchange(c.deadExchange, type: .direct)
            try channel.declareExchange(c.eventsExchange, type: .topic)
            try channel.declareExchange(c.metricsExchange, type: .fanout)
            for tier in c.retryTiers {
                let name = c.retryQueueName(tier: tier)
                try channel.declareQueue(name, arguments: retryQueueArguments(tier: tier))
                try channel.bindQueue(
                    name, exchange: c.retryExchange, routingKey: "", arguments: retryBindingArguments(tier: tier))
            }
            for queue in c.queues {
                let name = c.queueName(queue)
                let dead = c.deadQueueName(queue)
                try channel.declareQueue(dead, arguments: deadQueueArguments(queue))
                try channel.bindQueue(dead, exchange: c.deadExchange, routingKey: name)
                try channel.declareQueue(name, arguments: workQueueArguments(queue))
                for pattern in queue.tasks {
                    try channel.bindQueue(name, exchange: c.jobsExchange, routingKey: pattern)
                }
            }
        }
    }

    private func translating(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let error as AMQPError where error.code == .preconditionFailed {
            throw WarrenError.topology(Self.explain(error))
        }
    }

    /// Turns the broker's "inequivalent arg" sentence into one that names both values and what to do.
    public static func explain(_ error: AMQPError) -> String {
        // PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue 'q' in vhost '/': received '5' but
        // current is '3'
        let text = error.message
        func between(_ start: String, _ end: String) -> String? {
            guard let s = text.range(of: start), let e = text.range(of: end, range: s.upperBound..<text.endIndex)
            else { return nil }
            return String(text[s.upperBound..<e.lowerBound])
        }
        let kind = text.contains("for exchange") ? "exchange" : "queue"
        if let argument = between("inequivalent arg '", "'"), let name = between("for \(kind) '", "'") {
            let ours = between("received '", "'") ?? between("received ", " but") ?? "(none)"
            let theirs = between("current is '", "'") ?? text.components(separatedBy: "current is ").last ?? "(none)"
            return
                "\(kind) '\(name)' already exists on the broker with \(argument) = \(theirs), but the configuration "
                + "asks for \(argument) = \(ours). Change the configuration back, or delete the \(kind) "
                + "(after moving its messages) so Warren can declare it again. Broker said: \(text)"
        }
        return "the broker refused a declaration: \(error)"
    }
}

extension Duration {
    /// Whole milliseconds (truncated).
    public var milliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
    /// Seconds as a `Double`.
    public var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
