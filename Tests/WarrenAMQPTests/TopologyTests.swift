import Foundation
import Testing
import WarrenAMQP
import WarrenTestSupport

@Suite("Declarations, bindings and their errors")
struct TopologyTests {
    @Test func ttlQueueDeadLetteringToTheDefaultExchangeReturnsTheMessageToItsRoutingKeyQueue() async throws {
        let origin = TestBroker.unique("ttl.origin")
        let tier = TestBroker.unique("ttl.tier")
        let exchange = TestBroker.unique("ttl.retry")
        try await TestBroker.withClient(origin, deleting: [origin, tier], exchanges: [exchange]) { client in
            try await client.withChannel { channel in
                try channel.declareExchange(exchange, type: .direct, durable: false)
                try channel.declareQueue(origin, durable: false)
                try channel.declareQueue(
                    tier, durable: false, arguments: ["x-message-ttl": .int32(500), "x-dead-letter-exchange": ""])
                // The tier is bound under the origin's name, so the hop carries the origin queue as routing key.
                try channel.bindQueue(tier, exchange: exchange, routingKey: origin)
            }
            let arrivals = Recorder<(Delivery, ContinuousClock.Instant)>()
            try await client.consume(queue: origin, prefetch: 10) { arrivals.append(($0, .now)) }
            let sent = ContinuousClock.now
            try await client.publish(OutgoingMessage(exchange: exchange, routingKey: origin, body: "later".bytes))
            let (delivery, arrived) = try #require(try await arrivals.wait(forCount: 1, "the expired message").first)
            let delay = arrived - sent
            #expect(delay >= .milliseconds(450), "arrived after \(delay)")
            #expect(delay < .seconds(3), "arrived after \(delay)")
            #expect(delivery.routingKey == origin)
            let death = try #require(delivery.properties.headers?["x-death"]?.arrayValue?.first?.tableValue)
            #expect(death["reason"] == .string("expired"))
            #expect(death["queue"] == .string(tier))
            client.ack(delivery.tag)
        }
    }

    @Test func quorumQueueWithDeliveryLimitAndRedeclareConflict() async throws {
        let queue = TestBroker.unique("quorum")
        let arguments: FieldTable = [
            "x-queue-type": "quorum", "x-delivery-limit": .int64(3),
            "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish",
        ]
        try await TestBroker.withClient(queue, deleting: [queue]) { client in
            try await client.withChannel { try $0.declareQueue(queue, arguments: arguments) }
            // Same arguments: idempotent.
            try await client.withChannel { try $0.declareQueue(queue, arguments: arguments) }
            var conflicting = arguments
            conflicting["x-delivery-limit"] = .int64(5)
            let changed = conflicting
            await #expect {
                try await client.withChannel { try $0.declareQueue(queue, arguments: changed) }
            } throws: { error in
                let error = error as! AMQPError
                return error.code == .preconditionFailed && error.replyCode == 406 && error.scope == .channel
                    && error.message.contains("inequivalent arg 'x-delivery-limit'")
                    && error.message.contains("received '5' but current is '3'")
            }
            // The control channel was reopened: the next declaration on it works.
            let info = try await client.withChannel { try $0.declareQueue(queue, passive: true) }
            #expect(info.name == queue)
            #expect(info.messageCount == 0)
        }
    }

    @Test func passiveDeclareOfAMissingQueueIsNotFound() async throws {
        let queue = TestBroker.unique("missing")
        try await TestBroker.withClient(queue, deleting: [queue]) { client in
            await #expect {
                try await client.withChannel { try $0.declareQueue(queue, passive: true) }
            } throws: { error in
                let error = error as! AMQPError
                return error.code == .notFound && error.message.contains("no queue '\(queue)'")
            }
            #expect(client.isConnected)
        }
    }

    @Test func bindUnbindPurgeAndDelete() async throws {
        let queue = TestBroker.unique("bind")
        let exchange = TestBroker.unique("bind.topic")
        try await TestBroker.withClient(queue, deleting: [queue]) { client in
            try await client.withChannel { channel in
                try channel.declareExchange(exchange, type: .topic, durable: false)
                try channel.declareQueue(queue, durable: false)
                try channel.bindQueue(queue, exchange: exchange, routingKey: "email.*")
            }
            let routed = await client.publish([
                OutgoingMessage(exchange: exchange, routingKey: "email.send", body: [], mandatory: true),
                OutgoingMessage(exchange: exchange, routingKey: "email.bounce", body: [], mandatory: true),
                OutgoingMessage(exchange: exchange, routingKey: "sms.send", body: [], mandatory: true),
            ])
            #expect(routed[0] == nil && routed[1] == nil)
            #expect(routed[2]?.code == .unroutable)
            #expect(try await client.withChannel { try $0.purgeQueue(queue) } == 2)

            try await client.withChannel { try $0.unbindQueue(queue, exchange: exchange, routingKey: "email.*") }
            await #expect(throws: AMQPError.self) {
                try await client.publish(
                    OutgoingMessage(exchange: exchange, routingKey: "email.send", body: [], mandatory: true))
            }
            try await client.publish(OutgoingMessage(exchange: "", routingKey: queue, body: [1]))
            #expect(try await client.withChannel { try $0.deleteQueue(queue) } == 1)
            try await client.withChannel { try $0.deleteExchange(exchange) }
            await #expect(throws: AMQPError.self) {
                try await client.withChannel { try $0.declareExchange(exchange, type: .topic, passive: true) }
            }
        }
    }

    @Test func consumerIsToldWhenItsQueueIsDeleted() async throws {
        let queue = TestBroker.unique("cancelnotify")
        try await TestBroker.withClient(queue, deleting: [queue]) { client in
            let events = client.recordEvents()
            try await client.declareTemporaryQueue(queue)
            let (tag, _) = try await client.recordDeliveries(queue: queue)
            try await client.withChannel { try $0.deleteQueue(queue) }
            try await events.wait(for: "consumerCancelled") { all in
                all.contains {
                    if case .consumerCancelled(let t, let q) = $0 { return t == tag && q == queue }
                    return false
                }
            }
        }
    }
}
