@testable import Capstan
import CapstanEtcd
import CapstanTesting
import CapstanTestSupport
import Foundation
import Testing

/// How an informer recovers from broken, stalled and compacted watches (fault injection on the
/// embedded backend; compaction also on a real etcd, in its own suite since it is store-wide).
@Suite struct InformerRecoveryTests {
  static let fastRecovery = InformerConfiguration(
    backoff: EtcdBackoff(initial: .milliseconds(300), maximum: .seconds(1)), stallTimeout: .milliseconds(300),
    progressTimeout: .milliseconds(300))

  @Test func aBrokenWatchResumesWithoutLossOrDuplicates() async throws {
    let backend = MemoryBackend()
    let layout = uniqueLayout()
    let informer = try Informer(layout: layout, backend: backend, configuration: Self.fastRecovery, logger: quietLogger)
    let events = informer.addHandler("test")
    try await whileRunning(informer) {
      _ = try await informer.waitForSync()
      var expected: [String] = []
      for round in 0..<5 {
        try await backend.put(TestObject(uid: "u\(round)", name: "o\(round)"), in: layout)
        expected.append("added u\(round) nginx")
        backend.faults.breakWatches()
      }
      let seen = try await take(5, from: events)
      #expect(seen.map(describe) == expected)
    }
  }

  /// Red line "relist storm after compaction": the informer relists in place — only what changed
  /// produces events, what vanished is an inferred deletion — after one jittered backoff.
  @Test func aCompactedWatchRelistsInPlace() async throws {
    let backend = MemoryBackend()
    let layout = uniqueLayout()
    for index in 0..<5 { try await backend.put(TestObject(uid: "u\(index)", name: "o\(index)"), in: layout) }
    let metrics = RecordingMetrics()
    let informer = try Informer(
      layout: layout, backend: backend, configuration: Self.fastRecovery, logger: quietLogger, metricsFactory: metrics)
    let events = informer.addHandler("test")
    try await whileRunning(informer) {
      let cache = try await informer.waitForSync()
      _ = try await take(5, from: events)
      let relists = [("resource", layout.plural), ("reason", "compacted")]
      #expect(metrics.value("capstan_informer_relists_total", relists) == nil)
      // Break the watch, then change things and compact them away before it resumes.
      backend.faults.breakWatches()
      try await backend.put(TestObject(uid: "u1", name: "o1", image: "httpd"), in: layout)
      try await backend.delete("o2", in: layout)
      try await backend.put(TestObject(uid: "u9", name: "o9"), in: layout)
      try await backend.put(TestObject(uid: "u3b", name: "o3"), in: layout)  // name reuse
      let now = try await backend.currentRevision()
      try await backend.compact(revision: now)

      let seen = try await take(5, from: events)
      #expect(
        Set(seen.map(describe)) == [
          "updated u1 nginx->httpd", "added u9 nginx", "deleted u2 inferred", "deleted u3 certain", "added u3b nginx",
        ])
      try await informer.waitUntil(revision: now)
      #expect(cache.count == 5)
      #expect(cache.zeroValueScan().isEmpty)
      #expect(events.backlog == 0)
      // One relist, not a storm.
      #expect(metrics.value("capstan_informer_relists_total", relists) == 1)
    }
  }

  /// Red line "watch stall": a watch that goes silent, and whose stream no longer answers
  /// progress requests, is restarted from its last revision by the watchdog.
  @Test func theWatchdogRestartsAStalledWatch() async throws {
    let backend = MemoryBackend()
    let layout = uniqueLayout()
    let metrics = RecordingMetrics()
    let informer = try Informer(
      layout: layout, backend: backend, configuration: Self.fastRecovery, logger: quietLogger, metricsFactory: metrics)
    let events = informer.addHandler("test")
    try await whileRunning(informer) {
      _ = try await informer.waitForSync()
      backend.faults.stallWatches()
      let written = try await backend.put(TestObject(uid: "u1", name: "o1"), in: layout)
      // The stalled watch never delivers this; the restarted one does.
      #expect(try await take(1, from: events, timeout: .seconds(10)).map(describe) == ["added u1 nginx"])
      try await informer.waitUntil(revision: written)
      let restarts = metrics.value("capstan_informer_watch_restarts_total", [("resource", layout.plural), ("reason", "stall")])
      #expect(restarts == 1)
    }
  }

  /// A watch that breaks inside a multi-key revision (here a txn writing two objects) resumes AT
  /// that revision, so the rest of it is not lost.
  @Test func aWatchBrokenInsideARevisionLosesNothingOfIt() async throws {
    let backend = WatchBreakingBackend(wrapping: MemoryBackend())
    let layout = uniqueLayout()
    let informer = try Informer(layout: layout, backend: backend, configuration: Self.fastRecovery, logger: quietLogger)
    let events = informer.addHandler("test")
    try await whileRunning(informer) {
      let cache = try await informer.waitForSync()
      backend.breakWatches(afterEvents: 1)
      let a = TestObject(uid: "a", name: "a")
      let b = TestObject(uid: "b", name: "b")
      let result = try await backend.txn(BackendTxn(success: [
        .put(key: layout.key(namespace: "default", name: "a"), value: a.json, lease: nil),
        .put(key: layout.key(namespace: "default", name: "b"), value: b.json, lease: nil),
      ]))
      #expect(Set(try await take(2, from: events).map(describe)) == ["added a nginx", "added b nginx"])
      try await informer.waitUntil(revision: result.revision)
      #expect(cache.count == 2)
    }
  }

  @Test func anInformerRunsOnce() async throws {
    let informer = try Informer(layout: uniqueLayout(), backend: MemoryBackend(), logger: quietLogger)
    try await whileRunning(informer) { _ = try await informer.waitForSync() }
    await #expect(throws: InformerError.self) { try await informer.run() }
  }

  @Test func failedListsAreRetried() async throws {
    let backend = MemoryBackend()
    let layout = uniqueLayout()
    try await backend.put(TestObject(uid: "u1", name: "o1"), in: layout)
    backend.faults.failNextReads(2)
    let informer = try Informer(layout: layout, backend: backend, configuration: Self.fastRecovery, logger: quietLogger)
    try await whileRunning(informer) {
      let cache = try await informer.waitForSync(timeout: .seconds(10))
      #expect(cache.count == 1)
    }
  }
}

