import Foundation

/// One object as the cache holds it: the stored JSON bytes, the key they were read from, and the
/// metadata extracted from them.
///
/// The cache indexes from metadata alone; the full typed value is decoded only when code asks
/// for it with ``decode(as:)``. `metadata.resourceVersion` is the key's etcd `mod_revision`.
///
/// **Representation.** One heap allocation per object holds the key, the JSON bytes and the
/// offsets of the strings the cache indexes by (name, labels, owner UIDs, finalizers) inside
/// those bytes; the UID is packed into 16 bytes when it is a canonical UUID, and the namespace is
/// a shared (interned) string. ``metadata`` is decoded from the bytes on demand, so reading it
/// costs a scan of the `metadata` object and its strings: code on hot paths (index functions)
/// should use the direct accessors — ``uid``, ``name``, ``namespace``, ``resourceVersion``,
/// ``label(_:)``, ``ownerUIDs``, ``finalizers`` — which read the bytes in place. An object whose
/// metadata is not what its bytes say (made with ``init(key:metadata:raw:)`` from differing
/// parts, changed by a transform or through a setter) keeps its ``ObjectMeta`` as given instead.
///
/// A value: copies are cheap (they share the one allocation) and changing a copy never changes
/// the cache.
///
/// `@unchecked Sendable`: its one stored property is an immutable `ManagedBuffer` subclass
/// (which the standard library declares non-`Sendable` because buffers are usually mutated).
public struct CachedObject: @unchecked Sendable, Hashable {
  let storage: CachedObjectStorage

  init(storage: CachedObjectStorage) { self.storage = storage }

  /// An object from its parts. ``ObjectIngestor`` is the checked way to make one from a stored
  /// key-value; the cache accepts only objects whose metadata matches their key.
  public init(key: String, metadata: ObjectMeta, raw: Data) {
    self.storage = CachedObjectStorage.make(key: key, metadata: metadata, raw: raw)
  }

  /// The store key the object was read from, e.g. `/registry/pods/default/web`.
  public var key: String {
    get { self.storage.withKey { String(decoding: $0, as: UTF8.self) } }
    set { self = self.replacing(key: newValue) }
  }

  /// The object's metadata; `resourceVersion` is the key's mod revision. Decoded from ``raw`` on
  /// each read (see the type's discussion); setting it keeps the new value as given.
  public var metadata: ObjectMeta {
    get { self.storage.metadata }
    set { self = self.replacing(metadata: newValue) }
  }

  /// The object's JSON bytes as stored (after the ingestor's transform, if any): a copy, so
  /// changing it never changes the cache (``decode(as:)`` reads the cached bytes in place).
  public var raw: Data {
    get { self.storage.withRaw { Data($0) } }
    set { self = self.replacing(raw: newValue) }
  }

  /// The object's UID (the cache's primary key).
  public var uid: String { self.storage.uid.string }

  /// The object's name (`metadata.name`), read in place.
  public var name: String { self.storage.name }

  /// The object's namespace (`metadata.namespace`; empty for cluster-scoped kinds).
  public var namespace: String { self.storage.namespace }

  /// The key's mod revision (`metadata.resourceVersion`).
  public var resourceVersion: Int64 { self.storage.resourceVersion }

  /// The value of the label `key` (`metadata.labels[key]`), read in place.
  public func label(_ key: String) -> String? { self.storage.label(key) }

  /// The UID of each owner reference (`metadata.ownerReferences[].uid`), in order, read in place.
  public var ownerUIDs: [String] {
    var uids: [String] = []
    self.storage.forEachOwnerUID { uids.append($0) }
    return uids
  }

  /// The finalizers (`metadata.finalizers`), in order, read in place.
  public var finalizers: [String] {
    var finalizers: [String] = []
    self.storage.forEachFinalizer { finalizers.append($0) }
    return finalizers
  }

  /// The size of ``raw`` in bytes.
  public var rawByteCount: Int { Int(self.storage.rawCount) }

