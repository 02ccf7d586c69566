import Capstan
import Logging
import Metrics
import Testing

@Suite struct WorkQueueTests {
  // MARK: dedup and processing

  @Test func aKeyQueuedTwiceIsHandedOutOnce() async {
    let queue = WorkQueueFixture().queue
    queue.add("a")
    queue.add("b")
    queue.add("a")
    #expect(queue.count == 2)
    #expect(await queue.get() == "a")
    #expect(await queue.get() == "b")
    #expect(queue.count == 0)
  }

  @Test(arguments: [true, false])
  func aKeyAddedWhileProcessingIsHandedOutAgainOnlyAfterDone(recordingMetrics: Bool) async {
    let queue = WorkQueueFixture(recordingMetrics: recordingMetrics).queue
    queue.add("a")
    #expect(await queue.get() == "a")
    queue.add("a")
    queue.add("a")
    #expect(queue.count == 0, "a key being processed is not ready")
    queue.add("b")
    #expect(await queue.get() == "b", "the next get skips the key being processed")
    let released = WorkQueueTestBox(false)
    async let next: String? = {
      let key = await queue.get()
      #expect(released.current, "handed out before done")
      return key
    }()
    await WorkQueueFixture.yield()
    released.withLock { $0 = true }
    queue.done("a")
    #expect(await next == "a")
    queue.done("a")
    #expect(queue.count == 0, "added twice while processing: processed once more")
  }

  @Test func aWaitingGetReceivesTheNextAdd() async {
    let queue = WorkQueueFixture().queue
    async let next = queue.get()
    await WorkQueueFixture.yield()
    queue.add("a")
    #expect(await next == "a")
    #expect(queue.count == 0)
  }

  @Test func doneForAKeyNotBeingProcessedIsIgnored() async {
    let queue = WorkQueueFixture().queue
    queue.done("nothing")
    queue.add("a")
    queue.done("a")
    #expect(await queue.get() == "a")
  }

  @Test func aCancelledGetReturnsNil() async {
    let queue = WorkQueueFixture().queue
    await withTaskGroup(of: String?.self) { group in
      group.addTask { await queue.get() }
      await WorkQueueFixture.yield()
      group.cancelAll()
      #expect(await group.next() == .some(nil))
    }
    queue.add("a")
    #expect(await queue.get() == "a", "the cancelled waiter took nothing")
  }

  // MARK: delays

  @Test(arguments: [true, false])
  func aDelayedKeyIsReadyWhenDue(recordingMetrics: Bool) async {
    let fixture = WorkQueueFixture(recordingMetrics: recordingMetrics)
    let queue = fixture.queue
    queue.add("a", after: .seconds(2))
    #expect(queue.count == 0)
    #expect(queue.delayedCount == 1)
    fixture.clock.advance(by: .seconds(1))
    #expect(queue.count == 0)
    fixture.clock.advance(by: .seconds(1))
    #expect(queue.count == 1)
    #expect(queue.delayedCount == 0)
    #expect(await queue.get() == "a")
  }

  @Test func aWaitingGetWakesWhenADelayedKeyIsDue() async throws {
    let fixture = WorkQueueFixture()
    let queue = fixture.queue
    queue.add("a", after: .seconds(2))
    let sleeps = fixture.clock.sleepsStarted
    async let next = queue.get()
    try await fixture.clock.waitForSleeps(after: sleeps)
    fixture.clock.advance(by: .seconds(2))
    #expect(await next == "a")
  }

  @Test func anEarlierDelayedKeyWakesTheSleepingGetEarlier() async throws {
    let fixture = WorkQueueFixture()
    let queue = fixture.queue
    queue.add("late", after: .seconds(100))
    let sleeps = fixture.clock.sleepsStarted
    async let next = queue.get()
    try await fixture.clock.waitForSleeps(after: sleeps)
    queue.add("soon", after: .seconds(1))
    try await fixture.clock.waitForSleeps(after: sleeps + 1)
    fixture.clock.advance(by: .seconds(1))
    #expect(await next == "soon")
    #expect(queue.delayedCount == 1)
  }

  @Test func aWaitingGetWithoutTimerTakesTheTimeWhenADelayedKeyArrives() async throws {
    let fixture = WorkQueueFixture()
    let queue = fixture.queue
    let sleeps = fixture.clock.sleepsStarted
    async let next = queue.get()
    await WorkQueueFixture.yield()
    queue.add("a", after: .seconds(3))
    try await fixture.clock.waitForSleeps(after: sleeps)
    fixture.clock.advance(by: .seconds(3))
    #expect(await next == "a")
  }

