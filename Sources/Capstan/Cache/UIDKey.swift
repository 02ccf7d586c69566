/// An object's UID as the cache keys it: a canonical UUID (36 lowercase hex digits and hyphens,
/// what Kubernetes and Capstan generate) packed into 16 bytes with no heap allocation, any other
/// string as is. Two keys are equal when their UTF-8 bytes are; the packed form is used exactly
/// when the string is canonical, so it never compares unequal to its own text.
struct UIDKey: Hashable, Sendable, CustomStringConvertible {
  private enum Form: Sendable {
    case uuid(UInt64, UInt64)
    case other(String)
  }

  private let form: Form

  /// The key of `string`.
  init(_ string: String) {
    var string = string
    if let (high, low) = string.withUTF8({ Self.parseUUID($0) }) {
      self.form = .uuid(high, low)
    } else {
      self.form = .other(string)
    }
  }

  /// The key of the UTF-8 bytes `bytes`.
  init(bytes: UnsafeBufferPointer<UInt8>) {
    if let (high, low) = Self.parseUUID(bytes) {
      self.form = .uuid(high, low)
    } else {
      self.form = .other(String(decoding: bytes, as: UTF8.self))
    }
  }

  /// Whether the UID is empty.
  var isEmpty: Bool {
    if case .other(let string) = self.form { return string.isEmpty }
    return false
  }

  /// A 64-bit hash of the UID (picks shards and table slots).
  @inline(__always)
  var hash: UInt64 {
    switch self.form {
    case .uuid(let high, let low):
      var hash = (high ^ (low &* 0x9E37_79B9_7F4A_7C15)) &* 0xBF58_476D_1CE4_E5B9
      hash ^= hash >> 31
      return hash
    case .other(let string):
      return FNV1a.hash(string)
    }
  }

  /// The UID's text.
  var string: String {
    switch self.form {
    case .uuid(let high, let low): Self.format(high, low)
    case .other(let string): string
    }
  }

  var description: String { self.string }

  @inline(__always)
  static func == (lhs: UIDKey, rhs: UIDKey) -> Bool {
    switch (lhs.form, rhs.form) {
    case (.uuid(let h1, let l1), .uuid(let h2, let l2)): h1 == h2 && l1 == l2
    case (.other(let s1), .other(let s2)): FNV1a.sameUTF8(s1, s2)
    default: false
    }
  }

  @inline(__always)
  func hash(into hasher: inout Hasher) { hasher.combine(self.hash) }

  // MARK: Canonical UUIDs

  /// The two words of a canonical lowercase UUID, or `nil` for any other text.
  @inline(__always)
  static func parseUUID(_ bytes: UnsafeBufferPointer<UInt8>) -> (UInt64, UInt64)? {
    guard bytes.count == 36 else { return nil }
    var high: UInt64 = 0
    var low: UInt64 = 0
    var digits = 0
    for offset in 0..<36 {
      let byte = bytes[offset]
      if offset == 8 || offset == 13 || offset == 18 || offset == 23 {
        guard byte == 0x2D else { return nil }
        continue
      }
      let value: UInt64
      switch byte {
      case 0x30...0x39: value = UInt64(byte &- 0x30)
      case 0x61...0x66: value = UInt64(byte &- 0x61 &+ 10)
      default: return nil
      }
      if digits < 16 {
        high = high << 4 | value
      } else {
        low = low << 4 | value
      }
      digits += 1
    }
    return (high, low)
  }

  static func format(_ high: UInt64, _ low: UInt64) -> String {
    String(unsafeUninitializedCapacity: 36) { buffer in
      let hex: StaticString = "0123456789abcdef"
      var written = 0
      var digits = 0
      while written < 36 {
        if written == 8 || written == 13 || written == 18 || written == 23 {
          buffer[written] = 0x2D
        } else {
          let word = digits < 16 ? high : low
          let shift = UInt64(15 - digits % 16) * 4
          buffer[written] = hex.utf8Start[Int(word >> shift & 0xF)]
          digits += 1
        }
        written += 1
      }
      return 36
    }
  }
}