  /// Decodes the full typed value from ``raw`` with `JSONDecoder`, and sets its
  /// `metadata.resourceVersion` to the cached revision (the stored JSON does not carry it).
  ///
  /// - Throws: ``CacheError`` with code ``CacheError/Code/decodeFailed`` naming the key. An
  ///   object an ``ObjectIngestor`` made also counts the failure in
  ///   `capstan_cache_decode_errors_total` and logs it once per key, as the ingestor does for
  ///   bytes it refuses.
  public func decode<R: Resource>(as type: R.Type = R.self) throws(CacheError) -> R {
    do {
      var value = try JSONDecoder().decode(R.self, from: self.storage.rawData)
      value.metadata.resourceVersion = self.resourceVersion
      return value
    } catch {
      let failure = CacheError(
        code: .decodeFailed, key: self.key,
        message: "cannot decode \(self.key) as \(R.kind): \(error)", cause: error)
      self.storage.decodeFailureReporter?.reportDecodeFailure(of: self, as: R.kind, error: error)
      throw failure
    }
  }

  // MARK: Internals

  /// This object with some parts replaced (still reporting late decode errors where it did).
  private func replacing(key: String? = nil, metadata: ObjectMeta? = nil, raw: Data? = nil) -> CachedObject {
    CachedObject(
      storage: CachedObjectStorage.make(
        key: key ?? self.key, metadata: metadata ?? self.metadata, raw: raw ?? self.raw,
        reporter: self.storage.decodeFailureReporter))
  }

  /// The UID as the cache keys it.
  var uidKey: UIDKey { self.storage.uid }

  /// Whether `self` and `other` were read from the same key.
  func hasSameKey(as other: CachedObject) -> Bool {
    if self.storage === other.storage { return true }
    return self.storage.withKey { mine in other.storage.withKey { theirs in FNV1a.sameBytes(mine, theirs) } }
  }

  /// Calls `body` with the name's UTF-8 bytes.
  func withName<T>(_ body: (UnsafeBufferPointer<UInt8>) -> T) -> T { self.storage.withName(body) }

  /// Calls `body` with each owner UID.
  func forEachOwnerUID(_ body: (String) -> Void) { self.storage.forEachOwnerUID(body) }

  /// Calls `body` with each finalizer.
  func forEachFinalizer(_ body: (String) -> Void) { self.storage.forEachFinalizer(body) }

  /// Whether this object's namespace and name are `namespace` and `name`.
  func isNamed(namespace: String, name: String) -> Bool {
    guard FNV1a.sameUTF8(self.namespace, namespace) else { return false }
    var name = name
    return name.withUTF8 { wanted in self.withName { FNV1a.sameBytes($0, wanted) } }
  }

  /// Whether both objects have the same namespace and name.
  func hasSameName(as other: CachedObject) -> Bool {
    guard FNV1a.sameUTF8(self.namespace, other.namespace) else { return false }
    return self.withName { mine in other.withName { theirs in FNV1a.sameBytes(mine, theirs) } }
  }

  public static func == (lhs: CachedObject, rhs: CachedObject) -> Bool {
    if lhs.storage === rhs.storage { return true }
    guard lhs.resourceVersion == rhs.resourceVersion, lhs.uidKey == rhs.uidKey, lhs.hasSameKey(as: rhs),
      lhs.storage.withRaw({ mine in rhs.storage.withRaw { theirs in FNV1a.sameBytes(mine, theirs) } })
    else { return false }
    // Metadata decoded from equal bytes at the same revision is equal.
    if lhs.storage.explicitMetadata == nil, rhs.storage.explicitMetadata == nil { return true }
    return lhs.metadata == rhs.metadata
  }

  public func hash(into hasher: inout Hasher) {
    hasher.combine(self.uidKey)
    hasher.combine(self.resourceVersion)
    hasher.combine(self.rawByteCount)
  }
}

/// Where a cached object reports that its bytes did not decode as the type asked for (the
/// ingestor that made it: it counts and logs the failure once per key).
protocol DecodeFailureReporter: AnyObject, Sendable {
  func reportDecodeFailure(of object: CachedObject, as kind: String, error: any Error)
}