  @Test func theEarlierOfTwoDelaysWins() async {
    let fixture = WorkQueueFixture()
    let queue = fixture.queue
    queue.add("a", after: .seconds(5))
    queue.add("a", after: .seconds(1))
    queue.add("a", after: .seconds(3))
    #expect(queue.delayedCount == 1)
    fixture.clock.advance(by: .seconds(1))
    #expect(queue.count == 1)
    #expect(await queue.get() == "a")
    queue.done("a")
    fixture.clock.advance(by: .seconds(10))
    #expect(queue.count == 0, "the later delays were dropped")
  }

  @Test func severalWaitingGetsAllReceiveDelayedKeys() async throws {
    let fixture = WorkQueueFixture()
    let queue = fixture.queue
    queue.add("a", after: .seconds(1))
    queue.add("b", after: .seconds(2))
    queue.add("c", after: .seconds(3))
    let received = try await withThrowingTaskGroup(of: String?.self, returning: Set<String?>.self) { group in
      for _ in 0..<3 { group.addTask { await queue.get() } }
      // Each second one key is due; the get that keeps the time goes back to sleep after each.
      for round in 0..<3 {
        try await fixture.clock.waitForSleeps(after: round)
        fixture.clock.advance(by: .seconds(1))
      }
      return try await group.reduce(into: []) { $0.insert($1) }
    }
    #expect(received == ["a", "b", "c"])
  }

  // MARK: retries

  @Test func addRateLimitedWaitsTheLimitersDelayAndCountsRequeues() async {
    let fixture = WorkQueueFixture(rateLimiter: ExponentialBackoffRateLimiter(base: .seconds(1), cap: .seconds(60)))
    let queue = fixture.queue
    #expect(queue.addRateLimited("a"))
    #expect(queue.numRequeues("a") == 1)
    #expect(queue.delayedCount == 1)
    fixture.clock.advance(by: .seconds(1))
    #expect(await queue.get() == "a")
    queue.done("a")
    #expect(queue.addRateLimited("a"))
    fixture.clock.advance(by: .seconds(1))
    #expect(queue.count == 0, "the second failure waits 2 s")
    fixture.clock.advance(by: .seconds(1))
    #expect(queue.count == 1)
    #expect(queue.numRequeues("a") == 2)
    #expect(fixture.metric("workqueue_retries_total") == 2)
    queue.forget("a")
    #expect(queue.numRequeues("a") == 0)
  }

  @Test func tenThousandFailuresAtOnceAreAllRetriedWithinTheMaximumWait() {
    let fixture = WorkQueueFixture()
    let queue = fixture.queue
    for index in 0..<10_000 { queue.addRateLimited("key-\(index)") }
    fixture.clock.advance(by: .seconds(1))
    #expect(queue.count == 110, "the burst of 100, then 10/s")
    fixture.clock.advance(by: .milliseconds(28_999))
    #expect(queue.count < 10_000)
    fixture.clock.advance(by: .milliseconds(1))
    #expect(queue.count == 10_000, "the standard limiter's maximum wait is 30 s")
    #expect(queue.delayedCount == 0)
  }

  @Test func aKeyIsDroppedAndCountedAfterItsMaximumRetries() {
    let (logger, logs) = RecordingLogHandler.logger()
    let fixture = WorkQueueFixture(
      rateLimiter: ExponentialBackoffRateLimiter(base: .seconds(1), cap: .seconds(60)), maxRetries: 2,
      logger: logger)
    let queue = fixture.queue
    #expect(queue.addRateLimited("a"))
    #expect(queue.addRateLimited("a"))
    #expect(fixture.metric("workqueue_dropped_total") == 0)
    #expect(!queue.addRateLimited("a"))
    #expect(fixture.metric("workqueue_dropped_total") == 1)
    #expect(queue.numRequeues("a") == 0, "a dropped key's history is forgotten")
    #expect(logs.warnings.count == 1)
    #expect(logs.warnings.first?.metadata["key"] == "a")
    #expect(queue.addRateLimited("b"), "other keys are not affected")
  }

  // MARK: priorities

  @Test(arguments: [true, false])
  func lowPriorityKeysGoBehindNormalOnes(recordingMetrics: Bool) async {
    let queue = WorkQueueFixture(recordingMetrics: recordingMetrics).queue
    queue.add("resync-1", priority: .low)
    queue.add("resync-2", priority: .low)
    queue.add("change")
    var order: [String?] = []
    for _ in 0..<3 { order.append(await queue.get()) }
    #expect(order == ["change", "resync-1", "resync-2"])
  }

