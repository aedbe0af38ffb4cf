import Foundation
import Testing

extension Reliability {
    @Suite struct WorkerKills {}
}
