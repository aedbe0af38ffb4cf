import Foundation
import Warren

/// One job of the demo: the task type, the JSON body a producer would publish, and what should become of it.
public struct DemoJob: Sendable, Equatable {
    public enum Expected: String, Sendable {
        /// Succeeds at the first attempt.
        case succeeds
        /// Fails once or twice with a retryable error, then succeeds.
        case retriesThenSucceeds
        /// Dead-lettered: a permanent failure, a malformed body, or a task type no worker runs.
        case dead
    }

    /// Why the job was made, finer than ``Expected``.
    public enum Scenario: String, Sendable, CaseIterable {
        /// A valid job.
        case valid
        /// A valid job that fails its first one or two attempts (`failAttempts`).
        case retry
        /// A body that decodes but that the handler rejects with `PermanentJobError`.
        case permanent
        /// Not JSON, or JSON of the wrong shape.
        case malformed
        /// A task type no handler is registered for (`transactions.refund`).
        case unknownTask
    }

    public var task: String
    public var body: Data
    public var expected: Expected
    public var scenario: Scenario

    public init(task: String, body: Data, expected: Expected, scenario: Scenario? = nil) {
        self.task = task
        self.body = body
        self.expected = expected
        self.scenario =
            scenario
            ?? {
                switch expected {
                case .succeeds: .valid
                case .retriesThenSucceeds: .retry
                case .dead: .permanent
                }
            }()
    }

    /// The body as text, for printing.
    public var bodyText: String { String(decoding: body, as: UTF8.self) }
}

extension ExampleJobs {
    /// The task type of the demo's jobs that no handler runs.
    public static let unknownTaskName = "transactions.refund"

    /// Generates `count` demo jobs as (task, JSON body) pairs, deterministic for a seed (on every platform: the
    /// generator is SplitMix64 and draws nothing from the standard library's random algorithms).
    ///
    /// The mix, with counts rounded to the nearest whole job and the jobs shuffled: about 5% fail once or twice and
    /// then succeed (``DemoJob/Scenario/retry``, `transactions.classify` with `failAttempts`), 1% fail permanently
    /// (bad currency or date, empty document, over-long name), 0.5% are malformed (not JSON, or the wrong shape),
    /// 0.5% have the task type ``unknownTaskName``, and the rest are valid: about 60% `transactions.classify`,
    /// 20% `demo.greet`, 15% `documents.stats`, 5% `reports.daily`.
    public static func demoJobs(count: Int, seed: UInt64) -> [DemoJob] {
        guard count > 0 else { return [] }
        func share(_ fraction: Double) -> Int { Int((Double(count) * fraction).rounded()) }
        var scenarios: [DemoJob.Scenario] = []
        scenarios += Array(repeating: .retry, count: share(0.05))
        scenarios += Array(repeating: .permanent, count: share(0.01))
        scenarios += Array(repeating: .malformed, count: share(0.005))
        scenarios += Array(repeating: .unknownTask, count: share(0.005))
        scenarios += Array(repeating: .valid, count: count - scenarios.count)
        var random = DemoRandom(seed: seed)
        random.shuffle(&scenarios)
        var generator = DemoJobGenerator(random: random)
        return scenarios.enumerated().map { index, scenario in generator.job(scenario, number: index + 1) }
    }
}

/// Draws from Warren's SplitMix64: small, fast, and the same sequence everywhere.
private struct DemoRandom {
    var generator: SplitMix64

    init(seed: UInt64) { generator = SplitMix64(seed: seed) }

    mutating func next() -> UInt64 { generator.next() }

    /// A number in `0..<bound`.
    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }

    mutating func pick<Element>(_ elements: [Element]) -> Element { elements[below(elements.count)] }

    /// Fisher–Yates.
    mutating func shuffle<Element>(_ elements: inout [Element]) {
        guard elements.count > 1 else { return }
        for i in stride(from: elements.count - 1, to: 0, by: -1) {
            elements.swapAt(i, below(i + 1))
        }
    }
}