  @Test(arguments: [true, false])
  func aNormalAddRaisesAQueuedLowKey(recordingMetrics: Bool) async {
    let queue = WorkQueueFixture(recordingMetrics: recordingMetrics).queue
    queue.add("x", priority: .low)
    queue.add("y")
    queue.add("x")
    queue.add("z", priority: .low)
    #expect(queue.count == 3)
    var order: [String?] = []
    for _ in 0..<3 { order.append(await queue.get()) }
    #expect(order == ["y", "x", "z"])
    #expect(queue.count == 0)
  }

  @Test(arguments: [true, false])
  func aLowKeyOlderThanTheAgingIsServedAsNormal(recordingMetrics: Bool) async {
    let fixture = WorkQueueFixture(lowPriorityAging: .seconds(5), recordingMetrics: recordingMetrics)
    let queue = fixture.queue
    queue.add("old-resync", priority: .low)
    fixture.clock.advance(by: .seconds(4))
    queue.add("change-before")
    fixture.clock.advance(by: .seconds(2))
    queue.add("change-after")
    var order: [String?] = []
    for _ in 0..<3 { order.append(await queue.get()) }
    #expect(order == ["change-before", "old-resync", "change-after"])
  }

  @Test(arguments: [true, false])
  func lowPriorityKeysNeverStarveUnderAStreamOfChanges(recordingMetrics: Bool) async {
    let fixture = WorkQueueFixture(lowPriorityAging: .seconds(5), recordingMetrics: recordingMetrics)
    let queue = fixture.queue
    let initialList = (0..<50).map { "list-\($0)" }
    for key in initialList { queue.add(key, priority: .low) }
    // Two changes a second, one key processed a second: the normal lane never empties.
    var servedAt: [String: Int] = [:]
    for second in 0..<120 {
      queue.add("change-\(second)-a")
      queue.add("change-\(second)-b")
      let key = await queue.get()!
      servedAt[key] = second
      queue.done(key)
      fixture.clock.advance(by: .seconds(1))
    }
    for key in initialList { #expect(servedAt[key] != nil, "\(key) starved") }
    // Every change added later than the aging came after the whole initial list.
    let lastListed = initialList.compactMap { servedAt[$0] }.max() ?? .max
    for second in 6..<120 {
      if let served = servedAt["change-\(second)-a"] { #expect(served > lastListed) }
    }
  }

  @Test(arguments: [true, false])
  func aNormalKeyQueuedBeforeALowOneIsServedFirstEvenWhenTheLowOneHasAged(recordingMetrics: Bool) async {
    // Without metrics the queue reads no clock for a `.normal` key added while no `.low` key is
    // queued: it must still count as older than every `.low` key added after it.
    let fixture = WorkQueueFixture(lowPriorityAging: .seconds(5), recordingMetrics: recordingMetrics)
    let queue = fixture.queue
    queue.add("change")
    fixture.clock.advance(by: .seconds(10))
    queue.add("resync", priority: .low)
    fixture.clock.advance(by: .seconds(10))
    queue.add("later-change")
    var order: [String?] = []
    for _ in 0..<3 { order.append(await queue.get()) }
    #expect(order == ["change", "resync", "later-change"])
  }

  @Test(arguments: [true, false])
  func withZeroAgingLowKeysKeepTheirPlaceAmongNormalOnes(recordingMetrics: Bool) async {
    let fixture = WorkQueueFixture(lowPriorityAging: .zero, recordingMetrics: recordingMetrics)
    let queue = fixture.queue
    queue.add("first")
    fixture.clock.advance(by: .seconds(1))
    queue.add("resync", priority: .low)
    fixture.clock.advance(by: .seconds(1))
    queue.add("last")
    var order: [String?] = []
    for _ in 0..<3 { order.append(await queue.get()) }
    #expect(order == ["first", "resync", "last"])
  }

  @Test func withoutMetricsTheQueueReadsNoClockForPlainKeys() async {
    let clock = CountingClock()
    let queue = WorkQueue<Int>(
      name: "quiet", configuration: .init(clock: clock, metricsFactory: NOOPMetricsHandler.instance))
    let reads = clock.reads
    for key in 0..<10 { queue.add(key) }
    queue.add(3)
    for _ in 0..<10 {
      let key = await queue.get()!
      queue.done(key)
    }
    #expect(queue.count == 0)
    #expect(clock.reads == reads, "no clock read for adds, gets and dones of .normal keys")
    queue.add(42, priority: .low)
    #expect(clock.reads > reads, ".low keys are timed for aging")
  }

  // MARK: shutdown

  @Test(arguments: [true, false])
  func drainHandsOutQueuedKeysThenNil(recordingMetrics: Bool) async {
    let queue = WorkQueueFixture(recordingMetrics: recordingMetrics).queue
    queue.add("a")
    queue.add("b")
    #expect(await queue.get() == "a")
    queue.add("a")
    queue.add("later", after: .seconds(1))
    queue.shutDown(.drain)
    queue.add("c")
    #expect(queue.isShuttingDown)
    #expect(await queue.get() == "b")
    queue.done("b")
    async let parked = queue.get()
    await WorkQueueFixture.yield()
    queue.done("a")
    #expect(await parked == "a", "the key re-added while processing is drained too")
    queue.done("a")
    #expect(await queue.get() == nil)
    #expect(queue.delayedCount == 0)
  }

  @Test func drainReleasesWaitingGetsOnceNothingIsLeft() async {
    let queue = WorkQueueFixture().queue
    queue.add("a")
    #expect(await queue.get() == "a")
    await withTaskGroup(of: String?.self) { group in
      for _ in 0..<3 { group.addTask { await queue.get() } }
      await WorkQueueFixture.yield()
      queue.shutDown(.drain)
      queue.done("a")
      for await key in group { #expect(key == nil) }
    }
  }

  @Test(arguments: [true, false])
  func abandonDropsQueuedKeys(recordingMetrics: Bool) async {
    let queue = WorkQueueFixture(recordingMetrics: recordingMetrics).queue
    queue.add("a")
    queue.add("b")
    #expect(await queue.get() == "a")
    queue.add("a")
    queue.shutDown(.abandon)
    queue.add("c")
    #expect(await queue.get() == nil)
    queue.done("a")
    #expect(await queue.get() == nil)
    #expect(queue.count == 0)
  }

  @Test func abandonReleasesWaitingGets() async {
    let queue = WorkQueueFixture().queue
    queue.add("a", after: .seconds(10))
    await withTaskGroup(of: String?.self) { group in
      for _ in 0..<2 { group.addTask { await queue.get() } }
      await WorkQueueFixture.yield()
      queue.shutDown(.abandon)
      for await key in group { #expect(key == nil) }
    }
  }

  @Test func drainCanBeEscalatedToAbandon() async {
    let queue = WorkQueueFixture().queue
    queue.add("a")
    queue.add("b")
    queue.shutDown(.drain)
    #expect(await queue.get() == "a")
    queue.shutDown(.abandon)
    #expect(await queue.get() == nil)
  }

  // MARK: metrics

  @Test func metricsFollowClientGoNames() async {
    let fixture = WorkQueueFixture()
    let queue = fixture.queue
    queue.add("a")
    queue.add("b")
    queue.add("a")
    #expect(fixture.metric("workqueue_adds_total") == 2)
    #expect(fixture.metric("workqueue_depth") == 2)
    fixture.clock.advance(by: .seconds(3))
    #expect(await queue.get() == "a")
    #expect(fixture.metric("workqueue_queue_duration_seconds") == 3e9, "timers record nanoseconds")
    #expect(fixture.metric("workqueue_depth") == 1)
    #expect(fixture.metric("workqueue_unfinished_work_seconds") == 0)
    fixture.clock.advance(by: .seconds(2))
    #expect(await queue.get() == "b")
    #expect(fixture.metric("workqueue_queue_duration_seconds") == 5e9)
    fixture.clock.advance(by: .seconds(1))
    queue.updateUnfinishedWorkMetrics()
    #expect(fixture.metric("workqueue_unfinished_work_seconds") == 4, "a ran 3 s, b 1 s")
    #expect(fixture.metric("workqueue_longest_running_processor_seconds") == 3)
    queue.done("a")
    #expect(fixture.metric("workqueue_work_duration_seconds") == 3e9)
    #expect(fixture.metric("workqueue_unfinished_work_seconds") == 1)
    #expect(fixture.metric("workqueue_longest_running_processor_seconds") == 1)
    queue.add("c", after: .seconds(1))
    queue.addRateLimited("d")
    #expect(fixture.metric("workqueue_retries_total") == 2)
    #expect(fixture.metric("workqueue_adds_total") == 2, "delayed keys count as added when due")
    fixture.clock.advance(by: .seconds(1))
    queue.updateUnfinishedWorkMetrics()
    #expect(fixture.metric("workqueue_adds_total") == 4)
    #expect(fixture.metric("workqueue_depth") == 2)
  }
}
