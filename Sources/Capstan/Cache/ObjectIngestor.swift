import Foundation
import Logging
import Metrics
import Synchronization

/// Why a stored value was not cached.
public enum IngestRejectionReason: Sendable, Hashable, CustomStringConvertible {
  /// The value has no bytes.
  case emptyPayload
  /// The bytes are not a JSON object with a well-formed `metadata`; `description` says why.
  case undecodable(description: String)
  /// `metadata.uid` is empty.
  case emptyUID
  /// `metadata.name` is empty.
  case emptyName
  /// The metadata names another object than the key does (or the key does not fit the layout):
  /// `namespace` and `name` are what the metadata says.
  case keyMismatch(namespace: String, name: String)
  /// The object's UID is already cached under another key that still holds it (a copied
  /// document): the first object keeps the UID, this one is not cached.
  case duplicateUID(heldBy: String)

  /// Whether the value decoded but is a zero-value object (every case but
  /// ``undecodable(description:)`` and ``duplicateUID(heldBy:)``).
  public var isZeroValue: Bool {
    switch self {
    case .undecodable, .duplicateUID: false
    default: true
    }
  }

  public var description: String {
    switch self {
    case .emptyPayload: "empty payload"
    case .undecodable(let description): "undecodable: \(description)"
    case .emptyUID: "empty metadata.uid"
    case .emptyName: "empty metadata.name"
    case .keyMismatch(let namespace, let name):
      "key does not match metadata (namespace \"\(namespace)\", name \"\(name)\")"
    case .duplicateUID(let heldBy):
      "metadata.uid is already held by \(heldBy)"
    }
  }
}

/// Decides whether an object may be cached under its key in one layout (shared by the ingestor
/// and the cache's own checks). Allocates nothing for a valid object.
struct ObjectValidator: Sendable {
  let layout: ResourceLayout
  private let prefix: String

  private let prefixBytes: [UInt8]

  init(layout: ResourceLayout) {
    self.layout = layout
    self.prefix = layout.prefix
    self.prefixBytes = Array(layout.prefix.utf8)
  }

  /// The reason `metadata` with `raw` cannot be cached under `key`, or `nil` if it can.
  func rejectionReason(key: String, metadata: ObjectMeta, raw: Data) -> IngestRejectionReason? {
    if raw.isEmpty { return .emptyPayload }
    if metadata.uid.isEmpty { return .emptyUID }
    if metadata.name.isEmpty { return .emptyName }
    if !self.keyIsExactly(key, metadata: metadata), !self.layout.keyMatches(key, metadata: metadata) {
      return .keyMismatch(namespace: metadata.namespace, name: metadata.name)
    }
    return nil
  }

  /// The reason `object` cannot be cached under its key, or `nil` if it can. Reads the object's
  /// fields in place (no metadata is decoded for a valid object).
  func rejectionReason(for object: CachedObject) -> IngestRejectionReason? {
    if object.rawByteCount == 0 { return .emptyPayload }
    if object.uidKey.isEmpty { return .emptyUID }
    let nameIsEmpty = object.withName { $0.isEmpty }
    if nameIsEmpty { return .emptyName }
    let exact = object.storage.withKey { key in
      object.withName { name in self.keyIsExactly(key, namespace: object.namespace, name: name) }
    }
    if !exact {
      let key = object.key
      let metadata = ObjectMeta(uid: object.uid, name: object.name, namespace: object.namespace)
      if !self.layout.keyMatches(key, metadata: metadata) {
        return .keyMismatch(namespace: metadata.namespace, name: metadata.name)
      }
    }
    return nil
  }

