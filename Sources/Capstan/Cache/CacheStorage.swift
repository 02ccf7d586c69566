import Foundation
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

  /// Whether two strings have the same UTF-8 bytes (how the cache compares keys and values, as
  /// etcd compares keys; Swift's `==` follows canonical equivalence). Compares in place.
  @inline(__always)
  static func sameUTF8(_ lhs: String, _ rhs: String) -> Bool {
    guard lhs.utf8.count == rhs.utf8.count else { return false }
    var lhs = lhs
    var rhs = rhs
    return lhs.withUTF8 { left in
      rhs.withUTF8 { right in left.count == 0 || memcmp(left.baseAddress!, right.baseAddress!, left.count) == 0 }
    }
  }

  /// Whether two byte buffers are equal.
  @inline(__always)
  static func sameBytes(_ lhs: UnsafeBufferPointer<UInt8>, _ rhs: UnsafeBufferPointer<UInt8>) -> Bool {
    lhs.count == rhs.count && (lhs.count == 0 || memcmp(lhs.baseAddress!, rhs.baseAddress!, lhs.count) == 0)
  }

  /// The hash of one more byte.
  @inline(__always)
  static func hash(byte: UInt8, continuing start: UInt64) -> UInt64 { (start ^ UInt64(byte)) &* Self.prime }
}

/// A string with its FNV-1a hash, computed once: the hash picks the shard, and dictionaries and
/// sets hash only those 8 bytes and compare it before the bytes of the string.
///
/// Two keys are equal when their UTF-8 bytes are (as etcd compares keys), so canonically
/// equivalent but differently encoded strings are different keys.
struct HashedKey: Hashable, Sendable, CustomStringConvertible {
  let string: String
  let hash: UInt64

  @inline(__always)
  init(_ string: String) {
    self.string = string
    self.hash = FNV1a.hash(string)
  }

  @inline(__always)
  static func == (lhs: HashedKey, rhs: HashedKey) -> Bool {
    lhs.hash == rhs.hash && FNV1a.sameUTF8(lhs.string, rhs.string)
  }

  @inline(__always)
  func hash(into hasher: inout Hasher) { hasher.combine(self.hash) }

  var description: String { self.string }
}

/// The name index's key: namespace and name side by side (no `namespace/name` string is built),
/// with the FNV-1a hash of `namespace/name`.
struct NameKey: Hashable, Sendable, CustomStringConvertible {
  let namespace: String
  let name: String
  let hash: UInt64

  init(namespace: String, name: String) {
    self.namespace = namespace
    self.name = name
    self.hash = FNV1a.hash(name, continuing: FNV1a.hash(byte: UInt8(ascii: "/"), continuing: FNV1a.hash(namespace)))
  }

  /// The hash of `object`'s `namespace/name`, as ``hash`` computes it.
  static func hash(of object: CachedObject) -> UInt64 {
    let namespaceHash = FNV1a.hash(byte: UInt8(ascii: "/"), continuing: FNV1a.hash(object.namespace))
    return object.withName { FNV1a.hash($0, continuing: namespaceHash) }
  }

  static func == (lhs: NameKey, rhs: NameKey) -> Bool {
    lhs.hash == rhs.hash && FNV1a.sameUTF8(lhs.name, rhs.name) && FNV1a.sameUTF8(lhs.namespace, rhs.namespace)
  }

  func hash(into hasher: inout Hasher) { hasher.combine(self.hash) }

  var description: String { self.namespace.isEmpty ? self.name : "\(self.namespace)/\(self.name)" }
}

/// The UIDs under one index value. One UID is held inline (most owner and custom index values
/// have one object); a set only from two on, so an index costs a dictionary entry per value plus
/// a set element per extra object. Never empty: the last removal removes the bucket.
enum IndexBucket: Sendable {
  case one(UIDKey)
  case many(Set<UIDKey>)

  var count: Int {
    switch self {
    case .one: 1
    case .many(let uids): uids.count
    }
  }

  func contains(_ uid: UIDKey) -> Bool {
    switch self {
    case .one(let only): only == uid
    case .many(let uids): uids.contains(uid)
    }
  }

  func appendUIDs(to array: inout [UIDKey]) {
    switch self {
    case .one(let only): array.append(only)
    case .many(let uids): array.append(contentsOf: uids)
    }
  }

  /// Adds `uid`; whether it was new.
  mutating func insert(_ uid: UIDKey) -> Bool {
    switch self {
    case .one(let only):
      if only == uid { return false }
      var uids = Set<UIDKey>(minimumCapacity: 2)
      uids.insert(only)
      uids.insert(uid)
      self = .many(uids)
      return true
    case .many(var uids):
      self = .many([])  // drop this reference so `uids` is unique and grows in place
      let inserted = uids.insert(uid).inserted
      self = .many(uids)
      return inserted
    }
  }

