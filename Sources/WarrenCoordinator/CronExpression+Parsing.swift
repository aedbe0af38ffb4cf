import Foundation
import Warren

extension CronExpression.Schedule {
    /// Parses a field expression or a macro.
    static func parse(_ text: String) throws -> CronExpression.Schedule {
        let words = text.split(whereSeparator: { $0.isWhitespace })
        if let first = words.first, first.hasPrefix("@") {
            return try parseMacro(first, arguments: words.dropFirst())
        }
        guard words.count == 5 || words.count == 6 else {
            throw CronError(field: nil, reason: "expected 5 or 6 fields, got \(words.count)")
        }
        let hasSeconds = words.count == 6
        let rest = words.dropFirst(hasSeconds ? 1 : 0).map { $0 }
        let seconds = hasSeconds ? try FieldSpec.second.parse(words[0]).mask : 1
        let dayOfMonth = try FieldSpec.dayOfMonth.parse(rest[2])
        var dayOfWeek = try FieldSpec.dayOfWeek.parse(rest[4])
        // 7 is Sunday too.
        if dayOfWeek.mask & (1 << 7) != 0 { dayOfWeek.mask = (dayOfWeek.mask & ~(1 << 7)) | 1 }
        return .fields(
            CronExpression.Fields(
                seconds: seconds,
                minutes: try FieldSpec.minute.parse(rest[0]).mask,
                hours: try FieldSpec.hour.parse(rest[1]).mask,
                daysOfMonth: dayOfMonth.mask,
                months: try FieldSpec.month.parse(rest[3]).mask,
                daysOfWeek: dayOfWeek.mask,
                dayOfMonthIsStar: dayOfMonth.isStar,
                dayOfWeekIsStar: dayOfWeek.isStar,
                hasSecondsField: hasSeconds))
    }

    private static let macros: [String: String] = [
        "@yearly": "0 0 1 1 *",
        "@annually": "0 0 1 1 *",
        "@monthly": "0 0 1 * *",
        "@weekly": "0 0 * * 0",
        "@daily": "0 0 * * *",
        "@midnight": "0 0 * * *",
        "@hourly": "0 * * * *",
    ]

    private static func parseMacro(_ name: Substring, arguments: ArraySlice<Substring>) throws
        -> CronExpression.Schedule
    {
        if name.lowercased() == "@every" {
            guard let duration = arguments.first else {
                throw CronError(field: nil, reason: "@every needs a duration, e.g. '@every 5m' or '@every 1h30m'")
            }
            guard arguments.count == 1 else {
                throw CronError(
                    field: nil, reason: "@every takes one duration, got '\(arguments.joined(separator: " "))'")
            }
            return .every(seconds: try everySeconds(duration))
        }
        guard let expansion = macros[name.lowercased()] else {
            throw CronError(field: nil, reason: "unknown macro '\(name)'")
        }
        guard arguments.isEmpty else {
            throw CronError(field: nil, reason: "macro '\(name)' takes no arguments")
        }
        return try parse(expansion)
    }

    /// The whole number of seconds, at least 1, that `text` ("90s", "1h30m") stands for.
    private static func everySeconds(_ text: Substring) throws -> Int64 {
        let duration: Duration
        do {
            duration = try DurationText.parse(String(text))
        } catch {
            throw CronError(field: nil, reason: "@every: '\(text)' is not a duration; write e.g. '90s' or '1h30m'")
        }
        let (seconds, attoseconds) = duration.components
        guard seconds >= 1 else {
            throw CronError(field: nil, reason: "@every \(text) is shorter than the minimum of 1s")
        }
        guard attoseconds == 0 else {
            throw CronError(field: nil, reason: "@every \(text) is not a whole number of seconds")
        }
        return seconds
    }
}

/// One field's name, bounds and value names.
private struct FieldSpec {
    let name: String
    let range: ClosedRange<Int>
    /// Where `*` and an open-ended `N/step` stop: 6 for day-of-week, whose range also admits 7 for Sunday.
    let naturalMaximum: Int
    /// Upper-case value names, and what they are called in errors.
    let names: [String: Int]
    let nameKind: String

    static let second = FieldSpec(name: "second", range: 0...59)
    static let minute = FieldSpec(name: "minute", range: 0...59)
    static let hour = FieldSpec(name: "hour", range: 0...23)
    static let dayOfMonth = FieldSpec(name: "day-of-month", range: 1...31)
    static let month = FieldSpec(
        name: "month", range: 1...12,
        names: [
            "JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6,
            "JUL": 7, "AUG": 8, "SEP": 9, "OCT": 10, "NOV": 11, "DEC": 12,
        ],
        nameKind: "month name")
    static let dayOfWeek = FieldSpec(
        name: "day-of-week", range: 0...7, naturalMaximum: 6,
        names: ["SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6],
        nameKind: "weekday name")

    private init(
        name: String, range: ClosedRange<Int>, naturalMaximum: Int? = nil, names: [String: Int] = [:],
        nameKind: String = ""
    ) {
        self.name = name
        self.range = range
        self.naturalMaximum = naturalMaximum ?? range.upperBound
        self.names = names
        self.nameKind = nameKind
    }

    private func error(_ reason: String) -> CronError { CronError(field: name, reason: reason) }

    /// The field as a bit set, and whether it was written `*` (or `*/1`).
    func parse(_ text: Substring) throws -> (mask: UInt64, isStar: Bool) {
        var mask: UInt64 = 0
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            mask |= try parseItem(item, in: text)
        }
        return (mask, text == "*" || text == "*/1")
    }

    /// One list item: `*`, `N`, `N-M`, each optionally with `/step`.
    private func parseItem(_ item: Substring, in text: Substring) throws -> UInt64 {
        guard !item.isEmpty else { throw error("empty item in list '\(text)'") }
        let parts = item.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2 else { throw error("'\(item)' has more than one '/'") }
        var step = 1
        if parts.count == 2 {
            let stepText = parts[1]
            guard !stepText.isEmpty, stepText.allSatisfy({ $0.isASCII && $0.isNumber }) else {
                throw error("step '\(stepText)' is not a number")
            }
            guard let value = Int(stepText), value > 0 else { throw error("step \(stepText) is not allowed") }
            step = value
        }
        let base = parts[0]
        let low: Int
        let high: Int
        if base == "*" {
            (low, high) = (range.lowerBound, naturalMaximum)
        } else {
            let bounds = base.split(separator: "-", omittingEmptySubsequences: false)
            switch bounds.count {
            case 1:
                low = try value(bounds[0], in: item)
                high = parts.count == 2 ? max(low, naturalMaximum) : low
            case 2:
                low = try value(bounds[0], in: item)
                high = try value(bounds[1], in: item)
                guard low <= high else { throw error("range \(bounds[0])-\(bounds[1]) is backwards") }
            default:
                throw error("'\(base)' is not a value or a range")
            }
        }
        var mask: UInt64 = 0
        for value in stride(from: low, through: high, by: step) { mask |= 1 << UInt64(value) }
        return mask
    }

    /// A number within the field's range, or a name.
    private func value(_ token: Substring, in item: Substring) throws -> Int {
        guard !token.isEmpty else { throw error("missing value in '\(item)'") }
        if token.allSatisfy({ $0.isASCII && $0.isNumber }) {
            guard let number = Int(token), range.contains(number) else {
                throw CronError.outOfRange(name, value: token, range: range)
            }
            return number
        }
        if !names.isEmpty, token.contains(where: \.isLetter) {
            guard let number = names[token.uppercased()] else { throw error("'\(token)' is not a \(nameKind)") }
            return number
        }
        throw error("'\(token)' is not a number")
    }
}
