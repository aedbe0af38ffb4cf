import Foundation

/// One value in an AMQP field table (message headers, queue and exchange arguments).
///
/// Every type RabbitMQ accepts on the wire is represented, so a table read from the broker can be published again
/// unchanged.
public enum FieldValue: Sendable, Hashable {
    case bool(Bool)
    case int8(Int8)
    case uint8(UInt8)
    case int16(Int16)
    case uint16(UInt16)
    case int32(Int32)
    case uint32(UInt32)
    case int64(Int64)
    case float(Float)
    case double(Double)
    /// An AMQP decimal: `value × 10^-scale`.
    case decimal(scale: UInt8, value: UInt32)
    /// A long string that is valid UTF-8.
    case string(String)
    /// A long string (`S`) whose bytes are not valid UTF-8; kept as bytes so it round-trips exactly.
    case rawString([UInt8])
    /// A byte array (`x`).
    case bytes([UInt8])
    /// A timestamp, whole seconds since 1970 on the wire.
    case timestamp(Date)
    case table(FieldTable)
    case array([FieldValue])
    case void
}

extension FieldValue {
    /// The value as a string when it is one (`S` strings, and byte strings that are valid UTF-8).
    public var stringValue: String? {
        switch self {
        case .string(let s): s
        case .rawString(let b), .bytes(let b): String(validating: b, as: UTF8.self)
        default: nil
        }
    }

    /// The value as an integer when it is any integer type.
    public var intValue: Int64? {
        switch self {
        case .int8(let v): Int64(v)
        case .uint8(let v): Int64(v)
        case .int16(let v): Int64(v)
        case .uint16(let v): Int64(v)
        case .int32(let v): Int64(v)
        case .uint32(let v): Int64(v)
        case .int64(let v): v
        default: nil
        }
    }

    public var tableValue: FieldTable? {
        if case .table(let t) = self { return t }
        return nil
    }

    public var arrayValue: [FieldValue]? {
        if case .array(let a) = self { return a }
        return nil
    }
}

extension FieldValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByFloatLiteral, ExpressibleByArrayLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    /// Integer literals become `int64` (RabbitMQ's `long`), which every client reads.
    public init(integerLiteral value: Int64) { self = .int64(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(arrayLiteral elements: FieldValue...) { self = .array(elements) }
}

/// An AMQP field table: string keys to typed values.
public struct FieldTable: Sendable, Hashable, ExpressibleByDictionaryLiteral, Sequence {
    public var entries: [String: FieldValue]

    public init(_ entries: [String: FieldValue] = [:]) { self.entries = entries }

    public init(dictionaryLiteral elements: (String, FieldValue)...) {
        self.entries = Dictionary(elements, uniquingKeysWith: { _, last in last })
    }

    public subscript(key: String) -> FieldValue? {
        get { entries[key] }
        set { entries[key] = newValue }
    }

    public var isEmpty: Bool { entries.isEmpty }
    public var count: Int { entries.count }
    public var keys: Dictionary<String, FieldValue>.Keys { entries.keys }

    public func makeIterator() -> Dictionary<String, FieldValue>.Iterator { entries.makeIterator() }
}

extension FieldTable: CustomStringConvertible {
    public var description: String {
        "[" + entries.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + "]"
    }
}

extension FieldValue {
    /// Bytes on the wire (AMQP 0-9-1 field value: the type octet and the value).
    public var encodedSize: Int {
        switch self {
        case .bool, .int8, .uint8: 2
        case .int16, .uint16: 3
        case .int32, .uint32, .float: 5
        case .int64, .double, .timestamp: 9
        case .decimal: 6
        case .string(let s): 5 + s.utf8.count
        case .rawString(let b), .bytes(let b): 5 + b.count
        case .table(let t): 1 + t.encodedSize
        case .array(let a): 5 + a.reduce(0) { $0 + $1.encodedSize }
        case .void: 1
        }
    }
}

extension FieldTable {
    /// Bytes on the wire (AMQP 0-9-1 field table: the length and every entry's short-string key and value).
    public var encodedSize: Int {
        entries.reduce(4) { $0 + 1 + $1.key.utf8.count + $1.value.encodedSize }
    }
}
