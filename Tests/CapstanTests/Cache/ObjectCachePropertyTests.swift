@testable import Capstan
import CapstanTestSupport
import Foundation
import PropertyBased
import Testing

/// Random sequences of upserts, updates, removals, name reuse with new UIDs and relists, checked
/// against a plain `[uid: CachedObject]` model.
@Suite struct ObjectCachePropertyTests {
  static let app = CacheIndex.label("app")
  /// Repeats values on purpose: duplicates must count once.
  static let tags = CacheIndex.custom(name: "tags") { object in
    [object.metadata.name, object.metadata.name] + object.metadata.ownerReferences.map(\.uid)
  }
  static let names = ["a", "b", "c", "d", "e", "f"]
  static let namespaces = ["ns0", "ns1"]
  static let ownerSets = [[], ["o1"], ["o1", "o2"], ["o3"]]
  static let labelValues: [String?] = [nil, "x", "y"]

  /// The reference: objects by UID; a name belongs to at most one UID.
  struct Model {
    var objects: [String: CachedObject] = [:]
    var marks: [String: UInt64] = [:]
    var latestMark: UInt64 = 0

    func holder(namespace: String, name: String) -> String? {
      self.objects.values.first { $0.metadata.namespace == namespace && $0.metadata.name == name }?.uid
    }

    mutating func upsert(_ new: CachedObject, mark: UInt64? = nil) -> CacheChange {
      if let mark { self.latestMark = max(self.latestMark, mark) }
      let stamp = mark ?? self.latestMark
      let old = self.objects[new.uid]
      if let old, old.metadata.resourceVersion == new.metadata.resourceVersion, old.key == new.key {
        self.marks[new.uid] = stamp
        return .unchanged
      }
      if let old, old.key != new.key, self.marks[new.uid] == stamp {
        // The UID is confirmed under another key: a copied document is refused.
        return .rejected(.duplicateUID(heldBy: old.key))
      }
      var displaced: CachedObject?
      if let holder = self.holder(namespace: new.metadata.namespace, name: new.metadata.name), holder != new.uid {
        displaced = self.remove(uid: holder)
      }
      self.objects[new.uid] = new
      self.marks[new.uid] = stamp
      if let displaced { return .replaced(old: displaced, new: new) }
      if let old { return .updated(old: old, new: new) }
      return .added(new)
    }

    mutating func remove(uid: String) -> CachedObject? {
      self.marks[uid] = nil
      return self.objects.removeValue(forKey: uid)
    }

    mutating func sweep(unmarkedSince generation: UInt64) -> [CachedObject] {
      let stale = self.marks.filter { $0.value < generation }.keys
      return stale.compactMap { self.remove(uid: $0) }
    }
  }

  static func object(uid: String, namespace: String, name: String, revision: Int64, seed: Int) -> CachedObject {
    var labels: [String: String] = [:]
    if let value = Self.labelValues[seed % 3] { labels["app"] = value }
    return CacheFixtures.pod(
      uid: uid, namespace: namespace, name: name, revision: revision, labels: labels,
      owners: Self.ownerSets[(seed / 3) % 4])
  }

