import Foundation
import Synchronization
import Testing
import WarrenTestSupport

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
#if canImport(Glibc)
    import Glibc
#endif

extension Reliability {
    /// Scenario 8: credentials given in the URL (environment or configuration file) never show up in anything Warren
    /// prints or serves — logs, metrics, `status`, command output, error messages — whether things work or fail; the
    /// metrics listeners bind loopback by default; `amqps://` verifies the broker against the configured CA.
    ///
    /// Every test runs the real `warren` processes as a broker user of its own with a distinctive password that
    /// contains characters a URL must escape (`/`, `?`, `@`), and greps every standard output, standard error and
    /// HTTP body for the password, its percent-encoded form, and each piece of it between those characters.
    @Suite struct Secrets {
        @Test func credentialsNeverAppearInLogsMetricsStatusOrCommandOutput() async throws {
            try await SecretUser.with { user in
                let directory = try SecretsFixture.temporaryDirectory()
                defer { try? FileManager.default.removeItem(at: directory) }
                let scanner = LeakScanner(user)
                try await WorkerHarness.with(
                    "secrets", queueJSON: #"{"name": "work", "tasks": ["warren.diag.#"], "deliveryLimit": 3}"#,
                    workerJSON: #""metricsPort": 0"#
                ) { harness in
                    let url = user.url()
                    // The environment variant's file names an unreachable broker without credentials: a command
                    // that works proves it used WARREN_AMQP_URL.
                    let envConfig = try SecretsFixture.config(harness, url: "amqp://127.0.0.1:1/%2F", in: directory)
                    let fileConfig = try SecretsFixture.config(harness, url: url, in: directory, name: "file")
                    let env = ["WARREN_AMQP_URL": url]

                    let worker = try SecretsFixture.start(
                        [
                            "worker", "--config", envConfig, "--no-examples", "--diagnostic-tasks", "--name",
                            harness.prefix,
                        ],
                        environment: env, in: directory, name: "worker")
                    let coordinator = try SecretsFixture.start(
                        [
                            "coordinator", "--config", fileConfig, "--metrics-port", "0", "--name",
                            harness.prefix + "-c",
                        ],
                        in: directory, name: "coordinator")
                    defer {
                        worker.signal(SIGKILL)
                        coordinator.signal(SIGKILL)
                    }
                    try await worker.waitForLog("worker started", timeout: .seconds(20))
                    try await coordinator.waitForLog("became the leader", timeout: .seconds(20))
                    let workerPort = try #require(
                        SecretsFixture.logField("http.address", in: worker.log)?.split(
                            separator: ":"
                        ).last.flatMap { Int($0) })
                    let coordinatorPort = try #require(
                        SecretsFixture.logField("http.port", in: coordinator.log).flatMap { Int($0) })

                    // A job end to end through both variants: enqueued with the user's URL, run by the worker.
                    let markers = ["env-\(UUID().uuidString.prefix(8))", "file-\(UUID().uuidString.prefix(8))"]
                    let payload = { (marker: String) in #"{"milliseconds": 1, "marker": "\#(marker)"}"# }
                    var runs: [(String, [String], [String: String])] = [
                        ("enqueue(env)", ["enqueue", "warren.diag.sleep", "--payload", payload(markers[0])], env),
                        ("enqueue(file)", ["enqueue", "warren.diag.sleep", "--payload", payload(markers[1])], [:]),
                    ]
                    for (variant, environment) in [("env", env), ("file", [:])] {
                        runs += [
                            ("status(\(variant))", ["status"], environment),
                            ("status --json(\(variant))", ["status", "--json"], environment),
                            ("status --workers --json(\(variant))", ["status", "--workers", "--json"], environment),
                            ("dead list(\(variant))", ["dead", "list"], environment),
                            ("dead list --json(\(variant))", ["dead", "list", "--json"], environment),
                            ("topology check(\(variant))", ["topology", "check"], environment),
                        ]
                    }
                    for (label, arguments, environment) in runs {
                        let config = environment.isEmpty ? fileConfig : envConfig
                        let outcome = try await SecretsFixture.run(
                            arguments + ["--config", config], environment: environment, in: directory)
                        #expect(outcome.status == 0, "\(label) exited \(outcome.status): \(outcome.log)")
                        scanner.scan(label, outcome)
                    }
                    // `drain` takes the URL as --url (and from WARREN_AMQP_URL): an empty queue, one second.
                    for (label, arguments, environment) in [
                        ("drain --url", ["--url", url], [String: String]()), ("drain(env)", [], env),
                    ] {
                        let outcome = try await SecretsFixture.run(
                            ["drain", "--queue", harness.deadQueue, "--timeout", "1"] + arguments,
                            environment: environment, in: directory)
                        #expect(outcome.status == 0, "\(label) exited \(outcome.status): \(outcome.log)")
                        scanner.scan(label, outcome)
                    }
                    for marker in markers { try await worker.waitForOutput("diag.sleep done \(marker)") }

                    // The HTTP endpoints, and where they listen.
                    for (label, port) in [("worker", workerPort), ("coordinator", coordinatorPort)] {
                        for path in ["/metrics", "/healthz"] {
                            let (status, body) = try await SecretsFixture.get(port: port, path)
                            #expect(status == 200, "\(label) \(path): HTTP \(status)")
                            scanner.scan("\(label) \(path)", body)
                        }
                        let listening = SecretsFixture.listeningAddresses(port: port)
                        #expect(listening == ["127.0.0.1"], "\(label) metrics on port \(port) listen on \(listening)")
                        for address in SecretsFixture.nonLoopbackIPv4Addresses() {
                            #expect(
                                !SecretsFixture.acceptsConnections(host: address, port: port),
                                "\(label) metrics accept connections on \(address):\(port)")
                        }
                    }
                    let workerMetrics = try await SecretsFixture.get(port: workerPort, "/metrics").body
                    #expect(workerMetrics.contains("succeeded"), "worker /metrics: \(workerMetrics)")

                    worker.signal(SIGTERM)
                    coordinator.signal(SIGTERM)
                    #expect(try await worker.waitForExit(timeout: .seconds(20)) == 0)
                    #expect(try await coordinator.waitForExit(timeout: .seconds(20)) == 0)
                    scanner.scan("worker", worker)
                    scanner.scan("coordinator", coordinator)
                    scanner.commands += 2
                }
                scanner.expectNoLeaks()
                Reliability.report(
                    "secrets",
                    [
                        "part": "working", "commands": scanner.commands, "outputs_scanned": scanner.outputs,
                        "bytes_scanned": scanner.bytes,
                        "non_loopback_addresses_tried":
                            SecretsFixture.nonLoopbackIPv4Addresses().count, "leaks": scanner.leaks.count,
                    ])
            }
        }

        /// Wrong password, unreachable port, unknown vhost and malformed URLs, through every command that connects:
        /// each fails (nonzero exit, one line saying why) without a trace of the password.
        @Test func failuresNeverEchoThePassword() async throws {
            try await SecretUser.with { user in
                let directory = try SecretsFixture.temporaryDirectory()
                defer { try? FileManager.default.removeItem(at: directory) }
                let scanner = LeakScanner(user)
                let prefix = "t-secrets-\(UUID().uuidString.prefix(8).lowercased())"
                let cases: [(String, String)] = [
                    ("wrong password", user.url(password: user.password + "-wrong")),
                    ("unreachable port", user.url(port: "1")),
                    ("unknown vhost", user.url(vhost: "warren-no-such-vhost")),
                    ("unescaped password", "amqp://\(user.name):\(user.password)@127.0.0.1:5672/%2F"),
                    ("unescaped password, no vhost", "amqp://\(user.name):\(user.password)@127.0.0.1:5672"),
                    ("bad port", user.url(port: "56x72")),
                    ("bad scheme", user.url(scheme: "amqpz")),
                    ("unknown option", user.url(query: "?heartbeet=5")),
                    ("no host", "amqp://\(user.name):\(user.encodedPassword)"),
                ]
                let commands: [[String]] = [
                    ["worker", "--no-examples", "--diagnostic-tasks"], ["coordinator", "--metrics-port", "0"],
                    ["status"], ["status", "--json"], ["enqueue", "warren.diag.noop"], ["dead", "list"],
                    ["topology", "check"],
                ]
                for (what, url) in cases {
                    let envConfig = try SecretsFixture.config(
                        prefix: prefix, url: "amqp://127.0.0.1:1/%2F", in: directory, name: "env")
                    let fileConfig = try SecretsFixture.config(prefix: prefix, url: url, in: directory, name: "file")
                    var runs: [(String, [String], [String: String])] = commands.map {
                        (
                            "\($0.joined(separator: " ")) (\(what), env)", $0 + ["--config", envConfig],
                            ["WARREN_AMQP_URL": url]
                        )
                    }
                    runs.append(("status (\(what), config file)", ["status", "--config", fileConfig], [:]))
                    runs.append(
                        ("drain --url (\(what))", ["drain", "--queue", prefix, "--timeout", "1", "--url", url], [:]))
                    let outcomes = try await SecretsFixture.runAll(runs, in: directory)
                    for ((label, _, _), outcome) in zip(runs, outcomes) {
                        #expect(outcome.status != 0, "\(label) exited 0")
                        let lines = SecretsFixture.errorLines(outcome.log)
                        #expect(lines.count == 1, "\(label): expected one error line, got \(outcome.log)")
                        scanner.scan(label, outcome)
                    }
                }
                scanner.expectNoLeaks()
                Reliability.report(
                    "secrets",
                    [
                        "part": "failures", "cases": cases.count, "commands": scanner.commands,
                        "outputs_scanned": scanner.outputs, "bytes_scanned": scanner.bytes,
                        "leaks": scanner.leaks.count,
                    ])
            }
        }

        /// `amqps://` verified against the broker's test CA runs a job end to end; against a CA that did not sign
        /// the broker's certificate, start-up fails with one clear line.
        @Test func amqpsVerifiesTheBrokerAgainstTheConfiguredCA() async throws {
            try await SecretUser.with { user in
                let directory = try SecretsFixture.temporaryDirectory()
                defer { try? FileManager.default.removeItem(at: directory) }
                let scanner = LeakScanner(user)
                let broker = try SecretsFixture.brokerEnvironment()
                let tlsPort = try #require(broker["WARREN_BROKER_TLS_PORT"])
                let ca = try #require(broker["WARREN_BROKER_TLS_CA"])
                let otherCA = try SecretsFixture.makeOtherCA(in: directory)
                let tlsURL = { (ca: String) in
                    user.url(scheme: "amqps", host: "localhost", port: tlsPort, query: "?cacertfile=\(ca)")
                }
                try await WorkerHarness.with(
                    "secrets-tls", queueJSON: #"{"name": "work", "tasks": ["warren.diag.#"], "deliveryLimit": 3}"#
                ) { harness in
                    let config = try SecretsFixture.config(harness, url: "amqp://127.0.0.1:1/%2F", in: directory)
                    let env = ["WARREN_AMQP_URL": tlsURL(ca)]
                    let worker = try SecretsFixture.start(
                        [
                            "worker", "--config", config, "--no-examples", "--diagnostic-tasks", "--name",
                            harness.prefix,
                        ],
                        environment: env, in: directory, name: "tls-worker")
                    defer { worker.signal(SIGKILL) }
                    try await worker.waitForLog("worker started", timeout: .seconds(20))
                    let marker = "tls-\(UUID().uuidString.prefix(8))"
                    let enqueued = try await SecretsFixture.run(
                        [
                            "enqueue", "warren.diag.sleep", "--payload",
                            #"{"milliseconds": 1, "marker": "\#(marker)"}"#,
                            "--config", config,
                        ], environment: env, in: directory)
                    #expect(enqueued.status == 0, "enqueue over amqps: \(enqueued.log)")
                    scanner.scan("enqueue over amqps", enqueued)
                    try await worker.waitForOutput("diag.sleep done \(marker)")
                    worker.signal(SIGTERM)
                    #expect(try await worker.waitForExit(timeout: .seconds(20)) == 0)
                    scanner.scan("worker over amqps", worker)
                    scanner.commands += 1

                    // The other CA: the worker and a one-shot command refuse to start, in one line.
                    let wrongEnv = ["WARREN_AMQP_URL": tlsURL(otherCA)]
                    let runs: [(String, [String], [String: String])] = [
                        (
                            "worker, other CA", ["worker", "--config", config, "--no-examples", "--diagnostic-tasks"],
                            wrongEnv
                        ),
                        ("status, other CA", ["status", "--config", config], wrongEnv),
                    ]
                    for ((label, _, _), outcome) in zip(runs, try await SecretsFixture.runAll(runs, in: directory)) {
                        #expect(outcome.status != 0, "\(label) exited 0")
                        let lines = SecretsFixture.errorLines(outcome.log)
                        #expect(lines.count == 1, "\(label): expected one error line, got \(outcome.log)")
                        #expect(outcome.log.contains("TLS"), "\(label): \(outcome.log)")
                        scanner.scan(label, outcome)
                    }
                }
                scanner.expectNoLeaks()
                Reliability.report(
                    "secrets",
                    [
                        "part": "amqps", "commands": scanner.commands, "outputs_scanned": scanner.outputs,
                        "leaks": scanner.leaks.count,
                    ])
            }
        }
    }
}

