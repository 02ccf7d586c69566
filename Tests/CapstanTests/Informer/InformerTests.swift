@testable import Capstan
import CapstanTesting
import CapstanTestSupport
import Foundation
import Testing

/// etcd 3.4 confirms a revision written under another prefix only with its periodic progress
/// notifications (10 minutes apart by default): this suite's etcd sends them every 300 ms.
@Suite(
  "Informer, on the embedded backend and on a real etcd",
  .etcdServer("capstan-informer", extraArguments: ["--experimental-watch-progress-notify-interval=300ms"]))
struct InformerTests {
  @Test(arguments: BackendKind.allCases)
  func listsInPagesThenWatches(kind: BackendKind) async throws {
    try await withBackend(kind) { backend in
      let layout = uniqueLayout()
      for index in 0..<23 {
        try await backend.put(TestObject(uid: "u\(index)", name: "obj\(index)"), in: layout)
      }
      let informer = try Informer(
        layout: layout, backend: backend, configuration: InformerConfiguration(pageSize: 5), logger: quietLogger)
      let events = informer.addHandler("test")
      try await whileRunning(informer) {
        let cache = try await informer.waitForSync()
        #expect(cache.count == 23)
        let initial = try await take(23, from: events)
        #expect(Set(initial.map(describe)) == Set((0..<23).map { "added u\($0) nginx" }))

        try await backend.put(TestObject(uid: "u1", name: "obj1", image: "httpd"), in: layout)
        try await backend.delete("obj2", in: layout)
        let written = try await backend.put(TestObject(uid: "u99", name: "new"), in: layout)
        let live = try await take(3, from: events)
        #expect(live.map(describe) == ["updated u1 nginx->httpd", "deleted u2 certain", "added u99 nginx"])
        try await informer.waitUntil(revision: written)
        #expect(informer.lastSyncRevision >= written)
        #expect(cache.object(uid: "u2") == nil)
        #expect(cache.object(namespace: "default", name: "new")?.metadata.resourceVersion == written)
      }
    }
  }

  /// Red line "cache used before it exists": the cache is a fully built value, and reading it
  /// before the first list is a typed error, never a silently empty answer or a crash.
  @Test func readingBeforeSyncIsATypedError() async throws {
    let backend = MemoryBackend()
    let layout = uniqueLayout()
    try await backend.put(TestObject(uid: "u1", name: "a"), in: layout)
    let informer = try Informer(layout: layout, backend: backend, logger: quietLogger)
    #expect(throws: InformerError.self) { _ = try informer.cache }
    #expect(!informer.hasSynced)
    try await whileRunning(informer) {
      let cache = try await informer.waitForSync()
      #expect(try informer.cache.count == 1)
      #expect(cache.object(uid: "u1") != nil)
    }
  }

  @Test func waitingOnAStoppedInformerFails() async throws {
    let informer = try Informer(layout: uniqueLayout(), backend: MemoryBackend(), logger: quietLogger)
    let events = informer.addHandler("test")
    try await whileRunning(informer) { _ = try await informer.waitForSync() }
    await #expect(throws: InformerError.self) { try await informer.waitUntil(revision: 1_000_000, timeout: .seconds(5)) }
    // The handler stream has finished.
    var iterator = events.makeAsyncIterator()
    #expect(await iterator.next() == nil)
  }

  @Test(arguments: BackendKind.allCases)
  func readYourWritesAcrossPrefixes(kind: BackendKind) async throws {
    try await withBackend(kind) { backend in
      let layout = uniqueLayout()
      let informer = try Informer(layout: layout, backend: backend, logger: quietLogger)
      try await whileRunning(informer) {
        _ = try await informer.waitForSync()
        // A write elsewhere: the informer sees no event for it, but progress confirms the revision.
        let elsewhere = try await backend.put(uniquePrefix() + "x", value: Data("1".utf8), lease: nil).revision
        try await informer.waitUntil(revision: elsewhere, timeout: .seconds(10))
        #expect(informer.lastSyncRevision >= elsewhere)
      }
    }
  }

