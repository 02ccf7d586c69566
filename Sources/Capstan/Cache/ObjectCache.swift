import Foundation
import Metrics
import Synchronization

/// What an ``ObjectCache`` mutation did, for the informer to turn into events.
public enum CacheChange: Sendable, Hashable {
  /// A new UID was cached.
  case added(CachedObject)
  /// The UID was cached; its entry now holds `new`. (`new` has another name than `old` only when
  /// a relist finds the UID under a new key and the old one unconfirmed: the entry moves.)
  case updated(old: CachedObject, new: CachedObject)
  /// Another UID (`old`) held the namespace/name: it was removed, then `new` was added. Deliver
  /// as a delete of `old` and an add of `new`, never as an update. Counted as
  /// `capstan_cache_name_collisions_total`. (When a relist moves `new`'s UID here from another
  /// name, that entry's previous version is not reported.)
  case replaced(old: CachedObject, new: CachedObject)
  /// The same UID at the same resourceVersion and key is already cached: nothing to deliver.
  case unchanged
  /// The object was not cached: it breaks the cache's invariants (empty UID, name or payload, key
  /// not matching its metadata — ``ObjectIngestor`` rejects these before they get here), or its
  /// UID is already confirmed under another key (``IngestRejectionReason/duplicateUID(heldBy:)``).
  case rejected(IngestRejectionReason)
}

/// Sizes of an ``ObjectCache``, to watch memory and prove that deletes free everything.
public struct ObjectCacheStats: Sendable, Hashable {
  /// The entries of one secondary index.
  public struct Index: Sendable, Hashable {
    /// Distinct index values.
    public var keys: Int
    /// (value, object) pairs.
    public var entries: Int

    public init(keys: Int, entries: Int) {
      self.keys = keys
      self.entries = entries
    }
  }

  /// Cached objects.
  public var objects: Int
  /// The sum of their raw JSON sizes.
  public var rawBytes: Int
  /// Entries of the unique namespace/name index.
  public var names: Int
  /// Each secondary index by name (including the built-in `namespace` index of namespaced kinds).
  public var indexes: [String: Index]

  public init(objects: Int, rawBytes: Int, names: Int, indexes: [String: Index]) {
    self.objects = objects
    self.rawBytes = rawBytes
    self.names = names
    self.indexes = indexes
  }

  /// Whether the cache holds nothing at all: no object, no byte, no index key or entry.
  public var isEmpty: Bool {
    self.objects == 0 && self.rawBytes == 0 && self.names == 0
      && self.indexes.values.allSatisfy { $0.keys == 0 && $0.entries == 0 }
  }
}

/// Something ``ObjectCache/zeroValueScan()`` found wrong. None should ever be found.
public enum CacheInvariantViolation: Sendable, Hashable, CustomStringConvertible {
  /// A cached object that must not be cached (empty UID, name or payload, key mismatch).
  case invalidObject(uid: String, key: String, reason: IngestRejectionReason)
  /// An object stored under another UID than its own, or in the wrong shard.
  case misfiled(storedUnder: String, uid: String)
  /// An object whose namespace/name does not lead back to it in the name index.
  case nameIndexMissing(uid: String, name: String)
  /// A name index entry pointing to a missing object, or to one with another name.
  case nameIndexDangling(name: String, uid: String)
  /// An object missing from a secondary index under one of its values.
  case indexEntryMissing(index: String, value: String, uid: String)
  /// A secondary index entry pointing to a missing object, or to one without that value.
  case indexEntryDangling(index: String, value: String, uid: String)
  /// An index value with no objects left (should have been removed).
  case emptyIndexBucket(index: String, value: String)
  /// A running count that disagrees with what the cache holds.
  case countMismatch(statistic: String, recorded: Int, actual: Int)