/// A broker user of the test's own, with a password that is distinctive and needs escaping in a URL.
struct SecretUser: Sendable {
    let name: String
    /// The password's pieces between `/`, `?` and `@`: each is distinctive enough to grep for on its own.
    let pieces: [String]
    var password: String { pieces[0] + "/" + pieces[1] + "?" + pieces[2] + "@" + pieces[3] }
    var encodedPassword: String { pieces[0] + "%2F" + pieces[1] + "%3F" + pieces[2] + "%40" + pieces[3] }

    private init() {
        let alphabet = Array("abcdefghjkmnpqrstuvwxyz23456789")
        func random(_ count: Int) -> String {
            String((0..<count).map { _ in alphabet[Int.random(in: 0..<alphabet.count)] })
        }
        name = "warren-secrets-\(random(6))"
        pieces = ["Pw" + random(8), random(10), random(10), random(10)]
    }

    /// Every form of the password that must never be seen.
    var secrets: [String] { [password, encodedPassword] + pieces }

    func url(
        scheme: String = "amqp", password: String? = nil, host: String = "127.0.0.1", port: String = "5672",
        vhost: String = "%2F", query: String = ""
    ) -> String {
        let secret = password.map(Self.percentEncode) ?? encodedPassword
        return "\(scheme)://\(name):\(secret)@\(host):\(port)/\(vhost)\(query)"
    }

