import Foundation

/// A cron schedule: five fields (`minute hour day-of-month month day-of-week`), six with a leading seconds field,
/// a macro such as `@daily`, or `@every <duration>`.
///
/// ```swift
/// let cron = try CronExpression("0 9 * * mon-fri")
/// let berlin = TimeZone(identifier: "Europe/Berlin")!
/// cron.next(after: .now, in: berlin)  // the next weekday 09:00 in Berlin
/// ```
///
/// Fields accept `*`, values, names (`JAN`–`DEC`, `SUN`–`SAT`, any case), lists `1,5,9`, ranges `10-20` and
/// `mon-fri`, steps `*/15` and `10-50/5`, and start/step `5/10` (5, 15, 25, …). In day-of-week both `0` and `7`
/// are Sunday; `*` and an open `N/step` run over 0–6. When both day-of-month and day-of-week are restricted, a day
/// matches when either does (Vixie cron); a field counts as unrestricted only when written `*` (or `*/1`).
///
/// Macros: `@yearly`/`@annually` (`0 0 1 1 *`), `@monthly` (`0 0 1 * *`), `@weekly` (`0 0 * * 0`),
/// `@daily`/`@midnight` (`0 0 * * *`), `@hourly` (`0 * * * *`), and `@every 90s`, `@every 1h30m` (whole seconds,
/// at least `1s`).
///
/// ## Time zones and daylight saving time
///
/// Field expressions are matched against the local wall clock in the time zone given to ``next(after:in:)``, and
/// each matching local time fires at most once:
/// - a local time that occurs once fires at that instant;
/// - a local time that occurs twice because the clocks went back (01:30 on the night New York leaves daylight time)
///   fires once, at its **first** occurrence; the repeated stretch fires nothing the second time through;
/// - a local time that does not occur because the clocks went forward (02:30 on the night New York enters daylight
///   time) fires at the instant the gap ends (03:00 local, which is the instant of the transition); all matching
///   times inside one gap collapse into that single fire, which is also the fire of the gap's end when that matches.
///
/// `@every d` ignores the time zone: it fires at the instants that are whole multiples of `d` since the Unix epoch,
/// so every replica computes the same instants.
public struct CronExpression: Sendable, Equatable, CustomStringConvertible {
    /// The expression as given to ``init(_:)``.
    public let text: String
    let schedule: Schedule

    /// Parses `text`; throws ``CronError`` naming the field and what is wrong with it.
    public init(_ text: String) throws {
        self.text = text
        self.schedule = try Schedule.parse(text)
    }

    public var description: String { text }

    /// Whether the expression was written with six fields, the first being seconds.
    ///
    /// `false` for macros, including `@every` (see ``isEvery``).
    public var hasSecondsField: Bool {
        if case .fields(let fields) = schedule { return fields.hasSecondsField }
        return false
    }

    /// The interval of an `@every` expression; `nil` for field expressions and the other macros.
    public var isEvery: Duration? {
        if case .every(let seconds) = schedule { return .seconds(seconds) }
        return nil
    }

    /// The first fire time strictly after `date`, in `timeZone` (see the type's documentation for daylight saving
    /// time), or `nil` when nothing fires within 8 years of `date` (such as `0 0 30 2 *`).
    public func next(after date: Date, in timeZone: TimeZone) -> Date? {
        let seconds = date.timeIntervalSince1970
        // Far beyond any calendar we care about; keeps the integer arithmetic below clear of overflow.
        guard seconds.isFinite, abs(seconds) < 1e12 else { return nil }
        let instant = Int64(seconds.rounded(.down))
        switch schedule {
        case .every(let step):
            let multiple = instant.floorDivided(by: step) + 1
            return Date(timeIntervalSince1970: TimeInterval(multiple * step))
        case .fields(let fields):
            return fields.next(after: instant, in: ZoneOffsets(timeZone)).map {
                Date(timeIntervalSince1970: TimeInterval($0))
            }
        }
    }

    /// Up to `count` consecutive fire times after `date`; fewer when the schedule runs out (see ``next(after:in:)``).
    public func next(after date: Date, in timeZone: TimeZone, count: Int) -> [Date] {
        var fires: [Date] = []
        var cursor = date
        while fires.count < count, let fire = next(after: cursor, in: timeZone) {
            fires.append(fire)
            cursor = fire
        }
        return fires
    }
}

/// Why a cron expression did not parse: `field` is `second`, `minute`, `hour`, `day-of-month`, `month` or
/// `day-of-week`, or `nil` for the expression as a whole.
///
/// The description reads like `minute: step 0 is not allowed`, `hour 24 out of range 0-23` or
/// `expected 5 or 6 fields, got 4`.
public struct CronError: Error, Sendable, Equatable, CustomStringConvertible, LocalizedError {
    public let field: String?
    public let reason: String
    /// What goes between the field and the reason: ": " in general, " " for `hour 24 out of range 0-23`.
    private let separator: String

