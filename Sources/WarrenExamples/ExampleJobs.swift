import Foundation
import Warren

/// The example jobs the demo runs, drawn from what job systems are used for:
///
/// - `transactions.classify`: normalise a bank-statement payee and categorise it with rules from a CSV file;
/// - `documents.stats`: word counts, top words and reading time of a text;
/// - `reports.daily`: write a small Markdown report file;
/// - `demo.greet`: log a greeting.
///
/// ```swift
/// let examples = try ExampleJobs(payeeRulesFile: "Config/examples/payee-rules.csv", reportDirectory: "reports")
/// var registry = JobRegistry()
/// examples.register(into: &registry)
/// ```
///
/// Every handler is quick: no sleeping and no IO but the report file. The logic lives in pure static functions
/// (``classify(_:rules:)``, ``statistics(of:)-(String)``, ``renderReport(_:jobID:generatedAt:)``,
/// ``greeting(for:)``) that tests call without a broker.
public struct ExampleJobs: Sendable {
    /// The example tasks' names.
    public static let taskNames: [String] = [
        ClassifyTransaction.taskName, DocumentStats.taskName, DailyReport.taskName, Greet.taskName,
    ]

    /// The rules `transactions.classify` applies.
    public let payeeRules: PayeeRules
    /// Where `reports.daily` writes its files.
    public let reportDirectory: String

    /// Loads the payee rules CSV (path as given; relative to the current directory) and builds the handlers.
    ///
    /// - Throws: ``PayeeRulesError`` naming the file, and the line when there is one, when the file cannot be read
    ///   or does not parse.
    public init(payeeRulesFile: String, reportDirectory: String) throws {
        self.init(payeeRules: try PayeeRules(contentsOfFile: payeeRulesFile), reportDirectory: reportDirectory)
    }

    public init(payeeRules: PayeeRules, reportDirectory: String) {
        self.payeeRules = payeeRules
        self.reportDirectory = reportDirectory
    }

    /// Registers every example task.
    public func register(into registry: inout JobRegistry) {
        let rules = payeeRules
        let reportDirectory = reportDirectory
        registry.register(ClassifyTransaction.self) { transaction, context in
            let result = try Self.classify(transaction, rules: rules, attempt: context.attempt)
            context.logger.debug(
                "transaction classified",
                [
                    "transaction.id": result.transactionID,
                    "transaction.payee.raw": result.rawPayee,
                    "transaction.payee.normalised": result.normalisedPayee,
                    "transaction.payee": result.payee,
                    "transaction.category": result.category,
                    "transaction.rule": result.matchedPattern ?? "",
                    "transaction.amount": "\(result.amount) \(result.currency)",
                ])
        }
        registry.register(DocumentStats.self) { document, context in
            let statistics = try Self.statistics(of: document)
            context.logger.debug(
                "document statistics",
                [
                    "document.id": document.documentID,
                    "document.words": String(statistics.words),
                    "document.lines": String(statistics.lines),
                    "document.characters": String(statistics.characters),
                    "document.unique_words": String(statistics.uniqueWords),
                    "document.top_words": statistics.topWords.map(\.description).joined(separator: " "),
                    "document.reading_time_seconds": String(statistics.readingTimeSeconds),
                ])
        }
        registry.register(DailyReport.self) { report, context in
            let file = try Self.writeReport(report, jobID: context.id, directory: reportDirectory)
            context.logger.info("report written", ["report.file": file.path])
        }
        registry.register(Greet.self) { greet, context in
            let greeting = try Self.greeting(for: greet)
            context.logger.info(greeting)
        }
    }
}