    static func percentEncode(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: CharacterSet(charactersIn: "-._~").union(.alphanumerics))
            ?? text
    }

    /// Creates the user with full permissions on `/`, runs `body`, and deletes the user whether `body` threw or not.
    static func with<T>(_ body: (SecretUser) async throws -> T) async throws -> T {
        let user = SecretUser()
        try TestBroker.script("ctl", "add_user", user.name, user.password)
        func delete() { _ = try? TestBroker.script("ctl", "delete_user", user.name) }
        do {
            try TestBroker.script("ctl", "set_permissions", "-p", "/", user.name, ".*", ".*", ".*")
            let result = try await body(user)
            delete()
            return result
        } catch {
            delete()
            throw error
        }
    }
}

/// Greps outputs for the password in every form; counts what it scanned.
final class LeakScanner: Sendable {
    private let secrets: [String]
    private let state = Mutex<(commands: Int, outputs: Int, bytes: Int, leaks: [String])>((0, 0, 0, []))

    init(_ user: SecretUser) { secrets = user.secrets }

    var commands: Int {
        get { state.withLock { $0.commands } }
        set { state.withLock { $0.commands = newValue } }
    }
    var outputs: Int { state.withLock { $0.outputs } }
    var bytes: Int { state.withLock { $0.bytes } }
    var leaks: [String] { state.withLock { $0.leaks } }

