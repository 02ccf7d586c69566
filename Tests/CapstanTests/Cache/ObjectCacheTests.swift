@testable import Capstan
import CapstanTestSupport
import Foundation
import Testing

@Suite struct ObjectCacheTests {
  let metrics = RecordingMetrics()
  static let app = CacheIndex.label("app")
  static let image = CacheIndex.custom(name: "image") { object in
    (try? object.decode(as: TestPod.self)).map { [$0.spec.image] } ?? []
  }

  func podCache(shards: Int = 16) -> ObjectCache {
    ObjectCache(
      layout: CacheFixtures.pods, indexes: [Self.app, .ownerUID, Self.image], shardCount: shards,
      metricsFactory: self.metrics)
  }

  func metric(_ label: String, _ plural: String = "pods") -> Double? { self.metrics.value(label, [("resource", plural)]) }

  func uids(_ objects: [CachedObject]) -> [String] { objects.map(\.uid).sorted() }

  @Test func looksUpByUIDNameKeyIndexAndNamespace() throws {
    let cache = self.podCache()
    let web = CacheFixtures.pod(uid: "u1", name: "web", labels: ["app": "shop"], owners: ["o1"])
    let db = CacheFixtures.pod(uid: "u2", name: "db", labels: ["app": "shop"], owners: ["o1", "o2"], image: "postgres")
    let job = CacheFixtures.pod(uid: "u3", namespace: "batch", name: "job", owners: ["o2"])
    for object in [web, db, job] { #expect(cache.upsert(object) == .added(object)) }

    #expect(cache.count == 3)
    #expect(cache.object(uid: "u1") == web)
    #expect(cache.object(uid: "nope") == nil)
    #expect(cache.object(namespace: "default", name: "db") == db)
    #expect(cache.object(namespace: "batch", name: "db") == nil)
    #expect(cache.object(key: "/registry/pods/batch/job") == job)
    #expect(cache.object(key: "/registry/nodes/job") == nil)
    #expect(self.uids(cache.allObjects()) == ["u1", "u2", "u3"])
    #expect(self.uids(cache.objects(inNamespace: "default")) == ["u1", "u2"])
    #expect(self.uids(cache.objects(inNamespace: "batch")) == ["u3"])
    #expect(cache.objects(inNamespace: "none").isEmpty)
    #expect(self.uids(try cache.objects(in: Self.app, value: "shop")) == ["u1", "u2"])
    #expect(try cache.objects(in: Self.app, value: "other").isEmpty)
    #expect(self.uids(try cache.objects(in: .ownerUID, value: "o1")) == ["u1", "u2"])
    #expect(try cache.uids(in: .ownerUID, value: "o2").sorted() == ["u2", "u3"])
    #expect(try cache.count(in: .ownerUID, value: "o2") == 2)
    #expect(self.uids(try cache.objects(in: Self.image, value: "nginx")) == ["u1", "u3"])
    #expect(cache.indexNames == ["label:app", "ownerUID", "image"])
    #expect(cache.zeroValueScan().isEmpty)

    let unknown = #expect(throws: CacheError.self) { try cache.objects(in: .label("tier"), value: "x") }
    #expect(unknown?.code == .unknownIndex)
    #expect(self.metric("capstan_cache_objects") == 3)
    #expect(self.metric("capstan_cache_bytes") == Double(web.raw.count + db.raw.count + job.raw.count))
  }

  @Test func sameNamesAcrossNamespacesAndScopesNeverCollide() {
    let pods = self.podCache()
    let nodes = ObjectCache(layout: CacheFixtures.nodes, metricsFactory: self.metrics)
    let a = CacheFixtures.pod(uid: "u1", namespace: "a", name: "web")
    let b = CacheFixtures.pod(uid: "u2", namespace: "b", name: "web")
    let node = CacheFixtures.node(uid: "u3", name: "web")
    #expect(pods.upsert(a) == .added(a))
    #expect(pods.upsert(b) == .added(b))
    #expect(nodes.upsert(node) == .added(node))
    #expect(pods.object(namespace: "a", name: "web") == a)
    #expect(pods.object(namespace: "b", name: "web") == b)
    #expect(pods.object(namespace: "", name: "web") == nil)
    #expect(nodes.object(namespace: "", name: "web") == node)
    #expect(nodes.object(key: "/registry/nodes/web") == node)
    #expect(self.uids(nodes.objects(inNamespace: "")) == ["u3"])
    #expect(nodes.objects(inNamespace: "a").isEmpty)
    // Objects of the other scope are refused, not filed under a colliding name.
    #expect(nodes.upsert(a) == .rejected(.keyMismatch(namespace: "a", name: "web")))
    #expect(pods.upsert(node) == .rejected(.keyMismatch(namespace: "", name: "web")))
    #expect(pods.count == 2 && nodes.count == 1)
    #expect(self.metric("capstan_cache_name_collisions_total") == 0)
    #expect(self.metric("capstan_cache_name_collisions_total", "nodes") == 0)
    #expect(pods.zeroValueScan().isEmpty && nodes.zeroValueScan().isEmpty)
  }

  @Test func updatesMoveIndexEntriesAndTheSameRevisionIsUnchanged() throws {
    let cache = self.podCache()
    let v1 = CacheFixtures.pod(uid: "u1", name: "web", revision: 5, labels: ["app": "shop"], owners: ["o1"])
    let v2 = CacheFixtures.pod(uid: "u1", name: "web", revision: 6, labels: ["app": "blog"], owners: ["o2"])
    cache.upsert(v1)
    #expect(cache.upsert(v1) == .unchanged)
    #expect(cache.upsert(v2) == .updated(old: v1, new: v2))
    #expect(try cache.objects(in: Self.app, value: "shop").isEmpty)
    #expect(try cache.objects(in: Self.app, value: "blog") == [v2])
    #expect(try cache.objects(in: .ownerUID, value: "o1").isEmpty)
    #expect(try cache.objects(in: .ownerUID, value: "o2") == [v2])
    #expect(cache.stats().indexes["label:app"] == .init(keys: 1, entries: 1))
    #expect(cache.zeroValueScan().isEmpty)
  }

  @Test func aNewUIDUnderATakenNameReplacesTheOldObjectAndIsCounted() throws {
    let cache = self.podCache()
    let old = CacheFixtures.pod(uid: "u1", name: "web", revision: 5, labels: ["app": "shop"], owners: ["o1"])
    let new = CacheFixtures.pod(uid: "u2", name: "web", revision: 9, labels: ["app": "shop"])
    cache.upsert(old)
    #expect(cache.upsert(new) == .replaced(old: old, new: new))
    #expect(cache.object(uid: "u1") == nil)
    #expect(cache.object(namespace: "default", name: "web") == new)
    #expect(try cache.objects(in: Self.app, value: "shop") == [new])
    #expect(try cache.objects(in: .ownerUID, value: "o1").isEmpty)
    #expect(cache.count == 1)
    #expect(self.metric("capstan_cache_name_collisions_total") == 1)
    #expect(cache.zeroValueScan().isEmpty)
  }

  @Test func removingEverythingLeavesNoIndexMemory() throws {
    let cache = self.podCache(shards: 4)
    var objects: [CachedObject] = []
    for index in 0..<300 {
      objects.append(
        CacheFixtures.pod(
          uid: "uid-\(index)", namespace: "ns\(index % 7)", name: "pod-\(index)",
          labels: index % 3 == 0 ? [:] : ["app": "app\(index % 5)"],
          owners: (0..<(index % 3)).map { "owner-\(index / 10)-\($0)" }, image: "image\(index % 4)"))
    }
    for object in objects { cache.upsert(object) }
    let full = cache.stats()
    #expect(full.objects == 300 && full.names == 300)
    #expect(full.rawBytes == objects.reduce(0) { $0 + $1.raw.count })
    #expect(full.indexes["namespace"] == .init(keys: 7, entries: 300))
    #expect(full.indexes["label:app"] == .init(keys: 5, entries: 200))
    #expect(full.indexes["image"] == .init(keys: 4, entries: 300))
    #expect(full.indexes["ownerUID"]?.entries == 300)
    #expect(cache.zeroValueScan().isEmpty)

    for (index, object) in objects.enumerated() {
      let removed: CachedObject? =
        switch index % 3 {
        case 0: cache.remove(uid: object.uid)
        case 1: cache.remove(namespace: object.metadata.namespace, name: object.metadata.name)
        default: cache.remove(key: object.key)
        }
      #expect(removed == object)
    }
    #expect(cache.remove(uid: "uid-1") == nil)
    #expect(cache.remove(key: "/registry/pods/ns1/pod-1") == nil)
    let empty = cache.stats()
    #expect(empty.isEmpty, "\(empty)")
    #expect(empty.indexes.count == 4)
    #expect(cache.count == 0)
    #expect(self.metric("capstan_cache_objects") == 0)
    #expect(self.metric("capstan_cache_bytes") == 0)
    #expect(cache.zeroValueScan().isEmpty)
  }

  @Test func sweepRemovesWhatTheRelistDidNotConfirm() {
    let cache = self.podCache()
    let a = CacheFixtures.pod(uid: "a", name: "a")
    let b = CacheFixtures.pod(uid: "b", name: "b")
    let c = CacheFixtures.pod(uid: "c", name: "c")
    for object in [a, b, c] { cache.upsert(object) }

    let generation = cache.nextRelistGeneration()
    let newerC = CacheFixtures.pod(uid: "c", name: "c", revision: 2)
    #expect(cache.upsert(a, mark: generation) == .unchanged)
    #expect(cache.upsert(newerC, mark: generation) == .updated(old: c, new: newerC))
    let d = CacheFixtures.pod(uid: "d", name: "d")
    cache.upsert(d)  // written while the relist runs: confirmed by being newer
    #expect(cache.sweep(unmarkedSince: generation) == [b])
    #expect(self.uids(cache.allObjects()) == ["a", "c", "d"])
    #expect(cache.sweep(unmarkedSince: generation).isEmpty)
    #expect(cache.zeroValueScan().isEmpty)

    let next = cache.nextRelistGeneration()
    #expect(next > generation)
    #expect(self.uids(cache.sweep(unmarkedSince: next)) == ["a", "c", "d"])
    #expect(cache.stats().isEmpty)
  }

  @Test func refusesInvalidObjects() {
    let cache = self.podCache()
    let valid = CacheFixtures.pod(uid: "u1", name: "web")
    var noUID = valid
    noUID.metadata.uid = ""
    var noName = valid
    noName.metadata.name = ""
    var noBytes = valid
    noBytes.raw = Data()
    var wrongKey = valid
    wrongKey.key = "/registry/pods/default/other"
    #expect(cache.upsert(noUID) == .rejected(.emptyUID))
    #expect(cache.upsert(noName) == .rejected(.emptyName))
    #expect(cache.upsert(noBytes) == .rejected(.emptyPayload))
    #expect(cache.upsert(wrongKey) == .rejected(.keyMismatch(namespace: "default", name: "web")))
    #expect(cache.stats().isEmpty)
  }

  @Test func zeroValueScanCatchesPlantedBadEntries() throws {
    let cache = self.podCache()
    cache.upsert(CacheFixtures.pod(uid: "u1", name: "web", labels: ["app": "shop"]))
    #expect(cache.zeroValueScan().isEmpty)

    var nameless = CacheFixtures.pod(uid: "u2", name: "db")
    nameless.metadata.name = ""
    cache.plantForTesting(nameless)
    cache.plantIndexEntryForTesting(index: "label:app", value: "shop", uid: "ghost")
    let web = try #require(cache.object(uid: "u1"))
    #expect(
      Set(cache.zeroValueScan()) == [
        .invalidObject(uid: "u2", key: "/registry/pods/default/db", reason: .emptyName),
        .nameIndexMissing(uid: "u2", name: "default/"),
        .indexEntryMissing(index: "namespace", value: "default", uid: "u2"),
        .indexEntryMissing(index: "image", value: "nginx", uid: "u2"),
        .indexEntryDangling(index: "label:app", value: "shop", uid: "ghost"),
        .countMismatch(statistic: "objects", recorded: 1, actual: 2),
        .countMismatch(statistic: "raw bytes", recorded: web.raw.count, actual: web.raw.count + nameless.raw.count),
      ])
  }

