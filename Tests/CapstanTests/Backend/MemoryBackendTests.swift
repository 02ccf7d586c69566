@testable import Capstan
import Foundation
import Logging
import PropertyBased
import Synchronization
import Testing

/// Behaviour only ``MemoryBackend`` has (or that only an isolated store can show exactly):
/// injected time, `run()`, faults, snapshots, the slow-watcher policy, and a model check.
@Suite struct MemoryBackendTests {
  func makeBackend(
    clock: ManualClock = ManualClock(), _ configure: (inout MemoryBackend.Configuration) -> Void = { _ in }
  ) throws -> MemoryBackend {
    var configuration = MemoryBackend.Configuration(clock: clock)
    configure(&configuration)
    return try MemoryBackend(configuration: configuration, logger: quietLogger)
  }

  // MARK: Exact revisions (an isolated store)

  @Test func revisionsCountEveryWriteAndOnlyWrites() async throws {
    let backend = MemoryBackend()
    #expect(try await backend.currentRevision() == 1)
    #expect(try await backend.put("/a", value: bytes("1"), lease: nil).revision == 2)
    let nothing = try await backend.delete(.key("/missing"))
    #expect(nothing.revision == 2 && nothing.deleted.isEmpty)
    let txn = try await backend.txn(
      BackendTxn(success: [.put(key: "/b", value: bytes("1"), lease: nil), .put(key: "/c", value: bytes("1"), lease: nil)]))
    #expect(txn.revision == 3)
    #expect(try await backend.txn(BackendTxn(success: [.range(.prefix("/"), BackendRangeOptions())])).revision == 3)
    #expect(try await backend.txn(BackendTxn(compares: [.absent("/a")], success: [.delete(.key("/a"))])).revision == 3)
    let lease = try await backend.grantLease(ttl: 10)
    try await backend.revokeLease(lease.id)
    #expect(try await backend.currentRevision() == 3, "revoking a lease without keys writes nothing")
    #expect(try await backend.delete(.prefix("/")).revision == 4)
  }

  @Test func rangeAndCompactErrorsCarryTheCompactRevision() async throws {
    let backend = MemoryBackend()
    for value in 1...4 { _ = try await backend.put("/a", value: bytes("\(value)"), lease: nil) }
    try await backend.compact(revision: 3)
    let rangeError = await expectBackendError(.compacted, "range below the compaction") {
      _ = try await backend.range(.key("/a"), options: BackendRangeOptions(revision: 2))
    }
    #expect(rangeError?.compactRevision == 3)
    let compactError = await expectBackendError(.compacted, "compact again") { try await backend.compact(revision: 3) }
    #expect(compactError?.compactRevision == 3)
    #expect(try await backend.range(.key("/a"), options: BackendRangeOptions(revision: 3)).kvs.first?.value == bytes("2"))
  }

  // MARK: Leases and time

  @Test func leasesExpireLazilyWithoutRun() async throws {
    let clock = ManualClock()
    let backend = try self.makeBackend(clock: clock)
    let short = try await backend.grantLease(ttl: 1)
    #expect(short.ttl == 2, "etcd's minimum TTL")
    let lease = try await backend.grantLease(ttl: 5)
    _ = try await backend.put("/leased", value: bytes("1"), lease: lease.id)
    let before = try await backend.currentRevision()
    let watch = backend.watch(.prefix("/"), options: BackendWatchOptions(startRevision: before + 1))
    clock.advance(by: .milliseconds(4_900))
    #expect(try await backend.leaseTimeToLive(lease.id) == 0)
    #expect(try await backend.range(.key("/leased"), options: BackendRangeOptions()).count == 1)
    clock.advance(by: .milliseconds(200))
    #expect(try await backend.range(.key("/leased"), options: BackendRangeOptions()).count == 0)
    #expect(try await collectEvents(watch, count: 1) == [.delete(key: "/leased", revision: before + 1, previous: nil)])
    await expectBackendError(.leaseNotFound, "an expired lease") { _ = try await backend.leaseTimeToLive(lease.id) }
    await expectBackendError(.leaseNotFound, "the short lease expired too") { _ = try await backend.leaseTimeToLive(short.id) }
    var events: [BackendLeaseEvent] = []
    for await event in backend.keepAlive(lease).events { events.append(event) }
    #expect(events.count == 1)
    if case .lost = events.first {} else { Issue.record("expected lost, got \(events)") }
  }