    func scan(_ label: String, _ text: String) {
        var found: [String] = []
        for line in text.split(separator: "\n") where secrets.contains(where: { line.contains($0) }) {
            var shown = String(line)
            for (index, secret) in secrets.enumerated() {
                shown = shown.replacingOccurrences(of: secret, with: "«secret \(index)»")
            }
            found.append("\(label): \(shown)")
        }
        state.withLock {
            $0.outputs += 1
            $0.bytes += text.utf8.count
            $0.leaks += found
        }
    }

    func scan(_ label: String, _ outcome: SecretsFixture.Outcome) {
        commands += 1
        scan("\(label) stdout", outcome.output)
        scan("\(label) stderr", outcome.log)
    }

    func scan(_ label: String, _ process: ChildProcess) {
        scan("\(label) stdout", process.output)
        scan("\(label) stderr", process.log)
    }

    func expectNoLeaks(sourceLocation: SourceLocation = #_sourceLocation) {
        let leaks = self.leaks
        #expect(leaks.isEmpty, "the password leaked:\n\(leaks.joined(separator: "\n"))", sourceLocation: sourceLocation)
    }
}

/// Processes, files and sockets for the secrets tests.
enum SecretsFixture {
    struct Outcome: Sendable {
        var status: Int32
        var output: String
        var log: String
    }

