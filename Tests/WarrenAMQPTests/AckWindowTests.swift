import Testing

@testable import WarrenAMQP

@Suite("Ack coalescing (pure)")
struct AckWindowTests {
    @Test func inOrderCompletionsBecomeOneMultipleAck() {
        var window = AckWindow(epoch: 1, first: 1)
        for tag in 1...5 { window.settle(UInt64(tag), needsAck: true) }
        let (through, singles) = window.drain()
        #expect(through == 5 && singles.isEmpty)
    }

    @Test func aGapSendsSinglesAndTheMultipleNeverNamesAnAlreadyAckedTag() {
        var window = AckWindow(epoch: 1, first: 1)
        window.settle(2, needsAck: true)  // 1 is still running
        let first = window.drain()
        #expect(first.multipleThrough == nil && first.singles == [2])
        window.settle(1, needsAck: true)
        let second = window.drain()
        // 2 was acked already: a multiple ack naming 2 would be "unknown delivery tag" and close the channel.
        #expect(second.multipleThrough == 1 && second.singles.isEmpty)
    }

    @Test func nackedDeliveriesAreNotCoveredByTheMultipleAck() {
        var window = AckWindow(epoch: 1, first: 1)
        window.settle(1, needsAck: true)
        window.settle(2, needsAck: false)  // nacked, sent at once
        window.settle(3, needsAck: true)
        let (through, singles) = window.drain()
        #expect(through == 3 && singles.isEmpty)
        let (again, more) = window.drain()
        #expect(again == nil && more.isEmpty)
    }
}