  @Test func runExpiresLeasesAndRenewsKeptAliveOnesWithNobodyCalling() async throws {
    let clock = ManualClock()
    let backend = try self.makeBackend(clock: clock) { $0.tickInterval = .milliseconds(250) }
    let expiring = try await backend.grantLease(ttl: 3)
    let kept = try await backend.grantLease(ttl: 3)
    _ = try await backend.put("/expiring", value: bytes("1"), lease: expiring.id)
    let keepAlive = backend.keepAlive(kept)
    var renewals = keepAlive.events.makeAsyncIterator()
    #expect(await renewals.next() == .renewed(ttl: 3))
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await backend.run() }
      try await clock.waitForSleeps(after: 0)
      try await clock.advance(by: .milliseconds(3_250), step: .milliseconds(250))
      // Nobody called the backend: run() expired the lease.
      #expect(backend.state.withLock { $0.leases[expiring.id] == nil && $0.liveKeys == 0 })
      #expect(backend.state.withLock { $0.leases[kept.id] != nil })
      #expect(await renewals.next() == .renewed(ttl: 3))
      try await clock.advance(by: .seconds(10), step: .milliseconds(250))
      #expect(try await backend.leaseTimeToLive(kept.id) == 3)
      // Cancelled, the TTL counts down from now.
      keepAlive.cancel()
      try await clock.advance(by: .milliseconds(2_750), step: .milliseconds(250))
      #expect(backend.state.withLock { $0.leases[kept.id] != nil })
      try await clock.advance(by: .milliseconds(500), step: .milliseconds(250))
      #expect(backend.state.withLock { $0.leases[kept.id] == nil })
      group.cancelAll()
    }
  }

  @Test func keepAliveReportsLostWhenRevokedAndStops() async throws {
    let backend = MemoryBackend()
    let lease = try await backend.grantLease(ttl: 10)
    let first = backend.keepAlive(lease)
    let second = backend.keepAlive(lease)
    try await backend.revokeLease(lease.id)
    for keepAlive in [first, second] {
      var events: [BackendLeaseEvent] = []
      for await event in keepAlive.events { events.append(event) }
      #expect(events.first == .renewed(ttl: 10))
      #expect(events.last == .lost(reason: "lease \(lease.id) was revoked"))
    }
    #expect(backend.state.withLock { $0.keepersToFinish.isEmpty })
  }

  // MARK: Watches

  @Test func progressNotificationsComeWhileIdleAndOnRequest() async throws {
    let clock = ManualClock()
    let backend = try self.makeBackend(clock: clock) {
      $0.tickInterval = .milliseconds(100)
      $0.progressNotifyInterval = .seconds(1)
    }
    _ = try await backend.put("/a", value: bytes("1"), lease: nil)
    let notified = backend.watch(.prefix("/"), options: BackendWatchOptions(progressNotify: true))
    let quiet = backend.watch(.prefix("/"), options: BackendWatchOptions(progressNotify: false))
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await backend.run() }
      try await clock.waitForSleeps(after: 0)
      try await clock.advance(by: .seconds(1), step: .milliseconds(100))
      var iterator = notified.makeAsyncIterator()
      #expect(try await iterator.next() == .progress(revision: 2))
      #expect(try await backend.requestWatchProgress() == 2)
      #expect(try await iterator.next() == .progress(revision: 2))
      var quietIterator = quiet.makeAsyncIterator()
      #expect(try await quietIterator.next() == .progress(revision: 2), "only the requested progress")
      group.cancelAll()
    }
  }

  @Test func aSlowWatcherIsBoundedAndCatchesUpFromHistory() async throws {
    let backend = try self.makeBackend { $0.watchBufferLimit = 4 }
    let watch = backend.watch(.prefix("/"), options: BackendWatchOptions(prevKV: true))
    for index in 1...20 { _ = try await backend.put("/k\(index % 3)", value: bytes("\(index)"), lease: nil) }
    let buffered = backend.state.withLock { state in state.watchers.values.map { ($0.buffer.count, $0.synced) } }
    #expect(buffered.count == 1)
    #expect(buffered.first?.0 == 4 && buffered.first?.1 == false)
    var iterator = watch.makeAsyncIterator()
    var events: [BackendWatchEvent] = []
    for _ in 1...20 { events.append(try #require(try await iterator.next())) }
    #expect(events.map(\.revision) == Array(2...21))
    #expect(events.map { if case .put(let kv, _) = $0 { kv.value } else { Data() } } == (1...20).map { bytes("\($0)") })
    if case .put(_, let previous) = events[5] { #expect(previous?.value == bytes("3")) }
    #expect(backend.state.withLock { $0.watchers.values.first?.synced } == true, "caught up")
    _ = try await backend.put("/live", value: bytes("1"), lease: nil)
    #expect(try await iterator.next()?.revision == 22)
  }

  @Test func aSlowWatcherThatFallsBehindACompactionEnds() async throws {
    let backend = try self.makeBackend { $0.watchBufferLimit = 2 }
    let watch = backend.watch(.prefix("/"), options: BackendWatchOptions())
    for index in 1...10 { _ = try await backend.put("/k", value: bytes("\(index)"), lease: nil) }
    let compactedAt = backend.faults.compactNow()
    var iterator = watch.makeAsyncIterator()
    #expect(try await iterator.next()?.revision == 2)
    #expect(try await iterator.next()?.revision == 3)
    let error = await expectBackendError(.compacted, "the unsynced watcher") { _ = try await iterator.next() }
    #expect(error?.compactRevision == compactedAt)
    #expect(backend.faults.openWatchCount == 0)
  }

  @Test func cancellingOrDroppingAWatchFreesIt() async throws {
    let backend = MemoryBackend()
    do {
      let dropped = backend.watch(.prefix("/"), options: BackendWatchOptions())
      #expect(backend.faults.openWatchCount == 1)
      _ = dropped
    }
    #expect(backend.faults.openWatchCount == 0)
    let watch = backend.watch(.prefix("/"), options: BackendWatchOptions())
    let consumer = Task {
      for try await _ in watch {}
      return "finished"
    }
    try await Task.sleep(for: .milliseconds(20))
    consumer.cancel()
    #expect(try await consumer.value == "finished")
    #expect(backend.faults.openWatchCount == 0, "cancelled while the stream value is still alive")
    _ = try await backend.put("/a", value: bytes("1"), lease: nil)
    // Breaking out of the loop drops the iterator, which cancels the watch.
    let other = backend.watch(.prefix("/"), options: BackendWatchOptions(startRevision: 1))
    #expect(backend.faults.openWatchCount == 1)
    for try await _ in other { break }
    #expect(backend.faults.openWatchCount == 0)
    _ = other
  }

  // MARK: Faults

  @Test func injectedWriteFailuresChangeNothing() async throws {
    let backend = MemoryBackend()
    backend.faults.failNextWrites(3)
    let put = await expectBackendError(.unavailable, "put") { _ = try await backend.put("/a", value: bytes("1"), lease: nil) }
    #expect(put?.message.contains("injected fault") == true)
    await expectBackendError(.unavailable, "txn") {
      _ = try await backend.txn(BackendTxn(success: [.put(key: "/a", value: bytes("1"), lease: nil)]))
    }
    // Reads are not writes.
    #expect(try await backend.range(.key("/a"), options: BackendRangeOptions()).count == 0)
    await expectBackendError(.unavailable, "lease grant") { _ = try await backend.grantLease(ttl: 5) }
    #expect(try await backend.put("/a", value: bytes("1"), lease: nil).revision == 2)
  }

  @Test func brokenWatchesDeliverWhatTheyHadThenFailAndCanResume() async throws {
    let backend = MemoryBackend()
    let watch = backend.watch(.prefix("/"), options: BackendWatchOptions())
    let first = try await backend.put("/a", value: bytes("1"), lease: nil)
    backend.faults.breakWatches()
    _ = try await backend.put("/b", value: bytes("1"), lease: nil)
    var iterator = watch.makeAsyncIterator()
    #expect(try await iterator.next()?.revision == first.revision)
    await expectBackendError(.unavailable, "the broken watch") { _ = try await iterator.next() }
    #expect(backend.faults.openWatchCount == 0)
    let resumed = backend.watch(.prefix("/"), options: BackendWatchOptions(startRevision: first.revision + 1))
    #expect(try await collectEvents(resumed, count: 1).map(\.revision) == [first.revision + 1])
  }

  @Test func injectedLatencyDelaysEveryCallOnTheClock() async throws {
    let clock = ManualClock()
    let backend = try self.makeBackend(clock: clock)
    backend.faults.latency = .seconds(1)
    let call = Task { try await backend.put("/a", value: bytes("1"), lease: nil).revision }
    try await clock.waitForSleeps(after: 0)
    #expect(backend.state.withLock { $0.revision } == 1)
    clock.advance(by: .seconds(1))
    #expect(try await call.value == 2)
    backend.faults.latency = .zero
    #expect(try await backend.currentRevision() == 2)
  }

  // MARK: Snapshots

  @Test func snapshotRoundTripKeepsValuesRevisionsAndLeases() async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("capstan-memory-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: directory) }
    let clock = ManualClock()
    let configuration = MemoryBackend.Configuration.persistent(dataDirectory: directory.path)
    var withClock = configuration
    withClock.clock = clock
    let original = try MemoryBackend(configuration: withClock, logger: quietLogger)
    let lease = try await original.grantLease(ttl: 10)
    _ = try await original.put("/a", value: bytes("1"), lease: nil)
    _ = try await original.put("/a", value: Data([0, 0xFF, 0x10]), lease: nil)
    _ = try await original.put("/b\u{E9}", value: bytes("b"), lease: lease.id)
    _ = try await original.put("/gone", value: bytes("x"), lease: nil)
    _ = try await original.delete(.key("/gone"))
    clock.advance(by: .seconds(4))
    try original.saveSnapshot()
    let saved = try await original.range(.prefix("/"), options: BackendRangeOptions())
    let text = try String(contentsOfFile: try #require(configuration.snapshotPath), encoding: .utf8)
    #expect(text.hasPrefix(#"{"header":{"format":"capstan-memory-snapshot""#))

    let restoredClock = ManualClock()
    withClock.clock = restoredClock
    let restored = try MemoryBackend(configuration: withClock, logger: quietLogger)
    #expect(try await restored.currentRevision() == saved.revision)
    #expect(try await restored.range(.prefix("/"), options: BackendRangeOptions()).kvs == saved.kvs)
    #expect(try await restored.leaseTimeToLive(lease.id) == 6)
    await expectBackendError(.compacted, "history before the snapshot") {
      _ = try await restored.range(.prefix("/"), options: BackendRangeOptions(revision: saved.revision - 1))
    }
    let watch = restored.watch(.prefix("/"), options: BackendWatchOptions(startRevision: saved.revision + 1))
    #expect(try await restored.put("/c", value: bytes("c"), lease: nil).revision == saved.revision + 1)
    #expect(try await collectEvents(watch, count: 1).map(\.revision) == [saved.revision + 1])
    #expect(try await restored.grantLease(ttl: 5).id > lease.id)
    // The lease still owns its key and expires on time.
    restoredClock.advance(by: .seconds(6))
    #expect(try await restored.range(.prefix("/"), options: BackendRangeOptions()).kvs.map(\.key) == ["/a", "/c"])
  }

  /// A configuration that snapshots into a fresh temporary directory, on a manual clock.
  static func persistentConfiguration() -> (MemoryBackend.Configuration, ManualClock) {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("capstan-memory-\(UUID().uuidString)")
    let clock = ManualClock()
    var configuration = MemoryBackend.Configuration.persistent(dataDirectory: directory.path)
    configuration.clock = clock
    return (configuration, clock)
  }

  /// Removes the directory of a ``persistentConfiguration()``.
  static func removeData(of configuration: MemoryBackend.Configuration) {
    guard let path = configuration.snapshotPath else { return }
    try? FileManager.default.removeItem(at: URL(fileURLWithPath: path).deletingLastPathComponent())
  }

  @Test func runSavesASnapshotAtShutdownAndABadSnapshotIsAnError() async throws {
    let (configuration, clock) = Self.persistentConfiguration()
    defer { Self.removeData(of: configuration) }
    let backend = try MemoryBackend(configuration: configuration, logger: quietLogger)
    _ = try await backend.put("/a", value: bytes("1"), lease: nil)
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await backend.run() }
      try await clock.waitForSleeps(after: 0)
      group.cancelAll()
      try await group.waitForAll()
    }
    let path = try #require(configuration.snapshotPath)
    #expect(FileManager.default.fileExists(atPath: path))
    #expect(try await MemoryBackend(configuration: configuration, logger: quietLogger).currentRevision() == 2)
    try Data("not json\n".utf8).write(to: URL(fileURLWithPath: path))
    #expect(throws: BackendError.self) { _ = try MemoryBackend(configuration: configuration, logger: quietLogger) }
  }

  /// A lease granted while the store's revision stands still is still saved by the periodic
  /// snapshot, so a restored store never hands out its ID again.
  @Test func periodicSnapshotsSaveLeaseOnlyChanges() async throws {
    let (configuration, clock) = Self.persistentConfiguration()
    defer { Self.removeData(of: configuration) }
    let backend = try MemoryBackend(configuration: configuration, logger: quietLogger)
    let path = try #require(configuration.snapshotPath)
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await backend.run() }
      try await clock.waitForSleeps(after: 0)
      let lease = try await backend.grantLease(ttl: 600)
      // Run the ticks of one snapshot interval; the periodic save writes the lease.
      var slept = 1
      while !FileManager.default.fileExists(atPath: path) {
        clock.advance(by: configuration.tickInterval)
        try await clock.waitForSleeps(after: slept)
        slept += 1
        #expect(slept < 1_000, "no periodic snapshot")
        if slept >= 1_000 { break }
      }
      let restored = try MemoryBackend(configuration: configuration, logger: quietLogger)
      #expect(try await restored.grantLease(ttl: 600).id != lease.id)
      group.cancelAll()
      try await group.waitForAll()
    }
  }

  // MARK: Against a model

  /// Random puts, deletes, transactions and compactions give, at every revision, the range a
  /// dictionary-per-revision model gives; and a watch from any revision replays the model's events.
  @Test func behavesLikeASimpleModel() async {
    await propertyCheck(count: 60, input: Gen.int(in: 0...9_999).array(of: 1...40)) { codes in
      let backend = MemoryBackend()
      var model = StoreModel()
      for code in codes { try await model.apply(code, to: backend) }
      let current = try await backend.currentRevision()
      #expect(current == model.revision)
      for revision in 1...current {
        if revision < model.compactRevision {
          await expectBackendError(.compacted, "range at \(revision)") {
            _ = try await backend.range(.prefix("/m/"), options: BackendRangeOptions(revision: revision))
          }
          continue
        }
        let page = try await backend.range(.prefix("/m/"), options: BackendRangeOptions(revision: revision))
        #expect(page.kvs == model.state(at: revision), "range at revision \(revision)")
      }
      let start = max(model.compactRevision, 1)
      for from in Set([start, (start + current) / 2, current]) {
        let expected = model.events.filter { $0.revision >= from }
        let watch = backend.watch(.prefix("/m/"), options: BackendWatchOptions(startRevision: from, prevKV: true, progressNotify: false))
        let events = try await collectEvents(watch, count: expected.count)
        #expect(events == expected, "watch from \(from)")
      }
    }
  }
}

