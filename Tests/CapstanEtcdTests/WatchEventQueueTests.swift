@testable import CapstanEtcd
import Synchronization
import Testing

@Suite("WatchEventQueue")
struct WatchEventQueueTests {
  static func event(_ revision: Int64) -> WatchEvent { .progress(revision: revision) }

  final class Counter: Sendable {
    let value = Atomic<Int>(0)
  }

  /// A queue, and how many times it told the hub its consumer left.
  static func queueCountingDepartures() -> (WatchEventQueue, Counter) {
    let queue = WatchEventQueue()
    let gone = Counter()
    queue.onConsumerGone { gone.value.add(1, ordering: .relaxed) }
    return (queue, gone)
  }

  @Test("buffered events come first, in order, then the error once, then nil")
  func bufferedThenError() async throws {
    let queue = WatchEventQueue()
    queue.yield([Self.event(1), Self.event(2)])
    queue.yield([Self.event(3)])
    queue.finish(throwing: EtcdError(code: .compacted, message: "gone"))
    queue.yield([Self.event(4)])  // after the end: dropped
    var revisions: [Int64] = []
    for _ in 0..<3 { revisions.append(try #require(try await queue.next()).revision) }
    #expect(revisions == [1, 2, 3])
    let error = await #expect(throws: EtcdError.self) { try await queue.next() }
    #expect(error?.code == .compacted)
    #expect(try await queue.next() == nil)
    #expect(try await queue.next() == nil)
  }

  @Test("a waiting consumer is woken by the next events, and by the end")
  func waitingConsumer() async throws {
    let queue = WatchEventQueue()
    async let first = queue.next()
    try await Task.sleep(for: .milliseconds(20))  // let it wait (the result is the same if it did not)
    queue.yield([Self.event(7), Self.event(8)])
    #expect(try await first?.revision == 7)
    #expect(try await queue.next()?.revision == 8)
    async let ending = queue.next()
    try await Task.sleep(for: .milliseconds(20))
    queue.finish()
    #expect(try await ending == nil)
  }

  @Test("a consumer cancelled while waiting gets nil, and the hub hears of it once")
  func cancelledConsumer() async throws {
    let (queue, gone) = Self.queueCountingDepartures()
    let consumer = Task { try await queue.next() }
    try await Task.sleep(for: .milliseconds(20))
    consumer.cancel()
    #expect(try await consumer.value == nil)
    queue.consumerStopped()
    #expect(gone.value.load(ordering: .relaxed) == 1)
    queue.yield([Self.event(1)])
    #expect(try await queue.next() == nil, "events after the consumer left are dropped")
  }

  @Test("a consumer cancelled with events still buffered stops at once, and the hub hears of it")
  func cancelledWithBacklog() async throws {
    let (queue, gone) = Self.queueCountingDepartures()
    queue.yield([Self.event(1), Self.event(2), Self.event(3)])
    let consumer = Task {
      var revisions: [Int64] = []
      while let event = try await queue.next() {
        revisions.append(event.revision)
        if revisions.count == 1 { withUnsafeCurrentTask { $0?.cancel() } }
      }
      return revisions
    }
    #expect(try await consumer.value == [1])
    #expect(gone.value.load(ordering: .relaxed) == 1)
    queue.yield([Self.event(4)])
    #expect(try await queue.next() == nil, "events after the consumer left are dropped")
  }

  @Test("dropping the watch and its iterators tells the hub; a late subscriber hears at once")
  func droppedWatch() async throws {
    let (queue, gone) = Self.queueCountingDepartures()
    do {
      let watch = EtcdWatch(id: 1, consumer: WatchConsumer(queue: queue))
      var iterator = watch.makeAsyncIterator()
      queue.yield([Self.event(5)])
      #expect(try await iterator.next()?.revision == 5)
      withExtendedLifetime(watch) { withExtendedLifetime(iterator) { #expect(gone.value.load(ordering: .relaxed) == 0) } }
    }
    #expect(gone.value.load(ordering: .relaxed) == 1)
    queue.onConsumerGone { gone.value.add(10, ordering: .relaxed) }
    #expect(gone.value.load(ordering: .relaxed) == 11)
  }

  @Test("a long backlog is delivered whole and in order")
  func longBacklog() async throws {
    let queue = WatchEventQueue()
    for batch in 0..<50 { queue.yield((0..<100).map { Self.event(Int64(batch * 100 + $0)) }) }
    var expected: Int64 = 0
    while expected < 5_000 {
      #expect(try await queue.next()?.revision == expected)
      expected += 1
      if expected == 2_500 { queue.yield([Self.event(5_000)]) }
    }
    #expect(try await queue.next()?.revision == 5_000)
  }
}
