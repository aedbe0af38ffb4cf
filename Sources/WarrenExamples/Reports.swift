import Foundation
import Warren

/// `reports.daily`: writes a small Markdown report into the report directory.
public struct DailyReport: JobPayload, Equatable {
    public static let taskName = "reports.daily"

    public var title: String
    /// The report's day, `YYYY-MM-DD`; today (UTC) when absent.
    public var date: String?

    public init(title: String, date: String? = nil) {
        self.title = title
        self.date = date
    }
}

/// A report ready to write: its file name and Markdown text.
public struct RenderedReport: Sendable, Equatable {
    /// `<date>-<slug(title)>.md`
    public var fileName: String
    public var markdown: String
}

/// The report file could not be written. Retryable: a full disk or a missing mount may recover.
public struct ReportWriteError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var reason: String

    public var description: String { "cannot write report '\(path)': \(reason)" }
}

extension ExampleJobs {
    /// Renders a report. Pure but for reading the clock when `report.date` is absent.
    ///
    /// - Throws: ``PermanentJobError`` when the title is blank or the date is not a real `YYYY-MM-DD` date.
    public static func renderReport(
        _ report: DailyReport, jobID: String, generatedAt: Date = Date()
    ) throws -> RenderedReport {
        let title = report.title.split(whereSeparator: \.isNewline).joined(separator: " ")
            .trimmingCharacters(in: .whitespaces)
        guard !title.isEmpty else { throw PermanentJobError("report title is empty") }
        let date = report.date ?? generatedAt.formatted(.iso8601.year().month().day())
        guard isValidDate(date) else {
            throw PermanentJobError("date '\(date)' is not a valid YYYY-MM-DD date")
        }
        let markdown = """
            # \(title)

            - Date: \(date)
            - Generated at: \(generatedAt.formatted(.iso8601))
            - Job: \(jobID)

            _Written by the `\(DailyReport.taskName)` example job._

            """
        return RenderedReport(fileName: "\(date)-\(slug(title)).md", markdown: markdown)
    }

    /// Renders a report and writes it into `directory` (created if need be), replacing a file of the same name
    /// atomically. Returns the file written.
    ///
    /// - Throws: ``PermanentJobError`` as ``renderReport(_:jobID:generatedAt:)``; ``ReportWriteError`` (retryable)
    ///   when the directory or file cannot be written.
    @discardableResult
    public static func writeReport(
        _ report: DailyReport, jobID: String, directory: String, generatedAt: Date = Date()
    ) throws -> URL {
        let rendered = try renderReport(report, jobID: jobID, generatedAt: generatedAt)
        let directoryURL = URL(fileURLWithPath: directory, isDirectory: true)
        let file = directoryURL.appendingPathComponent(rendered.fileName, isDirectory: false)
        do {
            try FileManager.default.createDirectory(at: directoryURL, withIntermediateDirectories: true)
            try Data(rendered.markdown.utf8).write(to: file, options: .atomic)
        } catch {
            throw ReportWriteError(path: file.path, reason: (error as NSError).localizedDescription)
        }
        return file
    }

    /// A file-name-safe form of a title: lower-case ASCII letters and digits, other runs as one `-`, at most 60
    /// characters. `Refunds & chargebacks` → `refunds-chargebacks`; `Café` → `cafe`; nothing usable → `report`.
    public static func slug(_ title: String) -> String {
        let folded = title.folding(options: [.caseInsensitive, .diacriticInsensitive], locale: nil).lowercased()
        var slug = ""
        for scalar in folded.unicodeScalars {
            if ("a"..."z").contains(scalar) || ("0"..."9").contains(scalar) {
                slug.unicodeScalars.append(scalar)
            } else if !slug.isEmpty, !slug.hasSuffix("-") {
                slug += "-"
            }
            if slug.count >= 60 { break }
        }
        while slug.hasSuffix("-") { slug.removeLast() }
        return slug.isEmpty ? "report" : slug
    }
}