/// An ``ObjectMeta`` and bytes kept as given, for objects whose metadata is not what their bytes
/// say (the bytes are shared with the caller, not copied).
final class ExplicitMetadata: Sendable {
  let metadata: ObjectMeta
  let raw: Data

  init(_ metadata: ObjectMeta, raw: Data) {
    self.metadata = metadata
    self.raw = raw
  }
}

/// The fixed part of a ``CachedObjectStorage``.
struct CachedObjectHeader {
  var uid: UIDKey
  /// Interned when long enough to be worth it.
  var namespace: String
  var resourceVersion: Int64
  /// Set when the metadata is not what scanning the bytes gives; the elements then hold only the
  /// key, and the offsets are unused.
  var explicitMetadata: ExplicitMetadata?
  var decodeFailureReporter: (any DecodeFailureReporter)?
  var keyCount: UInt32
  var rawCount: UInt32
  /// The offset in the raw bytes of the `metadata` object's `{`, or `UInt32.max` for none.
  var metadataStart: UInt32
  /// Where the ranges start in the elements.
  var rangesOffset: UInt32
  var labelCount: UInt16
  var ownerCount: UInt16
  var finalizerCount: UInt16
}

/// One allocation holding a cached object: the header, then the key's UTF-8 bytes, the raw JSON,
/// and `(start, count)` pairs of `UInt32` locating, in the raw JSON, the name, each label's key
/// and value, each owner UID and each finalizer (in that order).
///
/// Never mutated after it is made, so ``CachedObject`` can share it across threads.
final class CachedObjectStorage: ManagedBuffer<CachedObjectHeader, UInt8> {
  /// The scanner that materializes metadata (no interning: the strings are the caller's).
  private static let scanner = ObjectMetaScanner()

  // MARK: Making

