/// The keys of the store in UTF-8 byte order: a sorted array of sorted chunks (a two-level
/// B-tree). Lookup is O(log n); an insert or removal moves at most one chunk's elements plus one
/// entry per chunk, so it stays cheap up to millions of keys.
struct SortedKeyIndex: Sendable {
  private static let maximumChunkSize = 512
  private var chunks: [[StoreKey]] = []
  private(set) var count = 0

  /// Where `key` is or would be inserted: the chunk and the position within it.
  private func position(of key: StoreKey) -> (chunk: Int, index: Int) {
    // The first chunk whose last key is >= key.
    var low = 0
    var high = self.chunks.count
    while low < high {
      let middle = (low + high) / 2
      if self.chunks[middle][self.chunks[middle].count - 1] < key { low = middle + 1 } else { high = middle }
    }
    if low == self.chunks.count {
      // After every key.
      guard low > 0 else { return (0, 0) }
      return (low - 1, self.chunks[low - 1].count)
    }
    let chunk = self.chunks[low]
    var first = 0
    var last = chunk.count
    while first < last {
      let middle = (first + last) / 2
      if chunk[middle] < key { first = middle + 1 } else { last = middle }
    }
    return (low, first)
  }

  func contains(_ key: StoreKey) -> Bool {
    let (chunk, index) = self.position(of: key)
    return chunk < self.chunks.count && index < self.chunks[chunk].count && self.chunks[chunk][index] == key
  }

  /// Inserts `key` if it is not there yet.
  mutating func insert(_ key: StoreKey) {
    if self.chunks.isEmpty {
      self.chunks = [[key]]
      self.count = 1
      return
    }
    let (chunk, index) = self.position(of: key)
    if index < self.chunks[chunk].count && self.chunks[chunk][index] == key { return }
    self.chunks[chunk].insert(key, at: index)
    self.count += 1
    if self.chunks[chunk].count > Self.maximumChunkSize * 2 {
      let upper = Array(self.chunks[chunk][Self.maximumChunkSize...])
      self.chunks[chunk].removeSubrange(Self.maximumChunkSize...)
      self.chunks.insert(upper, at: chunk + 1)
    }
  }

  /// Removes `key` if it is there.
  mutating func remove(_ key: StoreKey) {
    guard !self.chunks.isEmpty else { return }
    let (chunk, index) = self.position(of: key)
    guard index < self.chunks[chunk].count, self.chunks[chunk][index] == key else { return }
    self.chunks[chunk].remove(at: index)
    self.count -= 1
    if self.chunks[chunk].isEmpty { self.chunks.remove(at: chunk) }
  }

  /// Calls `body` with each key in `range`, in order, until it returns `false`.
  func forEach(in range: StoreKeyRange, _ body: (StoreKey) -> Bool) {
    if range.isSingleKey {
      if self.contains(range.begin) { _ = body(range.begin) }
      return
    }
    if let end = range.end, !(range.begin < end) { return }
    guard !self.chunks.isEmpty else { return }
    var (chunk, index) = self.position(of: range.begin)
    while chunk < self.chunks.count {
      let keys = self.chunks[chunk]
      while index < keys.count {
        let key = keys[index]
        if let end = range.end, !(key < end) { return }
        if !body(key) { return }
        index += 1
      }
      chunk += 1
      index = 0
    }
  }
}
