import Foundation
import Warren

/// `demo.greet`: the smallest job there is.
public struct Greet: JobPayload, Equatable {
    public static let taskName = "demo.greet"

    public var name: String

    public init(name: String) { self.name = name }
}

extension ExampleJobs {
    /// The longest name `demo.greet` accepts, in characters.
    public static let maximumNameLength = 100

    /// `hello, <name>`.
    ///
    /// - Throws: ``PermanentJobError`` when the name is blank or longer than ``maximumNameLength`` characters.
    public static func greeting(for greet: Greet) throws -> String {
        let name = greet.name.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !name.isEmpty else { throw PermanentJobError("name is empty") }
        guard name.count <= maximumNameLength else {
            throw PermanentJobError("name is \(name.count) characters long; the limit is \(maximumNameLength)")
        }
        return "hello, \(name)"
    }
}