  public var description: String {
    switch self {
    case .invalidObject(let uid, let key, let reason): "object \(uid) at \(key) is invalid: \(reason)"
    case .misfiled(let storedUnder, let uid): "object \(uid) is stored under \(storedUnder)"
    case .nameIndexMissing(let uid, let name): "object \(uid) is not found by its name \(name)"
    case .nameIndexDangling(let name, let uid): "name \(name) points to \(uid), which does not hold it"
    case .indexEntryMissing(let index, let value, let uid): "object \(uid) is missing from \(index)=\(value)"
    case .indexEntryDangling(let index, let value, let uid): "\(index)=\(value) lists \(uid), which it does not fit"
    case .emptyIndexBucket(let index, let value): "\(index)=\(value) is an empty entry"
    case .countMismatch(let statistic, let recorded, let actual): "\(statistic) is \(recorded), actually \(actual)"
    }
  }
}

/// The objects of one kind, by UID, with a unique namespace/name index and secondary indexes.
///
/// **Representation.** Each object is a ``CachedObject``: its raw JSON and its extracted metadata.
/// Reads return values (copies share storage), never references into the cache.
///
/// **Identity.** The primary key is the UID. `namespace/name` is a unique index: when a second UID
/// claims a taken name, the first is removed and ``CacheChange/replaced(old:new:)`` says so. One
/// cache holds one ``ResourceLayout``, so cluster-scoped and namespaced objects never share it.
///
/// **Concurrency.** Objects live in shards picked by FNV-1a of the UID (16 by default), each
/// behind its own `Mutex`; the name index and every secondary index are sharded the same way by
/// the hash of their key. A read locks only the shards it reads, one at a time, and never takes a
/// global lock, so readers on different shards never wait for each other. Mutations (`upsert`,
/// `remove`, `sweep`) first take one writer `Mutex` that serialises them: the informer is the one
/// writer of a cache, but racing writers cannot break an invariant. A mutation changes the object
/// shard and the index shards one after another (an add writes the object before its index
/// entries; a remove drops index entries before the object), so a read racing a write may see the
/// write half applied across shards — an index lookup then skips an object already gone — but it
/// never sees a torn object and never crashes.
///
/// **Relist in place.** ``nextRelistGeneration()``, then ``upsert(_:mark:)`` every listed object,
/// then ``sweep(unmarkedSince:)`` removes and returns what the list did not confirm: no second map
/// is built.
///
/// Metrics (dimension `resource` = plural): gauges `capstan_cache_objects`, `capstan_cache_bytes`;
/// counter `capstan_cache_name_collisions_total`.
public final class ObjectCache: Sendable {
  /// The kind this cache holds.
  public let layout: ResourceLayout
  private let validator: ObjectValidator

  /// An object table slot: the object (its UID is the key), its relist mark and the UID's hash.
  struct ObjectEntry: Sendable, SlotEntry {
    var object: CachedObject
    /// The relist generation that last confirmed the object.
    var mark: UInt64
    let slotHash: UInt64
  }

  /// A name table slot: the object the name leads to (its namespace/name is the key; its UID is
  /// the value) and the hash of the name.
  struct NameEntry: Sendable, SlotEntry {
    var object: CachedObject
    let slotHash: UInt64
  }

  private struct WriterState: Sendable {
    var latestMark: UInt64 = 0
  }

  private let shardMask: Int
  private let objectShards: [LockedShard<SlotTable<ObjectEntry>>]
  private let nameShards: [LockedShard<SlotTable<NameEntry>>]
  /// The built-in namespace index first (namespaced kinds only), then the user's.
  private let indexes: [IndexStorage]
  private let writer = Mutex(WriterState())
  private let objectCount = Atomic<Int>(0)
  private let byteCount = Atomic<Int>(0)
  private let objectsGauge: Gauge
  private let bytesGauge: Gauge
  private let nameCollisions: Counter

