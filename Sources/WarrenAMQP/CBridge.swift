internal import CRabbitMQ
import Foundation

/// Memory for the C inputs of one library call: strings, tables and properties are copied into a rabbitmq-c pool
/// that outlives the call, so no pointer into a temporary Swift buffer ever reaches C. Recycled after each call.
final class CallArena {
    private let pool: UnsafeMutablePointer<amqp_pool_t>

    init() {
        pool = .allocate(capacity: 1)
        init_amqp_pool(pool, 4096)
    }

    deinit {
        empty_amqp_pool(pool)
        pool.deallocate()
    }

    /// Runs `body` with this arena and recycles the arena's memory afterwards.
    func scoped<T>(_ body: (CallArena) throws -> T) rethrows -> T {
        defer { recycle_amqp_pool(pool) }
        return try body(self)
    }

    private func allocate(_ count: Int) -> UnsafeMutableRawPointer {
        // amqp_pool_alloc returns NULL only when malloc fails.
        guard let memory = amqp_pool_alloc(pool, max(count, 1)) else { fatalError("rabbitmq-c pool allocation failed") }
        return memory
    }

    func bytes(_ string: String) -> amqp_bytes_t {
        var string = string
        return string.withUTF8 { bytes(UnsafeRawBufferPointer($0)) }
    }

    func bytes(_ buffer: UnsafeRawBufferPointer) -> amqp_bytes_t {
        guard buffer.count > 0, let base = buffer.baseAddress else { return amqp_bytes_t(len: 0, bytes: nil) }
        let memory = allocate(buffer.count)
        memory.copyMemory(from: base, byteCount: buffer.count)
        return amqp_bytes_t(len: buffer.count, bytes: memory)
    }

    func bytes(_ array: [UInt8]) -> amqp_bytes_t {
        array.withUnsafeBytes { bytes($0) }
    }

    func table(_ table: FieldTable?) -> amqp_table_t {
        guard let table, !table.isEmpty else { return amqp_table_t(num_entries: 0, entries: nil) }
        let entries = allocate(MemoryLayout<amqp_table_entry_t>.stride * table.count)
            .bindMemory(to: amqp_table_entry_t.self, capacity: table.count)
        for (index, (key, value)) in table.entries.enumerated() {
            entries[index] = amqp_table_entry_t(key: bytes(key), value: fieldValue(value))
        }
        return amqp_table_t(num_entries: Int32(table.count), entries: entries)
    }

    func fieldValue(_ value: FieldValue) -> amqp_field_value_t {
        var field = amqp_field_value_t()
        func kind(_ k: amqp_field_value_kind_t) { field.kind = UInt8(k.rawValue) }
        switch value {
        case .bool(let v):
            kind(AMQP_FIELD_KIND_BOOLEAN)
            field.value.boolean = v ? 1 : 0
        case .int8(let v):
            kind(AMQP_FIELD_KIND_I8)
            field.value.i8 = v
        case .uint8(let v):
            kind(AMQP_FIELD_KIND_U8)
            field.value.u8 = v
        case .int16(let v):
            kind(AMQP_FIELD_KIND_I16)
            field.value.i16 = v
        case .uint16(let v):
            kind(AMQP_FIELD_KIND_U16)
            field.value.u16 = v
        case .int32(let v):
            kind(AMQP_FIELD_KIND_I32)
            field.value.i32 = v
        case .uint32(let v):
            kind(AMQP_FIELD_KIND_U32)
            field.value.u32 = v
        case .int64(let v):
            kind(AMQP_FIELD_KIND_I64)
            field.value.i64 = v
        case .float(let v):
            kind(AMQP_FIELD_KIND_F32)
            field.value.f32 = v
        case .double(let v):
            kind(AMQP_FIELD_KIND_F64)
            field.value.f64 = v
        case .decimal(let scale, let v):
            kind(AMQP_FIELD_KIND_DECIMAL)
            field.value.decimal = amqp_decimal_t(decimals: scale, value: v)
        case .string(let v):
            kind(AMQP_FIELD_KIND_UTF8)
            field.value.bytes = bytes(v)
        case .rawString(let v):
            kind(AMQP_FIELD_KIND_UTF8)
            field.value.bytes = bytes(v)
        case .bytes(let v):
            kind(AMQP_FIELD_KIND_BYTES)
            field.value.bytes = bytes(v)
        case .timestamp(let date):
            kind(AMQP_FIELD_KIND_TIMESTAMP)
            field.value.u64 = UInt64(max(0, date.timeIntervalSince1970.rounded(.down)))
        case .table(let t):
            kind(AMQP_FIELD_KIND_TABLE)
            field.value.table = table(t)
        case .array(let values):
            kind(AMQP_FIELD_KIND_ARRAY)
            if values.isEmpty {
                field.value.array = amqp_array_t(num_entries: 0, entries: nil)
            } else {
                let entries = allocate(MemoryLayout<amqp_field_value_t>.stride * values.count)
                    .bindMemory(to: amqp_field_value_t.self, capacity: values.count)
                for (index, element) in values.enumerated() { entries[index] = fieldValue(element) }
                field.value.array = amqp_array_t(num_entries: Int32(values.count), entries: entries)
            }
        case .void:
            kind(AMQP_FIELD_KIND_VOID)
        }
        return field
    }

