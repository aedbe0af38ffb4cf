import Foundation

/// Builds the Prometheus text exposition format (version 0.0.4) that `/metrics` serves, and parses it back.
///
/// ```swift
/// var metrics = PrometheusText()
/// metrics.counter(
///     "warren_jobs_total", help: "Jobs finished, by task and outcome.",
///     [(labels: ["task": "email.send", "outcome": "succeeded"], value: 42)])
/// metrics.histogram(
///     "warren_job_duration_seconds", help: "Handler run time.", buckets: [0.1, 1, 10],
///     [(labels: ["task": "email.send"], counts: [30, 10, 1], sum: 19.5, count: 42)])
/// let response = HTTPResponse.prometheus(metrics.text)
/// ```
///
/// Each metric is one group: its `# HELP` and `# TYPE` lines once, then its samples. Groups keep the order in which
/// their metrics were first added; adding to a name again appends samples to its group. Label names are sorted, so the
/// output is stable. Metric and label names are chosen in code, so an invalid one is a precondition failure: metric
/// names match `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*`.
public struct PrometheusText: Sendable {
    /// Why ``PrometheusText/parse(_:)`` rejected a text: the 1-based line and what was wrong with it.
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public let line: Int
        public let message: String

        public init(line: Int, message: String) {
            self.line = line
            self.message = message
        }