  /// A cache for `layout` with `indexes`.
  ///
  /// - Parameters:
  ///   - indexes: secondary indexes; names must be unique and not `namespace` (built in for
  ///     namespaced kinds; a programming error otherwise).
  ///   - shardCount: shards for objects and for each index (rounded up to a power of two).
  ///   - expectedObjectCount: capacity reserved up front, spread over the shards.
  ///   - metricsFactory: where the metrics live (default: the global `MetricsSystem.factory`).
  public init(
    layout: ResourceLayout, indexes: [CacheIndex] = [], shardCount: Int = 16, expectedObjectCount: Int = 0,
    metricsFactory: (any MetricsFactory)? = nil
  ) {
    var names = Set<String>()
    for index in indexes {
      precondition(index.name != CacheIndex.namespace.name, "the index name \"namespace\" is reserved")
      precondition(names.insert(index.name).inserted, "two cache indexes are named \"\(index.name)\"")
    }
    var shards = 1
    while shards < max(1, shardCount) { shards <<= 1 }
    self.layout = layout
    self.validator = ObjectValidator(layout: layout)
    self.shardMask = shards - 1
    let perShard = expectedObjectCount > 0 ? expectedObjectCount / shards + 1 : 0
    self.objectShards = (0..<shards).map { _ in LockedShard(SlotTable(minimumCapacity: perShard)) }
    self.nameShards = (0..<shards).map { _ in LockedShard(SlotTable(minimumCapacity: perShard)) }
    self.indexes = ((layout.isNamespaced ? [CacheIndex.namespace] : []) + indexes).map {
      IndexStorage(index: $0, shardCount: shards)
    }
    let factory = metricsFactory ?? MetricsSystem.factory
    let dimensions = [("resource", layout.plural)]
    self.objectsGauge = Gauge(label: "capstan_cache_objects", dimensions: dimensions, factory: factory)
    self.bytesGauge = Gauge(label: "capstan_cache_bytes", dimensions: dimensions, factory: factory)
    self.nameCollisions = Counter(
      label: "capstan_cache_name_collisions_total", dimensions: dimensions, factory: factory)
    self.objectsGauge.record(0)
    self.bytesGauge.record(0)
  }

  /// The secondary indexes, as given (without the built-in namespace index).
  public var indexNames: [String] {
    self.indexes.dropFirst(self.layout.isNamespaced ? 1 : 0).map(\.index.name)
  }

  // MARK: Reads

  /// How many objects are cached.
  public var count: Int { self.objectCount.load(ordering: .relaxed) }

  /// The object with `uid`.
  public func object(uid: String) -> CachedObject? { self.object(uid: UIDKey(uid)) }

  /// The object named `name` in `namespace` (empty for cluster-scoped kinds).
  public func object(namespace: String, name: String) -> CachedObject? {
    let nameKey = NameKey(namespace: namespace, name: name)
    guard let uid = self.uid(named: nameKey), let object = self.object(uid: uid),
      object.isNamed(namespace: namespace, name: name)
    else { return nil }
    return object
  }

  /// The object stored under `key`, or `nil` (also when the key does not fit this cache's layout).
  public func object(key: String) -> CachedObject? {
    guard let (namespace, name) = self.layout.namespaceAndName(of: key) else { return nil }
    return self.object(namespace: namespace, name: name)
  }

  /// Every cached object, in no particular order.
  public func allObjects() -> [CachedObject] {
    var objects: [CachedObject] = []
    objects.reserveCapacity(self.count)
    for shard in self.objectShards {
      shard.state.withLock { entries in
        entries.forEach { objects.append($0.object) }
      }
    }
    return objects
  }

  /// The objects in `namespace`. For a cluster-scoped kind, every object when `namespace` is
  /// empty, none otherwise.
  public func objects(inNamespace namespace: String) -> [CachedObject] {
    guard self.layout.isNamespaced else { return namespace.isEmpty ? self.allObjects() : [] }
    return self.objects(uids: self.indexes[0].uids(under: HashedKey(namespace)))
  }

  /// The objects `index` finds under `value`.
  ///
  /// - Throws: ``CacheError`` ``CacheError/Code/unknownIndex`` if the cache was built without `index`.
  public func objects(in index: CacheIndex, value: String) throws(CacheError) -> [CachedObject] {
    self.objects(uids: try self.storage(of: index).uids(under: HashedKey(value)))
  }

  /// The UIDs `index` finds under `value`.
  public func uids(in index: CacheIndex, value: String) throws(CacheError) -> [String] {
    try self.storage(of: index).uids(under: HashedKey(value)).map(\.string)
  }

  /// How many objects `index` finds under `value`.
  public func count(in index: CacheIndex, value: String) throws(CacheError) -> Int {
    try self.storage(of: index).count(under: HashedKey(value))
  }

