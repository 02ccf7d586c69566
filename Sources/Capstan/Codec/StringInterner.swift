import Foundation
import Synchronization

/// A bounded, thread-safe pool of strings, so that strings that repeat across many objects
/// (namespaces, label keys and values, owner kinds) share one heap allocation.
///
/// Only strings of ``minimumLength`` to ``maximumLength`` UTF-8 bytes are pooled: shorter ones are
/// stored inline in `String` (the small-string form holds up to 15 UTF-8 bytes without any heap
/// allocation), so pooling them would save nothing. Once ``capacity`` strings are pooled, new
/// strings are returned unpooled (the pool never evicts, so a pooled string stays shared).
///
/// Lookups by bytes (what ``ObjectMetaScanner`` does) allocate nothing when the string is pooled.
public final class StringInterner: Sendable {
  /// Strings shorter than this are never pooled: they need no heap allocation anyway.
  public static let minimumLength = 16

  /// The most strings this pool holds.
  public let capacity: Int
  /// The longest string (in UTF-8 bytes) this pool holds.
  public let maximumLength: Int

  private let table: Mutex<Table>

  /// Creates an empty pool holding at most `capacity` strings of at most `maximumLength` bytes.
  public init(capacity: Int = 65_536, maximumLength: Int = 256) {
    precondition(capacity > 0 && maximumLength >= Self.minimumLength)
    self.capacity = capacity
    self.maximumLength = maximumLength
    self.table = Mutex(Table())
  }

  /// The number of pooled strings.
  public var count: Int { self.table.withLock { $0.count } }

  /// The pooled copy of `string` (pooling it if there is room), or `string` itself when it is not
  /// pooled.
  public func intern(_ string: String) -> String {
    var string = string
    let utf8Count = string.utf8.count
    guard utf8Count >= Self.minimumLength, utf8Count <= self.maximumLength else { return string }
    return string.withUTF8 { bytes in self.intern(bytes) }
  }

  /// The pooled string with these UTF-8 bytes (which must be valid UTF-8).
  func intern(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
    guard bytes.count >= Self.minimumLength, bytes.count <= self.maximumLength else {
      return String(decoding: bytes, as: UTF8.self)
    }
    let hash = Self.hash(bytes)
    return self.table.withLock { table in table.intern(bytes, hash: hash, capacity: self.capacity) }
  }

  /// FNV-1a, 64-bit; never 0 (0 marks an empty slot).
  @inline(__always)
  static func hash(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt64 {
    var hash: UInt64 = 0xCBF2_9CE4_8422_2325
    for byte in bytes {
      hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
    }
    return hash | 1
  }

  /// Open addressing with linear probing; grows to keep the load at most one half.
  private struct Table {
    var hashes: [UInt64] = Array(repeating: 0, count: 64)
    var strings: [String] = Array(repeating: "", count: 64)
    var count = 0

    mutating func intern(_ bytes: UnsafeBufferPointer<UInt8>, hash: UInt64, capacity: Int) -> String {
      let mask = self.hashes.count - 1
      var slot = Int(truncatingIfNeeded: hash) & mask
      while true {
        let slotHash = self.hashes[slot]
        if slotHash == 0 { break }
        if slotHash == hash, Self.equal(&self.strings[slot], bytes) { return self.strings[slot] }
        slot = (slot + 1) & mask
      }
      let string = String(decoding: bytes, as: UTF8.self)
      guard self.count < capacity else { return string }
      self.hashes[slot] = hash
      self.strings[slot] = string
      self.count += 1
      if self.count * 2 > self.hashes.count { self.grow() }
      return string
    }

    static func equal(_ string: inout String, _ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
      string.withUTF8 { stored in
        stored.count == bytes.count && memcmp(stored.baseAddress!, bytes.baseAddress!, bytes.count) == 0
      }
    }

    mutating func grow() {
      let oldHashes = self.hashes
      let oldStrings = self.strings
      let size = oldHashes.count * 2
      self.hashes = Array(repeating: 0, count: size)
      self.strings = Array(repeating: "", count: size)
      let mask = size - 1
      for index in oldHashes.indices where oldHashes[index] != 0 {
        var slot = Int(truncatingIfNeeded: oldHashes[index]) & mask
        while self.hashes[slot] != 0 { slot = (slot + 1) & mask }
        self.hashes[slot] = oldHashes[index]
        self.strings[slot] = oldStrings[index]
      }
    }
  }
}