    static func temporaryDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "warren-secrets-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    /// The harness's configuration with another broker URL, written to a file.
    static func config(_ harness: WorkerHarness, url: String, in directory: URL, name: String = "env") throws -> String
    {
        let original = "\"url\": \"\(TestBroker.url)\""
        guard harness.configurationJSON.contains(original) else {
            throw TestFailure("no broker URL in the harness JSON")
        }
        return try write(
            harness.configurationJSON.replacingOccurrences(of: original, with: "\"url\": \"\(url)\""),
            to: directory.appendingPathComponent("\(harness.prefix)-\(name).json"))
    }

    /// A minimal configuration (for commands that never get as far as the broker).
    static func config(prefix: String, url: String, in directory: URL, name: String) throws -> String {
        let json =
            #"{"broker": {"url": "\#(url)"}, "prefix": "\#(prefix)", "queues": [{"name": "work", "tasks": ["warren.diag.#"]}]}"#
        return try write(
            json, to: directory.appendingPathComponent("\(prefix)-\(name)-\(UUID().uuidString.prefix(6)).json"))
    }

    private static func write(_ text: String, to file: URL) throws -> String {
        try Data(text.utf8).write(to: file)
        return file.path
    }

    /// Starts `warren ARGS` with `WARREN_AMQP_URL` unset unless `environment` sets it (through `env`, so the process
    /// is `warren` itself and takes the signals).
    static func start(
        _ arguments: [String], environment: [String: String] = [:], in directory: URL, name: String
    ) throws -> ChildProcess {
        let settings = environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        return try ChildProcess(
            URL(fileURLWithPath: "/usr/bin/env"),
            ["-u", "WARREN_AMQP_URL"] + settings + [ChildProcess.warren.path] + arguments,
            directory: directory, name: name)
    }

    /// Runs `warren ARGS` to completion (at most `timeout`).
    static func run(
        _ arguments: [String], environment: [String: String] = [:], in directory: URL, timeout: Duration = .seconds(20)
    ) async throws -> Outcome {
        let process = try start(arguments, environment: environment, in: directory, name: "run-\(UUID().uuidString)")
        do {
            let status = try await process.waitForExit(timeout: timeout)
            return Outcome(status: status, output: process.output, log: process.log)
        } catch {
            process.signal(SIGKILL)
            throw TestFailure("warren \(arguments.prefix(2).joined(separator: " ")): \(error)")
        }
    }

    /// Runs several commands at once; outcomes in the order of `runs`.
    static func runAll(_ runs: [(String, [String], [String: String])], in directory: URL) async throws -> [Outcome] {
        try await withThrowingTaskGroup(of: (Int, Outcome).self) { group in
            for (index, (_, arguments, environment)) in runs.enumerated() {
                group.addTask { (index, try await run(arguments, environment: environment, in: directory)) }
            }
            var outcomes = [Outcome?](repeating: nil, count: runs.count)
            for try await (index, outcome) in group { outcomes[index] = outcome }
            return outcomes.compactMap { $0 }
        }
    }