  /// Sizes of the cache and of each index. Each figure is read shard by shard.
  public func stats() -> ObjectCacheStats {
    var objects = 0
    for shard in self.objectShards { objects += shard.state.withLock { $0.count } }
    var names = 0
    for shard in self.nameShards { names += shard.state.withLock { $0.count } }
    var indexes: [String: ObjectCacheStats.Index] = [:]
    for storage in self.indexes {
      var stats = ObjectCacheStats.Index(keys: 0, entries: 0)
      for shard in storage.shards {
        shard.state.withLock { shard in
          stats.keys += shard.buckets.count
          stats.entries += shard.entryCount
        }
      }
      indexes[storage.index.name] = stats
    }
    return ObjectCacheStats(
      objects: objects, rawBytes: self.byteCount.load(ordering: .relaxed), names: names, indexes: indexes)
  }

  // MARK: Writes

  /// Caches `object` (see ``CacheChange`` for what can happen). Keeps the entry's relist mark at
  /// the newest generation handed out, so objects written during a relist are not swept.
  @discardableResult
  public func upsert(_ object: CachedObject) -> CacheChange {
    self.writer.withLock { writer in self.upsertLocked(object, mark: writer.latestMark) }
  }

  /// Caches `object` as confirmed by the relist of `generation` (see ``sweep(unmarkedSince:)``).
  /// An unchanged object is only stamped.
  @discardableResult
  public func upsert(_ object: CachedObject, mark generation: UInt64) -> CacheChange {
    self.writer.withLock { writer in
      writer.latestMark = max(writer.latestMark, generation)
      return self.upsertLocked(object, mark: generation)
    }
  }

  /// A new relist generation, greater than every one before: pass it to ``upsert(_:mark:)`` for
  /// each listed object, then to ``sweep(unmarkedSince:)``.
  public func nextRelistGeneration() -> UInt64 {
    self.writer.withLock { writer in
      writer.latestMark += 1
      return writer.latestMark
    }
  }

  /// Removes and returns every object not confirmed at `generation` or later (the ones a relist
  /// did not find): deliver them as deletes.
  public func sweep(unmarkedSince generation: UInt64) -> [CachedObject] {
    self.writer.withLock { _ in
      var removed: [CachedObject] = []
      for shard in self.objectShards {
        let stale: [UIDKey] = shard.state.withLock { entries in
          var stale: [UIDKey] = []
          entries.forEach { entry in if entry.mark < generation { stale.append(entry.object.uidKey) } }
          return stale
        }
        for uid in stale {
          if let object = self.removeLocked(uid: uid) { removed.append(object) }
        }
      }
      return removed
    }
  }

  /// Removes the object with `uid` and all its index entries; returns it.
  @discardableResult
  public func remove(uid: String) -> CachedObject? {
    let uid = UIDKey(uid)
    return self.writer.withLock { _ in self.removeLocked(uid: uid) }
  }

  /// Removes the object named `name` in `namespace` (a watch delete carries only the key).
  @discardableResult
  public func remove(namespace: String, name: String) -> CachedObject? {
    let nameKey = NameKey(namespace: namespace, name: name)
    return self.writer.withLock { _ in
      guard let uid = self.uid(named: nameKey) else { return nil }
      return self.removeLocked(uid: uid)
    }
  }

  /// Removes the object stored under `key` (`nil` if none, or if the key does not fit the layout).
  @discardableResult
  public func remove(key: String) -> CachedObject? {
    guard let (namespace, name) = self.layout.namespaceAndName(of: key) else { return nil }
    return self.remove(namespace: namespace, name: name)
  }

  // MARK: Invariants

