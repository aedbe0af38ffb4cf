import Foundation
import Testing
import Warren
import WarrenExamples

private let repositoryRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent()  // WarrenTests
    .deletingLastPathComponent()  // Tests
    .deletingLastPathComponent()
private let shippedRulesFile = repositoryRoot.appendingPathComponent("Config/examples/payee-rules.csv").path
private let shippedTransactionsFile = repositoryRoot.appendingPathComponent("Config/examples/transactions.csv").path

private func shippedRules() throws -> PayeeRules { try PayeeRules(contentsOfFile: shippedRulesFile) }

private func transaction(
    _ payee: String, date: String = "2025-01-02", currency: String = "GBP", failAttempts: Int? = nil
) -> ClassifyTransaction {
    ClassifyTransaction(
        id: "txn-1", date: date, payee: payee, amount: Decimal(-1234) / 100, currency: currency,
        failAttempts: failAttempts)
}

/// A fresh temporary directory, removed by the caller.
private func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("warren-examples-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

@Suite("Example jobs")
struct ExampleJobsTests {
    // MARK: - transactions.classify

    @Test(
        "payee normalisation",
        arguments: [
            ("CARD 4921 TESCO STORES 3297 LONDON GB", "tesco stores"),
            ("POS SAINSBURYS S/MKTS 0412 CAMDEN", "sainsburys s/mkts"),
            ("SEPA DD VATTENFALL KLANTENSERVICE NL12ZZZ330", "vattenfall klantenservice"),
            ("PAYPAL *SPOTIFY P2B3C4D5E6", "spotify"),
            ("SQ *BLUE BOTTLE COFFEE OAKLAND CA", "blue bottle coffee oakland"),
            ("CHECKCARD 0125 SAFEWAY #1234 SAN JOSE CA", "safeway"),
            ("PURCHASE AUTHORIZED ON 01/25 TARGET T-1234 DENVER CO", "target"),
            ("DIRECT DEBIT THAMES WATER 0045123", "thames water"),
            ("  pos   CARD xxxx1234   Maple   &  Oak Deli  ", "maple & oak deli"),
            ("AIRBNB * HMQ2Z8K4", "airbnb"),
            ("REWE MARKT GMBH BERLIN DE", "rewe markt gmbh berlin"),
            ("7-ELEVEN 12345 NEW YORK NY", "7-eleven"),
            ("POS", "pos"),
            ("", ""),
        ])
    func normalisation(raw: String, expected: String) {
        #expect(ExampleJobs.normalisePayee(raw) == expected)
    }

    @Test(
        "classification with the shipped rules",
        arguments: [
            ("CARD 4921 TESCO STORES 3297 LONDON GB", "Tesco", "groceries"),
            ("UBER *EATS PENDING", "Uber Eats", "takeaway"),
            ("UBER *TRIP HELP.UBER.COM", "Uber", "transport"),
            ("BP CONNECT 4411 READING", "BP", "fuel"),
            ("GOOGLE *YOUTUBEPREMIUM G.CO/HELPPAY#", "YouTube Premium", "streaming"),
            ("GOOGLE *GOOGLE STORAGE G.CO/HELPPAY#", "Google", "subscriptions"),
            ("BGC ACME WIDGETS LTD SALARY", "Salary", "income"),
            ("SO LANDLORD RENT FLAT 2", "Rent", "housing"),
            ("CVS/PHARMACY #04512 BOSTON MA", "CVS Pharmacy", "pharmacy"),
            ("CARD 4921 THE CORNER BOOKSHOP 0012 BATH", "The Corner Bookshop", "uncategorised"),
            ("CARD 4921 MAPLE & OAK DELI 0044 YORK", "Maple & Oak Deli", "uncategorised"),
        ])
    func classification(raw: String, payee: String, category: String) throws {
        let result = try ExampleJobs.classify(transaction(raw), rules: shippedRules())
        #expect(result.payee == payee)
        #expect(result.category == category)
        #expect(result.rawPayee == raw)
        #expect((result.matchedPattern == nil) == (category == ExampleJobs.uncategorised))
        #expect(result.amount == Decimal(-1234) / 100)
    }

    @Test("currency is upper-cased; a leap day is a date")
    func currencyAndLeapDay() throws {
        let result = try ExampleJobs.classify(
            transaction("TESCO", date: "2024-02-29", currency: " gbp"), rules: shippedRules())
        #expect(result.currency == "GBP")
        #expect(result.date == "2024-02-29")
    }

    @Test("every shipped sample line classifies; only the intended ones fall through")
    func shippedSamples() throws {
        let rules = try shippedRules()
        var uncategorised: [String] = []
        for sample in ExampleJobs.sampleTransactions {
            let result = try ExampleJobs.classify(
                ClassifyTransaction(
                    id: "t", date: sample.date, payee: sample.payee, amount: sample.decimalAmount,
                    currency: sample.currency),
                rules: rules)
            #expect(!result.normalisedPayee.isEmpty)
            if result.category == ExampleJobs.uncategorised { uncategorised.append(result.payee) }
        }
        #expect(uncategorised.sorted() == ["Favor Kebab House Leeds", "Maple & Oak Deli", "The Corner Bookshop"])
    }

    @Test("a bad currency is a permanent error", arguments: ["XX", "EURO", "E1R", "€", "usd$", ""])
    func badCurrency(currency: String) throws {
        let rules = try shippedRules()
        let error = #expect(throws: PermanentJobError.self) {
            try ExampleJobs.classify(transaction("TESCO", currency: currency), rules: rules)
        }
        #expect(error?.message == "currency '\(currency)' is not an ISO 4217 code")
    }

    @Test(
        "a bad date is a permanent error",
        arguments: [
            "2025-02-30", "2025-02-29", "31/01/2025", "2025-13-01", "2025-1-5", "yesterday", "", "2025-01-02T10:00",
        ])
    func badDate(date: String) throws {
        let rules = try shippedRules()
        let error = #expect(throws: PermanentJobError.self) {
            try ExampleJobs.classify(transaction("TESCO", date: date), rules: rules)
        }
        #expect(error?.message.contains("'\(date)'") == true)
    }

    @Test("a blank payee is a permanent error")
    func blankPayee() throws {
        let rules = try shippedRules()
        #expect(throws: PermanentJobError.self) { try ExampleJobs.classify(transaction("   "), rules: rules) }
    }

    @Test("failAttempts: attempts 1…N fail with a retryable error, attempt N+1 succeeds")
    func simulatedFailures() throws {
        let rules = try shippedRules()
        let payload = transaction("TESCO STORES 3297", failAttempts: 2)
        for attempt in 1...2 {
            #expect(throws: TransientError.self) { try ExampleJobs.classify(payload, rules: rules, attempt: attempt) }
        }
        #expect(try ExampleJobs.classify(payload, rules: rules, attempt: 3).payee == "Tesco")
        // Validation comes first: a bad job fails permanently at once, not after the simulated timeouts.
        var bad = payload
        bad.currency = "XX"
        #expect(throws: PermanentJobError.self) { try ExampleJobs.classify(bad, rules: rules, attempt: 1) }
    }

    @Test("substring and glob rules; the first match wins")
    func ruleMatching() throws {
        let rules = try PayeeRules(
            csv: """
                pattern,payee,category
                uber*eats*,Uber Eats,takeaway
                uber,Uber,transport
                bp *,BP,fuel
                "marks, spencer",M&S,groceries
                "the ""best"" caf?",Best Café,coffee
                """)
        #expect(rules.match("uber eats pending")?.payee == "Uber Eats")
        #expect(rules.match("uber trip")?.payee == "Uber")
        #expect(rules.match("my uber")?.payee == "Uber")
        #expect(rules.match("bp connect")?.payee == "BP")
        #expect(rules.match("bpost") == nil)
        #expect(rules.match("marks, spencer simply food")?.payee == "M&S")
        #expect(rules.match("the \"best\" cafe")?.category == "coffee")
        #expect(rules.match("the \"best\" cafes") == nil)
    }

    // MARK: - Payee rules file

    @Test("ExampleJobs loads the shipped rules and registers every task")
    func shippedRulesLoad() throws {
        let examples = try ExampleJobs(payeeRulesFile: shippedRulesFile, reportDirectory: "reports")
        #expect(examples.payeeRules.rules.count >= 40)
        #expect(examples.payeeRules.rules.first?.line == 4)  // after the header and two comment lines
        var registry = JobRegistry()
        examples.register(into: &registry)
        #expect(registry.taskNames == ExampleJobs.taskNames.sorted())
        #expect(ExampleJobs.taskNames == ["transactions.classify", "documents.stats", "reports.daily", "demo.greet"])
    }

    @Test(
        "a broken rules file fails naming the file and the line",
        arguments: [
            ("pattern,payee,category\ntesco,Tesco,groceries\n\n# comment\nlidl,Lidl\n", 5, "expected 3 columns"),
            ("pattern,payee,category\r\ntesco,Tesco,groceries\r\n\"lidl,Lidl,groceries\r\n", 3, "not closed"),
            ("payee,pattern,category\ntesco,Tesco,groceries\n", 1, "expected the header"),
            ("pattern,payee,category\ntesco,Tesco,groceries\nTESCO,Tesco,groceries\n", 3, "repeats line 2"),
            ("pattern,payee,category\ntesco,Tesco,\n", 2, "the category is empty"),
            ("pattern,payee,category\n*,Anything,misc\n", 2, "matches every payee"),
            ("pattern,payee,category\nte\"sco,Tesco,groceries\n", 2, "quote"),
        ])
    func brokenRulesFile(contents: String, line: Int, message: String) throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("rules.csv").path
        try Data(contents.utf8).write(to: URL(fileURLWithPath: file))
        let error = #expect(throws: PayeeRulesError.self) {
            try ExampleJobs(payeeRulesFile: file, reportDirectory: directory.path)
        }
        #expect(error?.line == line)
        #expect(error?.message.contains(message) == true, "\(String(describing: error))")
        #expect(error?.description.hasPrefix("payee rules '\(file)', line \(line): ") == true)
    }

    @Test("a missing or empty rules file fails naming the file")
    func missingRulesFile() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let missing = directory.appendingPathComponent("nope.csv").path
        let error = #expect(throws: PayeeRulesError.self) {
            try ExampleJobs(payeeRulesFile: missing, reportDirectory: directory.path)
        }
        #expect(error?.description == "payee rules '\(missing)': cannot read the file (no such file)")

        let headerOnly = directory.appendingPathComponent("empty.csv").path
        try Data("pattern,payee,category\n".utf8).write(to: URL(fileURLWithPath: headerOnly))
        let emptyError = #expect(throws: PayeeRulesError.self) {
            try ExampleJobs(payeeRulesFile: headerOnly, reportDirectory: directory.path)
        }
        #expect(emptyError?.description.contains(headerOnly) == true)
    }

    @Test("the embedded sample transactions are Config/examples/transactions.csv")
    func sampleTransactionsMatchCSV() throws {
        let text = try String(contentsOfFile: shippedTransactionsFile, encoding: .utf8)
        let lines = text.split(whereSeparator: \.isNewline).map(String.init)
        #expect(lines.first == "date,payee,amount,currency")
        let fromFile = lines.dropFirst().map { line -> SampleTransaction in
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            return SampleTransaction(date: fields[0], payee: fields[1], amount: fields[2], currency: fields[3])
        }
        #expect(fromFile == ExampleJobs.sampleTransactions)
        #expect(fromFile.count >= 60)
    }

    // MARK: - documents.stats

    @Test("document statistics of a known text")
    func documentStatistics() {
        let statistics = ExampleJobs.statistics(
            of: "The cat sat on the mat.\nThe cat's hat was red, the mat was red too.\n")
        #expect(statistics.words == 16)
        #expect(statistics.lines == 2)
        #expect(statistics.characters == 68)
        #expect(statistics.uniqueWords == 10)
        #expect(
            statistics.topWords == [
                WordCount(word: "mat", count: 2), WordCount(word: "red", count: 2), WordCount(word: "cat", count: 1),
                WordCount(word: "cat's", count: 1), WordCount(word: "hat", count: 1),
            ])
        #expect(statistics.readingTimeSeconds == 5)  // 16 words at 200 a minute: 4.8 s
    }

    @Test("words, lines and reading time at the edges")
    func documentEdges() throws {
        let unicode = ExampleJobs.statistics(of: "Zoë’s café — 42 ÉCLAIRS, 42 éclairs!\r\nno newline at the end")
        #expect(unicode.words == 11)
        #expect(unicode.lines == 2)
        #expect(unicode.uniqueWords == 9)
        #expect(
            unicode.topWords.map(\.description) == ["42×2", "éclairs×2", "café×1", "end×1", "newline×1"])
        #expect(ExampleJobs.statistics(of: "Zoë’s, zoë's").topWords == [WordCount(word: "zoë's", count: 2)])

        let long = ExampleJobs.statistics(of: String(repeating: "word ", count: 1000))
        #expect(long.readingTimeSeconds == 300)
        #expect(long.lines == 1)
        #expect(ExampleJobs.statistics(of: "").lines == 0)

        for text in ["", " \n\t "] {
            let error = #expect(throws: PermanentJobError.self) {
                try ExampleJobs.statistics(of: DocumentStats(documentID: "d", text: text))
            }
            #expect(error?.message == "document is empty")
        }
    }

    // MARK: - reports.daily and demo.greet

    @Test("report rendering")
    func reportRendering() throws {
        let generatedAt = Date(timeIntervalSince1970: 1_738_400_000)  // 2025-02-01T08:53:20Z
        let report = try ExampleJobs.renderReport(
            DailyReport(title: "Refunds & chargebacks", date: "2025-01-31"), jobID: "job-123", generatedAt: generatedAt)
        #expect(report.fileName == "2025-01-31-refunds-chargebacks.md")
        #expect(report.markdown.hasPrefix("# Refunds & chargebacks\n"))
        #expect(report.markdown.contains("Generated at: 2025-02-01T08:53:20Z"))
        #expect(report.markdown.contains("job-123"))

        let today = try ExampleJobs.renderReport(DailyReport(title: "Café crème"), jobID: "j", generatedAt: generatedAt)
        #expect(today.fileName == "2025-02-01-cafe-creme.md")

        #expect(ExampleJobs.slug("  Queue   health!! ") == "queue-health")
        #expect(ExampleJobs.slug("../../etc/passwd") == "etc-passwd")
        #expect(ExampleJobs.slug("日報") == "report")
        #expect(throws: PermanentJobError.self) {
            try ExampleJobs.renderReport(DailyReport(title: " \n "), jobID: "j")
        }
        #expect(throws: PermanentJobError.self) {
            try ExampleJobs.renderReport(DailyReport(title: "Sales", date: "../2025-02-01"), jobID: "j")
        }
    }

    @Test("report writing creates the directory; an unwritable directory is a retryable error")
    func reportWriting() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let reports = directory.appendingPathComponent("nested/reports").path
        let file = try ExampleJobs.writeReport(
            DailyReport(title: "Daily sales", date: "2025-02-01"), jobID: "job-7", directory: reports)
        #expect(file.lastPathComponent == "2025-02-01-daily-sales.md")
        #expect(try String(contentsOf: file, encoding: .utf8).contains("job-7"))

        let blocker = directory.appendingPathComponent("blocker")
        try Data("not a directory".utf8).write(to: blocker)
        #expect(throws: ReportWriteError.self) {
            try ExampleJobs.writeReport(
                DailyReport(title: "Daily sales", date: "2025-02-01"), jobID: "job-8",
                directory: blocker.appendingPathComponent("reports").path)
        }
    }

    @Test("greetings")
    func greetings() throws {
        #expect(try ExampleJobs.greeting(for: Greet(name: " Ada ")) == "hello, Ada")
        #expect(try ExampleJobs.greeting(for: Greet(name: String(repeating: "é", count: 100))).count == 107)
        let error = #expect(throws: PermanentJobError.self) {
            try ExampleJobs.greeting(for: Greet(name: String(repeating: "x", count: 101)))
        }
        #expect(error?.message == "name is 101 characters long; the limit is 100")
        #expect(throws: PermanentJobError.self) { try ExampleJobs.greeting(for: Greet(name: "")) }
    }

    // MARK: - Demo generator

    @Test("the demo generator is deterministic for a seed")
    func demoDeterministic() {
        let first = ExampleJobs.demoJobs(count: 500, seed: 42)
        #expect(first == ExampleJobs.demoJobs(count: 500, seed: 42))
        #expect(first != ExampleJobs.demoJobs(count: 500, seed: 43))
        #expect(first.count == 500)
        #expect(ExampleJobs.demoJobs(count: 0, seed: 42).isEmpty)
        #expect(ExampleJobs.demoJobs(count: 1, seed: 42).count == 1)
    }

    @Test("the demo mix for 5,000 jobs", arguments: [1, 2, 20_251_123] as [UInt64])
    func demoMix(seed: UInt64) {
        let jobs = ExampleJobs.demoJobs(count: 5000, seed: seed)
        func count(_ scenario: DemoJob.Scenario) -> Int { jobs.filter { $0.scenario == scenario }.count }
        #expect(count(.retry) == 250)  // 5 %
        #expect(count(.permanent) == 50)  // 1 %
        #expect(count(.malformed) == 25)  // 0.5 %
        #expect(count(.unknownTask) == 25)  // 0.5 %
        #expect(jobs.filter { $0.expected == .succeeds }.count == 4650)
        #expect(jobs.filter { $0.expected == .retriesThenSucceeds }.count == 250)
        #expect(jobs.filter { $0.expected == .dead }.count == 100)
        #expect(jobs.filter { $0.task == ExampleJobs.unknownTaskName }.count == 25)

        let valid = jobs.filter { $0.scenario == .valid }
        func share(_ task: String) -> Double { Double(valid.filter { $0.task == task }.count) / Double(valid.count) }
        #expect((0.55...0.65).contains(share(ClassifyTransaction.taskName)))
        #expect((0.16...0.24).contains(share(Greet.taskName)))
        #expect((0.11...0.19).contains(share(DocumentStats.taskName)))
        #expect((0.03...0.07).contains(share(DailyReport.taskName)))

        // Mixed through the run, not bunched at one end.
        let firstHalfFailures = jobs.prefix(2500).filter { $0.expected != .succeeds }.count
        #expect((100...250).contains(firstHalfFailures))
    }

    @Test("every demo job does what it is expected to do", arguments: [1, 7, 99] as [UInt64])
    func demoOutcomes(seed: UInt64) throws {
        let rules = try shippedRules()
        for job in ExampleJobs.demoJobs(count: 5000, seed: seed) {
            let outcome = Self.outcome(of: job, rules: rules)
            #expect(outcome.expected == job.expected, "\(job.task) \(job.bodyText): \(outcome.detail)")
            switch job.scenario {
            case .valid, .retry:
                #expect(outcome.decoded, "\(job.task) \(job.bodyText) does not decode")
            case .malformed:
                #expect(!outcome.decoded, "\(job.task) \(job.bodyText) decodes")
            case .permanent:
                #expect(outcome.decoded && outcome.detail.hasPrefix("permanent"), "\(job.bodyText): \(outcome.detail)")
            case .unknownTask:
                #expect(!ExampleJobs.taskNames.contains(job.task))
            }
        }
    }

    /// Runs a demo job through the handlers' pure functions as a worker with 5 attempts would.
    private static func outcome(
        of job: DemoJob, rules: PayeeRules
    ) -> (expected: DemoJob.Expected, decoded: Bool, detail: String) {
        let run: (Int) throws -> Void
        do {
            let decoder = JSONDecoder()
            switch job.task {
            case ClassifyTransaction.taskName:
                let payload = try decoder.decode(ClassifyTransaction.self, from: job.body)
                run = { attempt in _ = try ExampleJobs.classify(payload, rules: rules, attempt: attempt) }
            case DocumentStats.taskName:
                let payload = try decoder.decode(DocumentStats.self, from: job.body)
                run = { _ in _ = try ExampleJobs.statistics(of: payload) }
            case DailyReport.taskName:
                let payload = try decoder.decode(DailyReport.self, from: job.body)
                run = { _ in _ = try ExampleJobs.renderReport(payload, jobID: "job") }
            case Greet.taskName:
                let payload = try decoder.decode(Greet.self, from: job.body)
                run = { _ in _ = try ExampleJobs.greeting(for: payload) }
            default:
                return (.dead, false, "unknown task")
            }
        } catch {
            return (.dead, false, "does not decode: \(error)")
        }
        for attempt in 1...5 {
            do {
                try run(attempt)
                return (attempt == 1 ? .succeeds : .retriesThenSucceeds, true, "succeeded at attempt \(attempt)")
            } catch let error as PermanentJobError {
                return (.dead, true, "permanent: \(error)")
            } catch {
                continue
            }
        }
        return (.dead, true, "failed 5 attempts")
    }
}
