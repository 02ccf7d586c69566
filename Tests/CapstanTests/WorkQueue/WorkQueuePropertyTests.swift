import Capstan
import CapstanTestSupport
import Logging
import PropertyBased
import Testing

@Suite struct WorkQueuePropertyTests {
  static let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

  /// What the workers and the producer saw, on one logical clock.
  struct Observations: Sendable {
    var tick = 0
    var held: Set<Int> = []
    var heldTwice: [Int] = []
    var lastAdd: [Int: Int] = [:]
    var lastStart: [Int: Int] = [:]
    var starts = 0
  }

  /// Several workers take keys while keys are added at random (with random priorities and
  /// rate-limited retries of zero delay): no key is ever held by two workers at once, and every
  /// key's last add is followed by a processing that started after it.
  @Test func noKeyIsEverProcessedByTwoWorkersAtOnce() async {
    await propertyCheck(
      count: 40, input: Gen.int(in: 0...9).array(of: 1...150), Gen.int(in: 2...4), Gen.int(in: 0...3)
    ) { keys, workers, yields in
      let queue = WorkQueue<Int>(
        name: "property",
        configuration: .init(
          rateLimiter: FastSlowRateLimiter(fastDelay: .zero, slowDelay: .zero, maxFastAttempts: 0),
          metricsFactory: RecordingMetrics(), logger: Self.quiet))
      let observations = WorkQueueTestBox(Observations())
      await withTaskGroup(of: Void.self) { group in
        for _ in 0..<workers {
          group.addTask {
            while let key = await queue.get() {
              observations.withLock { seen in
                seen.tick += 1
                seen.starts += 1
                seen.lastStart[key] = seen.tick
                if !seen.held.insert(key).inserted { seen.heldTwice.append(key) }
              }
              for _ in 0...(key % 3) { await Task.yield() }
              observations.withLock { _ = $0.held.remove(key) }
              queue.done(key)
            }
          }
        }
        for (index, key) in keys.enumerated() {
          observations.withLock { seen in
            seen.tick += 1
            seen.lastAdd[key] = seen.tick
          }
          if index % 7 == 3 {
            queue.addRateLimited(key)
          } else {
            queue.add(key, priority: index % 3 == 0 ? .low : .normal)
          }
          if index % (yields + 1) == 0 { await Task.yield() }
        }
        queue.shutDown(.drain)
      }
      let seen = observations.current
      #expect(seen.heldTwice.isEmpty, "keys held by two workers: \(seen.heldTwice)")
      for key in Set(keys) {
        #expect((seen.lastStart[key] ?? 0) > seen.lastAdd[key]!, "key \(key): last add not processed")
      }
      #expect(seen.starts <= keys.count)
    }
  }

  /// Keys added with random short delays (on the real clock) while several workers wait: the
  /// waiting `get()`s between them keep the time, and every key is handed out exactly once.
  @Test func everyDelayedKeyReachesOneOfSeveralWaitingWorkers() async {
    await propertyCheck(count: 15, input: Gen.int(in: 0...4).array(of: 1...60), Gen.int(in: 1...4)) {
      delays, workers in
      let queue = WorkQueue<Int>(
        name: "delays", configuration: .init(metricsFactory: RecordingMetrics(), logger: Self.quiet))
      let handedOut = WorkQueueTestBox<[Int]>([])
      await withTaskGroup(of: Void.self) { group in
        for _ in 0..<workers {
          group.addTask {
            while let key = await queue.get() {
              handedOut.withLock { $0.append(key) }
              queue.done(key)
            }
          }
        }
        for (key, delay) in delays.enumerated() {
          queue.add(key, after: .milliseconds(delay))
          if key % 4 == 0 { await Task.yield() }
        }
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(10)
        while handedOut.current.count < delays.count && clock.now < deadline {
          try? await Task.sleep(for: .milliseconds(1))
        }
        queue.shutDown(.abandon)
      }
      #expect(handedOut.current.sorted() == Array(delays.indices))
    }
  }
}
