import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenCoordinator
import WarrenTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// A fire as the work queue received it.

@Suite("Scheduler: exactly one leader fires each time")
struct SchedulerTests {
    static func configurationJSON(prefix: String, missedRuns: String) -> String {
        """
        {
          "broker": {"url": "\(TestBroker.url)"},
          "prefix": "\(prefix)",
          "queues": [{"name": "work", "tasks": ["test.#"]}],
          "retryTiers": ["1s"],
          "schedules": [{"name": "tick", "cron": "@every 1s", "task": "test.tick", "payload": {"n": 1},
                         "missedRuns": "\(missedRuns)"}],
          "coordinator": {"leaderRetryInterval": "300ms"}
        }
        """
    }

    static func cleanUp(_ client: AMQPClient, _ configuration: WarrenConfiguration) async {
        let topology = Topology(configuration: configuration)
        _ = try? await client.withChannel { topology.delete(on: $0) }
        await client.close()
    }

    @Test func threeCoordinatorsFireEachTimeOnceAndAStandbyTakesOverAfterKillNine() async throws {
        let prefix =
            "t-"
            + TestBroker.unique("cron3").replacingOccurrences(of: "test.", with: "")
            .replacingOccurrences(of: ".", with: "-")
        let json = Self.configurationJSON(prefix: prefix, missedRuns: "skip")
        let configuration = try WarrenConfiguration.decode(Data(json.utf8))
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(prefix)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("warren.json")
        try Data(json.utf8).write(to: file)

        let client = try await TestBroker.client(prefix + "-observer")
        let fires = try await Fire.record(client, configuration)

        var coordinators: [ChildProcess] = []
        for index in 0..<3 {
            coordinators.append(
                try ChildProcess(
                    ChildProcess.warren,
                    [
                        "coordinator", "--config", file.path, "--name", "\(prefix)-c\(index)", "--metrics-port", "0",
                    ],
                    directory: directory, name: "c\(index)"))
        }
        do {
            try await fires.wait(forCount: 4, "four fires under the first leader", timeout: .seconds(20))
            let leader = try #require(coordinators.first { $0.log.contains("became the leader") })
            leader.signal(SIGKILL)
            let killedAt = Date()
            let before = fires.all.count
            // A standby takes over within a few seconds and fires continue.
            try await fires.wait(for: "fires after the leader was killed", timeout: .seconds(20)) {
                $0.count >= before + 4
            }
            let standbys = coordinators.filter { $0 !== leader }
            #expect(standbys.filter { $0.log.contains("became the leader") }.count == 1)
            for standby in standbys { standby.signal(SIGTERM) }
            for standby in standbys { #expect(try await standby.waitForExit(timeout: .seconds(15)) == 0) }

            let all = fires.all
            let times = all.map(\.fireTime)
            #expect(Set(times).count == times.count, "a fire time was published twice: \(times)")
            #expect(all.allSatisfy { $0.messageID == "tick@\($0.fireTime)" })
            // Whole seconds, increasing, and (policy skip) no catch-up fire.
            let dates = times.compactMap { try? Date($0, strategy: .iso8601) }
            #expect(dates.count == times.count)
            #expect(dates == dates.sorted())
            #expect(!all.contains { $0.catchUp })
            let resumed = try #require(dates.first { $0 > killedAt })
            #expect(resumed.timeIntervalSince(killedAt) < 5, "took over after \(resumed.timeIntervalSince(killedAt)) s")
        } catch {
            for coordinator in coordinators { coordinator.signal(SIGKILL) }
            await Self.cleanUp(client, configuration)
            throw error
        }
        for coordinator in coordinators where coordinator.isRunning { coordinator.signal(SIGKILL) }
        await Self.cleanUp(client, configuration)
    }

    @Test func missedFiresArePublishedOnceUnderPolicyOnce() async throws {
        let prefix =
            "t-"
            + TestBroker.unique("crononce").replacingOccurrences(of: "test.", with: "")
            .replacingOccurrences(of: ".", with: "-")
        let configuration = try WarrenConfiguration.decode(
            Data(Self.configurationJSON(prefix: prefix, missedRuns: "once").utf8))
        let client = try await TestBroker.client(prefix + "-observer")
        let logger = Logger(sink: .none)

        let fires = try await Fire.record(client, configuration)
        let first = try Coordinator(configuration: configuration, logger: logger, connectionName: prefix + "-1")
        let run1 = Task { try await first.run() }
        do {
            try await fires.wait(forCount: 2, "two fires", timeout: .seconds(15))
            first.shutdown()
            try await run1.value
            let stoppedAt = Date()
            // Three seconds with no coordinator: about three fire times are missed.
            try await Task.sleep(for: .seconds(3))
            let before = fires.all.count
            let second = try Coordinator(configuration: configuration, logger: logger, connectionName: prefix + "-2")
            let run2 = Task { try await second.run() }
            try await fires.wait(for: "the catch-up fire and a regular one", timeout: .seconds(15)) {
                $0.count >= before + 2
            }
            second.shutdown()
            try await run2.value
            let all = fires.all
            let catchUps = all.filter(\.catchUp)
            #expect(catchUps.count == 1, "exactly one catch-up fire: \(all.map(\.fireTime))")
            if let catchUp = catchUps.first, let time = try? Date(catchUp.fireTime, strategy: .iso8601) {
                #expect(time > stoppedAt, "the catch-up is the latest missed time, not the first")
            }
            let times = all.map(\.fireTime)
            #expect(Set(times).count == times.count, "a fire time was published twice: \(times)")
        } catch {
            first.shutdown()
            await Self.cleanUp(client, configuration)
            throw error
        }
        await Self.cleanUp(client, configuration)
    }
}