  /// The storage of an object whose scan (`sink`, over `raw`) is supported, at `modRevision`.
  static func make(
    key: String, raw: UnsafeRawBufferPointer, modRevision: Int64, sink: CompactMetadataSink,
    interner: StringInterner?, reporter: (any DecodeFailureReporter)?
  ) -> CachedObjectStorage {
    var key = key
    return key.withUTF8 { keyBytes in
      let rawBase = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
      func bytes(_ token: JSONStringToken) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(start: rawBase + token.start, count: token.count)
      }
      let uid = sink.uid.map { UIDKey(bytes: bytes($0)) } ?? UIDKey("")
      var namespace = ""
      if let token = sink.namespace {
        let namespaceBytes = bytes(token)
        namespace =
          if let interner, namespaceBytes.count >= StringInterner.minimumLength {
            interner.intern(namespaceBytes)
          } else {
            String(decoding: namespaceBytes, as: UTF8.self)
          }
      }
      let rangeCount = 1 + 2 * sink.labelCount + sink.ownerCount + sink.finalizerCount
      let rangesOffset = keyBytes.count + raw.count
      let header = CachedObjectHeader(
        uid: uid, namespace: namespace, resourceVersion: modRevision, explicitMetadata: nil,
        decodeFailureReporter: reporter, keyCount: UInt32(keyBytes.count), rawCount: UInt32(raw.count),
        metadataStart: sink.metadataStart.map { UInt32($0) } ?? .max, rangesOffset: UInt32(rangesOffset),
        // A supported sink holds at most CompactMetadataSink.maximumRanges ranges.
        labelCount: UInt16(sink.labelCount), ownerCount: UInt16(sink.ownerCount),
        finalizerCount: UInt16(sink.finalizerCount))
      let buffer = self.create(minimumCapacity: rangesOffset + 8 * rangeCount) { _ in header }
      let storage = unsafeDowncast(buffer, to: CachedObjectStorage.self)
      storage.withUnsafeMutablePointerToElements { elements in
        elements.update(from: keyBytes.baseAddress!, count: keyBytes.count)
        (elements + keyBytes.count).update(from: rawBase, count: raw.count)
        let ranges = UnsafeMutableRawPointer(elements + rangesOffset)
        func store(_ slot: Int, start: UInt32, count: UInt32) {
          ranges.storeBytes(of: start, toByteOffset: 8 * slot, as: UInt32.self)
          ranges.storeBytes(of: count, toByteOffset: 8 * slot + 4, as: UInt32.self)
        }
        let shift = UInt32(keyBytes.count)
        if let name = sink.name {
          store(0, start: UInt32(name.start) + shift, count: UInt32(name.count))
        } else {
          store(0, start: shift, count: 0)
        }
        // Grouped by kind, each in document order.
        var nextLabel = 1
        var nextOwner = 1 + 2 * sink.labelCount
        var nextFinalizer = nextOwner + sink.ownerCount
        for range in sink.ranges {
          let slot: Int
          switch CompactMetadataSink.tag(of: range) {
          case CompactMetadataSink.Tag.label.rawValue, CompactMetadataSink.Tag.labelValue.rawValue:
            slot = nextLabel
            nextLabel += 1
          case CompactMetadataSink.Tag.ownerUID.rawValue:
            slot = nextOwner
            nextOwner += 1
          case CompactMetadataSink.Tag.finalizer.rawValue:
            slot = nextFinalizer
            nextFinalizer += 1
          default: continue
          }
          store(
            slot, start: UInt32(CompactMetadataSink.start(of: range)) + shift,
            count: UInt32(CompactMetadataSink.count(of: range)))
        }
      }
      return storage
    }
  }

  /// The storage of an object made from its parts: compact when `metadata` is what scanning
  /// `raw` gives (at `metadata.resourceVersion`), the metadata kept as given otherwise.
  static func make(
    key: String, metadata: ObjectMeta, raw: Data, reporter: (any DecodeFailureReporter)? = nil
  ) -> CachedObjectStorage {
    let compact: CachedObjectStorage? = raw.withUnsafeBytes { bytes in
      guard !bytes.isEmpty else { return nil }
      var sink = CompactMetadataSink()
      do {
        try Self.scanner.scan(bytes, into: &sink)
      } catch {
        return nil
      }
      guard sink.isSupported else { return nil }
      let storage = Self.make(
        key: key, raw: bytes, modRevision: metadata.resourceVersion, sink: sink, interner: nil, reporter: reporter)
      return storage.metadata == metadata ? storage : nil
    }
    if let compact { return compact }
    return Self.make(key: key, explicit: metadata, raw: raw, reporter: reporter)
  }

  /// The storage of an object whose metadata is kept as given.
  static func make(
    key: String, explicit metadata: ObjectMeta, raw: Data, reporter: (any DecodeFailureReporter)?
  ) -> CachedObjectStorage {
    var key = key
    return key.withUTF8 { keyBytes in
      let header = CachedObjectHeader(
        uid: UIDKey(metadata.uid), namespace: metadata.namespace, resourceVersion: metadata.resourceVersion,
        explicitMetadata: ExplicitMetadata(metadata, raw: raw), decodeFailureReporter: reporter,
        keyCount: UInt32(keyBytes.count), rawCount: UInt32(raw.count), metadataStart: .max,
        rangesOffset: UInt32(keyBytes.count), labelCount: 0, ownerCount: 0, finalizerCount: 0)
      let buffer = self.create(minimumCapacity: max(1, keyBytes.count)) { _ in header }
      let storage = unsafeDowncast(buffer, to: CachedObjectStorage.self)
      storage.withUnsafeMutablePointerToElements { elements in
        if let base = keyBytes.baseAddress { elements.update(from: base, count: keyBytes.count) }
      }
      return storage
    }
  }

  // MARK: Header fields (through the header's address: no exclusivity check per read)

  @inline(__always) var uid: UIDKey { self.withUnsafeMutablePointerToHeader { $0.pointee.uid } }
  @inline(__always) var namespace: String { self.withUnsafeMutablePointerToHeader { $0.pointee.namespace } }
  @inline(__always) var resourceVersion: Int64 { self.withUnsafeMutablePointerToHeader { $0.pointee.resourceVersion } }
  @inline(__always) var explicitMetadata: ExplicitMetadata? { self.withUnsafeMutablePointerToHeader { $0.pointee.explicitMetadata } }
  @inline(__always) var decodeFailureReporter: (any DecodeFailureReporter)? { self.withUnsafeMutablePointerToHeader { $0.pointee.decodeFailureReporter } }
  @inline(__always) var keyCount: UInt32 { self.withUnsafeMutablePointerToHeader { $0.pointee.keyCount } }
  @inline(__always) var rawCount: UInt32 { self.withUnsafeMutablePointerToHeader { $0.pointee.rawCount } }
  @inline(__always) var metadataStart: UInt32 { self.withUnsafeMutablePointerToHeader { $0.pointee.metadataStart } }
  @inline(__always) var rangesOffset: UInt32 { self.withUnsafeMutablePointerToHeader { $0.pointee.rangesOffset } }
  @inline(__always) var labelCount: UInt16 { self.withUnsafeMutablePointerToHeader { $0.pointee.labelCount } }
  @inline(__always) var ownerCount: UInt16 { self.withUnsafeMutablePointerToHeader { $0.pointee.ownerCount } }
  @inline(__always) var finalizerCount: UInt16 { self.withUnsafeMutablePointerToHeader { $0.pointee.finalizerCount } }

  // MARK: Reading

  @inline(__always)
  func withKey<T>(_ body: (UnsafeBufferPointer<UInt8>) -> T) -> T {
    let count = Int(self.keyCount)
    return self.withUnsafeMutablePointerToElements { body(UnsafeBufferPointer(start: $0, count: count)) }
  }

  @inline(__always)
  func withRaw<T>(_ body: (UnsafeBufferPointer<UInt8>) -> T) -> T {
    if let explicit = self.explicitMetadata {
      return explicit.raw.withUnsafeBytes { body($0.assumingMemoryBound(to: UInt8.self)) }
    }
    let start = Int(self.keyCount)
    let count = Int(self.rawCount)
    return self.withUnsafeMutablePointerToElements { body(UnsafeBufferPointer(start: $0 + start, count: count)) }
  }

  /// The raw bytes as `Data` sharing this storage, for readers only: a write to it would write
  /// into the cached object (never hand it out).
  var rawData: Data {
    if let explicit = self.explicitMetadata { return explicit.raw }
    let count = Int(self.rawCount)
    guard count > 0 else { return Data() }
    let start = Int(self.keyCount)
    let pointer = self.withUnsafeMutablePointerToElements { $0 + start }
    return Data(bytesNoCopy: pointer, count: count, deallocator: .custom { _, _ in withExtendedLifetime(self) {} })
  }

  /// Calls `body` with range `index` (name, then labels, owner UIDs, finalizers) as bytes.
  @inline(__always)
  private func withRange<T>(_ index: Int, _ body: (UnsafeBufferPointer<UInt8>) -> T) -> T {
    let rangesOffset = Int(self.rangesOffset)
    return self.withUnsafeMutablePointerToElements { elements in
      let ranges = UnsafeRawPointer(elements + rangesOffset)
      let start = ranges.loadUnaligned(fromByteOffset: 8 * index, as: UInt32.self)
      let count = ranges.loadUnaligned(fromByteOffset: 8 * index + 4, as: UInt32.self)
      return body(UnsafeBufferPointer(start: elements + Int(start), count: Int(count)))
    }
  }

  @inline(__always)
  private func string(ofRange index: Int) -> String { self.withRange(index) { String(decoding: $0, as: UTF8.self) } }

  var metadata: ObjectMeta {
    if let explicit = self.explicitMetadata { return explicit.metadata }
    let start = self.metadataStart
    var metadata =
      start == .max ? ObjectMeta() : self.withRaw { Self.scanner.metadata(ofValidatedDocument: $0, metadataAt: Int(start)) }
    metadata.resourceVersion = self.resourceVersion
    return metadata
  }

  var name: String {
    if let explicit = self.explicitMetadata { return explicit.metadata.name }
    return self.string(ofRange: 0)
  }

  func withName<T>(_ body: (UnsafeBufferPointer<UInt8>) -> T) -> T {
    if let explicit = self.explicitMetadata {
      var name = explicit.metadata.name
      return name.withUTF8(body)
    }
    return self.withRange(0, body)
  }

  func label(_ key: String) -> String? {
    if let explicit = self.explicitMetadata { return explicit.metadata.labels[key] }
    var key = key
    return key.withUTF8 { wanted in
      for label in 0..<Int(self.labelCount) {
        let slot = 1 + 2 * label
        if self.withRange(slot, { FNV1a.sameBytes($0, wanted) }) { return self.string(ofRange: slot + 1) }
      }
      return nil
    }
  }

  func forEachOwnerUID(_ body: (String) -> Void) {
    if let explicit = self.explicitMetadata {
      for reference in explicit.metadata.ownerReferences { body(reference.uid) }
      return
    }
    let first = 1 + 2 * Int(self.labelCount)
    for slot in first..<(first + Int(self.ownerCount)) { body(self.string(ofRange: slot)) }
  }

  func forEachFinalizer(_ body: (String) -> Void) {
    if let explicit = self.explicitMetadata {
      for finalizer in explicit.metadata.finalizers { body(finalizer) }
      return
    }
    let first = 1 + 2 * Int(self.labelCount) + Int(self.ownerCount)
    for slot in first..<(first + Int(self.finalizerCount)) { body(self.string(ofRange: slot)) }
  }
}

