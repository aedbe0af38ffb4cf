import Foundation
import Testing
import WarrenTestSupport

/// `warren bench` end to end: the built executable against the real broker, every scenario on a small count.
@Suite("warren bench")
struct BenchCommandTests {
    struct Row: Decodable {
        var scenario: String
        var messages: Int
        var messagesPerSecond: Int
        var baseline: String?
        var ratio: Double?
        var p50Milliseconds: Double?
        var p99Milliseconds: Double?
        var peakRSSMegabytes: Double
    }

    @Test func everyScenarioRunsReportsItsRateAndCleansUp() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestBroker.unique("bench"))
        let bench = try ChildProcess(
            ChildProcess.warren, ["bench", "--count", "400", "--rate", "400", "--json", "--url", TestBroker.url],
            directory: directory, name: "bench")
        let status = try await bench.waitForExit(timeout: .seconds(180))
        #expect(status == 0, "\(bench.log)")
        let rows = try JSONDecoder().decode([Row].self, from: Data(bench.output.utf8))
        #expect(
            rows.map(\.scenario) == [
                "raw-publish", "client-publish", "raw-enqueue", "client-enqueue", "raw-consume",
                "raw-consume-multiple", "client-consume", "worker-drain", "worker-process", "worker-process-2",
                "worker-retry", "worker-latency",
            ])
        for row in rows {
            #expect(row.messagesPerSecond > 0, "\(row.scenario)")
            #expect(row.peakRSSMegabytes > 1, "\(row.scenario)")
            #expect((row.baseline == nil) == (row.ratio == nil), "\(row.scenario)")
        }
        let byName = Dictionary(uniqueKeysWithValues: rows.map { ($0.scenario, $0) })
        #expect(byName["worker-process"]?.baseline == "raw-consume")
        #expect(byName["worker-retry"]?.baseline == "worker-drain")
        #expect(byName["client-enqueue"]?.baseline == "raw-enqueue")
        let latency = try #require(byName["worker-latency"])
        #expect(latency.messages == 400)
        let p50 = try #require(latency.p50Milliseconds)
        let p99 = try #require(latency.p99Milliseconds)
        #expect(p50 > 0 && p50 <= p99)
        // Every temporary queue is gone.
        let queues = try TestBroker.script("ctl", "list_queues", "--quiet", "name")
        let left = queues.split(separator: "\n").filter { $0.hasPrefix("warren.bench.") || $0.hasPrefix("bench-") }
        #expect(left.isEmpty, "left behind: \(left)")
    }
}