private struct DemoJobGenerator {
    var random: DemoRandom

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    mutating func job(_ scenario: DemoJob.Scenario, number: Int) -> DemoJob {
        switch scenario {
        case .valid: valid(number)
        case .retry: retry(number)
        case .permanent: permanent(number)
        case .malformed: malformed(number)
        case .unknownTask: unknownTask(number)
        }
    }

    private func encode<Payload: Encodable>(_ payload: Payload) -> Data {
        (try? Self.encoder.encode(payload)) ?? Data()
    }

    private func make<Payload: JobPayload>(
        _ payload: Payload, _ expected: DemoJob.Expected, _ scenario: DemoJob.Scenario
    ) -> DemoJob {
        DemoJob(task: Payload.taskName, body: encode(payload), expected: expected, scenario: scenario)
    }

    private mutating func transaction(_ number: Int) -> ClassifyTransaction {
        let sample = random.pick(ExampleJobs.sampleTransactions)
        return ClassifyTransaction(
            id: "txn-\(number)", date: sample.date, payee: sample.payee, amount: sample.decimalAmount,
            currency: sample.currency)
    }

    private mutating func valid(_ number: Int) -> DemoJob {
        let roll = random.below(100)
        if roll < 60 {
            return make(transaction(number), .succeeds, .valid)
        } else if roll < 80 {
            return make(Greet(name: random.pick(Self.names)), .succeeds, .valid)
        } else if roll < 95 {
            return make(
                DocumentStats(documentID: "doc-\(number)", text: random.pick(Self.documents)), .succeeds, .valid)
        } else {
            let report = DailyReport(title: random.pick(Self.reportTitles), date: random.pick(Self.reportDates))
            return make(report, .succeeds, .valid)
        }
    }

    private mutating func retry(_ number: Int) -> DemoJob {
        var payload = transaction(number)
        payload.failAttempts = 1 + random.below(2)
        return make(payload, .retriesThenSucceeds, .retry)
    }

    private mutating func permanent(_ number: Int) -> DemoJob {
        switch random.below(5) {
        case 0:
            var payload = transaction(number)
            payload.currency = random.pick(["XX", "EURO", "E1R", "€", "usd$"])
            return make(payload, .dead, .permanent)
        case 1:
            var payload = transaction(number)
            payload.date = random.pick(["2025-02-30", "31/01/2025", "2025-13-01", "yesterday", "2025-1-5"])
            return make(payload, .dead, .permanent)
        case 2:
            return make(
                DocumentStats(documentID: "doc-\(number)", text: random.pick(["", "  \n\t \n"])), .dead, .permanent)
        case 3:
            return make(Greet(name: random.pick(Self.overlongNames)), .dead, .permanent)
        default:
            let report = DailyReport(
                title: random.pick(Self.reportTitles), date: random.pick(["2025-02-29", "tomorrow"]))
            return make(report, .dead, .permanent)
        }
    }

    private mutating func malformed(_ number: Int) -> DemoJob {
        let notJSON = [
            "hello, world",
            "{\"id\": \"txn-\(number)\", \"payee\": ",
            "<transaction id=\"txn-\(number)\"/>",
            "",
        ]
        let wrongShape: [(String, String)] = [
            (
                ClassifyTransaction.taskName,
                "{\"id\":\"txn-\(number)\",\"date\":\"2025-01-02\",\"payee\":\"TESCO STORES 3297\","
                    + "\"amount\":\"12,50 EUR\",\"currency\":\"EUR\"}"
            ),
            (
                ClassifyTransaction.taskName,
                "{\"id\":\"txn-\(number)\",\"date\":\"2025-01-02\",\"amount\":-3.2,\"currency\":\"EUR\"}"
            ),
            (ClassifyTransaction.taskName, "[]"),
            (DocumentStats.taskName, "{\"documentID\":\"doc-\(number)\",\"body\":\"the text is under the wrong key\"}"),
            (Greet.taskName, "{\"name\":42}"),
            (Greet.taskName, "null"),
            (DailyReport.taskName, "{\"title\":[\"Daily sales\"],\"date\":\"2025-02-01\"}"),
        ]
        if random.below(2) == 0 {
            let task = random.pick(ExampleJobs.taskNames)
            return DemoJob(task: task, body: Data(random.pick(notJSON).utf8), expected: .dead, scenario: .malformed)
        }
        let (task, body) = random.pick(wrongShape)
        return DemoJob(task: task, body: Data(body.utf8), expected: .dead, scenario: .malformed)
    }