    func properties(_ p: BasicProperties) -> amqp_basic_properties_t {
        var c = amqp_basic_properties_t()
        var flags: UInt32 = 0
        func set(_ value: String?, _ flag: Int32, _ assign: (amqp_bytes_t) -> Void) {
            guard let value else { return }
            flags |= UInt32(flag)
            assign(bytes(value))
        }
        set(p.contentType, AMQP_BASIC_CONTENT_TYPE_FLAG) { c.content_type = $0 }
        set(p.contentEncoding, AMQP_BASIC_CONTENT_ENCODING_FLAG) { c.content_encoding = $0 }
        set(p.correlationID, AMQP_BASIC_CORRELATION_ID_FLAG) { c.correlation_id = $0 }
        set(p.replyTo, AMQP_BASIC_REPLY_TO_FLAG) { c.reply_to = $0 }
        set(p.expiration, AMQP_BASIC_EXPIRATION_FLAG) { c.expiration = $0 }
        set(p.messageID, AMQP_BASIC_MESSAGE_ID_FLAG) { c.message_id = $0 }
        set(p.type, AMQP_BASIC_TYPE_FLAG) { c.type = $0 }
        set(p.userID, AMQP_BASIC_USER_ID_FLAG) { c.user_id = $0 }
        set(p.appID, AMQP_BASIC_APP_ID_FLAG) { c.app_id = $0 }
        set(p.clusterID, AMQP_BASIC_CLUSTER_ID_FLAG) { c.cluster_id = $0 }
        if let headers = p.headers {
            flags |= UInt32(AMQP_BASIC_HEADERS_FLAG)
            c.headers = table(headers)
        }
        if let mode = p.deliveryMode {
            flags |= UInt32(AMQP_BASIC_DELIVERY_MODE_FLAG)
            c.delivery_mode = mode.rawValue
        }
        if let priority = p.priority {
            flags |= UInt32(AMQP_BASIC_PRIORITY_FLAG)
            c.priority = priority
        }
        if let timestamp = p.timestamp {
            flags |= UInt32(AMQP_BASIC_TIMESTAMP_FLAG)
            c.timestamp = UInt64(max(0, timestamp.timeIntervalSince1970.rounded(.down)))
        }
        c._flags = flags
        return c
    }
}

// MARK: - From C to Swift (deep copies; the C memory belongs to the connection's frame pool)

extension String {
    init(amqp bytes: amqp_bytes_t) {
        guard bytes.len > 0, let base = bytes.bytes else {
            self = ""
            return
        }
        self = String(decoding: UnsafeRawBufferPointer(start: base, count: bytes.len), as: UTF8.self)
    }
}

extension Array where Element == UInt8 {
    init(amqp bytes: amqp_bytes_t) {
        guard bytes.len > 0, let base = bytes.bytes else {
            self = []
            return
        }
        self = Array(UnsafeRawBufferPointer(start: base, count: bytes.len))
    }
}

extension Data {
    init(amqp bytes: amqp_bytes_t) {
        guard bytes.len > 0, let base = bytes.bytes else {
            self = Data()
            return
        }
        self = Data(bytes: base, count: bytes.len)
    }
}

extension FieldTable {
    init(amqp table: amqp_table_t) {
        var entries: [String: FieldValue] = [:]
        if table.num_entries > 0, let base = table.entries {
            entries.reserveCapacity(Int(table.num_entries))
            for index in 0..<Int(table.num_entries) {
                let entry = base[index]
                entries[String(amqp: entry.key)] = FieldValue(amqp: entry.value)
            }
        }
        self.init(entries)
    }
}