    /// The lines of standard error that report an error: plain lines, and JSON log lines of level error.
    static func errorLines(_ log: String) -> [String] {
        log.split(separator: "\n").map(String.init).filter { line in
            guard !line.trimmingCharacters(in: .whitespaces).isEmpty else { return false }
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                return true
            }
            return object["level"] as? String == "error"
        }
    }

    /// The value of `field` in the first JSON log line that has it.
    static func logField(_ field: String, in log: String) -> String? {
        for line in log.split(separator: "\n") {
            if let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let value = object[field] as? String
            {
                return value
            }
        }
        return nil
    }

    static func get(port: Int, _ path: String) async throws -> (status: Int, body: String) {
        guard let url = URL(string: "http://127.0.0.1:\(port)\(path)") else { throw TestFailure("bad path \(path)") }
        let (data, response) = try await URLSession.shared.data(for: URLRequest(url: url, timeoutInterval: 10))
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    /// The addresses listening on TCP `port`, from `/proc/net/tcp` and `/proc/net/tcp6` ("127.0.0.1", "0.0.0.0", "::"…).
    static func listeningAddresses(port: Int) -> [String] {
        var found: [String] = []
        for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ")
                // sl local_address rem_address st …; st 0A is LISTEN
                guard fields.count > 3, fields[3] == "0A" else { continue }
                let local = fields[1].split(separator: ":")
                guard local.count == 2, Int(local[1], radix: 16) == port else { continue }
                found.append(address(fromProcHex: String(local[0])))
            }
        }
        return found
    }

    /// /proc's hex of an address (little-endian 32-bit words) as text.
    private static func address(fromProcHex hex: String) -> String {
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 8)
            let word = UInt32(hex[index..<next], radix: 16) ?? 0
            bytes += [UInt8(word & 0xFF), UInt8(word >> 8 & 0xFF), UInt8(word >> 16 & 0xFF), UInt8(word >> 24)]
            index = next
        }
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        if bytes.allSatisfy({ $0 == 0 }) { return "::" }
        return stride(from: 0, to: bytes.count, by: 2).map { String(format: "%02x%02x", bytes[$0], bytes[$0 + 1]) }
            .joined(separator: ":")
    }

    /// This machine's IPv4 addresses other than loopback.
    static func nonLoopbackIPv4Addresses() -> [String] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return [] }
        defer { freeifaddrs(list) }
        var result: [String] = []
        for entry in sequence(first: first, next: { $0.pointee.ifa_next }) {
            guard let address = entry.pointee.ifa_addr, address.pointee.sa_family == sa_family_t(AF_INET) else {
                continue
            }
            let ipv4 = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
            let bytes = withUnsafeBytes(of: ipv4) { Array($0) }
            if bytes[0] != 127 { result.append(bytes.map(String.init).joined(separator: ".")) }
        }
        return result
    }

    /// Whether a TCP connection to `host:port` is accepted.
    static func acceptsConnections(host: String, port: Int) -> Bool {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else { return false }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        return result == 0
    }

    /// `Deploy/local/broker env` as a dictionary.
    static func brokerEnvironment() throws -> [String: String] {
        let lines = try TestBroker.script("env").split(separator: "\n")
        return Dictionary(
            lines.compactMap { line in
                line.firstIndex(of: "=").map { (String(line[..<$0]), String(line[line.index(after: $0)...])) }
            }, uniquingKeysWith: { $1 })
    }

    /// A self-signed CA that did not sign the broker's certificate; returns its PEM path.
    static func makeOtherCA(in directory: URL) throws -> String {
        let certificate = directory.appendingPathComponent("other-ca.pem").path
        let result = try ChildProcess.run(
            "/usr/bin/openssl",
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=Other Warren Test CA",
                "-keyout", directory.appendingPathComponent("other-ca.key").path, "-out", certificate,
            ])
        guard result.status == 0 else { throw TestFailure("openssl req -x509 failed: \(result.output)") }
        return certificate
    }
}
