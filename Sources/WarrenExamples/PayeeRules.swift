import Foundation

/// One line of the payee rules file: a pattern matched against the normalised payee, and what a match means.
public struct PayeeRule: Sendable, Equatable, Codable {
    /// The pattern as written in the file, case-folded and with runs of spaces collapsed.
    public var pattern: String
    /// The payee's proper name, e.g. `Sainsbury's`.
    public var payee: String
    /// The spending category, e.g. `groceries`.
    public var category: String
    /// The line of the file the rule came from (0 for rules made in code).
    public var line: Int

    public init(pattern: String, payee: String, category: String, line: Int = 0) {
        self.pattern = PayeeRules.foldPattern(pattern)
        self.payee = payee
        self.category = category
        self.line = line
    }

    /// Whether the pattern is a glob (it has a `*` or `?`); otherwise it is a substring.
    public var isGlob: Bool { pattern.contains("*") || pattern.contains("?") }

    /// Whether the rule matches an already normalised (case-folded) payee: a glob must match the whole payee, a
    /// plain pattern anywhere in it.
    public func matches(_ normalisedPayee: String) -> Bool {
        isGlob ? PayeeRules.glob(pattern, matches: normalisedPayee) : normalisedPayee.contains(pattern)
    }
}

/// The payee rules, in file order: the first rule that matches wins.
///
/// The file is CSV with the header `pattern,payee,category`. A pattern is a case-insensitive substring of the
/// normalised payee (`tesco`), or a glob over the whole of it (`uber*eats*`, `bp *`). Blank lines and lines that start
/// with `#` are skipped; a field with a comma in it is quoted (`"Marks, Spencer"`), a quote in a quoted field doubled.
public struct PayeeRules: Sendable, Equatable {
    public private(set) var rules: [PayeeRule]

    public init(rules: [PayeeRule]) { self.rules = rules }

    /// Reads and parses a rules file. `path` is used as given, so a relative path is relative to the current directory.
    public init(contentsOfFile path: String) throws {
        let text: String
        do {
            text = try String(contentsOf: URL(fileURLWithPath: path), encoding: .utf8)
        } catch {
            throw PayeeRulesError(file: path, line: nil, message: "cannot read the file (\(Self.reason(error)))")
        }
        try self.init(csv: text, file: path)
    }

    /// Parses rules from CSV text; `file` names the source in errors.
    public init(csv text: String, file: String = "<payee rules>") throws {
        var rules: [PayeeRule] = []
        var sawHeader = false
        var firstLineOfPattern: [String: Int] = [:]
        for (index, rawLine) in Self.lines(of: text).enumerated() {
            let number = index + 1
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields: [String]
            do {
                fields = try Self.fields(of: line)
            } catch let error as CSVLineError {
                throw PayeeRulesError(file: file, line: number, message: error.message)
            }
            if !sawHeader {
                let header = fields.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
                guard header == ["pattern", "payee", "category"] else {
                    throw PayeeRulesError(
                        file: file, line: number,
                        message: "expected the header 'pattern,payee,category', found '\(line)'")
                }
                sawHeader = true
                continue
            }
            guard fields.count == 3 else {
                throw PayeeRulesError(
                    file: file, line: number,
                    message: "expected 3 columns (pattern,payee,category), found \(fields.count)")
            }
            let trimmed = fields.map { $0.trimmingCharacters(in: .whitespaces) }
            for (value, column) in zip(trimmed, ["pattern", "payee", "category"]) where value.isEmpty {
                throw PayeeRulesError(file: file, line: number, message: "the \(column) is empty")
            }
            let rule = PayeeRule(pattern: trimmed[0], payee: trimmed[1], category: trimmed[2], line: number)
            if rule.pattern.allSatisfy({ $0 == "*" || $0 == "?" }) {
                throw PayeeRulesError(
                    file: file, line: number, message: "pattern '\(trimmed[0])' matches every payee")
            }
            if let first = firstLineOfPattern[rule.pattern] {
                throw PayeeRulesError(
                    file: file, line: number,
                    message: "pattern '\(trimmed[0])' repeats line \(first); only the first could ever match")
            }
            firstLineOfPattern[rule.pattern] = number
            rules.append(rule)
        }
        guard sawHeader else {
            throw PayeeRulesError(file: file, line: nil, message: "the file is empty (expected a header line)")
        }
        guard !rules.isEmpty else {
            throw PayeeRulesError(file: file, line: nil, message: "the file has a header but no rules")
        }
        self.rules = rules
    }

