import Foundation
import WarrenAMQP

/// The headers Warren reads and writes. Producers may set the first group; workers write the rest.
public enum WarrenHeader {
    // Set by producers (all optional).
    /// Run no earlier than this: RFC 3339 (`2026-11-23T10:00:00Z`) or epoch milliseconds.
    public static let notBefore = "x-warren-not-before"
    /// Dead-letter, unrun, after this instant: RFC 3339 or epoch milliseconds.
    public static let expires = "x-warren-expires"
    /// Attempts in all for this job, overriding the task's retry policy.
    public static let maxAttempts = "x-warren-max-attempts"

    // Written by workers on retry copies (and read back).
    /// The attempt the copy will be (2 for the first retry). Absent means 1.
    public static let attempt = "x-warren-attempt"
    /// The task type, kept because a retry hop's routing key is the origin queue's name.
    public static let task = "x-warren-task"
    /// When the job was first enqueued (epoch ms), kept across retries.
    public static let enqueuedAt = "x-warren-enqueued-at"
    /// The previous attempt's error.
    public static let lastError = "x-warren-last-error"
    /// Which retry tier queue a hop goes to (the `warren.retry` headers exchange routes on it). Not `x-`-prefixed:
    /// RabbitMQ's headers exchange ignores `x-` headers when matching, so an `x-warren-tier` binding would match every
    /// message and send each hop to every tier.
    public static let tier = "warren-tier"

    // Written on dead letters.
    public static let error = "x-warren-error"
    /// One of ``DeadLetterReason``'s raw values.
    public static let errorType = "x-warren-error-type"
    public static let attempts = "x-warren-attempts"
    public static let originQueue = "x-warren-origin-queue"
    public static let routingKey = "x-warren-routing-key"
    /// RFC 3339.
    public static let failedAt = "x-warren-failed-at"
    /// On a retry copy or dead letter whose producer headers were too large to forward: how many were dropped.
    public static let headersDropped = "x-warren-headers-dropped"

    /// Every header above: what a retry copy or dead letter keeps when the producer's headers must be dropped.
    public static let all: Set<String> = [
        notBefore, expires, maxAttempts, attempt, task, enqueuedAt, lastError, tier, error, errorType, attempts,
        originQueue, routingKey, failedAt, headersDropped,
    ]
}

/// Why a job was dead-lettered (`x-warren-error-type`).
public enum DeadLetterReason: String, Sendable, CaseIterable {
    /// The handler threw ``PermanentJobError``.
    case permanent
    /// Every attempt failed; the last error is in `x-warren-error`.
    case exhausted
    /// The body is not JSON, or not the shape of the payload type, or a Warren header is invalid.
    case malformed
    /// No handler is registered for the task type.
    case unknownTask = "unknown-task"
    /// The body is larger than `worker.maxBodyBytes`.
    case oversized
    /// `x-warren-expires` (or `expiration` with `timestamp`) passed before the job ran.
    case expired
}

/// What a worker reads from a delivery before running it.
struct JobEnvelope {
    var id: String
    var idWasGenerated: Bool
    var taskName: String
    var attempt: Int
    var maxAttempts: Int?
    var notBefore: Date?
    var expiresAt: Date?
    var enqueuedAt: Date?

    /// Reads Warren's headers; throws a sentence naming the bad header when one is invalid.
    init(_ delivery: Delivery) throws(EnvelopeError) {
        let headers = delivery.properties.headers ?? [:]
        if let messageID = delivery.properties.messageID, !messageID.isEmpty {
            id = messageID
            idWasGenerated = false
        } else {
            id = JobID.random()
            idWasGenerated = true
        }
        taskName = headers[WarrenHeader.task]?.stringValue ?? delivery.routingKey
        attempt = try Self.positiveInteger(headers, WarrenHeader.attempt) ?? 1
        maxAttempts = try Self.positiveInteger(headers, WarrenHeader.maxAttempts)
        notBefore = try Self.instant(headers, WarrenHeader.notBefore)
        expiresAt = try Self.instant(headers, WarrenHeader.expires)
        enqueuedAt = try Self.instant(headers, WarrenHeader.enqueuedAt) ?? delivery.properties.timestamp
        // `expiration` is relative to publishing; with a timestamp it becomes an absolute expiry. The broker's
        // per-message TTL restarts in every queue (a retry hop resets it), so the worker checks it as well.
        if expiresAt == nil, let expiration = delivery.properties.expiration,
            let published = delivery.properties.timestamp
        {
            guard let milliseconds = Int64(expiration), milliseconds >= 0 else {
                throw EnvelopeError("property expiration '\(expiration)' is not a whole number of milliseconds")
            }
            expiresAt = published.addingTimeInterval(Double(milliseconds) / 1000)
        }
    }

    struct EnvelopeError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    static func positiveInteger(_ headers: FieldTable, _ key: String) throws(EnvelopeError) -> Int? {
        guard let value = headers[key] else { return nil }
        if let integer = value.intValue, integer >= 1, integer <= 1_000_000 { return Int(integer) }
        if let text = value.stringValue, let integer = Int(text), integer >= 1, integer <= 1_000_000 { return integer }
        throw EnvelopeError("header \(key) is \(Self.show(value)), not a whole number from 1 to 1000000")
    }

    /// An instant from RFC 3339 text or epoch milliseconds (integer or numeric string).
    static func instant(_ headers: FieldTable, _ key: String) throws(EnvelopeError) -> Date? {
        guard let value = headers[key] else { return nil }
        if case .timestamp(let date) = value { return date }
        if let milliseconds = value.intValue ?? value.stringValue.flatMap({ Int64($0) }) {
            guard milliseconds >= 0, milliseconds < 32_503_680_000_000 else {
                throw EnvelopeError("header \(key) is \(milliseconds), not epoch milliseconds before year 3000")
            }
            return Date(timeIntervalSince1970: Double(milliseconds) / 1000)
        }
        if let text = value.stringValue, let date = parseRFC3339(text) { return date }
        throw EnvelopeError("header \(key) is \(Self.show(value)), not RFC 3339 or epoch milliseconds")
    }

    static func parseRFC3339(_ text: String) -> Date? {
        if let date = try? Date(text, strategy: .iso8601) { return date }
        return try? Date(
            text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    private static func show(_ value: FieldValue) -> String {
        let text = value.stringValue.map { "'\($0)'" } ?? "\(value)"
        return text.count > 60 ? String(text.prefix(60)) + "…'" : text
    }
}

extension Date {
    /// Epoch milliseconds, the form Warren writes into headers.
    var epochMilliseconds: Int64 { Int64((timeIntervalSince1970 * 1000).rounded()) }

    var rfc3339: String {
        formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }
}

/// Fixed-TTL tier queues that together reach any delay: a hop goes to the largest tier no longer than what remains,
/// or the smallest tier when less than that remains, so a job never runs early and at most one smallest tier late.
struct RetryLadder {
    let tiers: [Duration]

    init(tiers: [Duration]) {
        precondition(!tiers.isEmpty, "the retry ladder needs at least one tier")
        self.tiers = tiers.sorted()
    }

    func tier(forRemaining remaining: Duration) -> Duration {
        tiers.last(where: { $0 <= remaining }) ?? tiers[0]
    }
}
