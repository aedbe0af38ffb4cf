import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A child process (usually the built `warren`) whose standard output and error go to files the test reads as it
/// goes, with deadline-bounded waits.
public final class ChildProcess: Sendable {
    /// The `warren` executable that `swift build --build-tests` built beside the test bundle (so a build with
    /// another `--scratch-path` tests its own `warren`).
    public static let warren: URL = {
        let bundle = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")).map {
            URL(fileURLWithPath: $0).deletingLastPathComponent().appendingPathComponent("warren")
        }
        if let bundle, FileManager.default.isExecutableFile(atPath: bundle.path) { return bundle }
        return TestBroker.repositoryRoot.appendingPathComponent(".build/debug/warren")
    }()

    public let process: Process
    public let outputFile: URL
    public let logFile: URL

    /// Starts `executable` with `arguments`; output files go into `directory`, named after `name`.
    public init(_ executable: URL, _ arguments: [String], directory: URL, name: String) throws {
        guard FileManager.default.isExecutableFile(atPath: executable.path) else {
            throw TestFailure("\(executable.path) is missing: build it first (swift build --build-tests)")
        }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        outputFile = directory.appendingPathComponent("\(name).stdout")
        logFile = directory.appendingPathComponent("\(name).stderr")
        _ = FileManager.default.createFile(atPath: outputFile.path, contents: nil)
        _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.standardOutput = try FileHandle(forWritingTo: outputFile)
        process.standardError = try FileHandle(forWritingTo: logFile)
        try process.run()
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    public var output: String { (try? String(contentsOf: outputFile, encoding: .utf8)) ?? "" }
    public var log: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }
    public var isRunning: Bool { process.isRunning }

    public func signal(_ number: Int32) { kill(process.processIdentifier, number) }

    public func waitForLog(_ text: String, timeout: Duration = .seconds(15)) async throws {
        try await waitFor("'\(text)' in the log", timeout: timeout) { self.log.contains(text) }
    }

    public func waitForOutput(_ text: String, timeout: Duration = .seconds(15)) async throws {
        try await waitFor("'\(text)' on standard output", timeout: timeout) { self.output.contains(text) }
    }

    public func waitForExit(timeout: Duration) async throws -> Int32 {
        try await waitFor("the process to exit", timeout: timeout) { !self.process.isRunning }
        return process.terminationStatus
    }

    public func waitFor(_ what: String, timeout: Duration, _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            if ContinuousClock.now > deadline {
                throw TestFailure("timed out after \(timeout) waiting for \(what); log:\n\(log)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Runs a command to completion and returns its exit status and combined output.
    public static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