  /// Every broken invariant: invalid objects (empty UID or name, key not matching metadata),
  /// name index entries missing or pointing elsewhere, index entries missing or dangling, empty
  /// index buckets, counts that disagree. Empty in normal operation.
  ///
  /// Holds the writer lock for the scan (writes wait; reads do not).
  public func zeroValueScan() -> [CacheInvariantViolation] {
    self.writer.withLock { _ in
      var violations: [CacheInvariantViolation] = []
      var objects = 0
      var bytes = 0
      for (shardNumber, shard) in self.objectShards.enumerated() {
        let entries = shard.state.withLock { $0 }  // a shared copy: writers are held off
        entries.forEach { entry in
          let object = entry.object
          let storedUID = object.uidKey
          objects += 1
          bytes += object.rawByteCount
          if entry.slotHash != storedUID.hash || Self.shardNumber(storedUID.hash, mask: self.shardMask) != shardNumber {
            violations.append(.misfiled(storedUnder: "shard \(shardNumber)", uid: object.uid))
          }
          if let reason = self.invalidity(of: object) {
            violations.append(.invalidObject(uid: object.uid, key: object.key, reason: reason))
          }
          if self.uid(named: NameKey(namespace: object.namespace, name: object.name)) != storedUID {
            violations.append(
              .nameIndexMissing(uid: storedUID.string, name: NameKey(namespace: object.namespace, name: object.name).description))
          }
          for storage in self.indexes {
            storage.index.forEachValue(of: object) { value in
              let value = HashedKey(value)
              let present = storage.shard(for: value).state.withLock { $0.buckets[value]?.contains(storedUID) ?? false }
              if !present {
                violations.append(
                  .indexEntryMissing(index: storage.index.name, value: value.string, uid: storedUID.string))
              }
            }
          }
        }
      }
      for shard in self.nameShards {
        let entries = shard.state.withLock { $0 }
        entries.forEach { entry in
          let uid = entry.object.uidKey
          guard let object = self.object(uid: uid), object.hasSameName(as: entry.object) else {
            violations.append(
              .nameIndexDangling(
                name: NameKey(namespace: entry.object.namespace, name: entry.object.name).description, uid: uid.string))
            return
          }
        }
      }
      for storage in self.indexes {
        var recordedEntries = 0
        var actualEntries = 0
        for shard in storage.shards {
          let indexShard = shard.state.withLock { $0 }
          recordedEntries += indexShard.entryCount
          for (value, bucket) in indexShard.buckets {
            var uids: [UIDKey] = []
            bucket.appendUIDs(to: &uids)
            actualEntries += uids.count
            if uids.isEmpty { violations.append(.emptyIndexBucket(index: storage.index.name, value: value.string)) }
            for uid in uids {
              guard let object = self.object(uid: uid), storage.index.contains(value.string, for: object) else {
                violations.append(.indexEntryDangling(index: storage.index.name, value: value.string, uid: uid.string))
                continue
              }
            }
          }
        }
        if recordedEntries != actualEntries {
          violations.append(
            .countMismatch(statistic: "\(storage.index.name) entries", recorded: recordedEntries, actual: actualEntries))
        }
      }
      let recordedObjects = self.objectCount.load(ordering: .relaxed)
      if recordedObjects != objects {
        violations.append(.countMismatch(statistic: "objects", recorded: recordedObjects, actual: objects))
      }
      let recordedBytes = self.byteCount.load(ordering: .relaxed)
      if recordedBytes != bytes {
        violations.append(.countMismatch(statistic: "raw bytes", recorded: recordedBytes, actual: bytes))
      }
      return violations
    }
  }

  /// Test hook: stores `object` as is — no checks, no index entries, no counts — in the shard
  /// of `uid` (by default its own).
  func plantForTesting(_ object: CachedObject, underUID uid: String? = nil) {
    let shardUID = uid.map { UIDKey($0) } ?? object.uidKey
    self.writer.withLock { writer in
      self.objectShard(for: shardUID).state.withLock {
        $0.insert(ObjectEntry(object: object, mark: writer.latestMark, slotHash: object.uidKey.hash))
      }
    }
  }

  /// Test hook: adds an entry to the named secondary index as is.
  func plantIndexEntryForTesting(index name: String, value: String, uid: String) {
    self.writer.withLock { _ in
      self.indexes.first { $0.index.name == name }?.insert(UIDKey(uid), under: HashedKey(value))
    }
  }

