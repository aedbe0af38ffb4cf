import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Random job ids: version 4 UUIDs in lowercase text, e.g. `3f2b8c1e-9a4d-4c6e-8f1a-2b3c4d5e6f70`.
///
/// Foundation's `UUID()` asks the kernel for 16 random bytes on every call (one system call per job id, which
/// showed as 12% of the CPU of `JobClient.enqueue`); this draws from a pool refilled 4 KB at a time from the same
/// kernel source (`getrandom`), so ids are as unpredictable as `UUID()`'s.
public enum JobID {
    private struct Pool: ~Copyable {
        var bytes = [UInt8](repeating: 0, count: 4096)
        var used = 4096

        mutating func take16(into uuid: inout (UInt64, UInt64)) {
            if used + 16 > bytes.count {
                var random = SystemRandomNumberGenerator()
                bytes.withUnsafeMutableBytes { buffer in
                    var offset = 0
                    while offset < buffer.count {
                        buffer.storeBytes(of: random.next() as UInt64, toByteOffset: offset, as: UInt64.self)
                        offset += 8
                    }
                }
                used = 0
            }
            bytes.withUnsafeBytes { buffer in
                uuid.0 = buffer.loadUnaligned(fromByteOffset: used, as: UInt64.self)
                uuid.1 = buffer.loadUnaligned(fromByteOffset: used + 8, as: UInt64.self)
            }
            used += 16
        }
    }

    private static let pool = Mutex(Pool())
    private static let hex = Array("0123456789abcdef".utf8)

    /// A new random id.
    public static func random() -> String {
        var words: (UInt64, UInt64) = (0, 0)
        pool.withLock { $0.take16(into: &words) }
        // Version 4, variant 10xx.
        let high = (words.0 & ~0x0000_0000_0000_f000) | 0x0000_0000_0000_4000
        let low = (words.1 & ~0xc000_0000_0000_0000) | 0x8000_0000_0000_0000
        // 8-4-4-4-12 hex digits: nibble ranges of the two words, most significant first.
        let groups: [(word: UInt64, nibbles: ClosedRange<Int>)] = [
            (high, 8...15), (high, 4...7), (high, 0...3), (low, 12...15), (low, 0...11),
        ]
        return String(unsafeUninitializedCapacity: 36) { buffer in
            var index = 0
            for (number, group) in groups.enumerated() {
                if number > 0 {
                    buffer[index] = UInt8(ascii: "-")
                    index += 1
                }
                for nibble in group.nibbles.reversed() {
                    buffer[index] = hex[Int((group.word >> UInt64(nibble * 4)) & 0xf)]
                    index += 1
                }
            }
            return index
        }
    }
}
