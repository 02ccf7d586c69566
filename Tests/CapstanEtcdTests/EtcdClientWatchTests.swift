import CapstanEtcd
import CapstanTesting
import CapstanTestSupport
import Foundation
import Testing

@Suite("EtcdClient watch against a real etcd", .etcdServer("watch"))
struct EtcdClientWatchTests {
  @Test("a prefix watch delivers puts and deletes in order, with previous values")
  func putsAndDeletes() async throws {
    let prefix = uniquePrefix()
    try await withSuiteClient { etcd in
      let watch = etcd.watch(.prefix(prefix), options: WatchOptions(prevKV: true))
      _ = try await etcd.requestWatchProgress()  // the watch is registered once the stream answers
      async let events = collect(3, from: watch)
      try await etcd.put(prefix + "a", "1")
      try await etcd.put(prefix + "a", "2")
      try await etcd.delete(prefix + "a")
      let received = try await events
      guard received.count == 3,
        case .put(let first, let none) = received[0],
        case .put(let second, let previous) = received[1],
        case .delete(let gone, let last) = received[2]
      else {
        Issue.record("unexpected events \(received)")
        return
      }
      #expect(first.valueString == "1" && none == nil)
      #expect(second.valueString == "2" && previous?.valueString == "1")
      #expect(gone.keyString == prefix + "a" && last?.valueString == "2")
      #expect(received.map(\.revision) == received.map(\.revision).sorted())
    }
  }

  @Test("a watch from a past revision replays history, then filters leave out deletes")
  func replayAndFilters() async throws {
    let prefix = uniquePrefix()
    try await withSuiteClient { etcd in
      var written = [try await etcd.put(prefix + "x", "0").header.revision]
      for index in 1...5 { written.append(try await etcd.put(prefix + "x", "\(index)").header.revision) }
      let deletedAt = try await etcd.delete(prefix + "x").header.revision
      written.append(deletedAt)
      written.append(try await etcd.put(prefix + "x", "after").header.revision)
      let start = written[0]
      let replay = try await collect(8, from: etcd.watch(.prefix(prefix), options: WatchOptions(startRevision: start)))
      #expect(replay.map(\.revision) == written)

      let putsOnly = try await collect(7, from: etcd.watch(.prefix(prefix), options: WatchOptions(startRevision: start, noDelete: true)))
      #expect(putsOnly.allSatisfy { if case .put = $0 { true } else { false } })
      let deletesOnly = try await collect(1, from: etcd.watch(.prefix(prefix), options: WatchOptions(startRevision: start, noPut: true)))
      #expect(deletesOnly.first?.revision == deletedAt)
    }
  }

  @Test("many watchers share one stream and each sees exactly its own keys")
  func multiplexedWatchers() async throws {
    let prefix = uniquePrefix()
    try await withSuiteClient { etcd in
      let watchers = (0..<50).map { etcd.watch(.prefix(prefix + "w\($0)/")) }
      _ = try await etcd.requestWatchProgress()
      try await withThrowingTaskGroup(of: (Int, [WatchEvent]).self) { group in
        for (index, watch) in watchers.enumerated() {
          group.addTask { (index, try await collect(2, from: watch)) }
        }
        for index in 0..<50 {
          try await etcd.put(prefix + "w\(index)/a", "first")
          try await etcd.put(prefix + "w\(index)/b", "second")
        }
        for try await (index, events) in group {
          let keys = events.compactMap { event -> String? in
            if case .put(let kv, _) = event { return kv.keyString } else { return nil }
          }
          #expect(keys == [prefix + "w\(index)/a", prefix + "w\(index)/b"])
        }
      }
    }
  }

  @Test("progress: requestWatchProgress answers and progressNotify is accepted")
  func progress() async throws {
    let prefix = uniquePrefix()
    try await withSuiteClient { etcd in
      let noWatch = await #expect(throws: EtcdError.self) { try await etcd.requestWatchProgress() }
      #expect(noWatch?.code == .unavailable)
      let watch = etcd.watch(.prefix(prefix), options: WatchOptions(progressNotify: true))
      _ = try await etcd.requestWatchProgress()  // answered after the watch is created
      let written = try await etcd.put(prefix + "p", "1").header.revision
      let revision = try await etcd.requestWatchProgress()
      #expect(revision >= written)
      let events = try await collect(1, from: watch)
      #expect(events.first?.revision == written)
    }
  }

