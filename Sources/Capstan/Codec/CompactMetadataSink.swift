/// Records where the metadata a cached object is indexed by sits in its JSON bytes, instead of
/// building ``ObjectMeta``: the offset of the `metadata` object, and the string tokens of the UID,
/// name, namespace, labels, owner UIDs and finalizers. Nothing is copied and nothing allocates
/// but one small array of ranges.
///
/// Strings that would need more than their raw bytes make the sink ``isSupported`` `false`: a
/// kept string with escapes (its value is not its bytes), and a label or annotation key with
/// escapes or non-ASCII bytes (`JSONDecoder` finds duplicate keys by `String` equality, which is
/// canonical equivalence, not byte equality). The caller then falls back to a full ``ObjectMeta``.
/// So does metadata with more than ``maximumRanges`` labels, annotations, owners and finalizers
/// in all: duplicate keys are found by comparing with every recorded key, which must stay cheap,
/// and the cached object's counts are 16-bit.
struct CompactMetadataSink: MetadataSink {
  /// What a recorded range is.
  enum Tag: UInt64 {
    case label = 0
    case labelValue = 1
    case ownerUID = 2
    case finalizer = 3
    case annotationKey = 4
  }

  /// The offset of the `metadata` object's `{`, if the document has one.
  var metadataStart: Int?
  var name: JSONStringToken?
  var namespace: JSONStringToken?
  var uid: JSONStringToken?
  /// Whether the compact form can stand for the metadata (see the type's discussion).
  var isSupported = true
  /// Tagged ranges in document order: tag in the top 8 bits, start in the next 28, length in the low 28.
  var ranges: [UInt64] = []
  var labelCount = 0
  var ownerCount = 0
  var finalizerCount = 0

  /// The most ranges the compact form records (see the type's discussion).
  static let maximumRanges = 256

  static let fieldBits: UInt64 = 28
  static let fieldMask: UInt64 = (1 << 28) - 1

  init() { self.ranges.reserveCapacity(24) }

  @inline(__always)
  static func pack(_ tag: Tag, _ token: JSONStringToken) -> UInt64 {
    tag.rawValue << 56 | UInt64(token.start) << Self.fieldBits | UInt64(token.count)
  }

  @inline(__always)
  static func tag(of range: UInt64) -> UInt64 { range >> 56 }

  @inline(__always)
  static func start(of range: UInt64) -> Int { Int(truncatingIfNeeded: range >> Self.fieldBits & Self.fieldMask) }

  @inline(__always)
  static func count(of range: UInt64) -> Int { Int(truncatingIfNeeded: range & Self.fieldMask) }

  @inline(__always)
  private mutating func keep(_ token: JSONStringToken?) -> JSONStringToken? {
    if let token, token.hasEscapes || token.end > Int(Self.fieldMask) { self.isSupported = false }
    return token
  }

  @inline(__always)
  private mutating func record(_ tag: Tag, _ token: JSONStringToken) {
    _ = self.keep(token)
    self.append(Self.pack(tag, token))
  }

  /// Records `range`, or gives up on the compact form once it holds ``maximumRanges``.
  @inline(__always)
  private mutating func append(_ range: UInt64) {
    guard self.ranges.count < Self.maximumRanges else {
      self.isSupported = false
      return
    }
    self.ranges.append(range)
  }

  mutating func metadataObject(startingAt offset: Int) { self.metadataStart = offset }
  mutating func metadataObject(endingAt offset: Int) {}
  mutating func name(_ token: JSONStringToken?, _ reader: MetadataReader) { self.name = self.keep(token) }
  mutating func namespace(_ token: JSONStringToken?, _ reader: MetadataReader) { self.namespace = self.keep(token) }
  mutating func uid(_ token: JSONStringToken?, _ reader: MetadataReader) { self.uid = self.keep(token) }
  mutating func resourceVersion(_ value: Int64) {}
  mutating func generation(_ value: Int64) {}
  mutating func creationTimestamp(_ value: Timestamp?) {}
  mutating func deletionTimestamp(_ value: Timestamp?) {}

  mutating func isDuplicate(_ key: JSONStringToken, in map: MetadataMap, _ reader: MetadataReader) -> Bool {
    let keyBytes = reader.cursor.rawBytes(key)
    if !self.isSupported || key.hasEscapes || key.end > Int(Self.fieldMask) || !Self.isASCII(keyBytes) {
      self.isSupported = false
      return false
    }
    let tag = map == .labels ? Tag.label.rawValue : Tag.annotationKey.rawValue
    for range in self.ranges where Self.tag(of: range) == tag && Self.count(of: range) == keyBytes.count {
      let other = UnsafeBufferPointer(start: reader.cursor.base + Self.start(of: range), count: keyBytes.count)
      if other.elementsEqual(keyBytes) { return true }
    }
    return false
  }

  mutating func entry(_ key: JSONStringToken, _ value: JSONStringToken, in map: MetadataMap, _ reader: MetadataReader) {
    switch map {
    case .labels:
      self.record(.label, key)
      self.record(.labelValue, value)
      self.labelCount += 1
    case .annotations:
      self.append(Self.pack(.annotationKey, key))
    }
  }

  mutating func finalizer(_ token: JSONStringToken, _ reader: MetadataReader) {
    self.record(.finalizer, token)
    self.finalizerCount += 1
  }

  mutating func ownerReference(_ reference: OwnerReferenceTokens, _ reader: MetadataReader) {
    self.record(.ownerUID, reference.uid)
    self.ownerCount += 1
  }

  @inline(__always)
  static func isASCII(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
    var combined: UInt8 = 0
    for byte in bytes { combined |= byte }
    return combined < 0x80
  }
}
