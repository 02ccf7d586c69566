/// A key of the in-memory store, compared, ordered and hashed by its UTF-8 bytes as etcd does.
///
/// Swift's `String` equality and `<` follow Unicode canonical equivalence ("é" precomposed equals
/// "e" + combining accent), so a `String`-keyed dictionary would merge two keys that etcd keeps
/// apart, and sort others differently. Every map and index of ``MemoryBackend`` uses this type.
struct StoreKey: Hashable, Comparable, Sendable, CustomStringConvertible {
  /// The key as the caller wrote it.
  let string: String

  init(_ string: String) {
    var string = string
    string.makeContiguousUTF8()
    self.string = string
  }

  var description: String { self.string }

  static func == (lhs: StoreKey, rhs: StoreKey) -> Bool { compareUTF8(lhs.string, rhs.string) == 0 }

  static func < (lhs: StoreKey, rhs: StoreKey) -> Bool { compareUTF8(lhs.string, rhs.string) < 0 }

  func hash(into hasher: inout Hasher) {
    let hashed: Void? = self.string.utf8.withContiguousStorageIfAvailable { bytes in
      hasher.combine(bytes.count)
      hasher.combine(bytes: UnsafeRawBufferPointer(bytes))
    }
    if hashed == nil {
      hasher.combine(self.string.utf8.count)
      for byte in self.string.utf8 { hasher.combine(byte) }
    }
  }
}

/// Compares two strings by their UTF-8 bytes: negative, zero or positive.
func compareUTF8(_ lhs: String, _ rhs: String) -> Int {
  let fast: Int?? = lhs.utf8.withContiguousStorageIfAvailable { left in
    rhs.utf8.withContiguousStorageIfAvailable { right in compareBytes(left, right) }
  }
  if let fast, let result = fast { return result }
  var left = lhs.utf8.makeIterator()
  var right = rhs.utf8.makeIterator()
  while true {
    switch (left.next(), right.next()) {
    case (nil, nil): return 0
    case (nil, _): return -1
    case (_, nil): return 1
    case (let l?, let r?): if l != r { return l < r ? -1 : 1 }
    }
  }
}

@inline(__always)
private func compareBytes(_ left: UnsafeBufferPointer<UInt8>, _ right: UnsafeBufferPointer<UInt8>) -> Int {
  let common = min(left.count, right.count)
  var index = 0
  while index < common {
    let l = left[index]
    let r = right[index]
    if l != r { return l < r ? -1 : 1 }
    index += 1
  }
  return left.count == right.count ? 0 : (left.count < right.count ? -1 : 1)
}

/// A ``KeyRange`` resolved to store keys: `[begin, end)`, `end == nil` meaning unbounded.
struct StoreKeyRange: Sendable {
  let begin: StoreKey
  /// Exclusive end; `nil` for "every key from `begin` on".
  let end: StoreKey?
  let isSingleKey: Bool

  init(_ range: KeyRange) {
    self.begin = StoreKey(range.key)
    self.isSingleKey = range.isSingleKey
    if range.isSingleKey {
      self.end = nil
    } else if range.rangeEnd == "\0" {
      self.end = nil
    } else {
      self.end = StoreKey(range.rangeEnd)
    }
  }

  func contains(_ key: StoreKey) -> Bool {
    if self.isSingleKey { return key == self.begin }
    if key < self.begin { return false }
    guard let end = self.end else { return true }
    return key < end
  }
}
