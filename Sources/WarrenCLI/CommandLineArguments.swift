/// A usage mistake: printed as one line, exit status 64 (EX_USAGE).
struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The arguments of one command, consumed option by option; whatever is left over is a usage error.
struct CommandLineArguments {
    private var remaining: [String]

    init(_ arguments: [String]) { remaining = arguments }

    var isEmpty: Bool { remaining.isEmpty }

    /// Removes `--name` and reports whether it was present.
    mutating func flag(_ names: String...) -> Bool {
        guard let index = remaining.firstIndex(where: names.contains) else { return false }
        remaining.remove(at: index)
        return true
    }

    /// Removes `--name VALUE` or `--name=VALUE` and returns the value.
    mutating func option(_ name: String) throws -> String? {
        if let index = remaining.firstIndex(where: { $0.hasPrefix(name + "=") }) {
            let value = String(remaining.remove(at: index).dropFirst(name.count + 1))
            return value
        }
        guard let index = remaining.firstIndex(of: name) else { return nil }
        guard index + 1 < remaining.count, !remaining[index + 1].hasPrefix("--") else {
            throw UsageError("\(name) needs a value")
        }
        let value = remaining[index + 1]
        remaining.removeSubrange(index...index + 1)
        return value
    }

    mutating func option<T: LosslessStringConvertible>(_ name: String, as type: T.Type) throws -> T? {
        guard let text = try option(name) else { return nil }
        guard let value = T(text) else { throw UsageError("\(name) \(text) is not a valid \(T.self)") }
        return value
    }

    /// Removes and returns the first positional argument.
    mutating func positional() -> String? {
        guard let index = remaining.firstIndex(where: { !$0.hasPrefix("-") || $0 == "-" }) else { return nil }
        return remaining.remove(at: index)
    }

    /// Fails on anything not consumed.
    func finish() throws {
        if let extra = remaining.first {
            throw UsageError(extra.hasPrefix("-") ? "unknown option \(extra)" : "unexpected argument \(extra)")
        }
    }
}

/// One `warren` subcommand.
protocol WarrenCommand: Sendable {
    static var name: String { get }
    /// One line, shown in `warren --help`.
    static var abstract: String { get }
    /// The full `--help` text.
    static var help: String { get }
    init(arguments: inout CommandLineArguments, environment: [String: String]) throws
    /// Returns the exit status.
    func run() async throws -> Int32
}