extension FieldValue {
    init(amqp field: amqp_field_value_t) {
        switch UInt32(field.kind) {
        case AMQP_FIELD_KIND_BOOLEAN.rawValue: self = .bool(field.value.boolean != 0)
        case AMQP_FIELD_KIND_I8.rawValue: self = .int8(field.value.i8)
        case AMQP_FIELD_KIND_U8.rawValue: self = .uint8(field.value.u8)
        case AMQP_FIELD_KIND_I16.rawValue: self = .int16(field.value.i16)
        case AMQP_FIELD_KIND_U16.rawValue: self = .uint16(field.value.u16)
        case AMQP_FIELD_KIND_I32.rawValue: self = .int32(field.value.i32)
        case AMQP_FIELD_KIND_U32.rawValue: self = .uint32(field.value.u32)
        case AMQP_FIELD_KIND_I64.rawValue: self = .int64(field.value.i64)
        case AMQP_FIELD_KIND_U64.rawValue: self = .int64(Int64(truncatingIfNeeded: field.value.u64))
        case AMQP_FIELD_KIND_F32.rawValue: self = .float(field.value.f32)
        case AMQP_FIELD_KIND_F64.rawValue: self = .double(field.value.f64)
        case AMQP_FIELD_KIND_DECIMAL.rawValue:
            self = .decimal(scale: field.value.decimal.decimals, value: field.value.decimal.value)
        case AMQP_FIELD_KIND_UTF8.rawValue:
            let raw = [UInt8](amqp: field.value.bytes)
            if let string = String(validating: raw, as: UTF8.self) {
                self = .string(string)
            } else {
                self = .rawString(raw)
            }
        case AMQP_FIELD_KIND_BYTES.rawValue: self = .bytes([UInt8](amqp: field.value.bytes))
        case AMQP_FIELD_KIND_TIMESTAMP.rawValue:
            self = .timestamp(Date(timeIntervalSince1970: TimeInterval(field.value.u64)))
        case AMQP_FIELD_KIND_TABLE.rawValue: self = .table(FieldTable(amqp: field.value.table))
        case AMQP_FIELD_KIND_ARRAY.rawValue:
            let array = field.value.array
            var values: [FieldValue] = []
            if array.num_entries > 0, let base = array.entries {
                values.reserveCapacity(Int(array.num_entries))
                for index in 0..<Int(array.num_entries) { values.append(FieldValue(amqp: base[index])) }
            }
            self = .array(values)
        default: self = .void
        }
    }
}

extension BasicProperties {
    init(amqp c: amqp_basic_properties_t) {
        self.init()
        let flags = c._flags
        func has(_ flag: Int32) -> Bool { flags & UInt32(flag) != 0 }
        if has(AMQP_BASIC_CONTENT_TYPE_FLAG) { contentType = String(amqp: c.content_type) }
        if has(AMQP_BASIC_CONTENT_ENCODING_FLAG) { contentEncoding = String(amqp: c.content_encoding) }
        if has(AMQP_BASIC_HEADERS_FLAG) { headers = FieldTable(amqp: c.headers) }
        if has(AMQP_BASIC_DELIVERY_MODE_FLAG) { deliveryMode = DeliveryMode(rawValue: c.delivery_mode) }
        if has(AMQP_BASIC_PRIORITY_FLAG) { priority = c.priority }
        if has(AMQP_BASIC_CORRELATION_ID_FLAG) { correlationID = String(amqp: c.correlation_id) }
        if has(AMQP_BASIC_REPLY_TO_FLAG) { replyTo = String(amqp: c.reply_to) }
        if has(AMQP_BASIC_EXPIRATION_FLAG) { expiration = String(amqp: c.expiration) }
        if has(AMQP_BASIC_MESSAGE_ID_FLAG) { messageID = String(amqp: c.message_id) }
        if has(AMQP_BASIC_TIMESTAMP_FLAG) { timestamp = Date(timeIntervalSince1970: TimeInterval(c.timestamp)) }
        if has(AMQP_BASIC_TYPE_FLAG) { type = String(amqp: c.type) }
        if has(AMQP_BASIC_USER_ID_FLAG) { userID = String(amqp: c.user_id) }
        if has(AMQP_BASIC_APP_ID_FLAG) { appID = String(amqp: c.app_id) }
        if has(AMQP_BASIC_CLUSTER_ID_FLAG) { clusterID = String(amqp: c.cluster_id) }
    }
}
