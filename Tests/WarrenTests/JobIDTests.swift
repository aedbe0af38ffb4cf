import Foundation
import Testing

@testable import Warren

@Suite("Job ids")
struct JobIDTests {
    @Test func idsAreVersion4UUIDsInLowercaseText() throws {
        for _ in 0..<1000 {
            let id = JobID.random()
            let parsed = try #require(UUID(uuidString: id), "\(id) is not a UUID")
            #expect(id == parsed.uuidString.lowercased())
            let bytes = parsed.uuid
            #expect(bytes.6 >> 4 == 4, "version nibble of \(id)")
            #expect(bytes.8 >> 6 == 0b10, "variant bits of \(id)")
        }
    }

    @Test func idsDoNotRepeatAcrossPoolRefillsAndThreads() async {
        // 4 tasks × 5,000 ids: many refills of the 4 KB pool, taken concurrently.
        let ids = await withTaskGroup(of: [String].self) { group in
            for _ in 0..<4 { group.addTask { (0..<5000).map { _ in JobID.random() } } }
            return await group.reduce(into: [String]()) { $0 += $1 }
        }
        #expect(ids.count == 20000)
        #expect(Set(ids).count == 20000)
        // Every hex digit position varies (no constant bytes from a badly filled pool), except the version nibble.
        let constant = (0..<36).filter { index in
            let characters = Set(ids.prefix(200).map { Array($0)[index] })
            return characters.count == 1
        }
        #expect(constant == [8, 13, 14, 18, 23])
    }
}