  /// Whether `key` is byte for byte the key the layout gives `namespace` and `name`, with no `/`
  /// inside them (bytes form of ``keyIsExactly(_:metadata:)``).
  private func keyIsExactly(_ key: UnsafeBufferPointer<UInt8>, namespace: String, name: UnsafeBufferPointer<UInt8>) -> Bool {
    let slash = UInt8(ascii: "/")
    var offset = 0
    /// Consumes `part` from the key (with no `/` inside unless allowed).
    func consume(_ part: UnsafeBufferPointer<UInt8>, allowSlash: Bool) -> Bool {
      guard offset + part.count <= key.count, let partBase = part.baseAddress else { return part.isEmpty }
      guard memcmp(key.baseAddress! + offset, partBase, part.count) == 0 else { return false }
      if !allowSlash, memchr(partBase, Int32(slash), part.count) != nil { return false }
      offset += part.count
      return true
    }
    guard !name.isEmpty, self.prefixBytes.withUnsafeBufferPointer({ consume($0, allowSlash: true) }) else { return false }
    if self.layout.isNamespaced {
      var namespace = namespace
      guard !namespace.isEmpty, namespace.withUTF8({ consume($0, allowSlash: false) }),
        offset < key.count, key[offset] == slash
      else { return false }
      offset += 1
    } else {
      guard namespace.isEmpty else { return false }
    }
    return consume(name, allowSlash: false) && offset == key.count
  }

  /// Whether `key` is byte for byte the key the layout gives `metadata`, with no `/` inside the
  /// namespace or name: a sufficient condition for ``ResourceLayout/keyMatches(_:metadata:)``
  /// that allocates nothing. (When it fails, `keyMatches` decides.)
  private func keyIsExactly(_ key: String, metadata: ObjectMeta) -> Bool {
    let slash = UInt8(ascii: "/")
    var keyBytes = key.utf8.makeIterator()
    func consume(_ part: String, allowSlash: Bool) -> Bool {
      for byte in part.utf8 {
        guard byte != slash || allowSlash, keyBytes.next() == byte else { return false }
      }
      return true
    }
    guard !metadata.name.isEmpty, consume(self.prefix, allowSlash: true) else { return false }
    if self.layout.isNamespaced {
      guard !metadata.namespace.isEmpty, consume(metadata.namespace, allowSlash: false), keyBytes.next() == slash
      else { return false }
    } else {
      guard metadata.namespace.isEmpty else { return false }
    }
    return consume(metadata.name, allowSlash: false) && keyBytes.next() == nil
  }
}

/// A stored value the ingestor refused to cache: its key, revision and the reason.
public struct IngestRejection: Error, Sendable, Hashable, CustomStringConvertible {
  /// The store key.
  public var key: String
  /// The key's mod revision.
  public var modRevision: Int64
  /// Why it was refused.
  public var reason: IngestRejectionReason

  /// A rejection of the value at `key`, written at `modRevision`, for `reason`.
  public init(key: String, modRevision: Int64, reason: IngestRejectionReason) {
    self.key = key
    self.modRevision = modRevision
    self.reason = reason
  }

  public var description: String { "\(self.key)@\(self.modRevision): \(self.reason)" }
}

/// Turns stored key-values of one kind into ``CachedObject``s, and refuses values that must never
/// be cached: bytes that do not decode, and zero-value objects (empty payload, empty UID or name,
/// metadata that does not match the key).
///
/// Every refusal is counted — `capstan_cache_decode_errors_total` or
/// `capstan_cache_zero_value_keys_total`, dimension `resource` = the plural — and logged as a
/// warning **once per key**: a key is logged again only after it ingested fine or was
/// ``forget(key:)``-ed (deleted). At most `reportedKeyLimit` keys are remembered; rejections of
/// further keys are counted in ``rejectionsNotLogged`` instead of logged.
///
/// Safe to call from any thread; the informer is its usual caller.
public final class ObjectIngestor: Sendable, DecodeFailureReporter {
  /// A change applied to an object before it is cached (e.g. stripping fields nobody reads). It
  /// gets the extracted metadata and the raw bytes; keep them consistent, since
  /// ``CachedObject/decode(as:)`` decodes the bytes. The result is validated again.
  public typealias Transform = @Sendable (_ metadata: inout ObjectMeta, _ raw: inout Data) -> Void