/// An object of any kind, held as metadata plus raw JSON, for tools that cache a prefix without
/// knowing its type (`capstan cache verify`, `capstan doctor`).
///
/// It is ``CachedObject`` itself: a cached object never holds a typed value, so an untyped one
/// needs nothing more. Decode it with ``CachedObject/decode(as:)`` once the type is known.
public typealias UnstructuredObject = CachedObject

/// The error the cache throws.
public struct CacheError: Error, Sendable, CustomStringConvertible {
  /// What kind of failure this is. Stable: switch on it.
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Wrapped: Hashable, Sendable {
      case decodeFailed, unknownIndex
    }
    private let wrapped: Wrapped
    private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

    /// A cached object's bytes do not decode as the requested type.
    public static let decodeFailed = Code(.decodeFailed)
    /// A lookup named an index the cache was not built with.
    public static let unknownIndex = Code(.unknownIndex)

    public var description: String {
      switch self.wrapped {
      case .decodeFailed: "decodeFailed"
      case .unknownIndex: "unknownIndex"
      }
    }
  }

  /// What kind of failure this is.
  public var code: Code
  /// The key of the object concerned, if any.
  public var key: String?
  /// A readable explanation.
  public var message: String
  /// The underlying error, if any (for ``Code/decodeFailed``, the `DecodingError`).
  public var cause: (any Error)?

  /// An error with its code, the key concerned, a message and an optional cause.
  public init(code: Code, key: String? = nil, message: String, cause: (any Error)? = nil) {
    self.code = code
    self.key = key
    self.message = message
    self.cause = cause
  }

  public var description: String { "\(self.code): \(self.message)" }
}

/// Extracts an object's ``ObjectMeta`` from its JSON bytes without decoding the rest.
///
/// The one place metadata is extracted. It uses ``ObjectMetaScanner`` (one validating pass over
/// the bytes, ~10× `JSONDecoder`; its result equals `JSONDecoder`'s for
/// `struct { var metadata: ObjectMeta? }`, which the codec tests prove). An object without
/// `metadata` yields an empty `ObjectMeta` (which the ingestor rejects as a zero value); bytes that
/// are not a JSON object, or a malformed `metadata`, throw ``JSONScanError``.
func extractObjectMeta(from data: Data, scanner: ObjectMetaScanner = ObjectMetaScanner()) throws -> ObjectMeta {
  try scanner.scan(data)
}
