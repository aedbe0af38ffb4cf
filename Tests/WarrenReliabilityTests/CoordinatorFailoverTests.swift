import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

#if canImport(Glibc)
    import Glibc
#endif

extension Reliability {
    /// Scenario 7: three `warren coordinator` processes and a schedule that fires every second; the leader is killed
    /// with SIGKILL every 10 s for 60 s and comes back as a standby. No fire time may be published twice, missed fires
    /// follow `missedRuns` (`skip` here: no catch-up fire), and a standby takes over within a few seconds.
    @Suite struct CoordinatorFailover {
        /// A fire as the work queue received it.

        static let kills = 6
        static let killEvery: Duration = .seconds(10)
        /// The default `coordinator.leaderRetryInterval`: how often a standby tries to take the lock.
        static let leaderRetryInterval: Duration = .seconds(2)

        static func configurationJSON(prefix: String) -> String {
            """
            {
              "broker": {"url": "\(TestBroker.url)"},
              "prefix": "\(prefix)",
              "queues": [{"name": "work", "tasks": ["test.#"]}],
              "retryTiers": ["1s"],
              "schedules": [{"name": "tick", "cron": "* * * * * *", "task": "test.tick", "payload": {"n": 1},
                             "missedRuns": "skip"}],
              "coordinator": {"leaderRetryInterval": "2s"}
            }
            """
        }

        @Test func killingTheLeaderEveryTenSecondsNeverFiresATimeTwice() async throws {
            let prefix =
                "t-"
                + TestBroker.unique("failover").replacingOccurrences(of: "test.", with: "")
                .replacingOccurrences(of: ".", with: "-")
            let json = Self.configurationJSON(prefix: prefix)
            let configuration = try WarrenConfiguration.decode(Data(json.utf8))
            #expect(configuration.schedules[0].missedRuns == .skip)
            #expect(configuration.coordinator.leaderRetryInterval == Self.leaderRetryInterval)
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(prefix)
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let file = directory.appendingPathComponent("warren.json")
            try Data(json.utf8).write(to: file)

            let client = try await TestBroker.client(prefix + "-observer")
            let everyProcess = Recorder<ChildProcess>()
            do {
                let fires = try await Fire.record(client, configuration)
                func start(_ name: String) throws -> ChildProcess {
                    let process = try ChildProcess(
                        ChildProcess.warren,
                        ["coordinator", "--config", file.path, "--name", "\(prefix)-\(name)", "--metrics-port", "0"],
                        directory: directory, name: name)
                    everyProcess.append(process)
                    return process
                }
                try await Self.run(start: start, fires: fires)
            } catch {
                for process in everyProcess.all where process.isRunning { process.signal(SIGKILL) }
                await Self.cleanUp(client, configuration)
                throw error
            }
            for process in everyProcess.all where process.isRunning { process.signal(SIGKILL) }
            await Self.cleanUp(client, configuration)
        }

        static func run(start: (String) throws -> ChildProcess, fires: Recorder<Fire>) async throws {
            var slots = try (0..<3).map { try start("c\($0)") }
            func leaders() -> [Int] {
                slots.indices.filter { slots[$0].isRunning && slots[$0].log.contains("became the leader") }
            }
            try await fires.wait(forCount: 3, "three fires under the first leader", timeout: .seconds(20))
            #expect(leaders().count == 1)

            let begin = ContinuousClock.now
            var killTimes: [Date] = []
            var takeovers: [Double] = []
            for round in 1...kills {
                try await Task.sleep(until: begin + killEvery * round, clock: .continuous)
                let current = leaders()
                try #require(current.count == 1, "round \(round): leaders \(current)")
                let leader = current[0]
                slots[leader].signal(SIGKILL)
                let killedAt = Date()
                killTimes.append(killedAt)
                _ = try await slots[leader].waitForExit(timeout: .seconds(5))

                // A standby takes over: its first fire is the first with a fire time after the kill.
                let resumed = try await fires.wait(for: "a fire after kill \(round)", timeout: .seconds(8)) {
                    $0.contains { fire in Self.date(fire.fireTime).map { $0 > killedAt } ?? false }
                }
                let first = try #require(resumed.first { Self.date($0.fireTime).map { $0 > killedAt } ?? false })
                takeovers.append(first.receivedAt.timeIntervalSince(killedAt))
                let successors = leaders()
                #expect(successors.count == 1 && successors != [leader], "round \(round): leaders \(successors)")

                // The killed one comes back, as a standby.
                slots[leader] = try start("c\(leader)-r\(round)")
                try await slots[leader].waitForLog("standing by", timeout: .seconds(15))
                #expect(!slots[leader].log.contains("became the leader"))
            }
            // A few more fires under the last leader, then a clean stop.
            let count = fires.all.count
            try await fires.wait(for: "fires after the last takeover", timeout: .seconds(10)) { $0.count >= count + 3 }
            for slot in slots { slot.signal(SIGTERM) }
            for slot in slots { #expect(try await slot.waitForExit(timeout: .seconds(15)) == 0) }

            let all = fires.all
            let times = all.map(\.fireTime)
            let duplicates = times.count - Set(times).count
            #expect(duplicates == 0, "fire times published twice: \(times)")
            #expect(all.allSatisfy { $0.messageID == "tick@\($0.fireTime)" })
            let dates = times.compactMap(Self.date)
            #expect(dates.count == times.count, "unparseable fire times: \(times)")
            #expect(dates == dates.sorted(), "fire times out of order: \(times)")
            // missedRuns skip: no catch-up fire, and the only holes in the one-second sequence are around kills.
            #expect(all.filter(\.catchUp).isEmpty)
            var holes: [Double] = []
            for (earlier, later) in zip(dates, dates.dropFirst()) {
                let gap = later.timeIntervalSince(earlier)
                guard gap > 1.5 else { continue }
                holes.append(gap)
                #expect(
                    killTimes.contains { $0 >= earlier.addingTimeInterval(-1) && $0 <= later },
                    "fires missing between \(earlier) and \(later) with no kill then")
            }
            let missed = holes.reduce(0) { $0 + Int($1.rounded()) - 1 }
            let maxGap = takeovers.max() ?? 0
            for (round, takeover) in takeovers.enumerated() {
                #expect(takeover < 6, "kill \(round + 1): no fire for \(takeover) s")
            }
            Reliability.report(
                "coordinator-failover",
                [
                    "fires": all.count, "kills": killTimes.count, "duplicates": duplicates, "catchUps": 0,
                    "missedRunsPolicy": "skip", "missedFires": missed,
                    "maxGapSeconds": String(format: "%.2f", maxGap),
                    "takeoverSeconds": takeovers.map { String(format: "%.2f", $0) }.joined(separator: ","),
                    "maxFireTimeGapSeconds": Int(holes.max() ?? 1),
                ])
        }

        static func date(_ text: String) -> Date? { try? Date(text, strategy: .iso8601) }

        static func cleanUp(_ client: AMQPClient, _ configuration: WarrenConfiguration) async {
            let topology = Topology(configuration: configuration)
            _ = try? await client.withChannel { topology.delete(on: $0) }
            await client.close()
        }
    }
}
