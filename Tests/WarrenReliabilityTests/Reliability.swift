import Foundation
import Testing

/// Issue 7's scenarios: worker kills, broker trouble, publisher-side loss, poison input, crash loops, long jobs,
/// coordinator failover and secrets. Load and chaos tests: `Deploy/local/test` runs this target after the others,
/// and `.serialized` (recursive) runs its suites one at a time, so a broker restart here disturbs no other test.
/// Each scenario is a nested suite in an extension, in a file of its own.
@Suite(.serialized) struct Reliability {
    /// Prints one line of figures, `RELIABILITY <scenario>: key=value …`, which the README's Reliability section
    /// quotes from the latest run (`grep RELIABILITY .build/warren-test.log`).
    static func report(_ scenario: String, _ figures: KeyValuePairs<String, Any>) {
        let text = figures.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        print("RELIABILITY \(scenario): \(text)")
    }
}
