import Foundation
import Testing
import WarrenAMQP
import WarrenTestSupport

@Suite("TLS (amqps)")
struct TLSTests {
    /// Paths the broker script reports (`Deploy/local/broker env`).
    static func brokerEnvironment() throws -> [String: String] {
        let lines = try TestBroker.script("env").split(separator: "\n")
        return Dictionary(
            lines.compactMap { line in
                line.firstIndex(of: "=").map { (String(line[..<$0]), String(line[line.index(after: $0)...])) }
            }, uniquingKeysWith: { $1 })
    }

    private func roundTrip(_ url: String) async throws {
        let queue = TestBroker.unique("tls")
        let client = AMQPClient(
            configuration: .init(connection: try .init(url: url, connectionName: queue), reconnect: nil))
        try await client.connect()
        do {
            try await client.declareTemporaryQueue(queue)
            try await client.publish(OutgoingMessage(exchange: "", routingKey: queue, body: "over tls".bytes))
            let delivery = try await client.getOne(queue)
            #expect(delivery.map { String(decoding: $0.body, as: UTF8.self) } == "over tls")
            await client.deleteQueues(queue)
        } catch {
            await client.close()
            throw error
        }
        await client.close()
    }

    /// `amqps://` to the broker's TLS listener with the given query, built from `Deploy/local/broker env`.
    private func tlsURL(_ query: (_ env: [String: String]) throws -> String) throws -> String {
        let env = try Self.brokerEnvironment()
        let port = try #require(env["WARREN_BROKER_TLS_PORT"])
        return "amqps://guest:guest@localhost:\(port)/?" + (try query(env))
    }

    @Test func connectsVerifyingTheBrokerAgainstTheTestCA() async throws {
        try await roundTrip(try tlsURL { "cacertfile=\(try #require($0["WARREN_BROKER_TLS_CA"]))" })
    }

    @Test func presentsAClientCertificate() async throws {
        try await roundTrip(
            try tlsURL { env in
                "cacertfile=\(try #require(env["WARREN_BROKER_TLS_CA"]))"
                    + "&certfile=\(try #require(env["WARREN_BROKER_TLS_CLIENT_CERT"]))"
                    + "&keyfile=\(try #require(env["WARREN_BROKER_TLS_CLIENT_KEY"]))"
            })
    }

    @Test func refusesABrokerSignedByAnotherCA() async throws {
        // A CA of our own that did not sign the broker's certificate.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("warren-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let otherCA = directory.appendingPathComponent("other-ca.pem").path
        let openssl = Process()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        openssl.arguments = [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=Other Test CA",
            "-keyout", directory.appendingPathComponent("other-ca.key").path, "-out", otherCA,
        ]
        openssl.standardOutput = FileHandle.nullDevice
        openssl.standardError = FileHandle.nullDevice
        try openssl.run()
        openssl.waitUntilExit()
        #expect(openssl.terminationStatus == 0)
        await #expect {
            try await roundTrip(try tlsURL { _ in "cacertfile=\(otherCA)" })
        } throws: { error in
            (error as! AMQPError).code == .tls
        }
    }
}