  /// Red line "key collision from a bad key function": the same name in two namespaces, and in a
  /// cluster-scoped kind, are different objects; a new UID under a taken name is delete-then-add.
  @Test(arguments: BackendKind.allCases)
  func sameNamesNeverCollide(kind: BackendKind) async throws {
    try await withBackend(kind) { backend in
      let namespaced = uniqueLayout()
      let clusterScoped = ResourceLayout(kind: "Node", plural: namespaced.plural + "-nodes", isNamespaced: false)
      try await backend.put(TestObject(uid: "a", name: "web", namespace: "default"), in: namespaced)
      try await backend.put(TestObject(uid: "b", name: "web", namespace: "other"), in: namespaced)
      try await backend.put(TestObject(uid: "c", name: "web", namespace: ""), in: clusterScoped)
      // A namespaced object written under the cluster-scoped layout's key is a key mismatch.
      _ = try await backend.put(
        clusterScoped.key(namespace: "", name: "bad"), value: TestObject(uid: "d", name: "bad", namespace: "default").json,
        lease: nil)

      let pods = try Informer(layout: namespaced, backend: backend, logger: quietLogger)
      let nodes = try Informer(layout: clusterScoped, backend: backend, logger: quietLogger)
      let podEvents = pods.addHandler("test")
      try await whileRunning(pods) {
        try await whileRunning(nodes) {
          let podCache = try await pods.waitForSync()
          let nodeCache = try await nodes.waitForSync()
          #expect(podCache.object(namespace: "default", name: "web")?.metadata.uid == "a")
          #expect(podCache.object(namespace: "other", name: "web")?.metadata.uid == "b")
          #expect(nodeCache.object(namespace: "", name: "web")?.metadata.uid == "c")
          #expect(nodeCache.count == 1)
          _ = try await take(2, from: podEvents)

          // Name reuse with a new UID: never an update across UIDs.
          try await backend.put(TestObject(uid: "a2", name: "web", namespace: "default"), in: namespaced)
          let events = try await take(2, from: podEvents)
          #expect(events.map(describe) == ["deleted a certain", "added a2 nginx"])
          #expect(podCache.object(uid: "a") == nil)
          #expect(podCache.object(namespace: "default", name: "web")?.metadata.uid == "a2")
          #expect(podCache.zeroValueScan().isEmpty)
        }
      }
    }
  }