  @Test func matchesAReferenceModel() async {
    await propertyCheck(count: 150, input: Gen.int(in: 0...1_000_000).array(of: 0...60), Gen.int(in: 0...2)) {
      operations, shardChoice in
      let cache = ObjectCache(
        layout: CacheFixtures.pods, indexes: [Self.app, .ownerUID, Self.tags], shardCount: [1, 2, 16][shardChoice],
        metricsFactory: RecordingMetrics())
      var model = Model()
      var nextUID = 0
      var revision: Int64 = 1

      for operation in operations {
        let choice = operation / 8
        let sortedUIDs = model.objects.keys.sorted()
        let existing = sortedUIDs.isEmpty ? nil : model.objects[sortedUIDs[choice % sortedUIDs.count]]
        let name = Self.names[choice % Self.names.count]
        let namespace = Self.namespaces[(choice / 7) % 2]
        revision += 1
        switch operation % 8 {
        case 0, 1:  // a new UID, perhaps under a taken name
          nextUID += 1
          let new = Self.object(uid: "u\(nextUID)", namespace: namespace, name: name, revision: revision, seed: choice)
          #expect(cache.upsert(new) == model.upsert(new))
        case 2:  // a newer version of an existing object
          guard let old = existing else { continue }
          let new = Self.object(
            uid: old.uid, namespace: old.metadata.namespace, name: old.metadata.name, revision: revision, seed: choice)
          #expect(cache.upsert(new) == model.upsert(new))
        case 3:  // the same version again
          guard let old = existing else { continue }
          #expect(cache.upsert(old) == .unchanged)
          #expect(model.upsert(old) == .unchanged)
        case 4:  // delete by UID, sometimes one that is not there
          let uid = choice % 5 == 0 ? "missing" : existing?.uid ?? "missing"
          #expect(cache.remove(uid: uid) == model.remove(uid: uid))
        case 5:  // a watch delete: by name
          let expected = model.holder(namespace: namespace, name: name).flatMap { model.remove(uid: $0) }
          #expect(cache.remove(namespace: namespace, name: name) == expected)
        case 6:  // a relist that confirms some objects, some of them changed
          let generation = cache.nextRelistGeneration()
          for (position, uid) in sortedUIDs.enumerated() where (choice + position) % 3 != 0 {
            guard var object = model.objects[uid] else { continue }
            if position % 2 == 1 {
              object = Self.object(
                uid: uid, namespace: object.metadata.namespace, name: object.metadata.name, revision: revision,
                seed: choice + position)
            }
            #expect(cache.upsert(object, mark: generation) == model.upsert(object, mark: generation))
          }
          let swept = cache.sweep(unmarkedSince: generation)
          #expect(swept.map(\.uid).sorted() == model.sweep(unmarkedSince: generation).map(\.uid).sorted())
        default:  // an existing UID shows up under another name: refused, unless a relist moves it
          guard let old = existing else { continue }
          let new = Self.object(uid: old.uid, namespace: namespace, name: name, revision: revision, seed: choice)
          #expect(cache.upsert(new) == model.upsert(new))
        }
      }
      self.check(cache, against: model)

      for uid in model.objects.keys { #expect(cache.remove(uid: uid) != nil) }
      let stats = cache.stats()
      #expect(stats.isEmpty, "\(stats)")
      #expect(cache.zeroValueScan().isEmpty)
    }
  }

  func check(_ cache: ObjectCache, against model: Model) {
    let expected = model.objects.values.sorted { $0.uid < $1.uid }
    #expect(cache.allObjects().sorted { $0.uid < $1.uid } == expected)
    #expect(cache.count == model.objects.count)
    for object in expected {
      #expect(cache.object(uid: object.uid) == object)
      #expect(cache.object(key: object.key) == object)
    }
    for namespace in Self.namespaces {
      #expect(Set(cache.objects(inNamespace: namespace)) == Set(expected.filter { $0.metadata.namespace == namespace }))
      for name in Self.names {
        let holder = model.holder(namespace: namespace, name: name)
        #expect(cache.object(namespace: namespace, name: name)?.uid == holder)
      }
    }
    func lookup(_ index: CacheIndex, _ value: String) -> Set<CachedObject> {
      Set((try? cache.objects(in: index, value: value)) ?? [])
    }
    for case let value? in Self.labelValues {
      #expect(lookup(Self.app, value) == Set(expected.filter { $0.metadata.labels["app"] == value }))
    }
    for owner in ["o1", "o2", "o3"] {
      let owned = Set(expected.filter { $0.metadata.ownerReferences.contains { $0.uid == owner } })
      #expect(lookup(.ownerUID, owner) == owned)
      #expect(lookup(Self.tags, owner) == owned)
    }
    for name in Self.names {
      #expect(lookup(Self.tags, name) == Set(expected.filter { $0.metadata.name == name }))
    }
    let stats = cache.stats()
    #expect(stats.objects == expected.count && stats.names == expected.count)
    #expect(stats.rawBytes == expected.reduce(0) { $0 + $1.raw.count })
    #expect(stats.indexes["namespace"]?.entries == expected.count)
    #expect(stats.indexes["label:app"]?.entries == expected.filter { $0.metadata.labels["app"] != nil }.count)
    #expect(stats.indexes["tags"]?.entries == expected.reduce(0) { $0 + 1 + $1.metadata.ownerReferences.count })
    #expect(cache.zeroValueScan().isEmpty)
  }
}