  /// Test hook: points the name index's `namespace/name` at `uid` as is.
  func plantNameForTesting(namespace: String, name: String, uid: String) {
    let nameKey = NameKey(namespace: namespace, name: name)
    let key = self.layout.key(namespace: namespace, name: name)
    let standIn = CachedObject(
      key: key, metadata: ObjectMeta(uid: uid, name: name, namespace: namespace), raw: Data("{}".utf8))
    self.writer.withLock { _ in
      self.nameShard(for: nameKey).state.withLock { names in
        if let slot = names.find(hash: nameKey.hash, { $0.object.isNamed(namespace: namespace, name: name) }) {
          names.remove(at: slot)
        }
        names.insert(NameEntry(object: standIn, slotHash: nameKey.hash))
      }
    }
  }

  /// Test hook: leaves an empty bucket under `value` in the named secondary index.
  func plantEmptyIndexBucketForTesting(index name: String, value: String) {
    self.writer.withLock { _ in
      let value = HashedKey(value)
      self.indexes.first { $0.index.name == name }?.shard(for: value).state.withLock { $0.buckets[value] = .many([]) }
    }
  }

  // MARK: Internals

  @inline(__always)
  static func shardNumber(_ hash: UInt64, mask: Int) -> Int {
    Int(truncatingIfNeeded: hash ^ (hash >> 32)) & mask
  }

  @inline(__always)
  private func objectShard(for uid: UIDKey) -> LockedShard<SlotTable<ObjectEntry>> {
    self.objectShards[Self.shardNumber(uid.hash, mask: self.shardMask)]
  }

  @inline(__always)
  private func objectShard(hash: UInt64) -> LockedShard<SlotTable<ObjectEntry>> {
    self.objectShards[Self.shardNumber(hash, mask: self.shardMask)]
  }

  @inline(__always)
  private func nameShard(for nameKey: NameKey) -> LockedShard<SlotTable<NameEntry>> {
    self.nameShards[Self.shardNumber(nameKey.hash, mask: self.shardMask)]
  }

  @inline(__always)
  private func nameShard(hash: UInt64) -> LockedShard<SlotTable<NameEntry>> {
    self.nameShards[Self.shardNumber(hash, mask: self.shardMask)]
  }

  private func object(uid: UIDKey) -> CachedObject? {
    let hash = uid.hash
    return self.objectShard(hash: hash).state.withLock { entries in
      entries.find(hash: hash) { $0.object.uidKey == uid }.map { entries[$0].object }
    }
  }

  /// The UID the name index gives `nameKey`.
  private func uid(named nameKey: NameKey) -> UIDKey? {
    self.nameShard(for: nameKey).state.withLock { names in
      names.find(hash: nameKey.hash) { $0.object.isNamed(namespace: nameKey.namespace, name: nameKey.name) }
        .map { names[$0].object.uidKey }
    }
  }

  private func storage(of index: CacheIndex) throws(CacheError) -> IndexStorage {
    // User indexes follow the built-in one; a handful at most, compared by (usually small) name.
    for storage in self.indexes where storage.index.name == index.name { return storage }
    throw CacheError(code: .unknownIndex, message: "this \(self.layout.plural) cache has no index \"\(index.name)\"")
  }

  private func objects(uids: [UIDKey]) -> [CachedObject] {
    var objects: [CachedObject] = []
    objects.reserveCapacity(uids.count)
    for uid in uids {
      if let object = self.object(uid: uid) { objects.append(object) }
    }
    return objects
  }

  /// Why `object` must not be cached, or `nil`.
  private func invalidity(of object: CachedObject) -> IngestRejectionReason? {
    self.validator.rejectionReason(for: object)
  }

  private enum Existing {
    case none
    case unchanged
    case old(CachedObject)
    case heldElsewhere(key: String)
  }

