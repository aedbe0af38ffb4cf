import Foundation
import Warren

/// `transactions.classify`: one raw bank-statement line to categorise.
///
/// ```json
/// {"id": "txn-1", "date": "2025-01-02", "payee": "CARD 4921 TESCO STORES 3297 LONDON GB", "amount": -54.32,
///  "currency": "GBP"}
/// ```
public struct ClassifyTransaction: JobPayload, Equatable {
    public static let taskName = "transactions.classify"

    public var id: String
    /// The booking date, `YYYY-MM-DD`.
    public var date: String
    /// The payee as the bank prints it.
    public var payee: String
    /// Negative for money going out.
    public var amount: Decimal
    /// An ISO 4217 code such as `EUR`.
    public var currency: String
    /// For the demo: attempts 1 through `failAttempts` fail with a retryable ``TransientError``.
    public var failAttempts: Int?

    public init(
        id: String, date: String, payee: String, amount: Decimal, currency: String, failAttempts: Int? = nil
    ) {
        self.id = id
        self.date = date
        self.payee = payee
        self.amount = amount
        self.currency = currency
        self.failAttempts = failAttempts
    }
}

/// What `transactions.classify` makes of a transaction.
public struct Classification: Sendable, Equatable, Codable {
    public var transactionID: String
    public var date: String
    /// The payee as the bank printed it.
    public var rawPayee: String
    /// The payee case-folded, without card/POS/SEPA prefixes, store numbers and trailing city/country codes.
    public var normalisedPayee: String
    /// The rule's payee name; without a matching rule, the normalised payee title-cased.
    public var payee: String
    /// The rule's category, or ``ExampleJobs/uncategorised``.
    public var category: String
    /// The pattern of the rule that matched, if one did.
    public var matchedPattern: String?
    public var amount: Decimal
    /// The ISO 4217 code, upper-cased.
    public var currency: String
}

/// A failure worth retrying: the handler throws it and the worker schedules another attempt.
public struct TransientError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension ExampleJobs {
    /// The category of a transaction no rule matches.
    public static let uncategorised = "uncategorised"

    /// Classifies a transaction: validates date and currency, normalises the payee, and applies the first matching
    /// rule. Pure: no logging, no simulated failures.
    ///
    /// - Throws: ``PermanentJobError`` when the currency is not an ISO 4217 code, the date is not a real
    ///   `YYYY-MM-DD` date, or the payee is blank.
    public static func classify(_ t: ClassifyTransaction, rules: PayeeRules) throws -> Classification {
        let currency = t.currency.trimmingCharacters(in: .whitespaces).uppercased()
        guard currency.count == 3, currency.allSatisfy({ $0.isASCII && $0.isLetter }),
            isoCurrencyCodes.contains(currency)
        else {
            throw PermanentJobError("currency '\(t.currency)' is not an ISO 4217 code")
        }
        guard isValidDate(t.date) else {
            throw PermanentJobError("date '\(t.date)' is not a valid YYYY-MM-DD date")
        }
        let normalised = normalisePayee(t.payee)
        guard !normalised.isEmpty else {
            throw PermanentJobError("payee is empty")
        }
        let rule = rules.match(normalised)
        return Classification(
            transactionID: t.id, date: t.date, rawPayee: t.payee, normalisedPayee: normalised,
            payee: rule?.payee ?? titleCased(normalised), category: rule?.category ?? uncategorised,
            matchedPattern: rule?.pattern, amount: t.amount, currency: currency)
    }

    /// What the `transactions.classify` handler does for one attempt: ``classify(_:rules:)``, then, for the demo, a
    /// simulated bank API timeout (``TransientError``) on attempts 1 through `failAttempts`.
    public static func classify(
        _ t: ClassifyTransaction, rules: PayeeRules, attempt: Int
    ) throws -> Classification {
        let classification = try classify(t, rules: rules)
        if let failAttempts = t.failAttempts, attempt <= failAttempts {
            throw TransientError("bank API timed out (simulated, attempt \(attempt) of \(failAttempts) failing)")
        }
        return classification
    }

