import Foundation

/// Durations as configuration files write them: `"250ms"`, `"30s"`, `"2m"`, `"1h"`, `"1d"`, or compound `"1h30m"`.
///
/// ```swift
/// let grace = try DurationText.parse("1m30s")  // .seconds(90)
/// DurationText.format(.seconds(120))           // "2m"
/// ```
public enum DurationText {
    /// The units a duration may be written in, largest first, with their length in nanoseconds.
    private static let units: [(name: String, nanoseconds: Int64)] = [
        ("d", 86_400_000_000_000),
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1000),
        ("ns", 1),
    ]

    /// Parses "250ms", "30s", "2m", "1h", "1d", compound "1h30m", or decimals such as "1.5s" (also "us" and "ns").
    ///
    /// A bare number is not accepted here (the configuration decoder reads a JSON number as seconds); `"0"` is.
    /// Throws ``WarrenError/configuration(_:)`` with a message the caller prefixes with the key path.
    public static func parse(_ text: String) throws -> Duration {
        func invalid(_ reason: String = "") -> WarrenError {
            let detail = reason.isEmpty ? "" : " (\(reason))"
            return WarrenError.configuration(
                "\"\(text)\" is not a duration\(detail); write e.g. \"250ms\", \"30s\", \"2m\", \"1h30m\"")
        }
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed == "0" { return .zero }
        guard !trimmed.isEmpty else { throw invalid("it is empty") }
        var total: Int64 = 0
        var rest = Substring(trimmed)
        while !rest.isEmpty {
            let number = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
            guard !number.isEmpty else { throw invalid("expected a number at \"\(rest)\"") }
            rest = rest.dropFirst(number.count)
            let unitName = rest.prefix { $0.isLetter }
            rest = rest.dropFirst(unitName.count)
            guard !unitName.isEmpty else {
                throw invalid(trimmed.allSatisfy { $0.isNumber || $0 == "." } ? "no unit; write \"\(trimmed)s\"" : "")
            }
            guard let unit = units.first(where: { $0.name == unitName }) else {
                throw invalid("unknown unit \"\(unitName)\"; units are d, h, m, s, ms, us, ns")
            }
            guard let value = nanoseconds(number, unit: unit.nanoseconds) else {
                throw invalid("\"\(number)\(unitName)\" is not a whole number of nanoseconds or is too large")
            }
            let (sum, overflow) = total.addingReportingOverflow(value)
            guard !overflow else { throw invalid("too large") }
            total = sum
        }
        return .nanoseconds(total)
    }

    /// The shortest exact form in a single unit: 1s → "1s", 120s → "2m", 3600s → "1h", 90s → "90s", 0.5s → "500ms".
    ///
    /// Sub-nanosecond parts are dropped. The result parses back to the same duration.
    public static func format(_ duration: Duration) -> String {
        if duration < .zero { return "-" + format(.zero - duration) }
        let (seconds, attoseconds) = duration.components
        let total = Int128(seconds) * 1_000_000_000 + Int128(attoseconds / 1_000_000_000)
        if total == 0 { return "0s" }
        for unit in units where total % Int128(unit.nanoseconds) == 0 {
            return "\(total / Int128(unit.nanoseconds))\(unit.name)"
        }
        return "\(total)ns"
    }

    /// `number` (digits with an optional fraction) times `unit`, when that is a whole number of nanoseconds that fits.
    private static func nanoseconds(_ number: Substring, unit: Int64) -> Int64? {
        let parts = number.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count <= 2, !number.hasPrefix("."), !number.hasSuffix("."),
            parts.allSatisfy({ $0.allSatisfy(\.isNumber) }),
            let whole = Int64(parts[0])
        else { return nil }
        let (wholeNanoseconds, overflow) = whole.multipliedReportingOverflow(by: unit)
        guard !overflow else { return nil }
        guard parts.count == 2 else { return wholeNanoseconds }
        // The fraction as an exact rational: digits / 10^count, times the unit, must be a whole number.
        var fraction = Int128(0)
        var scale = Int128(1)
        for digit in parts[1] {
            guard let value = digit.wholeNumberValue, scale < 1_000_000_000_000_000_000 else { return nil }
            fraction = fraction * 10 + Int128(value)
            scale *= 10
        }
        let scaled = fraction * Int128(unit)
        guard scaled % scale == 0 else { return nil }
        let (sum, sumOverflow) = wholeNanoseconds.addingReportingOverflow(Int64(scaled / scale))
        return sumOverflow ? nil : sum
    }

    /// The duration in nanoseconds, or nil when it does not fit in an `Int64`.
    static func nanoseconds(of duration: Duration) -> Int64? {
        let (seconds, attoseconds) = duration.components
        let total = Int128(seconds) * 1_000_000_000 + Int128(attoseconds / 1_000_000_000)
        return Int64(exactly: total)
    }

    /// The duration in seconds, as a `Double`.
    static func seconds(of duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) * 1e-18
    }
}