        public var description: String { "Prometheus text, line \(line): \(message)" }
    }

    private enum Kind: String {
        case counter
        case gauge
        case histogram
    }

    private struct Family {
        let name: String
        let kind: Kind
        let help: String
        var samples: [String] = []
    }

    private var families: [Family] = []
    private var familyIndex: [String: Int] = [:]

    public init() {}

    /// The exposition text: every metric group, each line ending in a newline. Empty when nothing was added.
    public var text: String {
        var text = ""
        for family in families {
            text += "# HELP \(family.name) \(Self.escapeHelp(family.help))\n"
            text += "# TYPE \(family.name) \(family.kind.rawValue)\n"
            for sample in family.samples { text += sample + "\n" }
        }
        return text
    }

    /// Adds a counter: a value that only goes up (name it `…_total`). One sample per label set.
    public mutating func counter(_ name: String, help: String, _ samples: [(labels: [String: String], value: Double)]) {
        add(.counter, name, help: help, samples.map { Self.line(name, $0.labels, Self.format($0.value)) })
    }

    /// Adds a gauge: a value that goes up and down. One sample per label set.
    public mutating func gauge(_ name: String, help: String, _ samples: [(labels: [String: String], value: Double)]) {
        add(.gauge, name, help: help, samples.map { Self.line(name, $0.labels, Self.format($0.value)) })
    }

    /// Adds a histogram: for each series, `name_bucket` lines with cumulative counts (ending in `le="+Inf"`), then
    /// `name_sum` and `name_count`.
    ///
    /// - Parameters:
    ///   - buckets: the finite upper bounds, strictly increasing; the `+Inf` bucket is implicit.
    ///   - series: per label set, `counts[i]` observations that fell in bucket `i` alone (not cumulative: above
    ///     `buckets[i - 1]`, at most `buckets[i]`), so `counts.count == buckets.count`; `count` is the number of all
    ///     observations, including those above the last bound; `sum` is their total.
    public mutating func histogram(
        _ name: String, help: String, buckets: [Double],
        _ series: [(labels: [String: String], counts: [Int], sum: Double, count: Int)]
    ) {
        precondition(
            buckets.allSatisfy(\.isFinite), "histogram \(name): bucket bounds must be finite (+Inf is implicit)")
        precondition(
            zip(buckets, buckets.dropFirst()).allSatisfy { $0 < $1 },
            "histogram \(name): bucket bounds must be strictly increasing")
        let bounds = buckets.map(Self.format) + ["+Inf"]
        var lines: [String] = []
        for one in series {
            precondition(one.labels["le"] == nil, "histogram \(name): the label name \"le\" is reserved for buckets")
            precondition(
                one.counts.count == buckets.count,
                "histogram \(name): \(one.counts.count) counts for \(buckets.count) buckets; give one count per bucket")
            precondition(one.counts.allSatisfy { $0 >= 0 }, "histogram \(name): bucket counts must not be negative")
            let cumulative = one.counts.reduce(into: [Int]()) { $0.append(($0.last ?? 0) + $1) } + [one.count]
            precondition(
                one.count >= (cumulative.dropLast().last ?? 0),
                "histogram \(name): count \(one.count) is less than the observations in the buckets")
            for (bound, total) in zip(bounds, cumulative) {
                var labels = Self.renderLabels(one.labels)
                labels.append((name: "le", value: bound))
                lines.append("\(name)_bucket\(Self.braces(labels)) \(total)")
            }
            lines.append(Self.line("\(name)_sum", one.labels, Self.format(one.sum)))
            lines.append(Self.line("\(name)_count", one.labels, String(one.count)))
        }
        add(.histogram, name, help: help, lines)
    }

    private mutating func add(_ kind: Kind, _ name: String, help: String, _ samples: [String]) {
        precondition(Self.isValidMetricName(name), "\"\(name)\" is not a valid Prometheus metric name")
        if let index = familyIndex[name] {
            precondition(
                families[index].kind == kind,
                "metric \(name) was added as a \(families[index].kind.rawValue), now as a \(kind.rawValue)")
            families[index].samples += samples
        } else {
            familyIndex[name] = families.count
            families.append(Family(name: name, kind: kind, help: help, samples: samples))
        }
    }

    // MARK: Formatting

    /// A sample value as Prometheus writes it: whole numbers without a fraction, `+Inf`, `-Inf`, `NaN`, otherwise the
    /// shortest text that reads back as the same `Double` (e.g. `0.25`, `1e-05`).
    static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value < 0 ? "-Inf" : "+Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }

    private static func line(_ name: String, _ labels: [String: String], _ value: String) -> String {
        "\(name)\(braces(renderLabels(labels))) \(value)"
    }

    /// Validated, sorted by name, values escaped.
    private static func renderLabels(_ labels: [String: String]) -> [(name: String, value: String)] {
        labels.sorted { $0.key < $1.key }.map { name, value in
            precondition(isValidLabelName(name), "\"\(name)\" is not a valid Prometheus label name")
            return (name, escapeLabelValue(value))
        }
    }

    private static func braces(_ labels: [(name: String, value: String)]) -> String {
        labels.isEmpty ? "" : "{" + labels.map { "\($0.name)=\"\($0.value)\"" }.joined(separator: ",") + "}"
    }

    static func escapeLabelValue(_ value: String) -> String {
        var escaped = ""
        for character in value.unicodeScalars {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.unicodeScalars.append(character)
            }
        }
        return escaped
    }

    private static func escapeHelp(_ help: String) -> String {
        help.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }

    static func isValidMetricName(_ name: String) -> Bool {
        guard let first = name.utf8.first, isNameStart(first) || first == UInt8(ascii: ":") else { return false }
        return name.utf8.allSatisfy { isNameByte($0) || $0 == UInt8(ascii: ":") }
    }

    static func isValidLabelName(_ name: String) -> Bool {
        guard let first = name.utf8.first, isNameStart(first) else { return false }
        return name.utf8.allSatisfy(isNameByte)
    }

    private static func isNameStart(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
            || byte == UInt8(ascii: "_")
    }

    private static func isNameByte(_ byte: UInt8) -> Bool {
        isNameStart(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }

    // MARK: Parsing

    /// Reads the samples of a text in the exposition format, in order.
    ///
    /// Comment lines (`# HELP`, `# TYPE`, any `#`) and blank lines are skipped; a timestamp after the value is read
    /// and dropped; label values are unescaped (`\\`, `\"`, `\n`). A histogram comes back as its `_bucket`, `_sum`
    /// and `_count` samples. Throws ``ParseError`` naming the first line that is not a sample.
    public static func parse(_ text: String) throws -> [PrometheusSample] {
        var samples: [PrometheusSample] = []
        // Bytes, not Characters: "\r\n" is a single Character, which a split on "\n" would not see.
        for (offset, line) in text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
            .enumerated()
        {
            var bytes = Array(line)
            if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
            var reader = SampleReader(bytes: bytes, line: offset + 1)
            reader.skipBlanks()
            if reader.atEnd || reader.peek == UInt8(ascii: "#") { continue }
            samples.append(try reader.sample())
        }
        return samples
    }

    /// A cursor over one line of exposition text.
    private struct SampleReader {
        let bytes: [UInt8]
        let line: Int
        var position = 0

        init(bytes: [UInt8], line: Int) {
            self.bytes = bytes
            self.line = line
        }

        var atEnd: Bool { position == bytes.count }
        var peek: UInt8? { atEnd ? nil : bytes[position] }

        mutating func skipBlanks() {
            while let byte = peek, byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") { position += 1 }
        }

        func failure(_ message: String) -> ParseError { ParseError(line: line, message: message) }

        mutating func sample() throws(ParseError) -> PrometheusSample {
            let name = try self.name(allowColon: true, what: "a metric name")
            skipBlanks()
            var labels: [String: String] = [:]
            if peek == UInt8(ascii: "{") {
                position += 1
                labels = try self.labels(of: name)
                skipBlanks()
            }
            let valueText = token()
            guard !valueText.isEmpty else { throw failure("expected a value after \(name)") }
            guard let value = Self.value(valueText) else { throw failure("\"\(valueText)\" is not a number") }
            skipBlanks()
            if !atEnd {
                let timestamp = token()
                guard Int64(timestamp) != nil else { throw failure("\"\(timestamp)\" is not a timestamp") }
                skipBlanks()
                guard atEnd else { throw failure("unexpected text after the timestamp of \(name)") }
            }
            return PrometheusSample(name: name, labels: labels, value: value)
        }

        private mutating func name(allowColon: Bool, what: String) throws(ParseError) -> String {
            let start = position
            while let byte = peek,
                (position == start ? isNameStart(byte) : isNameByte(byte)) || (allowColon && byte == UInt8(ascii: ":"))
            {
                position += 1
            }
            guard position > start else { throw failure("expected \(what) at column \(position + 1)") }
            return String(decoding: bytes[start..<position], as: UTF8.self)
        }

        /// After the `{`, through the `}`.
        private mutating func labels(of metric: String) throws(ParseError) -> [String: String] {
            var labels: [String: String] = [:]
            while true {
                skipBlanks()
                if peek == UInt8(ascii: "}") {
                    position += 1
                    return labels
                }
                let name = try self.name(allowColon: false, what: "a label name")
                skipBlanks()
                try expect("=", after: "label name \(name)")
                skipBlanks()
                try expect("\"", after: "\(name)=")
                let value = try quotedRest()
                guard labels.updateValue(value, forKey: name) == nil else {
                    throw failure("label \(name) appears twice in \(metric)")
                }
                skipBlanks()
                if peek == UInt8(ascii: ",") {
                    position += 1
                } else if peek != UInt8(ascii: "}") {
                    throw failure("expected , or } after the value of label \(name)")
                }
            }
        }

        private mutating func expect(_ character: Unicode.Scalar, after what: String) throws(ParseError) {
            guard peek == UInt8(ascii: character) else { throw failure("expected \(character) after \(what)") }
            position += 1
        }

        /// After the opening quote, through the closing one; unescapes.
        private mutating func quotedRest() throws(ParseError) -> String {
            var value: [UInt8] = []
            while let byte = peek {
                position += 1
                switch byte {
                case UInt8(ascii: "\""):
                    return String(decoding: value, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    switch peek {
                    case UInt8(ascii: "\\"): value.append(UInt8(ascii: "\\"))
                    case UInt8(ascii: "\""): value.append(UInt8(ascii: "\""))
                    case UInt8(ascii: "n"): value.append(UInt8(ascii: "\n"))
                    default: throw failure("invalid escape in a label value at column \(position)")
                    }
                    position += 1
                default:
                    value.append(byte)
                }
            }
            throw failure("unterminated label value")
        }

        private mutating func token() -> String {
            let start = position
            while let byte = peek, byte != UInt8(ascii: " "), byte != UInt8(ascii: "\t") { position += 1 }
            return String(decoding: bytes[start..<position], as: UTF8.self)
        }

        private static func value(_ text: String) -> Double? {
            switch text.lowercased() {
            case "nan": .nan
            case "+inf", "inf", "+infinity", "infinity": .infinity
            case "-inf", "-infinity": -.infinity
            default: Double(text)
            }
        }
    }
}

/// One sample read by ``PrometheusText/parse(_:)``: a metric name (with its `_bucket`, `_sum` or `_count` suffix for a
/// histogram), its labels, and its value.
public struct PrometheusSample: Sendable, Equatable {
    public var name: String
    public var labels: [String: String]
    public var value: Double

    public init(name: String, labels: [String: String] = [:], value: Double) {
        self.name = name
        self.labels = labels
        self.value = value
    }
}
