import Foundation
import Testing
import Warren
import WarrenCoordinator

@Suite("Cron expressions")
struct CronExpressionTests {
    // MARK: - Parsing

    @Test(
        "Parse errors name the field and the reason",
        arguments: [
            ("* * 32 * *", "day-of-month", "day-of-month 32 out of range 1-31"),
            ("* * 0 * *", "day-of-month", "day-of-month 0 out of range 1-31"),
            ("*/0 * * * *", "minute", "minute: step 0 is not allowed"),
            ("0 24 * * *", "hour", "hour 24 out of range 0-23"),
            ("10-70 * * * *", "minute", "minute 70 out of range 0-59"),
            ("60 * * * * *", "second", "second 60 out of range 0-59"),
            ("0 60 * * * *", "minute", "minute 60 out of range 0-59"),
            ("0 0 1 13 *", "month", "month 13 out of range 1-12"),
            ("0 0 * * 8", "day-of-week", "day-of-week 8 out of range 0-7"),
            ("* * * *", nil, "expected 5 or 6 fields, got 4"),
            ("* * * * * * *", nil, "expected 5 or 6 fields, got 7"),
            ("   ", nil, "expected 5 or 6 fields, got 0"),
            ("0 0 1 FOO *", "month", "month: 'FOO' is not a month name"),
            ("0 0 1 jan-foo *", "month", "month: 'foo' is not a month name"),
            ("0 0 * * funday", "day-of-week", "day-of-week: 'funday' is not a weekday name"),
            ("0 0 * * 5-2", "day-of-week", "day-of-week: range 5-2 is backwards"),
            ("0 0 * * fri-mon", "day-of-week", "day-of-week: range fri-mon is backwards"),
            ("0 20-10 * * *", "hour", "hour: range 20-10 is backwards"),
            ("a * * * *", "minute", "minute: 'a' is not a number"),
            ("0 0 x * *", "day-of-month", "day-of-month: 'x' is not a number"),
            ("1,,2 * * * *", "minute", "minute: empty item in list '1,,2'"),
            ("*/x * * * *", "minute", "minute: step 'x' is not a number"),
            ("0 */ * * *", "hour", "hour: step '' is not a number"),
            ("1/2/3 * * * *", "minute", "minute: '1/2/3' has more than one '/'"),
            ("1-2-3 * * * *", "minute", "minute: '1-2-3' is not a value or a range"),
            ("-5 * * * *", "minute", "minute: missing value in '-5'"),
            ("@often", nil, "unknown macro '@often'"),
            ("@daily now", nil, "macro '@daily' takes no arguments"),
            ("@every", nil, "@every needs a duration, e.g. '@every 5m' or '@every 1h30m'"),
            ("@every 1h 30m", nil, "@every takes one duration, got '1h 30m'"),
            ("@every 500ms", nil, "@every 500ms is shorter than the minimum of 1s"),
            ("@every 0s", nil, "@every 0s is shorter than the minimum of 1s"),
            ("@every 1500ms", nil, "@every 1500ms is not a whole number of seconds"),
            ("@every soon", nil, "@every: 'soon' is not a duration; write e.g. '90s' or '1h30m'"),
        ] as [(String, String?, String)])
    func parseErrors(text: String, field: String?, message: String) {
        let error = #expect(throws: CronError.self) { try CronExpression(text) }
        #expect(error?.field == field)
        #expect(error?.description == message)
        #expect(error.map { "\($0)" } == message)
    }

    @Test func acceptsTheDocumentedForms() throws {
        for text in [
            "* * * * *", "*/15 * * * *", "10-50/5 * * * *", "5/10 * * * *", "0 9 * * MON-FRI", "0 0 1 jan,Jul *",
            "0 0 * * 0,7", "0 0 * * 5-7", "0 0 1-31 * mon", "0 12 * dec-DEC sat/2", " 0  0\t* * * ", "*/10 * * * * *",
            "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly", "@DAILY", "@every 1s",
            "@every 90s", "@every 1h30m", "@every 2m30s", "@every 1d",
        ] {
            let cron = try CronExpression(text)
            #expect(cron.text == text && cron.description == text)
        }
    }

    @Test func secondsFieldAndEvery() throws {
        #expect(try CronExpression("*/10 * * * * *").hasSecondsField)
        #expect(try !CronExpression("*/10 * * * *").hasSecondsField)
        #expect(try !CronExpression("@hourly").hasSecondsField)
        #expect(try CronExpression("@every 1h30m").isEvery == .seconds(5400))
        #expect(try CronExpression("@every 90s").isEvery == .seconds(90))
        #expect(try CronExpression("0 * * * *").isEvery == nil)
        #expect(try CronExpression("@hourly").isEvery == nil)
        #expect(try CronExpression("0 0 * * *") == CronExpression("0 0 * * *"))
    }