    init(field: String?, reason: String) {
        self.field = field
        self.reason = reason
        self.separator = ": "
    }

    /// `<field> <value> out of range <min>-<max>`.
    static func outOfRange(_ field: String, value: Substring, range: ClosedRange<Int>) -> CronError {
        CronError(field: field, reason: "\(value) out of range \(range.lowerBound)-\(range.upperBound)", separator: " ")
    }

    private init(field: String?, reason: String, separator: String) {
        self.field = field
        self.reason = reason
        self.separator = separator
    }

    public var description: String {
        guard let field else { return reason }
        return field + separator + reason
    }

    public var errorDescription: String? { description }
}

extension CronExpression {
    /// What an expression parses to.
    enum Schedule: Sendable, Equatable {
        case fields(Fields)
        /// `@every`, in whole seconds (at least 1).
        case every(seconds: Int64)
    }

    /// The fields as bit sets: bit `n` set when value `n` matches. Day-of-week runs 0–6 with 0 Sunday.
    struct Fields: Sendable, Equatable {
        var seconds: UInt64
        var minutes: UInt64
        var hours: UInt64
        var daysOfMonth: UInt64
        var months: UInt64
        var daysOfWeek: UInt64
        /// The day-of-month field was `*`: only day-of-week restricts the day.
        var dayOfMonthIsStar: Bool
        /// The day-of-week field was `*`: only day-of-month restricts the day.
        var dayOfWeekIsStar: Bool
        var hasSecondsField: Bool
    }
}

extension CronExpression.Fields {
    /// How far ahead `next` looks before giving up.
    fileprivate static let horizon: Int64 = 8 * 366 * 86_400

    /// The first fire instant (Unix seconds) strictly after `instant`.
    ///
    /// Local times are "naive" seconds: the wall clock read as if it were UTC. The mapping from a matching local
    /// time to its fire instant (first occurrence, or the end of the gap) never decreases as the local time grows,
    /// and every local time up to the wall clock at `instant` fires at or before `instant`; so the answer is the
    /// first matching local time after that wall clock whose fire instant is after `instant`.
    fileprivate func next(after instant: Int64, in zone: ZoneOffsets) -> Int64? {
        var local = instant + zone.offset(at: instant) + 1
        let limit = local + Self.horizon
        while let candidate = nextMatch(atOrAfter: local, through: limit) {
            switch zone.resolve(local: candidate) {
            case .unique(let fire):
                if fire > instant { return fire }
                local = candidate + 1
            case .repeated(let first, let repetitionEnd):
                if first > instant { return first }
                // `instant` is in the second pass: nothing fires until the wall clock leaves the repeated stretch.
                local = max(candidate + 1, repetitionEnd)
            case .skipped(let gapEnd):
                if gapEnd > instant { return gapEnd }
                local = candidate + 1
            }
        }
        return nil
    }

    /// The first matching local time at or after `start`, looking no further than the day of `limit`.
    private func nextMatch(atOrAfter start: Int64, through limit: Int64) -> Int64? {
        var day = start.floorDivided(by: 86_400)
        var secondOfDay = Int(start - day * 86_400)
        let lastDay = limit.floorDivided(by: 86_400)
        var (year, month, dayOfMonth) = CivilDate.civil(fromDays: day)
        while day <= lastDay {
            guard months.contains(month) else {
                // Jump to the 1st of the next matching month.
                if let nextMonth = months.first(atOrAfter: month + 1, through: 12) {
                    month = nextMonth
                } else {
                    year += 1
                    month = months.first(atOrAfter: 1, through: 12) ?? 1
                }
                dayOfMonth = 1
                day = CivilDate.days(year: year, month: month, day: 1)
                secondOfDay = 0
                continue
            }
            if matchesDay(dayOfMonth, weekday: CivilDate.weekday(ofDays: day)),
                let time = firstTime(atOrAfter: secondOfDay)
            {
                return day * 86_400 + Int64(time)
            }
            day += 1
            secondOfDay = 0
            dayOfMonth += 1
            if dayOfMonth > CivilDate.daysInMonth(year: year, month: month) {
                dayOfMonth = 1
                month += 1
                if month > 12 {
                    month = 1
                    year += 1
                }
            }
        }
        return nil
    }

    /// Vixie cron: with both day fields restricted either may match; with one `*`, the other decides.
    private func matchesDay(_ dayOfMonth: Int, weekday: Int) -> Bool {
        let byMonth = daysOfMonth.contains(dayOfMonth)
        let byWeek = daysOfWeek.contains(weekday)
        switch (dayOfMonthIsStar, dayOfWeekIsStar) {
        case (true, true): return true
        case (true, false): return byWeek
        case (false, true): return byMonth
        case (false, false): return byMonth || byWeek
        }
    }

