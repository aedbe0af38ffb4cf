import Foundation
import Warren

/// `documents.stats`: word counts and reading time for a text.
public struct DocumentStats: JobPayload, Equatable {
    public static let taskName = "documents.stats"

    public var documentID: String
    public var text: String

    public init(documentID: String, text: String) {
        self.documentID = documentID
        self.text = text
    }
}

/// A word and how often it occurs.
public struct WordCount: Sendable, Equatable, Codable, CustomStringConvertible {
    public var word: String
    public var count: Int

    public init(word: String, count: Int) {
        self.word = word
        self.count = count
    }

    public var description: String { "\(word)×\(count)" }
}

/// Statistics of a text.
public struct DocumentStatistics: Sendable, Equatable, Codable {
    /// Words: runs of letters and digits (an apostrophe inside a word belongs to it: `don't`).
    public var words: Int
    /// Lines; a final line break does not start another line. An empty text has none.
    public var lines: Int
    /// Characters (grapheme clusters), line breaks included.
    public var characters: Int
    /// Distinct words, case-folded.
    public var uniqueWords: Int
    /// The five most frequent case-folded words that are not stop words, most frequent first, ties alphabetically.
    public var topWords: [WordCount]
    /// Reading time at ``ExampleJobs/wordsPerMinute`` words a minute, rounded up to a whole second.
    public var readingTimeSeconds: Int

    /// Reading time in minutes, unrounded.
    public var readingTimeMinutes: Double { Double(words) / Double(ExampleJobs.wordsPerMinute) }
}

extension ExampleJobs {
    /// The reading speed the statistics assume.
    public static let wordsPerMinute = 200

    /// Words left out of ``DocumentStatistics/topWords`` (they still count as words).
    public static let stopWords: Set<String> = [
        "a", "about", "after", "all", "also", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by", "can",
        "could", "did", "do", "does", "for", "from", "had", "has", "have", "he", "her", "here", "his", "how", "i",
        "if", "in", "into", "is", "it", "it's", "its", "me", "more", "my", "no", "not", "of", "on", "or", "our",
        "out", "she", "should", "so", "than", "that", "the", "their", "them", "then", "there", "these", "they",
        "this", "those", "to", "up", "us", "was", "we", "were", "what", "when", "where", "which", "who", "will",
        "with", "would", "you", "your",
    ]

    /// The statistics of a text. Pure.
    public static func statistics(of text: String) -> DocumentStatistics {
        let words = self.words(in: text)
        var counts: [String: Int] = [:]
        for word in words { counts[word, default: 0] += 1 }
        let top = counts.filter { !stopWords.contains($0.key) }
            .sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
            .prefix(5)
            .map { WordCount(word: $0.key, count: $0.value) }
        var lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).count
        if text.isEmpty {
            lines = 0
        } else if text.last?.isNewline == true {
            lines -= 1
        }
        return DocumentStatistics(
            words: words.count, lines: lines, characters: text.count, uniqueWords: counts.count, topWords: top,
            readingTimeSeconds: (words.count * 60 + wordsPerMinute - 1) / wordsPerMinute)
    }

    /// What the `documents.stats` handler computes.
    ///
    /// - Throws: ``PermanentJobError`` `document is empty` when the text is empty or only white space.
    public static func statistics(of document: DocumentStats) throws -> DocumentStatistics {
        guard !document.text.allSatisfy(\.isWhitespace) else {
            throw PermanentJobError("document is empty")
        }
        return statistics(of: document.text)
    }

    /// The case-folded words of a text, in order.
    static func words(in text: String) -> [String] {
        var words: [String] = []
        var current = ""
        var pendingApostrophe = false
        for character in text {
            if character.isLetter || character.isNumber {
                if pendingApostrophe {
                    current.append("'")
                    pendingApostrophe = false
                }
                current.append(character)
            } else if character == "'" || character == "\u{2019}", !current.isEmpty, !pendingApostrophe {
                pendingApostrophe = true
            } else {
                if !current.isEmpty { words.append(current.lowercased()) }
                current = ""
                pendingApostrophe = false
            }
        }
        if !current.isEmpty { words.append(current.lowercased()) }
        return words
    }
}