  @Test func zeroValueScanCatchesDanglingNamesAndEmptyBuckets() {
    let cache = self.podCache()
    cache.upsert(CacheFixtures.pod(uid: "u1", name: "web", labels: ["app": "shop"]))
    cache.plantNameForTesting(namespace: "default", name: "gone", uid: "u9")
    cache.plantNameForTesting(namespace: "default", name: "alias", uid: "u1")
    cache.plantEmptyIndexBucketForTesting(index: "label:app", value: "empty")
    #expect(
      Set(cache.zeroValueScan()) == [
        .nameIndexDangling(name: "default/gone", uid: "u9"),
        .nameIndexDangling(name: "default/alias", uid: "u1"),
        .emptyIndexBucket(index: "label:app", value: "empty"),
      ])
  }

  @Test func readsAreValues() throws {
    let cache = self.podCache()
    let original = CacheFixtures.pod(uid: "u1", name: "web", labels: ["app": "shop"])
    cache.upsert(original)
    var copy = try #require(cache.object(uid: "u1"))
    copy.metadata.labels["app"] = "changed"
    copy.metadata.name = "changed"
    copy.raw.append(contentsOf: [1, 2, 3])
    var listed = cache.allObjects()
    listed[0].metadata.uid = "changed"
    #expect(cache.object(uid: "u1") == original)
    #expect(try cache.objects(in: Self.app, value: "shop") == [original])
    #expect(cache.zeroValueScan().isEmpty)
  }

  @Test func concurrentReadersAndOneWriter() async throws {
    let cache = self.podCache(shards: 4)
    let names = 64
    let rounds = 1_500
    await withTaskGroup(of: Int.self) { group in
      group.addTask {
        for round in 0..<rounds {
          let slot = round % names
          if round % 5 == 4 {
            cache.remove(namespace: "default", name: "pod-\(slot)")
          } else {
            // Reusing a name with a new UID every other lap exercises replacement.
            cache.upsert(
              CacheFixtures.pod(
                uid: "uid-\(slot)-\(round / (2 * names))", name: "pod-\(slot)", revision: Int64(round + 1),
                labels: ["app": "app\(round % 3)"], owners: ["owner-\(slot % 4)"]))
          }
        }
        return 0
      }
      for reader in 0..<2 {
        group.addTask {
          var seen = 0
          for round in 0..<rounds {
            let slot = (round * 7 + reader) % names
            if let object = cache.object(namespace: "default", name: "pod-\(slot)") {
              seen += 1
              #expect(object.metadata.name == "pod-\(slot)")
              #expect(cache.object(uid: object.uid)?.uid ?? object.uid == object.uid)
            }
            for object in (try? cache.objects(in: Self.app, value: "app\(round % 3)")) ?? [] {
              #expect(object.metadata.labels["app"] != nil)
            }
            seen += cache.objects(inNamespace: "default").count
          }
          return seen
        }
      }
      for await _ in group {}
    }
    #expect(cache.zeroValueScan().isEmpty)
    #expect(cache.count == cache.allObjects().count)
    for object in cache.allObjects() { cache.remove(uid: object.uid) }
    #expect(cache.stats().isEmpty)
  }

  @Test func racingWritersKeepTheInvariants() async {
    let cache = self.podCache(shards: 2)
    await withTaskGroup(of: Void.self) { group in
      for writer in 0..<2 {
        group.addTask {
          for round in 0..<800 {
            let slot = (round * 3 + writer) % 40
            if round % 7 == 6 {
              cache.remove(namespace: "default", name: "pod-\(slot)")
            } else {
              // Both writers claim the same names with their own UIDs.
              cache.upsert(
                CacheFixtures.pod(
                  uid: "w\(writer)-\(slot)", name: "pod-\(slot)", revision: Int64(round + 1),
                  labels: ["app": "app\(round % 2)"], owners: ["owner-\(writer)"]))
            }
          }
        }
      }
    }
    #expect(cache.zeroValueScan().isEmpty)
    for object in cache.allObjects() { cache.remove(uid: object.uid) }
    #expect(cache.stats().isEmpty)
  }
}