    /// The first matching second of the day at or after `start` (0..<86400).
    private func firstTime(atOrAfter start: Int) -> Int? {
        let startHour = start / 3600
        let startMinute = start / 60 % 60
        let startSecond = start % 60
        var hour = hours.first(atOrAfter: startHour, through: 23)
        while let thisHour = hour {
            var minute = minutes.first(atOrAfter: thisHour == startHour ? startMinute : 0, through: 59)
            while let thisMinute = minute {
                let fromSecond = thisHour == startHour && thisMinute == startMinute ? startSecond : 0
                if let second = seconds.first(atOrAfter: fromSecond, through: 59) {
                    return thisHour * 3600 + thisMinute * 60 + second
                }
                minute = minutes.first(atOrAfter: thisMinute + 1, through: 59)
            }
            hour = hours.first(atOrAfter: thisHour + 1, through: 23)
        }
        return nil
    }
}

/// A time zone's UTC offsets, and where a local wall-clock time falls in it.
private struct ZoneOffsets {
    let zone: TimeZone

    init(_ zone: TimeZone) { self.zone = zone }

    /// Where a local (naive) time lands.
    enum Resolution: Equatable {
        /// It occurs once, at this instant.
        case unique(Int64)
        /// The clocks went back over it: `first` is its first occurrence, and the repeated stretch of wall clock
        /// ends at local time `repetitionEnd`.
        case repeated(first: Int64, repetitionEnd: Int64)
        /// The clocks jumped over it; the gap ends at this instant.
        case skipped(gapEnd: Int64)
    }

    func offset(at instant: Int64) -> Int64 {
        Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(instant))))
    }

    /// Assumes at most one offset change within a day or so of `local`, true of every real zone.
    func resolve(local: Int64) -> Resolution {
        // Offsets are within ±14 h (-12 h to +14 h), so these instants lie well before and well after `local`.
        let before = offset(at: local - 86_400)
        let after = offset(at: local + 86_400)
        let early = local - before
        if before == after { return .unique(early) }
        let late = local - after
        switch (offset(at: early) == before, offset(at: late) == after) {
        case (true, true):
            // Clocks went back (before > after, so early < late): the transition lies in (early, late].
            let transition = firstChange(after: early, through: late, from: before)
            return .repeated(first: early, repetitionEnd: transition + before)
        case (true, false):
            return .unique(early)
        case (false, true):
            return .unique(late)
        case (false, false):
            // Clocks went forward (before < after, so late < early): the transition lies in (late, early].
            return .skipped(gapEnd: firstChange(after: late, through: early, from: before))
        }
    }

    /// The first instant in `(low, high]` whose offset is no longer `offset` (`high` when there is none).
    private func firstChange(after low: Int64, through high: Int64, from offset: Int64) -> Int64 {
        var low = low
        var high = high
        while high - low > 1 {
            let middle = low + (high - low) / 2
            if self.offset(at: middle) == offset {
                low = middle
            } else {
                high = middle
            }
        }
        return high
    }
}

/// Proleptic Gregorian calendar arithmetic on days since 1970-01-01 (Howard Hinnant's algorithms).
private enum CivilDate {
    static func days(year: Int, month: Int, day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let shiftedMonth = Int64(month > 2 ? month - 3 : month + 9)
        let dayOfYear = (153 * shiftedMonth + 2) / 5 + Int64(day) - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    static func civil(fromDays days: Int64) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        let day = Int(dayOfYear - (153 * shiftedMonth + 2) / 5 + 1)
        let month = Int(shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9)
        let year = Int(yearOfEra + era * 400) + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }

    /// 0 for Sunday … 6 for Saturday (1970-01-01 was a Thursday).
    static func weekday(ofDays days: Int64) -> Int {
        Int((days + 4).floorModulo(7))
    }

    static func daysInMonth(year: Int, month: Int) -> Int {
        switch month {
        case 2: return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }
}

extension UInt64 {
    /// Whether bit `value` is set.
    fileprivate func contains(_ value: Int) -> Bool {
        value >= 0 && value < 64 && self & (1 << UInt64(value)) != 0
    }

    /// The lowest set bit in `start...end`.
    fileprivate func first(atOrAfter start: Int, through end: Int) -> Int? {
        guard start <= end, start < 64 else { return nil }
        let shifted = self >> UInt64(start)
        guard shifted != 0 else { return nil }
        let found = start + shifted.trailingZeroBitCount
        return found <= end ? found : nil
    }
}

extension Int64 {
    fileprivate func floorDivided(by divisor: Int64) -> Int64 {
        let quotient = self / divisor
        return (self % divisor != 0 && (self < 0) != (divisor < 0)) ? quotient - 1 : quotient
    }

    fileprivate func floorModulo(_ divisor: Int64) -> Int64 {
        self - floorDivided(by: divisor) * divisor
    }
}