@Suite("Informer relists after compaction on a real etcd", .etcdServer("capstan-informer-compaction"))
struct EtcdInformerCompactionTests {
  @Test func relistsInPlaceAfterEtcdCompaction() async throws {
    try await withBackend(.etcd) { etcd in
      let backend = WatchBreakingBackend(wrapping: etcd)
      let layout = uniqueLayout()
      for index in 0..<5 { try await backend.put(TestObject(uid: "u\(index)", name: "o\(index)"), in: layout) }
      let informer = try Informer(
        layout: layout, backend: backend, configuration: InformerRecoveryTests.fastRecovery, logger: quietLogger)
      let events = informer.addHandler("test")
      try await whileRunning(informer) {
        let cache = try await informer.waitForSync()
        _ = try await take(5, from: events)
        // The informer's watch ends at its next event, and its resumed watch waits until the
        // revisions it needs are compacted (the stall watchdog's restarts wait too).
        backend.holdNewWatches()
        backend.breakWatches()
        try await backend.put(TestObject(uid: "u1", name: "o1", image: "httpd"), in: layout)
        try await backend.delete("o2", in: layout)
        let now = try await backend.currentRevision()
        try await backend.compact(revision: now)
        backend.releaseWatches()
        let seen = try await take(2, from: events)
        #expect(Set(seen.map(describe)) == ["updated u1 nginx->httpd", "deleted u2 inferred"])
        try await informer.waitUntil(revision: now)
        #expect(cache.count == 4)
        #expect(cache.zeroValueScan().isEmpty)
      }
    }
  }
}