    private mutating func unknownTask(_ number: Int) -> DemoJob {
        struct Refund: Encodable {
            var id: String
            var transactionID: String
            var amount: Decimal
            var currency: String
            var reason: String
        }
        let sample = random.pick(ExampleJobs.sampleTransactions)
        let refund = Refund(
            id: "refund-\(number)", transactionID: "txn-\(1 + random.below(number))", amount: -sample.decimalAmount,
            currency: sample.currency, reason: random.pick(["duplicate charge", "goods not received", "cancelled"]))
        return DemoJob(task: ExampleJobs.unknownTaskName, body: encode(refund), expected: .dead, scenario: .unknownTask)
    }

    // MARK: - Sample data

    static let names = [
        "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Linus", "Radia", "Tim", "Zoë", "José",
        "Łukasz", "Søren", "Aoife", "Nnamdi", "Priya", "Mei", "Yusuf", "Fatima", "Hedy", "Katherine",
    ]

    static let overlongNames = [
        "Pablo Diego José Francisco de Paula Juan Nepomuceno María de los Remedios Cipriano de la Santísima Trinidad "
            + "Ruiz y Picasso",
        String(repeating: "Wolfeschlegelsteinhausenbergerdorff ", count: 3) + "Senior",
    ]

    static let reportTitles = [
        "Daily sales", "Failed payments", "Queue health", "New sign-ups", "Refunds & chargebacks",
    ]

    static let reportDates: [String?] = ["2025-01-31", "2025-02-01", "2025-02-02", "2025-02-03", nil]

    static let documents = [
        """
        Release notes for version 2.4. The worker now retries failed jobs with exponential backoff and jitter, \
        so a flaky dependency no longer causes a thundering herd of retries. Jobs that fail for good are moved \
        to the dead-letter queue with the error and the number of attempts. The retry delay, the maximum number \
        of attempts and the time limit can be set per queue.
        """,
        """
        Meeting notes, Tuesday.
        Attendees: Priya, Tom, Mei, Yusuf.
        We agreed to move the nightly invoice run to the jobs queue. Tom will split the invoice export into one \
        job per customer, so that a single bad customer record no longer stops the whole run.
        Mei raised the question of idempotency: a job may run twice, so every invoice job must check whether the \
        invoice was already sent. Action: Tom to add the check before Friday.
        """,
        """
        Dear customer,

        thank you for your order. Your parcel has left our warehouse and should arrive within two working days. \
        You can follow your parcel with the tracking link in your account. If the parcel does not arrive, reply \
        to this email and we will send a new parcel or refund your order.

        Kind regards,
        the customer service team
        """,
        """
        The queue is the contract between the producer and the worker. A producer publishes a message and moves \
        on; the worker takes the message when it has capacity. When the worker is slow the queue grows, and when \
        the worker is fast the queue stays empty. Watching the length of the queue tells you whether you need \
        more workers.
        """,
        """
        Recipe: tomato soup for four. Fry two onions and two cloves of garlic in olive oil until soft. Add a kilo \
        of ripe tomatoes, a litre of stock and a pinch of sugar, and simmer for twenty minutes. Blend the soup \
        until smooth, season with salt and pepper, and serve the soup with basil and bread.
        """,
        "Short note: the backup finished at 03:12, 48 GB in 9 minutes. No errors.",
    ]
}
