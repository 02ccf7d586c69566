@testable import Capstan
import Testing

@Suite struct CoalescingBufferTests {
  /// Keeps the newest value, or drops both when the newer value is "cancel".
  static func buffer() -> CoalescingBuffer<String> {
    CoalescingBuffer<String> { _, newer in newer == "cancel" ? nil : newer }
  }

  @Test func deliversInFirstPushOrderWithTheNewestValuePerKey() async {
    let buffer = Self.buffer()
    buffer.push("a1", for: "a")
    buffer.push("b1", for: "b")
    buffer.push("a2", for: "a")
    buffer.push("c1", for: "c")
    #expect(buffer.backlog == 3)
    buffer.finish()
    var delivered: [String] = []
    while let (key, value) = await buffer.next() { delivered.append("\(key)=\(value)") }
    #expect(delivered == ["a=a2", "b=b1", "c=c1"])
  }

  @Test func cancelledPairsFreeTheKeyAndALaterPushGoesToTheBack() async {
    let buffer = Self.buffer()
    buffer.push("a1", for: "a")
    buffer.push("b1", for: "b")
    buffer.push("cancel", for: "a")
    #expect(buffer.backlog == 1)
    buffer.push("a3", for: "a")
    buffer.finish()
    var delivered: [String] = []
    while let (key, value) = await buffer.next() { delivered.append("\(key)=\(value)") }
    #expect(delivered == ["b=b1", "a=a3"])
  }

  @Test func manyCancelledPairsDoNotGrowTheQueue() async {
    let buffer = Self.buffer()
    buffer.push("keep", for: "k")
    for _ in 0..<100_000 {
      buffer.push("x", for: "churn")
      buffer.push("cancel", for: "churn")
    }
    #expect(buffer.backlog == 1)
    #expect(buffer.queuedEntryCount <= 200)
    buffer.finish()
    #expect(await buffer.next()?.value == "keep")
    #expect(await buffer.next() == nil)
  }

  @Test func aWaitingConsumerGetsAValuePushedLater() async {
    let buffer = Self.buffer()
    await withTaskGroup(of: String?.self) { group in
      group.addTask { await buffer.next()?.value }
      // Give the consumer time to wait; the push must reach it whether or not it already waits.
      try? await Task.sleep(for: .milliseconds(20))
      buffer.push("late", for: "k")
      #expect(await group.next() == .some("late"))
    }
  }

  @Test func cancellingAWaitingConsumerReturnsNil() async {
    let buffer = Self.buffer()
    let task = Task { await buffer.next() }
    try? await Task.sleep(for: .milliseconds(20))
    task.cancel()
    #expect(await task.value == nil)
    // The buffer still works for the next consumer.
    buffer.push("after", for: "k")
    #expect(await buffer.next()?.value == "after")
  }

  @Test func finishDeliversWhatIsPendingThenEnds() async {
    let buffer = Self.buffer()
    buffer.push("v", for: "k")
    buffer.finish()
    buffer.push("ignored", for: "other")
    #expect(await buffer.next()?.value == "v")
    #expect(await buffer.next() == nil)
  }
}
