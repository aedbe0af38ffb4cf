import Foundation
import Warren
import WarrenAMQP

#if canImport(Glibc)
    import Glibc
#endif

/// Entry point: `warren <command> [options]`.
enum CLI {
    static let version = AMQPConnection.clientVersion
    static let commands: [any WarrenCommand.Type] = [
        WorkerCommand.self, CoordinatorCommand.self, EnqueueCommand.self, DeadCommand.self, TopologyCommand.self,
        StatusCommand.self, CronCommand.self, DemoCommand.self, BenchCommand.self, DrainCommand.self,
    ]

    static var help: String {
        let width = commands.map { $0.name.count }.max() ?? 0
        let list = commands.map { "  \($0.name.padding(toLength: width, withPad: " ", startingAt: 0))  \($0.abstract)" }
        return """
            warren \(version) — background jobs over RabbitMQ

            Usage: warren <command> [options]

            Commands:
            \(list.joined(separator: "\n"))

            Options:
              -h, --help     Show help (also after any command)
              --version      Print the version

            Environment:
              WARREN_AMQP_URL   Broker URI(s), comma-separated for failover
                                (default amqp://guest:guest@127.0.0.1:5672/%2F)
            """
    }

    static func main() async -> Int32 {
        var arguments = CommandLineArguments(Array(CommandLine.arguments.dropFirst()))
        let environment = ProcessInfo.processInfo.environment
        if arguments.flag("--version") {
            print("warren \(version)")
            return 0
        }
        guard let name = arguments.positional() else {
            if arguments.flag("-h", "--help") || arguments.isEmpty {
                print(help)
                return arguments.isEmpty ? 0 : 64
            }
            return usage(UsageError("missing command"))
        }
        if name == "help" {
            print(help)
            return 0
        }
        guard let command = commands.first(where: { $0.name == name }) else {
            return usage(UsageError("unknown command '\(name)'"))
        }
        if arguments.flag("-h", "--help") {
            print(command.help)
            return 0
        }
        do {
            let instance = try command.init(arguments: &arguments, environment: environment)
            try arguments.finish()
            return try await instance.run()
        } catch let error as UsageError {
            return usage(error, command: name)
        } catch let error as ConfigurationFailure {
            printError("warren \(name): \(error)")
            return 78
        } catch {
            printError("warren \(name): \(error)")
            return 1
        }
    }

    static func usage(_ error: UsageError, command: String? = nil) -> Int32 {
        let prefix = command.map { "warren \($0)" } ?? "warren"
        printError("\(prefix): \(error) (see '\(prefix) --help')")
        return 64
    }

    static func printError(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    /// Loads a Warren configuration file; errors become ``ConfigurationFailure`` (exit 78) naming the key.
    static func loadConfiguration(path: String, environment: [String: String]) throws -> WarrenConfiguration {
        do {
            return try WarrenConfiguration.load(path: path, environment: environment)
        } catch {
            throw ConfigurationFailure(description: "\(error)")
        }
    }

    static func logLevel(_ text: String?) throws -> Logger.Level {
        switch text ?? "info" {
        case "debug": .debug
        case "info": .info
        case "warning": .warning
        case "error": .error
        default: throw UsageError("--log-level is debug, info, warning or error")
        }
    }

    /// The broker configuration from `--url` or `WARREN_AMQP_URL`.
    static func connection(url: String?, environment: [String: String], name: String) throws
        -> AMQPConnectionConfiguration
    {
        let text = url ?? environment["WARREN_AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/%2F"
        do {
            return try AMQPConnectionConfiguration(url: text, connectionName: name)
        } catch let error as AMQPError {
            throw UsageError(url != nil ? "--url: \(error.message)" : "WARREN_AMQP_URL: \(error.message)")
        }
    }
}

exit(await CLI.main())