    // MARK: - Examples

    @Test func everyFifteenMinutes() throws {
        let fires = try CronExpression("*/15 * * * *").next(after: utc("2026-01-01T00:07:00Z"), in: .gmt, count: 5)
        #expect(fires == utc(["00:15", "00:30", "00:45", "01:00", "01:15"].map { "2026-01-01T\($0):00Z" }))
        // Strictly after: a fire time itself is not returned again.
        #expect(
            try CronExpression("*/15 * * * *").next(after: utc("2026-01-01T00:15:00Z"), in: .gmt)
                == utc("2026-01-01T00:30:00Z"))
        #expect(
            try CronExpression("*/15 * * * *").next(after: utc("2026-01-01T00:14:59.999Z"), in: .gmt)
                == utc("2026-01-01T00:15:00Z"))
    }

    @Test func weekdaysAtNineInBerlin() throws {
        let berlin = try zone("Europe/Berlin")
        // 2026-01-01 is a Thursday; Berlin is UTC+1 in winter.
        let fires = try CronExpression("0 9 * * mon-fri").next(after: utc("2026-01-01T10:00:00Z"), in: berlin, count: 6)
        #expect(fires == utc(["01-02", "01-05", "01-06", "01-07", "01-08", "01-09"].map { "2026-\($0)T08:00:00Z" }))
        // Summer: UTC+2.
        #expect(
            try CronExpression("0 9 * * MON-FRI").next(after: utc("2026-07-04T00:00:00Z"), in: berlin)
                == utc("2026-07-06T07:00:00Z"))
    }

    @Test func listsOfDays() throws {
        let fires = try CronExpression("0 0 1,15 * *").next(after: utc("2026-01-10T00:00:00Z"), in: .gmt, count: 4)
        #expect(fires == utc(["2026-01-15", "2026-02-01", "2026-02-15", "2026-03-01"].map { $0 + "T00:00:00Z" }))
    }

    @Test func dayOfMonthOrDayOfWeek() throws {
        // Both restricted: the 1st of the month OR any Sunday (2026-01-04 is a Sunday, 2026-02-01 both).
        let fires = try CronExpression("30 4 1 * 0").next(after: utc("2025-12-31T12:00:00Z"), in: .gmt, count: 8)
        let days = ["01-01", "01-04", "01-11", "01-18", "01-25", "02-01", "02-08", "02-15"]
        #expect(fires == utc(days.map { "2026-\($0)T04:30:00Z" }))
        // One of them `*`: only the other restricts.
        #expect(
            try CronExpression("30 4 1 * *").next(after: utc("2026-01-02T00:00:00Z"), in: .gmt)
                == utc("2026-02-01T04:30:00Z"))
        #expect(
            try CronExpression("30 4 * * 0").next(after: utc("2026-01-02T00:00:00Z"), in: .gmt)
                == utc("2026-01-04T04:30:00Z"))
        // 1-31 is a restriction (Vixie cron), so with a weekday it matches every day.
        #expect(
            try CronExpression("0 0 1-31 * mon").next(after: utc("2026-01-02T12:00:00Z"), in: .gmt)
                == utc("2026-01-03T00:00:00Z"))
    }

    @Test func sundayIsZeroOrSeven() throws {
        let start = utc("2026-01-01T00:00:00Z")
        let expected = utc(["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z", "2026-01-18T00:00:00Z"])
        for text in ["0 0 * * 7", "0 0 * * 0", "0 0 * * sun", "0 0 * * SUN", "0 0 * * 0,7", "@weekly"] {
            #expect(try CronExpression(text).next(after: start, in: .gmt, count: 3) == expected, "\(text)")
        }
        // 5-7 is Friday to Sunday.
        #expect(
            try CronExpression("0 0 * * 5-7").next(after: start, in: .gmt, count: 4)
                == utc(["2026-01-02", "2026-01-03", "2026-01-04", "2026-01-09"].map { $0 + "T00:00:00Z" }))
    }

    @Test func namesAndSteps() throws {
        let start = utc("2026-01-01T00:00:00Z")
        // Saturdays in July, or the 1st of July, at noon.
        #expect(
            try CronExpression("0 12 1 Jul sat").next(after: start, in: .gmt, count: 3)
                == utc(["2026-07-01", "2026-07-04", "2026-07-11"].map { $0 + "T12:00:00Z" }))
        #expect(
            try CronExpression("0 0 1 jan-mar/2,DEC *").next(after: start, in: .gmt, count: 3)
                == utc(["2026-03-01", "2026-12-01", "2027-01-01"].map { $0 + "T00:00:00Z" }))
        #expect(
            try CronExpression("10-50/20 5/6 * * *").next(after: start, in: .gmt, count: 7)
                == utc(["05:10", "05:30", "05:50", "11:10", "11:30", "11:50", "17:10"].map { "2026-01-01T\($0):00Z" }))
        // Monday, Wednesday, Friday.
        #expect(
            try CronExpression("0 0 * * mon-fri/2").next(after: start, in: .gmt, count: 3)
                == utc(["2026-01-02", "2026-01-05", "2026-01-07"].map { $0 + "T00:00:00Z" }))
    }

    @Test func macros() throws {
        let start = utc("2026-05-17T10:20:30Z")  // a Sunday
        let cases: [(String, String)] = [
            ("@hourly", "2026-05-17T11:00:00Z"), ("@daily", "2026-05-18T00:00:00Z"),
            ("@midnight", "2026-05-18T00:00:00Z"), ("@weekly", "2026-05-24T00:00:00Z"),
            ("@monthly", "2026-06-01T00:00:00Z"), ("@yearly", "2027-01-01T00:00:00Z"),
            ("@annually", "2027-01-01T00:00:00Z"),
        ]
        for (text, expected) in cases {
            #expect(try CronExpression(text).next(after: start, in: .gmt) == utc(expected), "\(text)")
        }
        // In a zone: @daily is local midnight (Kathmandu is UTC+05:45).
        #expect(
            try CronExpression("@daily").next(after: start, in: zone("Asia/Kathmandu")) == utc("2026-05-17T18:15:00Z"))
    }

    @Test func secondsField() throws {
        let fires = try CronExpression("*/10 * * * * *").next(after: utc("2026-01-01T12:00:05Z"), in: .gmt, count: 6)
        #expect(fires == utc(["00:10", "00:20", "00:30", "00:40", "00:50", "01:00"].map { "2026-01-01T12:\($0)Z" }))
        #expect(
            try CronExpression("30 0 0 1 1 *").next(after: utc("2026-01-01T00:00:30Z"), in: .gmt)
                == utc("2027-01-01T00:00:30Z"))
        #expect(
            try CronExpression("5 * * * * *").next(after: utc("2026-01-01T12:00:04.5Z"), in: .gmt)
                == utc("2026-01-01T12:00:05Z"))
    }

    @Test func everyIsAlignedToTheEpoch() throws {
        let every = try CronExpression("@every 1s")
        #expect(every.next(after: utc("2026-01-01T12:00:00.5Z"), in: .gmt) == utc("2026-01-01T12:00:01Z"))
        #expect(every.next(after: utc("2026-01-01T12:00:01Z"), in: .gmt) == utc("2026-01-01T12:00:02Z"))
        // 2026-01-01T00:00:00Z is 1_767_225_600 s, a multiple of 90 and of 5400.
        let midnight = utc("2026-01-01T00:00:00Z")
        for zone in [TimeZone.gmt, try zone("America/New_York"), try zone("Asia/Kathmandu")] {
            #expect(
                try CronExpression("@every 90s").next(after: midnight.addingTimeInterval(-1), in: zone, count: 3)
                    == [0, 90, 180].map { midnight.addingTimeInterval($0) })
            #expect(
                try CronExpression("@every 1h30m").next(after: midnight, in: zone, count: 2)
                    == [5400, 10_800].map { midnight.addingTimeInterval($0) })
            #expect(
                try CronExpression("@every 7s").next(after: midnight, in: zone)
                    == Date(timeIntervalSince1970: TimeInterval((1_767_225_600 / 7 + 1) * 7)))
        }
    }

    @Test func impossibleDatesReturnNil() throws {
        let start = utc("2026-01-01T00:00:00Z")
        for text in ["0 0 30 2 *", "0 0 31 4 *", "0 0 31 2,4,6,9,11 *", "* * 30 feb *"] {
            #expect(try CronExpression(text).next(after: start, in: .gmt) == nil, "\(text)")
            #expect(try CronExpression(text).next(after: start, in: .gmt, count: 3).isEmpty)
        }
        // February 29th is within 8 years even across 2100, which is not a leap year.
        #expect(
            try CronExpression("0 0 29 2 *").next(after: utc("2096-03-01T00:00:00Z"), in: .gmt)
                == utc("2104-02-29T00:00:00Z"))
    }

    // MARK: - Daylight saving time, spelled out

    @Test func newYorkSpringForward() throws {
        let newYork = try zone("America/New_York")
        // 2026-03-08: at 07:00Z the clocks go from 02:00 EST to 03:00 EDT.
        #expect(
            newYork.nextDaylightSavingTimeTransition(after: utc("2026-03-01T00:00:00Z")) == utc("2026-03-08T07:00:00Z"))
        let fires = try CronExpression("30 2 * * *").next(after: utc("2026-03-07T00:00:00Z"), in: newYork, count: 3)
        #expect(fires == utc(["2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]))
        // Several matches in one gap, and the gap's end itself matching, fire once.
        #expect(
            try CronExpression("*/20 2 * * *").next(after: utc("2026-03-08T06:00:00Z"), in: newYork, count: 2)
                == utc(["2026-03-08T07:00:00Z", "2026-03-09T06:00:00Z"]))
        #expect(
            try CronExpression("0,30 2,3 * * *").next(after: utc("2026-03-08T06:00:00Z"), in: newYork, count: 3)
                == utc(["2026-03-08T07:00:00Z", "2026-03-08T07:30:00Z", "2026-03-09T06:00:00Z"]))
        #expect(
            try CronExpression("30 30 2 * * *").next(after: utc("2026-03-08T06:59:59Z"), in: newYork)
                == utc("2026-03-08T07:00:00Z"))
    }

    @Test func newYorkFallBack() throws {
        let newYork = try zone("America/New_York")
        // 2026-11-01: at 06:00Z the clocks go from 02:00 EDT back to 01:00 EST.
        #expect(
            newYork.nextDaylightSavingTimeTransition(after: utc("2026-10-01T00:00:00Z")) == utc("2026-11-01T06:00:00Z"))
        let cron = try CronExpression("30 1 * * *")
        #expect(
            cron.next(after: utc("2026-10-31T12:00:00Z"), in: newYork, count: 2)
                == utc(["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]))
        // From inside the second 01:xx (01:15 EST), the repeated 01:30 does not fire again.
        #expect(cron.next(after: utc("2026-11-01T06:15:00Z"), in: newYork) == utc("2026-11-02T06:30:00Z"))
        // Every half hour: the repeated hour fires nothing the second time through.
        #expect(
            try CronExpression("*/30 * * * *").next(after: utc("2026-11-01T04:45:00Z"), in: newYork, count: 4)
                == utc(["2026-11-01T05:00:00Z", "2026-11-01T05:30:00Z", "2026-11-01T07:00:00Z", "2026-11-01T07:30:00Z"])
        )
        #expect(
            try CronExpression("*/30 * * * *").next(after: utc("2026-11-01T06:10:00Z"), in: newYork)
                == utc("2026-11-01T07:00:00Z"))
    }

    @Test func berlin() throws {
        let berlin = try zone("Europe/Berlin")
        // 2026-03-29 at 01:00Z: 02:00 CET → 03:00 CEST. 2026-10-25 at 01:00Z: 03:00 CEST → 02:00 CET.
        #expect(
            berlin.nextDaylightSavingTimeTransition(after: utc("2026-03-01T00:00:00Z")) == utc("2026-03-29T01:00:00Z"))
        #expect(
            berlin.nextDaylightSavingTimeTransition(after: utc("2026-10-01T00:00:00Z")) == utc("2026-10-25T01:00:00Z"))
        let cron = try CronExpression("30 2 * * *")
        #expect(
            cron.next(after: utc("2026-03-28T00:00:00Z"), in: berlin, count: 3)
                == utc(["2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]))
        #expect(
            cron.next(after: utc("2026-10-24T00:00:00Z"), in: berlin, count: 3)
                == utc(["2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]))
        #expect(cron.next(after: utc("2026-10-25T01:10:00Z"), in: berlin) == utc("2026-10-26T01:30:00Z"))
    }

    @Test func lordHoweHalfHourShift() throws {
        let lordHowe = try zone("Australia/Lord_Howe")
        // 2026-10-03 at 15:30Z: 02:00 (+10:30) → 02:30 (+11). 2026-04-04 at 15:00Z: 02:00 (+11) → 01:30 (+10:30).
        #expect(
            try CronExpression("15 2 * * *").next(after: utc("2026-10-03T12:00:00Z"), in: lordHowe, count: 2)
                == utc(["2026-10-03T15:30:00Z", "2026-10-04T15:15:00Z"]))
        #expect(
            try CronExpression("45 1 * * *").next(after: utc("2026-04-04T12:00:00Z"), in: lordHowe, count: 2)
                == utc(["2026-04-04T14:45:00Z", "2026-04-05T15:15:00Z"]))
    }

    // MARK: - Against a brute-force reference

    @Test(
        "Matches a minute-by-minute reference",
        arguments: ["UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kathmandu"])
    func matchesReference(zoneName: String) throws {
        let table = try ZoneTable(zone: zone(zoneName), from: Self.spanStart, through: Self.spanEnd)
        var random = SplitMix64(seed: 0x5EED_C0DE)
        for reference in Self.references {
            let cron = try CronExpression(reference.text)
            for (start, end) in windows(for: reference, in: table) {
                let expected = table.referenceFires(reference, after: start, through: end)
                var actual: [Int64] = []
                var cursor = Date(timeIntervalSince1970: TimeInterval(start))
                while let fire = cron.next(after: cursor, in: table.zone),
                    fire.timeIntervalSince1970 <= TimeInterval(end)
                {
                    actual.append(Int64(fire.timeIntervalSince1970))
                    cursor = fire
                }
                guard actual == expected else {
                    let index =
                        (0..<min(actual.count, expected.count)).first { actual[$0] != expected[$0] }
                        ?? min(actual.count, expected.count)
                    Issue.record(
                        """
                        '\(reference.text)' in \(zoneName) from \(iso(start)): fire #\(index) is \
                        \(actual.dropFirst(index).first.map(iso) ?? "none"), reference \
                        \(expected.dropFirst(index).first.map(iso) ?? "none") (\(actual.count) vs \(expected.count))
                        """)
                    break
                }
                // Arbitrary starting points, including inside gaps and repeated stretches.
                var probes = (0..<12).map { _ in
                    TimeInterval(Int64.random(in: start..<end, using: &random))
                        + Double.random(in: 0..<1, using: &random)
                }
                for transition in table.transitions where transition > start && transition < end {
                    probes += [-3600, -1, 0, 1, 600, 1800, 2700, 3599, 3600].map { TimeInterval(transition + $0) }
                }
                for probe in probes where probe < TimeInterval(end) {
                    let want = expected.first { TimeInterval($0) > probe }
                    let got = cron.next(after: Date(timeIntervalSince1970: probe), in: table.zone)
                    if let want {
                        #expect(
                            got == Date(timeIntervalSince1970: TimeInterval(want)),
                            "'\(reference.text)' in \(zoneName) after \(probe)")
                    } else {
                        #expect(
                            got.map { $0.timeIntervalSince1970 > TimeInterval(end) } ?? true,
                            "'\(reference.text)' in \(zoneName) after \(probe)")
                    }
                }
            }
        }
    }

    /// 2023-12-01T00:00Z to 2028-03-15T00:00Z: over four years, two February 29ths, eight or nine transitions.
    private static let spanStart: Int64 = 1_701_388_800
    private static let spanEnd: Int64 = 1_836_950_400

    /// The whole span for sparse expressions; for dense ones a stretch from the start and a few days around each
    /// transition, so that each window holds a few thousand fires at most.
    private func windows(for reference: ReferenceCron, in table: ZoneTable) -> [(Int64, Int64)] {
        let perSecond = reference.firesPerDay / 86_400
        let span = Self.spanEnd - Self.spanStart
        if perSecond * Double(span) <= 4000 { return [(Self.spanStart, Self.spanEnd)] }
        let first = Int64(min(Double(span), max(21_600, 20_000 / perSecond)))
        let half = Int64(min(2 * 86_400, max(7200, 1500 / perSecond)))
        return [(Self.spanStart, Self.spanStart + first)]
            + table.transitions.map { (max(Self.spanStart, $0 - half), min(Self.spanEnd, $0 + half)) }
    }

    private static let references: [ReferenceCron] = {
        var fixed = [
            ReferenceCron("30 2 * * *", minutes: [30], hours: [2]),
            ReferenceCron("0 0 29 2 *", minutes: [0], hours: [0], daysOfMonth: [29], months: [2]),
            ReferenceCron("15 1 * * sun", minutes: [15], hours: [1], daysOfWeek: [0]),
            ReferenceCron("*/7 * * * *", minutes: Set(stride(from: 0, through: 59, by: 7))),
            ReferenceCron("0,30 1-3 * * *", minutes: [0, 30], hours: [1, 2, 3]),
            ReferenceCron("*/15 2 * * *", minutes: [0, 15, 30, 45], hours: [2]),
            ReferenceCron("30 4 1 * 0", minutes: [30], hours: [4], daysOfMonth: [1], daysOfWeek: [0]),
            ReferenceCron("45 1 * * 1-5", minutes: [45], hours: [1], daysOfWeek: [1, 2, 3, 4, 5]),
            ReferenceCron("@daily", minutes: [0], hours: [0]),
            ReferenceCron("30 */10 2 * * *", seconds: [30], minutes: [0, 10, 20, 30, 40, 50], hours: [2]),
            ReferenceCron("*/20 * * * * *", seconds: [0, 20, 40]),
        ]
        var random = SplitMix64(seed: 20_260_308)
        for _ in 0..<24 { fixed.append(ReferenceCron.random(using: &random)) }
        return fixed
    }()
}

