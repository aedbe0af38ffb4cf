import Foundation
import Testing
import WarrenAMQP

@testable import Warren

@Suite("Envelope and retry ladder (pure)")
struct JobEnvelopeTests {
    private func delivery(headers: FieldTable? = nil, messageID: String? = nil, routingKey: String = "a.b")
        -> Delivery
    {
        Delivery(
            tag: DeliveryTag(value: 1, channel: 1, epoch: 1), consumerTag: "", exchange: "x", routingKey: routingKey,
            redelivered: false, properties: BasicProperties(headers: headers, messageID: messageID), body: Data())
    }

    @Test func readsWarrenHeadersInEitherForm() throws {
        let envelope = try JobEnvelope(
            delivery(
                headers: [
                    WarrenHeader.attempt: .int32(3), WarrenHeader.maxAttempts: "7",
                    WarrenHeader.notBefore: "2030-01-02T03:04:05Z", WarrenHeader.expires: .int64(1_900_000_000_000),
                    WarrenHeader.task: "email.send",
                ], messageID: "job-1", routingKey: "warren.email"))
        #expect(envelope.id == "job-1" && !envelope.idWasGenerated)
        #expect(envelope.attempt == 3 && envelope.maxAttempts == 7)
        #expect(envelope.taskName == "email.send")
        #expect(envelope.notBefore == Date(timeIntervalSince1970: 1_893_553_445))
        #expect(envelope.expiresAt == Date(timeIntervalSince1970: 1_900_000_000))
    }

    @Test func inventsAnIDWhenTheProducerSentNone() throws {
        let envelope = try JobEnvelope(delivery())
        #expect(envelope.idWasGenerated && !envelope.id.isEmpty)
        #expect(envelope.attempt == 1 && envelope.taskName == "a.b")
    }

    @Test(arguments: [
        (WarrenHeader.attempt, FieldValue.int64(-1)), (WarrenHeader.attempt, FieldValue.string("garbage")),
        (WarrenHeader.notBefore, FieldValue.string("next tuesday")), (WarrenHeader.expires, FieldValue.int64(-5)),
        (WarrenHeader.maxAttempts, FieldValue.double(2.5)),
    ])
    func rejectsInvalidHeadersNamingThem(header: String, value: FieldValue) {
        #expect {
            try JobEnvelope(delivery(headers: [header: value]))
        } throws: { error in
            "\(error)".contains(header)
        }
    }

    @Test func ladderPicksTheLargestTierThatFitsOrTheSmallest() {
        let ladder = RetryLadder(tiers: [.seconds(1), .seconds(5), .seconds(30)])
        #expect(ladder.tier(forRemaining: .milliseconds(10)) == .seconds(1))
        #expect(ladder.tier(forRemaining: .milliseconds(4999)) == .seconds(1))
        #expect(ladder.tier(forRemaining: .seconds(5)) == .seconds(5))
        #expect(ladder.tier(forRemaining: .seconds(3600)) == .seconds(30))
    }

    @Test func explainsAnInequivalentArgument() {
        let error = AMQPError(
            .preconditionFailed,
            "PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue 'warren.reports' in vhost '/': "
                + "received the value '10' of type 'signedint' but current is none",
            replyCode: 406)
        let message = Topology.explain(error)
        #expect(message.contains("queue 'warren.reports'"))
        #expect(message.contains("x-max-priority"))
    }
}
