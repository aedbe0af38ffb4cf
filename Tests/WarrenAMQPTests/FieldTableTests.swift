import Foundation
import Testing
import WarrenAMQP
import WarrenTestSupport

@Suite("Field tables and properties through the broker")
struct FieldTableTests {
    @Test func encodedSizeCountsTheWireBytes() {
        // Table length 4; "a": key 1+1, type 1, long string 4+2; "b": key 1+1, type 1, int64 8; "c": array 1+1,
        // type 1, length 4, one bool 1+1.
        let table: FieldTable = ["a": .string("xy"), "b": .int64(1), "c": .array([.bool(true)])]
        #expect(table.encodedSize == 4 + 9 + 11 + 9)
        #expect(FieldTable().encodedSize == 4)
        #expect(FieldValue.table(["k": .void]).encodedSize == 1 + 4 + 3)
    }

    static let everyType: FieldTable = [
        "bool": .bool(true),
        "int8": .int8(-8),
        "uint8": .uint8(200),
        "int16": .int16(-30_000),
        "uint16": .uint16(60_000),
        "int32": .int32(-2_000_000_000),
        "uint32": .uint32(4_000_000_000),
        "int64": .int64(-9_000_000_000_000_000_000),
        "float": .float(1.5),
        "double": .double(-2.25e100),
        "decimal": .decimal(scale: 2, value: 12345),
        "string": .string("héllo, wörld ✓"),
        "empty": .string(""),
        "raw": .rawString([0xFF, 0xFE, 0x41]),
        "bytes": .bytes([0, 1, 2, 255]),
        "timestamp": .timestamp(Date(timeIntervalSince1970: 1_700_000_000)),
        "void": .void,
        "table": .table(["nested": .table(["deep": .int32(1)]), "list": [.int64(1), .string("two")]]),
        "array": .array([.bool(false), .double(0.5), .array([.string("x")]), .table(["k": .void])]),
        "emptyArray": .array([]),
        "emptyTable": .table([:]),
    ]

    @Test func everyFieldTypeRoundTripsExactly() async throws {
        let queue = TestBroker.unique("fields")
        try await TestBroker.withClient(queue, deleting: [queue]) { client in
            try await client.declareTemporaryQueue(queue)
            try await client.publish(
                OutgoingMessage(
                    exchange: "", routingKey: queue, body: "{}".bytes,
                    properties: BasicProperties(headers: Self.everyType)))
            let delivery = try #require(try await client.getOne(queue))
            let headers = try #require(delivery.properties.headers)
            for (key, value) in Self.everyType {
                #expect(headers[key] == value, "header \(key)")
            }
            #expect(headers.count == Self.everyType.count)
        }
    }

    @Test func everyBasicPropertyRoundTrips() async throws {
        let queue = TestBroker.unique("props")
        let properties = BasicProperties(
            contentType: "application/json", contentEncoding: "utf-8", headers: ["x-a": "b"],
            deliveryMode: .persistent, priority: 7, correlationID: "corr-1", replyTo: "replies",
            expiration: "60000", messageID: "msg-1", timestamp: Date(timeIntervalSince1970: 1_800_000_000),
            type: "email.send", userID: "guest", appID: "tests", clusterID: "c1")
        try await TestBroker.withClient(queue, deleting: [queue]) { client in
            try await client.declareTemporaryQueue(queue)
            let body = Array(repeating: UInt8(ascii: "x"), count: 300_000)  // spans several frames
            try await client.publish(
                OutgoingMessage(exchange: "", routingKey: queue, body: body, properties: properties))
            let delivery = try #require(try await client.getOne(queue))
            #expect(delivery.properties == properties)
            #expect(Array(delivery.body) == body)
            #expect(delivery.routingKey == queue && delivery.exchange == "")
        }
    }
}