  /// Red line "zero-value keys": values that are not valid objects are never cached (so nothing
  /// can write them back), and a valid object overwritten by one leaves the cache.
  @Test(arguments: BackendKind.allCases)
  func zeroValueObjectsAreNeverCached(kind: BackendKind) async throws {
    try await withBackend(kind) { backend in
      let layout = uniqueLayout()
      try await backend.put(TestObject(uid: "good", name: "good"), in: layout)
      let bad: [(String, Data)] = [
        ("empty", Data()),
        ("nojson", Data("not json".utf8)),
        ("nouid", TestObject(uid: "", name: "nouid").json),
        ("noname", Data(#"{"metadata":{"uid":"x","namespace":"default"}}"#.utf8)),
        ("mismatch", TestObject(uid: "m", name: "other-name").json),
        ("nullmeta", Data(#"{"metadata":null}"#.utf8)),
      ]
      for (name, value) in bad {
        _ = try await backend.put(layout.key(namespace: "default", name: name), value: value, lease: nil)
      }
      let metrics = RecordingMetrics()
      let informer = try Informer(layout: layout, backend: backend, logger: quietLogger, metricsFactory: metrics)
      let events = informer.addHandler("test")
      try await whileRunning(informer) {
        let cache = try await informer.waitForSync()
        #expect(cache.count == 1)
        let resource = [("resource", layout.plural)]
        #expect(metrics.value("capstan_cache_zero_value_keys_total", resource) == 5)  // empty, no uid, no name, mismatch, null metadata
        #expect(metrics.value("capstan_cache_decode_errors_total", resource) == 1)  // not JSON
        #expect(try await take(1, from: events).map(describe) == ["added good nginx"])
        // Overwriting the good object with a zero value removes it: inferred deletion.
        _ = try await backend.put(layout.key(namespace: "default", name: "good"), value: Data("{}".utf8), lease: nil)
        #expect(try await take(1, from: events).map(describe) == ["deleted good inferred"])
        #expect(cache.count == 0)
        #expect(cache.zeroValueScan().isEmpty)
        #expect(cache.stats().objects == 0)
      }
    }
  }

  /// A document copied under another key with the same UID is not cached: the first key keeps
  /// the UID, deleting the copy changes nothing, and the cache keeps equalling the valid objects.
  @Test func aCopiedUIDUnderAnotherKeyIsRejected() async throws {
    let backend = MemoryBackend()
    let layout = uniqueLayout()
    let informer = try Informer(layout: layout, backend: backend, logger: quietLogger)
    let events = informer.addHandler("test")
    try await whileRunning(informer) {
      let cache = try await informer.waitForSync()
      try await backend.put(TestObject(uid: "u", name: "a"), in: layout)
      var copy = TestObject(uid: "u", name: "b")
      copy.spec.image = "copy"
      let copied = try await backend.put(copy, in: layout)
      try await informer.waitUntil(revision: copied)
      #expect(cache.object(uid: "u")?.metadata.name == "a")
      #expect(cache.object(namespace: "default", name: "b") == nil)
      let deleted = try await backend.delete("b", in: layout)
      try await informer.waitUntil(revision: deleted)
      #expect(cache.object(uid: "u")?.metadata.name == "a")
      #expect(cache.zeroValueScan().isEmpty)
      #expect(try await take(1, from: events).map(describe) == ["added u nginx"])
      #expect(events.backlog == 0)
    }
  }

  /// A slow handler neither blocks the watch nor other handlers; its backlog is bounded by the
  /// number of distinct objects, and it ends at the newest state.
  @Test func aSlowHandlerNeverBlocksOthers() async throws {
    let backend = MemoryBackend()
    let layout = uniqueLayout()
    let informer = try Informer(layout: layout, backend: backend, logger: quietLogger)
    let slow = informer.addHandler("slow")
    let fast = informer.addHandler("fast")
    try await whileRunning(informer) {
      _ = try await informer.waitForSync()
      var last: Int64 = 0
      for round in 0..<200 {
        for index in 0..<10 {
          last = try await backend.put(TestObject(uid: "u\(index)", name: "o\(index)", image: "v\(round)"), in: layout)
        }
      }
      try await informer.waitUntil(revision: last)
      // The fast handler keeps up (coalescing may merge what it has not read yet).
      var latest: [String: String] = [:]
      for await event in fast {
        latest[event.object.metadata.uid] = describe(event)
        if latest.count == 10, latest.values.allSatisfy({ $0.hasSuffix("v199") }) { break }
      }
      // The slow handler, which never read, holds one pending event per object: its first
      // sight of each object, at the newest state.
      #expect(slow.backlog == 10)
      let pending = try await take(10, from: slow)
      #expect(Set(pending.map(describe)) == Set((0..<10).map { "added u\($0) v199" }))
    }
  }

  @Test func transformStripsFieldsBeforeCaching() async throws {
    let backend = MemoryBackend()
    let layout = uniqueLayout()
    try await backend.put(TestObject(uid: "u1", name: "a", image: "a-very-long-image-name"), in: layout)
    let strip: ObjectIngestor.Transform = { _, raw in
      guard var object = try? JSONDecoder().decode(TestObject.self, from: raw) else { return }
      object.spec.image = ""
      raw = object.json
    }
    let informer = try Informer(
      layout: layout, backend: backend, configuration: InformerConfiguration(transform: strip), logger: quietLogger)
    try await whileRunning(informer) {
      let cache = try await informer.waitForSync()
      let cached = try #require(cache.object(uid: "u1"))
      #expect(try JSONDecoder().decode(TestObject.self, from: cached.raw).spec.image == "")
    }
  }

  @Test func invalidConfigurationIsRejectedUpFront() {
    #expect(throws: InformerError.self) {
      _ = try Informer(
        layout: uniqueLayout(), backend: MemoryBackend(), configuration: InformerConfiguration(pageSize: 0))
    }
  }
}
