import Foundation
import Testing
import WarrenAMQP
import WarrenTestSupport

@Suite("Connections: errors, failover, heartbeats, drops")
struct ConnectionTests {
    private func connect(_ url: String, name: String = TestBroker.unique("conn")) async throws {
        let client = AMQPClient(
            configuration: .init(connection: try .init(url: url, connectionName: name), reconnect: nil))
        try await client.connect()
        await client.close()
    }

    @Test func wrongPasswordIsAuthenticationFailedAndDoesNotShowThePassword() async throws {
        await #expect {
            try await connect("amqp://guest:wrong-pw-4711@127.0.0.1:5672/")
        } throws: { error in
            let error = error as! AMQPError
            return error.code == .authenticationFailed && error.replyCode == 403
                && error.message.contains("ACCESS_REFUSED") && !"\(error)".contains("wrong-pw-4711")
        }
    }

    @Test func unknownVhostIsVhostNotAllowed() async throws {
        await #expect {
            try await connect("amqp://guest:guest@127.0.0.1:5672/no-such-vhost-\(UUID().uuidString.prefix(6))")
        } throws: { error in
            let error = error as! AMQPError
            return error.code == .vhostNotAllowed && error.message.contains("no-such-vhost")
        }
    }

    @Test func refusedConnectionIsConnectionRefused() async throws {
        await #expect {
            try await connect("amqp://guest:guest@127.0.0.1:1/")
        } throws: { error in
            let error = error as! AMQPError
            return error.code == .connectionRefused && "\(error)".contains("127.0.0.1:1")
        }
    }

    @Test func unresolvableHostIsHostNotFound() async throws {
        await #expect {
            try await connect("amqp://guest:guest@no-such-host.invalid:5672/")
        } throws: { error in
            (error as! AMQPError).code == .hostNotFound
        }
    }

    @Test func failoverTriesEachURIInOrder() async throws {
        let name = TestBroker.unique("failover")
        let client = AMQPClient(
            configuration: .init(
                connection: try .init(url: "amqp://guest:guest@127.0.0.1:1/, \(TestBroker.url)", connectionName: name),
                reconnect: nil))
        let events = client.recordEvents()
        try await client.connect()
        try await events.wait(for: "connected to the second URI") { all in
            all.contains {
                if case .connected(1, "127.0.0.1:5672") = $0 { return true }
                return false
            }
        }
        #expect(client.isConnected)
        await client.close()
    }

    @Test func connectionNameIsVisibleToTheBroker() async throws {
        let name = TestBroker.unique("named")
        try await TestBroker.withClient(name) { _ in
            let listing = try TestBroker.script("ctl", "list_connections", "--quiet", "client_properties")
            let ours = try #require(listing.split(separator: "\n").first { $0.contains("\"\(name)\"") })
            #expect(ours.contains("{\"connection_name\",\"\(name)\"}"))
            #expect(ours.contains("{\"consumer_cancel_notify\",true}"))
            #expect(ours.contains("{\"connection.blocked\",true}"))
        }
    }

    /// Work that blocks for 3× the heartbeat interval while holding a delivery: the connection must survive and the
    /// later ack must be accepted (the message is gone once the connection closes).
    @Test func heartbeatsFlowWhileConsumerSideWorkBlocks() async throws {
        let queue = TestBroker.unique("heartbeat")
        let heartbeat = 1
        try await TestBroker.withClient(queue, query: "heartbeat=\(heartbeat)") { client in
            let events = client.recordEvents()
            try await client.declareTemporaryQueue(queue)
            try await client.publish(OutgoingMessage(exchange: "", routingKey: queue, body: "slow".bytes))
            let done = Recorder<Bool>()
            try await client.consume(queue: queue, prefetch: 1) { delivery in
                // Blocking work on a thread of its own, as a job handler would.
                Thread.detachNewThread {
                    Thread.sleep(forTimeInterval: Double(3 * heartbeat))
                    client.ack(delivery.tag)
                    done.append(true)
                }
            }
            try await done.wait(forCount: 1, "the blocking handler", timeout: .seconds(10))
            // The ack went through on the same, still-open connection: there was never a disconnect.
            let info = try await client.withChannel { try $0.declareQueue(queue, durable: false, passive: true) }
            #expect(info.messageCount == 0)
            #expect(client.isConnected)
            #expect(
                !events.all.contains {
                    if case .disconnected = $0 { return true }
                    if case .staleOutcomeDropped = $0 { return true }
                    return false
                })
        }
        // Had the ack been lost, closing would have requeued the message.
        try await TestBroker.withClient(queue + ".check", deleting: [queue]) { client in
            let leftover = try await client.getOne(queue)
            #expect(leftover == nil)
        }
    }

    /// A connection closed by the broker is noticed at once (well within a heartbeat), the client reconnects by
    /// itself, restarts its consumer, and drops the ack of a delivery from the old connection.
    @Test func droppedConnectionIsDetectedAndReconnected() async throws {
        let name = TestBroker.unique("dropped")
        let queue = name
        let heartbeat = 5
        try await TestBroker.withClient(
            name, query: "heartbeat=\(heartbeat)", reconnect: .init(), deleting: [queue]
        ) { client in
            let events = client.recordEvents()
            try await client.declareTemporaryQueue(queue)
            let (_, deliveries) = try await client.recordDeliveries(queue: queue)
            try await client.publish(OutgoingMessage(exchange: "", routingKey: queue, body: "held".bytes))
            let held = try #require(try await deliveries.wait(forCount: 1, "the first delivery").first)

            let pid = try #require(try TestBroker.connectionPID(named: name))
            try TestBroker.script("ctl", "close_connection", pid, "test closes it")
            let closedAt = ContinuousClock.now
            try await events.wait(for: "disconnected", timeout: .seconds(heartbeat)) { all in
                all.contains {
                    if case .disconnected(let error) = $0 { return error.code == .connectionForced }
                    return false
                }
            }
            #expect(ContinuousClock.now - closedAt < .seconds(heartbeat))
            try await events.wait(for: "reconnected", timeout: .seconds(15)) { all in
                all.contains {
                    if case .connected(2, _) = $0 { return true }
                    return false
                }
            }
            // The old delivery's ack is stale: dropped, not sent (it would kill the channel).
            client.ack(held.tag)
            try await events.wait(for: "staleOutcomeDropped") { all in
                all.contains {
                    if case .staleOutcomeDropped(let tag) = $0 { return tag == held.tag }
                    return false
                }
            }
            // The restarted consumer gets the requeued message again, marked redelivered.
            let again = try await deliveries.wait(forCount: 2, "the redelivery")
            #expect(again[1].redelivered)
            #expect(again[1].body == held.body)
            #expect(again[1].tag.epoch != held.tag.epoch)
            client.ack(again[1].tag)
            #expect(client.isConnected)
        }
    }

    @Test func withoutReconnectTheClientStopsAndFailsLaterCalls() async throws {
        let name = TestBroker.unique("noreconnect")
        let client = try await TestBroker.client(name, reconnect: nil)
        let events = client.recordEvents()
        let pid = try #require(try TestBroker.connectionPID(named: name))
        try TestBroker.script("ctl", "close_connection", pid, "test closes it")
        try await events.wait(for: "closed") { all in
            all.contains {
                if case .closed = $0 { return true }
                return false
            }
        }
        #expect(!client.isConnected)
        await #expect(throws: AMQPError.self) {
            try await client.publish(OutgoingMessage(exchange: "", routingKey: "x", body: []))
        }
        await client.close()
    }
}
