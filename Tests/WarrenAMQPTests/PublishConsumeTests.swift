import Foundation
import Testing
import WarrenAMQP
import WarrenTestSupport

@Suite("Publishing, confirms and consuming")
struct PublishConsumeTests {
    @Test func confirmsArriveForSingleAndBatchedPublishes() async throws {
        let queue = TestBroker.unique("confirms")
        try await TestBroker.withClient(queue, deleting: [queue]) { client in
            try await client.declareTemporaryQueue(queue)
            try await client.publish(OutgoingMessage(exchange: "", routingKey: queue, body: "one".bytes))
            let batch = (0..<1000).map { OutgoingMessage(exchange: "", routingKey: queue, body: "m\($0)".bytes) }
            let results = await client.publish(batch)
            #expect(results.count == 1000)
            #expect(results.allSatisfy { $0 == nil })
            let info = try await client.withChannel { try $0.declareQueue(queue, durable: false, passive: true) }
            #expect(info.messageCount == 1001)
            #expect(info.consumerCount == 0)
        }
    }

    @Test func publishingToAMissingExchangeFailsAndTheChannelRecovers() async throws {
        let queue = TestBroker.unique("noexchange")
        try await TestBroker.withClient(queue, deleting: [queue]) { client in
            try await client.declareTemporaryQueue(queue)
            await #expect {
                try await client.publish(OutgoingMessage(exchange: "no.such.exchange", routingKey: "x", body: []))
            } throws: { error in
                let error = error as! AMQPError
                return error.code == .notFound && error.message.contains("no exchange 'no.such.exchange'")
            }
            // The publish channel is reopened and back in confirm mode.
            try await client.publish(OutgoingMessage(exchange: "", routingKey: queue, body: "after".bytes))
            let delivery = try #require(try await client.getOne(queue))
            #expect(String(decoding: delivery.body, as: UTF8.self) == "after")
        }
    }

    @Test func headersTooLargeForAFrameAreRefusedBeforeSendingAndTheConnectionStaysUp() async throws {
        let queue = TestBroker.unique("bigheaders")
        try await TestBroker.withClient(queue, deleting: [queue]) { client in
            try await client.declareTemporaryQueue(queue)
            let headers = FieldTable(
                Dictionary(
                    uniqueKeysWithValues: (0..<140).map {
                        ("k\($0)", FieldValue.string(String(repeating: "v", count: 990)))
                    }))
            #expect(headers.encodedSize > 131_072)
            await #expect {
                try await client.publish(
                    OutgoingMessage(
                        exchange: "", routingKey: queue, body: "big".bytes,
                        properties: BasicProperties(headers: headers)))
            } throws: { error in
                let error = error as! AMQPError
                return error.code == .contentTooLarge && error.message.contains("nothing was sent")
            }
            // Nothing half-sent: the same connection publishes and delivers the next message.
            try await client.publish(OutgoingMessage(exchange: "", routingKey: queue, body: "after".bytes))
            let delivery = try #require(try await client.getOne(queue))
            #expect(String(decoding: delivery.body, as: UTF8.self) == "after")
        }
    }

    @Test func mandatoryUnroutableMessageIsReturnedAsAnError() async throws {
        let queue = TestBroker.unique("mandatory")
        try await TestBroker.withClient(queue, deleting: [queue]) { client in
            try await client.declareTemporaryQueue(queue)
            await #expect {
                try await client.publish(
                    OutgoingMessage(exchange: "amq.direct", routingKey: "\(queue).nobody", body: [], mandatory: true))
            } throws: { error in
                let error = error as! AMQPError
                return error.code == .unroutable && error.message.contains("NO_ROUTE")
            }
            // Routable mandatory publishes in the same window still succeed.
            let results = await client.publish([
                OutgoingMessage(exchange: "", routingKey: queue, body: [1], mandatory: true),
                OutgoingMessage(exchange: "", routingKey: "\(queue).nobody", body: [2], mandatory: true),
                OutgoingMessage(exchange: "", routingKey: queue, body: [3], mandatory: true),
            ])
            #expect(results[0] == nil)
            #expect(results[1]?.code == .unroutable)
            #expect(results[2] == nil)
        }
    }

    @Test func consumesWithPrefetchAndSeesRedelivery() async throws {
        let queue = TestBroker.unique("consume")
        try await TestBroker.withClient(queue, deleting: [queue]) { client in
            try await client.declareTemporaryQueue(queue)
            _ = await client.publish(
                (0..<5).map { OutgoingMessage(exchange: "", routingKey: queue, body: [UInt8($0)]) })
            let (tag, deliveries) = try await client.recordDeliveries(queue: queue, prefetch: 2)
            // Prefetch 2: only two arrive while none is acknowledged.
            let first = try await deliveries.wait(forCount: 2, "deliveries")
            let info = try await client.withChannel { try $0.declareQueue(queue, durable: false, passive: true) }
            #expect(info.messageCount == 3)
            #expect(info.consumerCount == 1)
            #expect(deliveries.all.count == 2)
            #expect(first.allSatisfy { !$0.redelivered && $0.consumerTag == tag })
            // Reject the first with requeue: it comes back marked redelivered.
            client.reject(first[0].tag, requeue: true)
            client.ack(first[1].tag)
            let redelivered = try await deliveries.wait(for: "the redelivery") { all in
                all.contains { $0.redelivered && $0.body == first[0].body }
            }
            for delivery in redelivered.dropFirst(2) { client.ack(delivery.tag) }
            try await client.cancel(consumerTag: tag)
        }
    }

    @Test func ackWithMultipleAcknowledgesEveryEarlierDelivery() async throws {
        let queue = TestBroker.unique("multiple")
        try await TestBroker.withClient(queue) { client in
            try await client.declareTemporaryQueue(queue)
            _ = await client.publish(
                (0..<10).map { OutgoingMessage(exchange: "", routingKey: queue, body: [UInt8($0)]) })
            let (tag, deliveries) = try await client.recordDeliveries(queue: queue, prefetch: 10)
            let all = try await deliveries.wait(forCount: 10, "deliveries")
            client.ack(all[9].tag, multiple: true)
            try await client.cancel(consumerTag: tag)
        }
        // After closing, nothing was requeued: every delivery had been acknowledged.
        try await TestBroker.withClient(queue + ".check", deleting: [queue]) { client in
            let info = try await client.withChannel { try $0.declareQueue(queue, durable: false, passive: true) }
            #expect(info.messageCount == 0)
        }
    }

    @Test func nackAndRejectWithoutRequeueReachTheDeadLetterExchangeWithXDeath() async throws {
        let queue = TestBroker.unique("dlx.work")
        let dead = queue + ".dead"
        let exchange = queue + ".dlx"
        try await TestBroker.withClient(queue, deleting: [queue, dead], exchanges: [exchange]) { client in
            try await client.withChannel { channel in
                try channel.declareExchange(exchange, type: .direct, durable: false, autoDelete: false)
                try channel.declareQueue(dead, durable: false)
                try channel.bindQueue(dead, exchange: exchange, routingKey: queue)
                try channel.declareQueue(
                    queue, durable: false,
                    arguments: [
                        "x-dead-letter-exchange": .string(exchange), "x-dead-letter-routing-key": .string(queue),
                    ])
            }
            _ = await client.publish([
                OutgoingMessage(exchange: "", routingKey: queue, body: "nacked".bytes),
                OutgoingMessage(exchange: "", routingKey: queue, body: "rejected".bytes),
            ])
            let (tag, deliveries) = try await client.recordDeliveries(queue: queue)
            let received = try await deliveries.wait(forCount: 2, "deliveries")
            client.nack(received[0].tag, requeue: false)
            client.reject(received[1].tag, requeue: false)
            try await client.cancel(consumerTag: tag)

            let (_, deadLetters) = try await client.recordDeliveries(queue: dead)
            let arrived = try await deadLetters.wait(forCount: 2, "dead letters")
            for letter in arrived {
                let death = try #require(letter.properties.headers?["x-death"]?.arrayValue?.first?.tableValue)
                #expect(death["reason"] == .string("rejected"))
                #expect(death["queue"] == .string(queue))
                #expect(death["count"]?.intValue == 1)
                client.ack(letter.tag)
            }
            #expect(Set(arrived.map { String(decoding: $0.body, as: UTF8.self) }) == ["nacked", "rejected"])
        }
    }
}