  /// Called with the writer lock held. Each shard is looked up once (slots are modified in
  /// place); the object is written before its name and index entries.
  private func upsertLocked(_ new: CachedObject, mark: UInt64) -> CacheChange {
    if let reason = self.invalidity(of: new) { return .rejected(reason) }
    let uid = new.uidKey
    let uidHash = uid.hash
    let existing: Existing = self.objectShard(hash: uidHash).state.withLock { entries in
      guard let slot = entries.find(hash: uidHash, { $0.object.uidKey == uid }) else {
        entries.insert(ObjectEntry(object: new, mark: mark, slotHash: uidHash))
        return .none
      }
      let current = entries[slot]
      let sameKey = current.object.hasSameKey(as: new)
      if current.object.resourceVersion == new.resourceVersion, sameKey {
        entries[slot].mark = mark
        return .unchanged
      }
      if !sameKey, current.mark == mark {
        // The UID is confirmed under another key (by the watch, or already by this relist):
        // a copied document, not a move. A move would have deleted the old key first, or,
        // during a relist, leaves the old entry unconfirmed (an older mark).
        return .heldElsewhere(key: current.object.key)
      }
      entries[slot] = ObjectEntry(object: new, mark: mark, slotHash: uidHash)
      return .old(current.object)
    }
    if case .unchanged = existing { return .unchanged }
    if case .heldElsewhere(let key) = existing { return .rejected(.duplicateUID(heldBy: key)) }

    // The name now leads to this object; a different UID that held it is removed (its own name
    // entry is left alone, since it no longer points to it).
    let nameHash = NameKey.hash(of: new)
    let holder: UIDKey? = self.nameShard(hash: nameHash).state.withLock { names in
      if let slot = names.find(hash: nameHash, { $0.object.hasSameName(as: new) }) {
        let holder = names[slot].object.uidKey
        names[slot] = NameEntry(object: new, slotHash: nameHash)
        return holder
      }
      names.insert(NameEntry(object: new, slotHash: nameHash))
      return nil
    }
    var displaced: CachedObject?
    if let holder, holder != uid {
      displaced = self.removeLocked(uid: holder)
      self.nameCollisions.increment()
    }

    switch existing {
    case .old(let old):
      if !old.hasSameName(as: new) {
        // A relist found the UID under a new key (the old one unconfirmed): the entry follows it.
        let oldNameHash = NameKey.hash(of: old)
        self.nameShard(hash: oldNameHash).state.withLock { names in
          if let slot = names.find(hash: oldNameHash, { $0.object.hasSameName(as: old) }), names[slot].object.uidKey == uid {
            names.remove(at: slot)
          }
        }
      }
      for storage in self.indexes where !storage.index.sameValues(old, new) {
        let oldValues = storage.index.values(of: old)
        let newValues = storage.index.values(of: new)
        for value in oldValues where !newValues.contains(value) { storage.remove(uid, under: HashedKey(value)) }
        for value in newValues where !oldValues.contains(value) { storage.insert(uid, under: HashedKey(value)) }
      }
      self.recordSizes(objects: 0, bytes: new.rawByteCount - old.rawByteCount)
      if let displaced { return .replaced(old: displaced, new: new) }
      return .updated(old: old, new: new)
    case .none, .unchanged, .heldElsewhere:
      for storage in self.indexes {
        storage.index.forEachValue(of: new) { value in storage.insert(uid, under: HashedKey(value)) }
      }
      self.recordSizes(objects: 1, bytes: new.rawByteCount)
      if let displaced { return .replaced(old: displaced, new: new) }
      return .added(new)
    }
  }

  /// Called with the writer lock held. Index entries go first, the object last.
  private func removeLocked(uid: UIDKey) -> CachedObject? {
    let uidHash = uid.hash
    let objectShard = self.objectShard(hash: uidHash)
    guard let old = self.object(uid: uid) else { return nil }
    for storage in self.indexes {
      storage.index.forEachValue(of: old) { value in storage.remove(uid, under: HashedKey(value)) }
    }
    let nameHash = NameKey.hash(of: old)
    self.nameShard(hash: nameHash).state.withLock { names in
      if let slot = names.find(hash: nameHash, { $0.object.hasSameName(as: old) }), names[slot].object.uidKey == uid {
        names.remove(at: slot)
      }
    }
    objectShard.state.withLock { entries in
      if let slot = entries.find(hash: uidHash, { $0.object.uidKey == uid }) { entries.remove(at: slot) }
    }
    self.recordSizes(objects: -1, bytes: -old.rawByteCount)
    return old
  }

  private func recordSizes(objects: Int, bytes: Int) {
    let objectCount = self.objectCount.add(objects, ordering: .relaxed).newValue
    let byteCount = self.byteCount.add(bytes, ordering: .relaxed).newValue
    self.objectsGauge.record(objectCount)
    self.bytesGauge.record(byteCount)
  }
}