    /// The first rule that matches the normalised payee.
    public func match(_ normalisedPayee: String) -> PayeeRule? {
        rules.first { $0.matches(normalisedPayee) }
    }

    // MARK: - Helpers

    static func foldPattern(_ pattern: String) -> String {
        pattern.lowercased().split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }

    /// `*` matches any run of characters (also none), `?` one character; the whole text must match.
    static func glob(_ pattern: String, matches text: String) -> Bool {
        let pattern = Array(pattern)
        let text = Array(text)
        var p = 0
        var t = 0
        var starAt: Int?
        var resumeAt = 0
        while t < text.count {
            if p < pattern.count, pattern[p] == "?" || pattern[p] == text[t] {
                p += 1
                t += 1
            } else if p < pattern.count, pattern[p] == "*" {
                starAt = p
                resumeAt = t
                p += 1
            } else if let star = starAt {
                p = star + 1
                resumeAt += 1
                t = resumeAt
            } else {
                return false
            }
        }
        while p < pattern.count, pattern[p] == "*" { p += 1 }
        return p == pattern.count
    }

    /// Lines split on `\n`, `\r\n` or `\r`, so that line numbers match what an editor shows.
    private static func lines(of text: String) -> [Substring] {
        var text = Substring(text)
        if text.hasPrefix("\u{FEFF}") { text = text.dropFirst() }
        return text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
    }

    private struct CSVLineError: Error {
        var message: String
    }

    /// The fields of one CSV line (RFC 4180 quoting, but a field cannot span lines).
    private static func fields(of line: String) throws -> [String] {
        var fields: [String] = []
        var field = ""
        var inQuotes = false
        var wasQuoted = false
        var characters = line.makeIterator()
        var pending: Character? = characters.next()
        while let character = pending {
            pending = characters.next()
            if inQuotes {
                if character == "\"" {
                    if pending == "\"" {
                        field.append("\"")
                        pending = characters.next()
                    } else {
                        inQuotes = false
                    }
                } else {
                    field.append(character)
                }
            } else if character == "," {
                fields.append(field)
                field = ""
                wasQuoted = false
            } else if character == "\"" {
                guard field.trimmingCharacters(in: .whitespaces).isEmpty, !wasQuoted else {
                    throw CSVLineError(message: "a quote in the middle of an unquoted field (quote the whole field)")
                }
                field = ""
                inQuotes = true
                wasQuoted = true
            } else {
                if wasQuoted, !character.isWhitespace {
                    throw CSVLineError(message: "text after the closing quote of a field")
                }
                field.append(character)
            }
        }
        if inQuotes { throw CSVLineError(message: "a quoted field is not closed") }
        fields.append(field)
        return fields
    }

    private static func reason(_ error: Error) -> String {
        let nsError = error as NSError
        if nsError.domain == NSCocoaErrorDomain, nsError.code == NSFileReadNoSuchFileError {
            return "no such file"
        }
        return nsError.localizedDescription
    }
}

/// A payee rules file that cannot be read or does not parse. The description names the file and, where there is
/// one, the line: `payee rules 'Config/payee-rules.csv', line 7: expected 3 columns (pattern,payee,category), found 2`.
public struct PayeeRulesError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    public var message: String

    public init(file: String, line: Int?, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    public var description: String {
        if let line { return "payee rules '\(file)', line \(line): \(message)" }
        return "payee rules '\(file)': \(message)"
    }
}