// MARK: - Helpers

private func utc(_ text: String) -> Date {
    do {
        return try Date.ISO8601FormatStyle(includingFractionalSeconds: text.contains(".")).parse(text)
    } catch {
        Issue.record("not an ISO 8601 date: \(text)")
        return .distantPast
    }
}

private func utc(_ texts: [String]) -> [Date] { texts.map { utc($0) } }

private func zone(_ identifier: String) throws -> TimeZone { try #require(TimeZone(identifier: identifier)) }

private func iso(_ seconds: Int64) -> String {
    Date(timeIntervalSince1970: TimeInterval(seconds)).formatted(.iso8601)
}

/// A cron expression together with the values each field matches, worked out independently of the parser.
/// `nil` day fields were written `*`; days of the week run 0–6 with 0 Sunday.
private struct ReferenceCron: Sendable {
    var text: String
    var seconds: Set<Int>
    var minutes: Set<Int>
    var hours: Set<Int>
    var daysOfMonth: Set<Int>?
    var months: Set<Int>
    var daysOfWeek: Set<Int>?
    let sortedSeconds: [Int]
    /// The sets as arrays of flags indexed by value, for speed (`nil`: written `*`).
    private let minuteFlags: [Bool]
    private let hourFlags: [Bool]
    private let dayFlags: [Bool]?
    private let monthFlags: [Bool]
    private let weekdayFlags: [Bool]?

    init(
        _ text: String, seconds: Set<Int> = [0], minutes: Set<Int> = Set(0...59), hours: Set<Int> = Set(0...23),
        daysOfMonth: Set<Int>? = nil, months: Set<Int> = Set(1...12), daysOfWeek: Set<Int>? = nil
    ) {
        self.text = text
        self.seconds = seconds
        self.minutes = minutes
        self.hours = hours
        self.daysOfMonth = daysOfMonth
        self.months = months
        self.daysOfWeek = daysOfWeek
        func flags(_ values: Set<Int>) -> [Bool] { (0..<64).map { values.contains($0) } }
        sortedSeconds = seconds.sorted()
        minuteFlags = flags(minutes)
        hourFlags = flags(hours)
        dayFlags = daysOfMonth.map(flags)
        monthFlags = flags(months)
        weekdayFlags = daysOfWeek.map(flags)
    }

    func matchesHour(_ hour: Int) -> Bool { hourFlags[hour] }

    func matchesMinute(_ minute: Int) -> Bool { minuteFlags[minute] }

    func matchesDay(month: Int, day: Int, weekday: Int) -> Bool {
        guard monthFlags[month] else { return false }
        switch (dayFlags, weekdayFlags) {
        case (nil, nil): return true
        case (let days?, nil): return days[day]
        case (nil, let weekdays?): return weekdays[weekday]
        case (let days?, let weekdays?): return days[day] || weekdays[weekday]
        }
    }

    func matches(_ time: LocalTime) -> Bool {
        matchesHour(time.hour) && matchesMinute(time.minute)
            && matchesDay(month: time.month, day: time.day, weekday: time.weekday)
    }

    /// Roughly how many times a day it fires, to size the comparison windows.
    var firesPerDay: Double {
        let monthShare = Double(months.count) / 12
        let dayShare: Double
        switch (daysOfMonth, daysOfWeek) {
        case (nil, nil): dayShare = 1
        case (let days?, nil): dayShare = Double(days.count) / 30.4
        case (nil, let weekdays?): dayShare = Double(weekdays.count) / 7
        case (let days?, let weekdays?):
            dayShare = 1 - (1 - Double(days.count) / 30.4) * (1 - Double(weekdays.count) / 7)
        }
        return Double(seconds.count * minutes.count * hours.count) * monthShare * dayShare
    }

    // MARK: Generator

    /// One field written as a value, a list, a range, a step or `*`, and the values it matches.
    private struct Field {
        var text: String
        var values: Set<Int>
        var isStar: Bool
    }

    private enum Form: CaseIterable { case star, value, list, range, rangeStep, starStep, startStep }

    static func random(using random: inout SplitMix64) -> ReferenceCron {
        let withSeconds = Int.random(in: 0..<5, using: &random) == 0
        let second = field(
            0...59, natural: 59, names: [], weights: [.value: 6, .list: 3, .starStep: 1, .startStep: 1],
            stepAtLeast: 10, using: &random)
        let minute = field(
            0...59, natural: 59, names: [],
            weights: [.star: 1, .value: 8, .list: 5, .range: 1, .rangeStep: 2, .starStep: 3, .startStep: 2],
            stepAtLeast: withSeconds ? 10 : 5, using: &random)
        let hour = field(
            0...23, natural: 23, names: [],
            weights: [.star: 3, .value: 6, .list: 4, .range: 3, .rangeStep: 2, .starStep: 2, .startStep: 1],
            stepAtLeast: 2, dstHours: true, using: &random)
        let dayOfMonth = field(
            1...31, natural: 31, names: [],
            weights: [.star: 12, .value: 3, .list: 2, .range: 2, .rangeStep: 1, .starStep: 1, .startStep: 1],
            stepAtLeast: 2, using: &random)
        let month = field(
            1...12, natural: 12,
            names: ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
            weights: [.star: 12, .value: 2, .list: 3, .range: 3, .rangeStep: 1, .starStep: 1, .startStep: 1],
            stepAtLeast: 2, using: &random)
        let dayOfWeek = field(
            0...7, natural: 6, names: ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
            weights: [.star: 10, .value: 3, .list: 2, .range: 3, .rangeStep: 1, .starStep: 1, .startStep: 1],
            stepAtLeast: 2, using: &random)
        let fields = (withSeconds ? [second] : []) + [minute, hour, dayOfMonth, month, dayOfWeek]
        return ReferenceCron(
            fields.map(\.text).joined(separator: " "), seconds: withSeconds ? second.values : [0],
            minutes: minute.values, hours: hour.values, daysOfMonth: dayOfMonth.isStar ? nil : dayOfMonth.values,
            months: month.values,
            daysOfWeek: dayOfWeek.isStar ? nil : Set(dayOfWeek.values.map { $0 == 7 ? 0 : $0 }))
    }

    private static func field(
        _ range: ClosedRange<Int>, natural: Int, names: [String], weights: [Form: Int], stepAtLeast: Int,
        dstHours: Bool = false, using random: inout SplitMix64
    ) -> Field {
        func pick(_ bounds: ClosedRange<Int>) -> Int {
            // Hours around 1–3 are where daylight saving time happens.
            if dstHours, Int.random(in: 0..<2, using: &random) == 0 { return Int.random(in: 0...3, using: &random) }
            return Int.random(in: bounds, using: &random)
        }
        func write(_ value: Int) -> String {
            if value - range.lowerBound < names.count, Int.random(in: 0..<3, using: &random) == 0 {
                let name = names[value - range.lowerBound]
                switch Int.random(in: 0..<3, using: &random) {
                case 0: return name
                case 1: return name.lowercased()
                default: return name.prefix(1) + name.dropFirst().lowercased()
                }
            }
            return "\(value)"
        }
        let total = Form.allCases.reduce(0) { $0 + weights[$1, default: 0] }
        var roll = Int.random(in: 0..<total, using: &random)
        let form =
            Form.allCases.first { form in
                roll -= weights[form, default: 0]
                return roll < 0
            } ?? .value
        let step = Int.random(in: stepAtLeast...max(stepAtLeast, (natural - range.lowerBound + 1) / 2), using: &random)
        switch form {
        case .star:
            return Field(text: "*", values: Set(range.lowerBound...natural), isStar: true)
        case .value:
            let value = pick(range)
            return Field(text: write(value), values: [value], isStar: false)
        case .list:
            let values = (0..<Int.random(in: 2...4, using: &random)).map { _ in pick(range) }
            return Field(text: values.map(write).joined(separator: ","), values: Set(values), isStar: false)
        case .range, .rangeStep:
            let low = pick(range)
            let high = Int.random(in: low...range.upperBound, using: &random)
            let stepped = form == .rangeStep
            let values = Set(stride(from: low, through: high, by: stepped ? step : 1))
            return Field(
                text: "\(write(low))-\(write(high))" + (stepped ? "/\(step)" : ""), values: values, isStar: false)
        case .starStep:
            return Field(
                text: "*/\(step)", values: Set(stride(from: range.lowerBound, through: natural, by: step)),
                isStar: false)
        case .startStep:
            let start = pick(range.lowerBound...natural)
            return Field(
                text: "\(write(start))/\(step)", values: Set(stride(from: start, through: natural, by: step)),
                isStar: false)
        }
    }
}

/// Wall-clock fields as `Calendar` reports them (weekday 0–6, 0 Sunday).
private struct LocalTime {
    var month: Int
    var day: Int
    var weekday: Int
    var hour: Int
    var minute: Int

    init(_ components: DateComponents) {
        month = components.month ?? 0
        day = components.day ?? 0
        weekday = (components.weekday ?? 0) - 1
        hour = components.hour ?? 0
        minute = components.minute ?? 0
    }
}

/// A zone's wall clock over a span, read from `Calendar` once per 15 UTC minutes: within such a block the offset
/// is constant and (offsets being whole quarter hours in these zones) the local minutes run on within one local hour;
/// blocks where that does not hold are stored minute by minute.
private struct ZoneTable {
    struct Block {
        /// Unix seconds of the block's first minute, and its wall clock read as if it were UTC.
        var instant: Int64
        var local: Int64
        var minutes: Int
        var time: LocalTime
    }

    let zone: TimeZone
    let blocks: [Block]
    /// Blocks at which the UTC offset differs from the block before.
    let transitions: [Int64]

    init(zone: TimeZone, from start: Int64, through end: Int64) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        func read(_ instant: Int64) -> (Int64, LocalTime) {
            let date = Date(timeIntervalSince1970: TimeInterval(instant))
            let components = calendar.dateComponents([.month, .day, .weekday, .hour, .minute], from: date)
            return (instant + Int64(zone.secondsFromGMT(for: date)), LocalTime(components))
        }
        var blocks: [Block] = []
        var transitions: [Int64] = []
        var previousOffset: Int64?
        // From two days early, so that the walk knows the wall clock before the first window.
        var instant = start - 2 * 86_400
        while instant <= end + 86_400 {
            let (local, time) = read(instant)
            let offset = local - instant
            if let previousOffset, previousOffset != offset { transitions.append(instant) }
            previousOffset = offset
            let endOffset = Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(instant + 840))))
            if endOffset == offset && time.minute % 15 == 0 {
                blocks.append(Block(instant: instant, local: local, minutes: 15, time: time))
            } else {
                for minute in 0..<15 {
                    let (local, time) = read(instant + Int64(minute) * 60)
                    blocks.append(Block(instant: instant + Int64(minute) * 60, local: local, minutes: 1, time: time))
                }
            }
            instant += 900
        }
        self.zone = zone
        self.blocks = blocks
        self.transitions = transitions
    }

    /// The reference: walk the wall clock minute by minute; a local minute seen for the first time fires at its
    /// matching seconds; local minutes jumped over fire once, at the instant after the jump; a local minute seen
    /// before (the clocks went back) does not fire.
    func referenceFires(_ cron: ReferenceCron, after start: Int64, through end: Int64) -> [Int64] {
        var gmt = Calendar(identifier: .gregorian)
        gmt.timeZone = .gmt
        var index = firstBlock(atOrAfter: start - 86_400)
        var latestLocal = blocks[index].local - 60
        var fires: [Int64] = []
        while index < blocks.count, blocks[index].instant <= end {
            let block = blocks[index]
            index += 1
            var skipped = latestLocal + 60
            while skipped < block.local {
                let components = gmt.dateComponents(
                    [.month, .day, .weekday, .hour, .minute], from: Date(timeIntervalSince1970: TimeInterval(skipped)))
                if cron.matches(LocalTime(components)) {
                    fires.append(block.instant)
                    break
                }
                skipped += 60
            }
            let lastLocal = block.local + Int64(block.minutes - 1) * 60
            if lastLocal > latestLocal, cron.matchesHour(block.time.hour),
                cron.matchesDay(month: block.time.month, day: block.time.day, weekday: block.time.weekday)
            {
                for minute in 0..<block.minutes
                where block.local + Int64(minute) * 60 > latestLocal
                    && cron.matchesMinute(block.time.minute + minute)
                {
                    fires += cron.sortedSeconds.map { block.instant + Int64(minute) * 60 + Int64($0) }
                }
            }
            latestLocal = max(latestLocal, lastLocal)
        }
        // A gap's fire and the second-0 fire of the minute after it coincide.
        var unique: [Int64] = []
        for fire in fires.sorted() where fire > start && fire <= end && fire != unique.last { unique.append(fire) }
        return unique
    }

    /// The index of the first block starting at or after `instant` (binary search).
    private func firstBlock(atOrAfter instant: Int64) -> Int {
        var low = 0
        var high = blocks.count
        while low < high {
            let middle = (low + high) / 2
            if blocks[middle].instant >= instant { high = middle } else { low = middle + 1 }
        }
        return low
    }
}