    /// Normalises a payee as banks print it: case-folded; card, POS, SEPA and similar prefixes removed
    /// (`POS `, `CARD 1234 `, `SEPA DD `, `PAYPAL *`, `SQ *`…); cut at the first word with a digit after the first
    /// word (a store number, card reference or phone number — what follows is usually the city); trailing country
    /// codes removed; spaces collapsed.
    ///
    /// `CARD 4921 TESCO STORES 3297 LONDON GB` → `tesco stores`; `PAYPAL *SPOTIFY P2B3C4` → `spotify`.
    public static func normalisePayee(_ raw: String) -> String {
        let spaced = raw.lowercased().replacingOccurrences(of: "*", with: " * ")
        var words = spaced.split(whereSeparator: \.isWhitespace).map(String.init)
        // Payment processors in front of the merchant: "SQ *BLUE BOTTLE", "PAYPAL *NETFLIX".
        if words.count > 2, processorPrefixes.contains(words[0]), words[1] == "*" {
            words.removeFirst(2)
        }
        words.removeAll { word in word.allSatisfy { separatorCharacters.contains($0) } }
        stripBankPrefixes(&words)
        if let cut = words.indices.dropFirst().first(where: { words[$0].contains(where: \.isNumber) }) {
            words.removeSubrange(cut...)
        }
        while words.count > 1, let last = words.last, countryCodes.contains(last) {
            words.removeLast()
        }
        return words.joined(separator: " ")
    }

    /// `maple & oak deli` → `Maple & Oak Deli`.
    public static func titleCased(_ text: String) -> String {
        var result = ""
        var atWordStart = true
        for character in text {
            if atWordStart, character.isLetter {
                result += character.uppercased()
                atWordStart = false
            } else {
                result.append(character)
                if character == " " || character == "-" || character == "/" {
                    atWordStart = true
                } else if character.isLetter || character.isNumber {
                    atWordStart = false
                }
            }
        }
        return result
    }

    /// Whether `text` is a real calendar date written `YYYY-MM-DD`.
    public static func isValidDate(_ text: String) -> Bool {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
            parts.allSatisfy({ $0.allSatisfy { $0.isASCII && $0.isNumber } }),
            let year = Int(parts[0]), let month = Int(parts[1]), let day = Int(parts[2]),
            year >= 1, (1...12).contains(month)
        else { return false }
        let isLeap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let days = [31, isLeap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        return (1...days).contains(day)
    }

    // MARK: - Normalisation tables

    private static let isoCurrencyCodes = Set(Locale.Currency.isoCurrencies.map(\.identifier))

    private static let processorPrefixes: Set<String> = ["sq", "tst", "paypal", "pp", "sp", "sumup", "iz", "zettle"]

    private static let separatorCharacters: Set<Character> = ["*", "#", "-", "/", ".", ",", ":", ";", "|", "_"]

    /// Trailing words dropped as country codes (`... LONDON GB`). `ca` also covers California.
    private static let countryCodes: Set<String> = [
        "gb", "gbr", "uk", "us", "usa", "nl", "nld", "de", "deu", "fr", "fra", "ie", "es", "it", "be", "at", "ch",
        "dk", "se", "fi", "pt", "pl", "lu", "ca", "au", "nz",
    ]

    /// Bank prefixes, longest first. `#` stands for a card number or date: a word of digits, `x`, `/`, `-`, `.`
    /// with at least one digit.
    private static let bankPrefixes: [[String]] = [
        ["purchase", "authorized", "on", "#"], ["debit", "card", "purchase"], ["sepa", "direct", "debit"],
        ["bank", "giro", "credit"], ["sepa", "dd"], ["sepa", "ct"], ["direct", "debit"], ["card", "purchase"],
        ["card", "payment"], ["standing", "order"], ["faster", "payment"], ["recurring", "payment"],
        ["ach", "deposit"], ["ach", "debit"], ["card", "#"], ["checkcard", "#"], ["pos"], ["sepa"], ["dd"], ["so"],
        ["bgc"], ["fpi"], ["fpo"], ["ach"], ["vis"], ["visa"], ["contactless"], ["cnp"], ["tfr"],
    ]

    private static func isCardNumberOrDate(_ word: String) -> Bool {
        word.contains(where: \.isNumber) && word.allSatisfy { $0.isNumber || "x/-.".contains($0) }
    }

    /// Removes bank prefixes (repeatedly: `POS CARD 1234 ...`), each optionally followed by a card number, and
    /// always leaves at least one word.
    private static func stripBankPrefixes(_ words: inout [String]) {
        var stripped = true
        while stripped {
            stripped = false
            for prefix in bankPrefixes where words.count > prefix.count {
                let matches = zip(prefix, words).allSatisfy { expected, word in
                    expected == "#" ? isCardNumberOrDate(word) : expected == word
                }
                guard matches else { continue }
                words.removeFirst(prefix.count)
                if words.count > 1, isCardNumberOrDate(words[0]) { words.removeFirst() }
                stripped = true
                break
            }
        }
    }
}
