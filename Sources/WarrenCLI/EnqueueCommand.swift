import Foundation
import Warren

/// `warren enqueue`: publish jobs with confirms.
struct EnqueueCommand: WarrenCommand {
    static let name = "enqueue"
    static let abstract = "Enqueue a job (publisher confirms; fails if no queue takes it)"
    static let help = """
        Usage: warren enqueue <task> [--payload JSON | --payload-file FILE] [--delay DURATION] [--id ID]
                              [--count N] [--config FILE] [--json]

        Publishes a job to the jobs exchange with routing key <task>, persistent JSON, a message id, publisher
        confirms and mandatory routing: the command succeeds only once the broker has the job in a queue. Prints
        each job id (or a JSON array with --json).

        Options:
          --payload JSON       The payload (default {})
          --payload-file FILE  Read the payload from FILE ('-' for standard input)
          --delay DURATION     Run no earlier than this from now (e.g. 30s, 5m): x-warren-not-before
          --id ID              Job id (default: a new UUID); with --count, ID-1, ID-2, …
          --count N            Enqueue N identical jobs (default 1)
          --config FILE        Configuration (default Config/warren.json); WARREN_AMQP_URL overrides the broker
        """

    let configuration: WarrenConfiguration
    let task: String
    let payload: Data
    let delay: Duration?
    let id: String?
    let count: Int
    let json: Bool

    init(arguments: inout CommandLineArguments, environment: [String: String]) throws {
        configuration = try CLI.loadConfiguration(
            path: try arguments.option("--config") ?? "Config/warren.json", environment: environment)
        let text = try arguments.option("--payload")
        let file = try arguments.option("--payload-file")
        if text != nil && file != nil { throw UsageError("--payload and --payload-file exclude each other") }
        if let file {
            let data =
                file == "-"
                ? FileHandle.standardInput.readDataToEndOfFile() : FileManager.default.contents(atPath: file)
            guard let data else { throw UsageError("--payload-file \(file): cannot read it") }
            payload = data
        } else {
            payload = Data((text ?? "{}").utf8)
        }
        guard (try? JSONSerialization.jsonObject(with: payload)) is [String: Any] else {
            throw UsageError("the payload is not a JSON object")
        }
        delay = try arguments.option("--delay").map { text in
            do { return try DurationText.parse(text) } catch { throw UsageError("--delay \(text): \(error)") }
        }
        id = try arguments.option("--id")
        count = try arguments.option("--count", as: Int.self) ?? 1
        json = arguments.flag("--json")
        guard count >= 1 else { throw UsageError("--count must be at least 1") }
        // Positionals last, once every option and its value are consumed.
        guard let task = arguments.positional() else { throw UsageError("missing <task>") }
        self.task = task
    }

    func run() async throws -> Int32 {
        let client = try JobClient(configuration: configuration, connectionName: "warren-enqueue")
        try await client.connect()
        var ids: [String] = []
        do {
            for index in 1...count {
                let jobID = id.map { count == 1 ? $0 : "\($0)-\(index)" } ?? JobID.random()
                ids.append(try await client.enqueue(task: task, json: payload, id: jobID, delay: delay))
            }
        } catch {
            await client.close()
            throw error
        }
        await client.close()
        if json {
            print(String(decoding: try JSONSerialization.data(withJSONObject: ids), as: UTF8.self))
        } else {
            for jobID in ids { print(jobID) }
        }
        return 0
    }
}