  /// The layout of the kind this ingestor reads.
  public let layout: ResourceLayout
  private let validator: ObjectValidator
  /// Extracts metadata; its interner lets the objects of this kind share repeated strings
  /// (namespaces, label keys and values, owner kinds).
  private let scanner: ObjectMetaScanner
  private let interner = StringInterner()
  private let transform: Transform?
  private let logger: Logger
  private let reportedKeyLimit: Int
  private let zeroValueKeys: Counter
  private let decodeErrors: Counter
  private let reported: Mutex<ReportedKeys>
  /// How many keys are in `reported` (read without the lock on the success path).
  private let reportedCount = Atomic<Int>(0)

  private struct ReportedKeys {
    var keys: Set<String> = []
    var notLogged = 0
  }

  /// An ingestor for `layout`.
  ///
  /// - Parameters:
  ///   - transform: runs on every accepted object before it is cached.
  ///   - logger: where refusals are logged.
  ///   - metricsFactory: where the counters live (default: the global `MetricsSystem.factory`).
  ///   - reportedKeyLimit: how many refused keys are remembered to log each once.
  public init(
    layout: ResourceLayout, transform: Transform? = nil, logger: Logger,
    metricsFactory: (any MetricsFactory)? = nil, reportedKeyLimit: Int = 10_000
  ) {
    self.layout = layout
    self.validator = ObjectValidator(layout: layout)
    self.transform = transform
    self.logger = logger
    self.reportedKeyLimit = max(0, reportedKeyLimit)
    let factory = metricsFactory ?? MetricsSystem.factory
    let dimensions = [("resource", layout.plural)]
    self.zeroValueKeys = Counter(label: "capstan_cache_zero_value_keys_total", dimensions: dimensions, factory: factory)
    self.decodeErrors = Counter(label: "capstan_cache_decode_errors_total", dimensions: dimensions, factory: factory)
    self.reported = Mutex(ReportedKeys())
    self.scanner = ObjectMetaScanner(interner: self.interner)
  }

  /// The cached form of `keyValue`, or why it must not be cached (counted and logged once per key).
  public func ingest(_ keyValue: StoredKeyValue) -> Result<CachedObject, IngestRejection> {
    switch self.check(keyValue) {
    case .success(let object):
      if self.reportedCount.load(ordering: .relaxed) > 0 { self.forget(key: keyValue.key) }
      return .success(object)
    case .failure(let rejection):
      self.record(rejection)
      return .failure(rejection)
    }
  }

  /// Forgets that `key` was reported, so a later refusal of it is logged again. Call when the key
  /// is deleted.
  public func forget(key: String) {
    self.reported.withLock { reported in
      if reported.keys.remove(key) != nil {
        self.reportedCount.store(reported.keys.count, ordering: .relaxed)
      }
    }
  }

  /// How many refusals were not logged because `reportedKeyLimit` keys were already remembered.
  public var rejectionsNotLogged: Int { self.reported.withLock { $0.notLogged } }

  /// How many refused keys are remembered (logged, and not logged again until forgotten).
  public var reportedKeyCount: Int { self.reportedCount.load(ordering: .relaxed) }

