import Foundation
import Warren
import WarrenCoordinator

/// `warren cron next|check`.
struct CronCommand: WarrenCommand {
    static let name = "cron"
    static let abstract = "Show a cron expression's next fire times, or check the configured schedules"
    static let help = """
        Usage: warren cron next "<expression>" [--tz ZONE] [-n N]
               warren cron check [--config FILE]

        next    Prints the next N (default 5) fire times after now, in ZONE (default UTC; an IANA name such as
                Europe/Berlin) and in UTC. The expression has 5 fields or 6 with a leading seconds field, or is a
                macro (@hourly, @daily, …, @every 90s).
        check   Parses every schedule in the configuration and prints its next fire; exit 1 if any is invalid.
        """

    enum Action {
        case next(expression: String, zone: TimeZone, count: Int)
        case check(WarrenConfiguration)
    }
    let action: Action

    init(arguments: inout CommandLineArguments, environment: [String: String]) throws {
        let zoneName = try arguments.option("--tz") ?? "UTC"
        let count = try arguments.option("-n", as: Int.self) ?? 5
        let configPath = try arguments.option("--config") ?? "Config/warren.json"
        switch arguments.positional() {
        case "next":
            guard let expression = arguments.positional() else { throw UsageError("cron next needs an expression") }
            guard let zone = TimeZone(identifier: zoneName) else { throw UsageError("--tz \(zoneName): unknown zone") }
            guard (1...1000).contains(count) else { throw UsageError("-n must be from 1 to 1000") }
            action = .next(expression: expression, zone: zone, count: count)
        case "check":
            action = .check(try CLI.loadConfiguration(path: configPath, environment: environment))
        case let other?:
            throw UsageError("unknown cron command '\(other)' (next or check)")
        case nil:
            throw UsageError("missing cron command (next or check)")
        }
    }

    func run() async throws -> Int32 {
        switch action {
        case .next(let expression, let zone, let count):
            let cron: CronExpression
            do {
                cron = try CronExpression(expression)
            } catch {
                CLI.printError("warren cron: \(error)")
                return 1
            }
            let local = Date.ISO8601FormatStyle(timeZone: zone)
            for date in cron.next(after: Date(), in: zone, count: count) {
                print("\(date.formatted(local))  (\(date.formatted(.iso8601)))")
            }
            return 0
        case .check(let configuration):
            var failed = false
            for (index, schedule) in configuration.schedules.enumerated() {
                do {
                    let cron = try CronExpression(schedule.cron)
                    let zone = TimeZone(identifier: schedule.timeZone) ?? .gmt
                    let next = cron.next(after: Date(), in: zone).map { $0.formatted(.iso8601) } ?? "never"
                    print("ok    \(schedule.name)  \(schedule.cron)  (\(schedule.timeZone))  next \(next)")
                } catch {
                    failed = true
                    print("error schedules[\(index)] \(schedule.name): \(error)")
                }
            }
            return failed ? 1 : 0
        }
    }
}