let quietLogger: Logger = {
  var logger = Logger(label: "capstan.test.memory-backend")
  logger.logLevel = .error
  return logger
}()

/// The reference model: the whole key space after every revision, and every event.
struct StoreModel {
  var revision: Int64 = 1
  var compactRevision: Int64 = 0
  var states: [Int64: [String: StoredKeyValue]] = [1: [:]]
  var events: [BackendWatchEvent] = []

  var current: [String: StoredKeyValue] { self.states[self.revision]! }

  func state(at revision: Int64) -> [StoredKeyValue] {
    self.states[revision]!.values.sorted { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }
  }

  static func key(_ number: Int) -> String { "/m/k\(number % 6)" }

  /// Applies the operation `code` stands for to both the backend and the model.
  mutating func apply(_ code: Int, to backend: MemoryBackend) async throws {
    let key = Self.key(code / 10)
    let other = Self.key(code / 10 + 1)
    var next = self.current
    var changes: [BackendWatchEvent] = []
    let newRevision = self.revision + 1
    func put(_ key: String, _ value: String) {
      let previous = next[key]
      let kv = StoredKeyValue(
        key: key, value: bytes(value), createRevision: previous?.createRevision ?? newRevision,
        modRevision: newRevision, version: (previous?.version ?? 0) + 1)
      next[key] = kv
      changes.append(.put(kv, previous: previous))
    }
    func delete(_ keys: [String]) {
      for key in keys.sorted(by: { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }) {
        guard let previous = next.removeValue(forKey: key) else { continue }
        changes.append(.delete(key: key, revision: newRevision, previous: previous))
      }
    }
    switch code % 10 {
    case 0, 1, 2, 3:
      _ = try await backend.put(key, value: bytes("\(code)"), lease: nil)
      put(key, "\(code)")
    case 4, 5:
      _ = try await backend.delete(.key(key))
      delete([key])
    case 6:
      let (low, high) = key < other ? (key, other) : (other, key)
      if low == high { return }
      _ = try await backend.delete(.range(from: low, to: high))
      delete(next.keys.filter { $0 >= low && $0 < high })
    case 7, 8:
      let expected = (self.current[key]?.modRevision ?? 0) + Int64(code % 2 == 0 ? 0 : 1) * Int64(code / 1000 % 2)
      let result = try await backend.txn(
        BackendTxn(
          compares: [.modRevision(key, equals: expected)],
          success: [.put(key: other, value: bytes("t\(code)"), lease: nil), .delete(.key(key))],
          failure: [.put(key: key, value: bytes("f\(code)"), lease: nil)]))
      if expected == (self.current[key]?.modRevision ?? 0) {
        #expect(result.succeeded)
        put(other, "t\(code)")
        delete([key])
      } else {
        #expect(!result.succeeded)
        put(key, "f\(code)")
      }
    default:
      guard self.revision > self.compactRevision else { return }
      let target = self.compactRevision + 1 + Int64(code / 10) % (self.revision - self.compactRevision)
      try await backend.compact(revision: target)
      self.compactRevision = target
      return
    }
    guard !changes.isEmpty else { return }
    self.revision = newRevision
    self.states[newRevision] = next
    self.events += changes
  }
}

@Suite struct MemoryBackendProgressTests {
  /// Repeated progress requests to a watch nobody reads keep one report, not one per request.
  @Test func unreadProgressReportsDoNotAccumulate() async throws {
    let backend = MemoryBackend()
    let watch = backend.watch(.prefix("/idle/"), options: BackendWatchOptions())
    var iterator = watch.makeAsyncIterator()
    for _ in 0..<100 { _ = try await backend.requestWatchProgress() }
    let buffered = backend.withState { state in state.watchers.values.map(\.buffer.count) }
    #expect(buffered == [1])
    let first = try await iterator.next()
    #expect(first == .progress(revision: 1))
  }
}