  /// The decision of ``ingest(_:)`` alone, without counting or logging: for tools that report on
  /// a whole store (`capstan cache verify`, `capstan doctor`).
  public func check(_ keyValue: StoredKeyValue) -> Result<CachedObject, IngestRejection> {
    func reject(_ reason: IngestRejectionReason) -> Result<CachedObject, IngestRejection> {
      .failure(IngestRejection(key: keyValue.key, modRevision: keyValue.modRevision, reason: reason))
    }
    if keyValue.value.isEmpty { return reject(.emptyPayload) }
    // The fast path: one validating pass that records where the metadata sits, and one copy of
    // the bytes into the object's storage.
    if self.transform == nil {
      let compact: CachedObject? = keyValue.value.withUnsafeBytes { bytes in
        var sink = CompactMetadataSink()
        guard (try? self.scanner.scan(bytes, into: &sink)) != nil, sink.isSupported else { return nil }
        return CachedObject(
          storage: CachedObjectStorage.make(
            key: keyValue.key, raw: bytes, modRevision: keyValue.modRevision, sink: sink, interner: self.interner,
            reporter: self))
      }
      if let compact {
        if let reason = self.validator.rejectionReason(for: compact) { return reject(reason) }
        return .success(compact)
      }
    }
    // Everything else (a transform, unusual strings, errors to describe) takes the full scan.
    var metadata: ObjectMeta
    do {
      metadata = try extractObjectMeta(from: keyValue.value, scanner: self.scanner)
    } catch {
      return reject(.undecodable(description: Self.describe(error)))
    }
    var raw = keyValue.value
    metadata.resourceVersion = keyValue.modRevision
    if let transform = self.transform {
      transform(&metadata, &raw)
      metadata.resourceVersion = keyValue.modRevision
    }
    if let reason = self.validator.rejectionReason(key: keyValue.key, metadata: metadata, raw: raw) {
      return reject(reason)
    }
    return .success(
      CachedObject(storage: CachedObjectStorage.make(key: keyValue.key, metadata: metadata, raw: raw, reporter: self)))
  }

  /// Counts and logs (once per key) a cached object whose bytes did not decode as `kind`: a
  /// late decode error, reported like the ones found at ingest.
  func reportDecodeFailure(of object: CachedObject, as kind: String, error: any Error) {
    self.record(
      IngestRejection(
        key: object.key, modRevision: object.resourceVersion,
        reason: .undecodable(description: "as \(kind): \(Self.describe(error))")), late: true)
  }

  private func record(_ rejection: IngestRejection, late: Bool = false) {
    if rejection.reason.isZeroValue {
      self.zeroValueKeys.increment()
    } else {
      self.decodeErrors.increment()
    }
    enum Decision { case log, alreadyLogged, limitReached(first: Bool) }
    let decision: Decision = self.reported.withLock { reported in
      if reported.keys.contains(rejection.key) { return .alreadyLogged }
      guard reported.keys.count < self.reportedKeyLimit else {
        reported.notLogged += 1
        return .limitReached(first: reported.notLogged == 1)
      }
      reported.keys.insert(rejection.key)
      self.reportedCount.store(reported.keys.count, ordering: .relaxed)
      return .log
    }
    switch decision {
    case .log:
      self.logger.warning(
        late ? "a cached object does not decode" : "not caching a stored object",
        metadata: [
          "key": "\(rejection.key)", "mod_revision": "\(rejection.modRevision)",
          "reason": "\(rejection.reason)", "resource": "\(self.layout.plural)",
        ])
    case .limitReached(first: true):
      self.logger.warning(
        "too many refused keys to log each; further ones are only counted",
        metadata: ["resource": "\(self.layout.plural)", "limit": "\(self.reportedKeyLimit)"])
    case .alreadyLogged, .limitReached(first: false):
      break
    }
  }

  /// A one-line description of a decoding error (its debug description and coding path).
  private static func describe(_ error: any Error) -> String {
    guard let decodingError = error as? DecodingError else { return "\(error)" }
    let context: DecodingError.Context
    switch decodingError {
    case .typeMismatch(_, let c), .valueNotFound(_, let c), .keyNotFound(_, let c), .dataCorrupted(let c):
      context = c
    @unknown default:
      return "\(error)"
    }
    let path = context.codingPath.map(\.stringValue).joined(separator: ".")
    return path.isEmpty ? context.debugDescription : "\(path): \(context.debugDescription)"
  }
}