  /// Removes `uid`; whether it was there, and whether the bucket is now empty (the caller then
  /// removes it).
  mutating func remove(_ uid: UIDKey) -> (removed: Bool, isEmpty: Bool) {
    switch self {
    case .one(let only):
      return only == uid ? (true, true) : (false, false)
    case .many(var uids):
      self = .many([])
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
  var buckets: [HashedKey: IndexBucket] = [:]
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
  func shard(for value: HashedKey) -> LockedShard<IndexShard> {
    self.shards[ObjectCache.shardNumber(value.hash, mask: self.shardMask)]
  }

  func insert(_ uid: UIDKey, under value: HashedKey) {
    self.shard(for: value).state.withLock { shard in
      func insert(into slot: inout IndexBucket?) -> Bool {
        guard slot != nil else {
          slot = .one(uid)
          return true
        }
        return slot!.insert(uid)
      }
      if insert(into: &shard.buckets[value]) { shard.entryCount += 1 }
    }
  }

  func remove(_ uid: UIDKey, under value: HashedKey) {
    self.shard(for: value).state.withLock { shard in
      func remove(from slot: inout IndexBucket?) -> Bool {
        guard slot != nil else { return false }
        let (removed, isEmpty) = slot!.remove(uid)
        if isEmpty { slot = nil }
        return removed
      }
      if remove(from: &shard.buckets[value]) { shard.entryCount -= 1 }
    }
  }

  func uids(under value: HashedKey) -> [UIDKey] {
    self.shard(for: value).state.withLock { shard in
      guard let bucket = shard.buckets[value] else { return [] }
      var uids: [UIDKey] = []
      uids.reserveCapacity(bucket.count)
      bucket.appendUIDs(to: &uids)
      return uids
    }
  }

  func count(under value: HashedKey) -> Int {
    self.shard(for: value).state.withLock { $0.buckets[value]?.count ?? 0 }
  }
}

/// An element of a ``SlotTable``: it carries the hash of its own key.
protocol SlotEntry {
  var slotHash: UInt64 { get }
}

/// An open-addressing hash table (linear probing, backward-shift deletion, at most 80% full)
/// whose elements carry their key: the object table holds each object once, with no separate
/// key copy, and the name table points at objects instead of copying names. Lookups compare the
/// stored hash first and call a predicate only on a hash match.
struct SlotTable<Entry: SlotEntry> {
  private(set) var slots: [Entry?]
  private(set) var count = 0
  private var shift: UInt64

  init(minimumCapacity: Int = 0) {
    var capacity = 8
    while capacity * 4 < minimumCapacity * 5 { capacity <<= 1 }
    self.slots = Array(repeating: nil, count: capacity)
    self.shift = UInt64(64 - capacity.trailingZeroBitCount)
  }

  /// The slot a hash starts probing at (Fibonacci hashing: the shard already used the low bits).
  @inline(__always)
  private func home(_ hash: UInt64) -> Int { Int(truncatingIfNeeded: (hash &* 0x9E37_79B9_7F4A_7C15) >> self.shift) }

  /// The slot holding the entry with `hash` that `matches`, if any.
  @inline(__always)
  func find(hash: UInt64, _ matches: (Entry) -> Bool) -> Int? {
    let mask = self.slots.count - 1
    var slot = self.home(hash)
    while let entry = self.slots[slot] {
      if entry.slotHash == hash, matches(entry) { return slot }
      slot = (slot + 1) & mask
    }
    return nil
  }

  subscript(slot: Int) -> Entry {
    get { self.slots[slot]! }
    set { self.slots[slot] = newValue }
  }

  /// Adds `entry`, whose key must not be in the table.
  mutating func insert(_ entry: Entry) {
    if (self.count + 1) * 5 > self.slots.count * 4 { self.grow() }
    self.place(entry)
    self.count += 1
  }

  private mutating func place(_ entry: Entry) {
    let mask = self.slots.count - 1
    var slot = self.home(entry.slotHash)
    while self.slots[slot] != nil { slot = (slot + 1) & mask }
    self.slots[slot] = entry
  }

  /// Removes the entry at `slot` and returns it.
  @discardableResult
  mutating func remove(at slot: Int) -> Entry {
    let removed = self.slots[slot]!
    let mask = self.slots.count - 1
    var hole = slot
    var next = (slot + 1) & mask
    while let entry = self.slots[next] {
      let home = self.home(entry.slotHash)
      // Move `entry` into the hole unless its home lies cyclically in (hole, next].
      let stays = hole <= next ? (hole < home && home <= next) : (hole < home || home <= next)
      if !stays {
        self.slots[hole] = entry
        hole = next
      }
      next = (next + 1) & mask
    }
    self.slots[hole] = nil
    self.count -= 1
    return removed
  }

  private mutating func grow() {
    let old = self.slots
    self.slots = Array(repeating: nil, count: old.count * 2)
    self.shift -= 1
    for case let entry? in old { self.place(entry) }
  }

  /// Calls `body` with every entry.
  func forEach(_ body: (Entry) -> Void) {
    for case let entry? in self.slots { body(entry) }
  }
}
