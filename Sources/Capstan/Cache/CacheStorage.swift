import Synchronization

/// One lock-protected shard of cache state. A class so shards can sit in an array (`Mutex` is
/// not copyable).
final class LockedShard<State>: Sendable {
  let state: Mutex<State>

  init(_ state: sending State) { self.state = Mutex(state) }
}

/// 64-bit FNV-1a, used to pick shards. Reads a string's UTF-8 bytes in place (no allocation).
enum FNV1a {
  static let offsetBasis: UInt64 = 0xcbf2_9ce4_8422_2325
  static let prime: UInt64 = 0x0000_0100_0000_01b3

  @inline(__always)
  static func hash(_ text: String, continuing start: UInt64 = offsetBasis) -> UInt64 {
    if let hash = text.utf8.withContiguousStorageIfAvailable({ bytes in Self.hash(bytes, continuing: start) }) {
      return hash
    }
    var hash = start
    for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* Self.prime }
    return hash
  }

  @inline(__always)
  static func hash(_ bytes: UnsafeBufferPointer<UInt8>, continuing start: UInt64) -> UInt64 {
    var hash = start
    for byte in bytes { hash = (hash ^ UInt64(byte)) &* Self.prime }
    return hash
  }

  /// The hash of one more byte.
  @inline(__always)
  static func hash(byte: UInt8, continuing start: UInt64) -> UInt64 { (start ^ UInt64(byte)) &* Self.prime }
}

/// The name index's key: namespace and name side by side (no `namespace/name` string is built).
struct NameKey: Hashable, Sendable, CustomStringConvertible {
  var namespace: String
  var name: String

  init(namespace: String, name: String) {
    self.namespace = namespace
    self.name = name
  }

  init(_ metadata: ObjectMeta) {
    self.namespace = metadata.namespace
    self.name = metadata.name
  }

  /// FNV-1a of `namespace/name`.
  var shardHash: UInt64 {
    FNV1a.hash(self.name, continuing: FNV1a.hash(byte: UInt8(ascii: "/"), continuing: FNV1a.hash(self.namespace)))
  }

  var description: String { self.namespace.isEmpty ? self.name : "\(self.namespace)/\(self.name)" }
}

/// The UIDs under one index value. One UID is held inline (most owner and custom index values
/// have one object); a set only from two on, so an index costs a dictionary entry per value plus
/// a set element per extra object. Never empty: the last removal removes the bucket.
enum IndexBucket: Sendable {
  case one(String)
  case many(Set<String>)

  var count: Int {
    switch self {
    case .one: 1
    case .many(let uids): uids.count
    }
  }

  func contains(_ uid: String) -> Bool {
    switch self {
    case .one(let only): only == uid
    case .many(let uids): uids.contains(uid)
    }
  }

  func appendUIDs(to array: inout [String]) {
    switch self {
    case .one(let only): array.append(only)
    case .many(let uids): array.append(contentsOf: uids)
    }
  }

  /// Adds `uid`; whether it was new.
  mutating func insert(_ uid: String) -> Bool {
    switch self {
    case .one(let only):
      if only == uid { return false }
      var uids = Set<String>(minimumCapacity: 2)
      uids.insert(only)
      uids.insert(uid)
      self = .many(uids)
      return true
    case .many(var uids):
      self = .one("")  // drop this reference so `uids` is unique and grows in place
      let inserted = uids.insert(uid).inserted
      self = .many(uids)
      return inserted
    }
  }

  /// Removes `uid`; whether it was there, and whether the bucket is now empty (the caller then
  /// removes it).
  mutating func remove(_ uid: String) -> (removed: Bool, isEmpty: Bool) {
    switch self {
    case .one(let only):
      return only == uid ? (true, true) : (false, false)
    case .many(var uids):
      self = .one("")
      let removed = uids.remove(uid) != nil
      if uids.count == 1, let last = uids.first {
        self = .one(last)
      } else {
        self = .many(uids)
      }
      return (removed, uids.isEmpty)
    }
  }
}

/// One shard of a secondary index: buckets by index value, and how many (value, UID) entries they hold.
struct IndexShard: Sendable {
  var buckets: [String: IndexBucket] = [:]
  var entryCount = 0
}

/// A secondary index and its shards.
struct IndexStorage: Sendable {
  let index: CacheIndex
  let shards: [LockedShard<IndexShard>]
  let shardMask: Int

  init(index: CacheIndex, shardCount: Int) {
    self.index = index
    self.shards = (0..<shardCount).map { _ in LockedShard(IndexShard()) }
    self.shardMask = shardCount - 1
  }

  @inline(__always)
  func shard(for value: String) -> LockedShard<IndexShard> {
    self.shards[ObjectCache.shardNumber(FNV1a.hash(value), mask: self.shardMask)]
  }

  func insert(_ uid: String, under value: String) {
    self.shard(for: value).state.withLock { shard in
      if let position = shard.buckets.index(forKey: value) {
        if shard.buckets.values[position].insert(uid) { shard.entryCount += 1 }
      } else {
        shard.buckets[value] = .one(uid)
        shard.entryCount += 1
      }
    }
  }

  func remove(_ uid: String, under value: String) {
    self.shard(for: value).state.withLock { shard in
      guard let position = shard.buckets.index(forKey: value) else { return }
      let (removed, isEmpty) = shard.buckets.values[position].remove(uid)
      if removed { shard.entryCount -= 1 }
      if isEmpty { shard.buckets.remove(at: position) }
    }
  }

  func uids(under value: String) -> [String] {
    self.shard(for: value).state.withLock { shard in
      guard let bucket = shard.buckets[value] else { return [] }
      var uids: [String] = []
      uids.reserveCapacity(bucket.count)
      bucket.appendUIDs(to: &uids)
      return uids
    }
  }

  func count(under value: String) -> Int {
    self.shard(for: value).state.withLock { $0.buckets[value]?.count ?? 0 }
  }
}
