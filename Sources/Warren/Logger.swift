import Foundation
import Synchronization

/// A structured logger: one JSON object per line, a constant message plus metadata under dotted lowercase keys.
///
/// `{"ts":"2026-11-23T10:00:00.123Z","level":"error","msg":"job dead-lettered","job.id":"…","error":"…"}`
///
/// Library code takes a logger and adds metadata with ``with(_:)``; only the executable makes one.
public struct Logger: Sendable {
    public enum Level: Int, Sendable, Comparable, CustomStringConvertible {
        case debug, info, warning, error

        public static func < (lhs: Level, rhs: Level) -> Bool { lhs.rawValue < rhs.rawValue }
        public var description: String {
            switch self {
            case .debug: "debug"
            case .info: "info"
            case .warning: "warning"
            case .error: "error"
            }
        }
    }

    /// Where lines go. Lines are written whole, one `write` each, so concurrent loggers never interleave.
    public final class Sink: Sendable {
        private let write: @Sendable (String) -> Void
        public let minimumLevel: Level

        public init(minimumLevel: Level = .info, write: @escaping @Sendable (String) -> Void) {
            self.minimumLevel = minimumLevel
            self.write = write
        }

        /// Standard error, the usual place for a service's log.
        public static func standardError(minimumLevel: Level = .info) -> Sink {
            Sink(minimumLevel: minimumLevel) { line in
                FileHandle.standardError.write(Data((line + "\n").utf8))
            }
        }

        /// Discards everything.
        public static let none = Sink(minimumLevel: .error) { _ in }

        func emit(_ line: String) { write(line) }
    }

    public let sink: Sink
    public var metadata: [String: String]

    public init(sink: Sink, metadata: [String: String] = [:]) {
        self.sink = sink
        self.metadata = metadata
    }

    /// A copy that adds `metadata` to every line.
    public func with(_ metadata: [String: String]) -> Logger {
        var copy = self
        copy.metadata.merge(metadata) { _, new in new }
        return copy
    }

    // The metadata is an autoclosure: a line below the sink's level costs no formatting at all.
    public func debug(_ message: @autoclosure () -> String, _ metadata: @autoclosure () -> [String: String] = [:]) {
        log(.debug, message(), metadata())
    }
    public func info(_ message: @autoclosure () -> String, _ metadata: @autoclosure () -> [String: String] = [:]) {
        log(.info, message(), metadata())
    }
    public func warning(_ message: @autoclosure () -> String, _ metadata: @autoclosure () -> [String: String] = [:]) {
        log(.warning, message(), metadata())
    }
    public func error(_ message: @autoclosure () -> String, _ metadata: @autoclosure () -> [String: String] = [:]) {
        log(.error, message(), metadata())
    }

    public func log(
        _ level: Level, _ message: @autoclosure () -> String, _ extra: @autoclosure () -> [String: String] = [:]
    ) {
        guard level >= sink.minimumLevel else { return }
        var fields = metadata
        fields.merge(extra()) { _, new in new }
        var line = "{\"ts\":\(Self.quote(Self.timestamp())),\"level\":\(Self.quote(level.description)),"
        line += "\"msg\":\(Self.quote(message()))"
        for key in fields.keys.sorted() {
            line += ",\(Self.quote(key)):\(Self.quote(fields[key] ?? ""))"
        }
        line += "}"
        sink.emit(line)
    }

    static func timestamp(_ date: Date = Date()) -> String {
        date.formatted(
            .iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }

    /// A JSON string literal; control characters and newlines are escaped, so a line stays one line.
    static func quote(_ text: String) -> String {
        var out = "\""
        out.reserveCapacity(text.utf8.count + 2)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