  @Test("stopping iteration cancels the watch on the server")
  func cancellation() async throws {
    let prefix = uniquePrefix()
    try await withSuiteClient { etcd in
      for _ in 0..<3 {
        let watch = etcd.watch(.prefix(prefix))
        _ = try await etcd.requestWatchProgress()
        async let first = collect(1, from: watch)
        try await etcd.put(prefix + "k", "v")
        #expect(try await first.count == 1)
      }
      // Still serving new watches on the same stream afterwards.
      let watch = etcd.watch(.prefix(prefix))
      _ = try await etcd.requestWatchProgress()
      async let next = collect(1, from: watch)
      try await etcd.put(prefix + "k", "again")
      #expect(try await next.first?.revision ?? 0 > 0)
    }
  }
}

@Suite("EtcdClient watch across etcd restarts", .etcdServer("watch-restart"))
struct EtcdClientWatchResumeTests {
  @Test("a watch survives etcd being killed and restarted: no event lost or duplicated")
  func survivesRestart() async throws {
    let server = try suiteServer()
    let prefix = uniquePrefix()
    let metrics = RecordingMetrics()
    try await withSuiteClient(metrics: metrics) { etcd in
      let start = try await etcd.put(prefix + "start", "0").header.revision
      let watch = etcd.watch(.prefix(prefix), options: WatchOptions(startRevision: start + 1))
      var written: [Int64] = []
      for index in 0..<20 { written.append(try await etcd.put(prefix + "k\(index % 5)", "before-\(index)").header.revision) }
      async let received = collect(60, from: watch, timeout: .seconds(60))
      server.kill()
      try await Task.sleep(for: .milliseconds(300))
      try await server.restart()
      for index in 0..<20 { written.append(try await etcd.put(prefix + "k\(index % 5)", "after-\(index)").header.revision) }
      server.kill()
      try await server.restart()
      for index in 0..<20 { written.append(try await etcd.put(prefix + "k\(index % 5)", "again-\(index)").header.revision) }
      let revisions = try await received.map(\.revision)
      #expect(revisions == written)
    }
    let restarts = metrics.value("capstan_etcd_stream_breaks_total", [("stream", "watch")]) ?? 0
    #expect(restarts >= 2, "each kill broke the watch stream once")
  }
}

@Suite("EtcdClient watch fragments", .etcdServer("fragment", extraArguments: ["--max-request-bytes", "65536"]))
struct EtcdClientWatchFragmentTests {
  @Test("a catch-up batch larger than the server's message limit arrives whole, reassembled from fragments")
  func fragments() async throws {
    let prefix = uniquePrefix()
    try await withSuiteClient { etcd in
      let value = String(repeating: "f", count: 30_000)
      let start = try await etcd.put(prefix + "seed", "0").header.revision
      // 8 × 30 kB of history: replayed in one batch that is too big for one 64 kB response.
      var written: [Int64] = []
      for index in 0..<8 { written.append(try await etcd.put(prefix + "big\(index)", value).header.revision) }
      let events = try await collect(8, from: etcd.watch(.prefix(prefix + "big"), options: WatchOptions(startRevision: start)))
      #expect(events.map(\.revision) == written)
      #expect(events.allSatisfy { if case .put(let kv, _) = $0 { kv.value.count == 30_000 } else { false } })
    }
  }
}

/// Compaction affects the whole store, so the tests that compact get their own server.
@Suite("EtcdClient and compaction", .etcdServer("compaction"), .serialized)
struct EtcdClientCompactionTests {
  @Test("a watch from a compacted revision ends with a typed error carrying the compact revision")
  func compactedStart() async throws {
    let prefix = uniquePrefix()
    try await withSuiteClient { etcd in
      let old = try await etcd.put(prefix + "c", "1").header.revision
      let latest = try await etcd.put(prefix + "c", "2").header.revision
      try await etcd.compact(revision: latest)
      let error = await #expect(throws: EtcdError.self) {
        for try await _ in etcd.watch(.prefix(prefix), options: WatchOptions(startRevision: old)) {}
      }
      #expect(error?.code == .compacted)
      #expect(error?.compactRevision == latest)
    }
  }

  @Test("reads at a past revision, and the typed errors for compacted and future revisions")
  func revisionReads() async throws {
    let prefix = uniquePrefix()
    try await withSuiteClient { etcd in
      let first = try await etcd.put(prefix + "r", "old")
      try await etcd.put(prefix + "r", "new")
      #expect(try await etcd.get(prefix + "r", revision: first.header.revision)?.valueString == "old")

      let future = await #expect(throws: EtcdError.self) {
        try await etcd.get(prefix + "r", revision: first.header.revision + 1_000_000)
      }
      #expect(future?.code == .futureRevision)

      let latest = try await etcd.put(prefix + "r", "newest")
      try await etcd.compact(revision: latest.header.revision)
      let compacted = await #expect(throws: EtcdError.self) {
        try await etcd.get(prefix + "r", revision: first.header.revision)
      }
      #expect(compacted?.code == .compacted)
    }
  }
}
