import Foundation

/// One object as the cache holds it: the stored JSON bytes, the key they were read from, and the
/// metadata extracted from them.
///
/// The cache indexes from ``metadata`` alone; the full typed value is decoded only when code asks
/// for it with ``decode(as:)``. `metadata.resourceVersion` is the key's etcd `mod_revision`.
///
/// A value: copies are cheap (the bytes and strings are shared copy-on-write) and changing a copy
/// never changes the cache.
public struct CachedObject: Sendable, Hashable {
  /// The store key the object was read from, e.g. `/registry/pods/default/web`.
  public var key: String
  /// The object's metadata; `resourceVersion` is the key's mod revision.
  public var metadata: ObjectMeta
  /// The object's JSON bytes as stored (after the ingestor's transform, if any).
  public var raw: Data

  /// An object from its parts. ``ObjectIngestor`` is the checked way to make one from a stored
  /// key-value; the cache accepts only objects whose metadata matches their key.
  public init(key: String, metadata: ObjectMeta, raw: Data) {
    self.key = key
    self.metadata = metadata
    self.raw = raw
  }

  /// The object's UID (the cache's primary key).
  public var uid: String { self.metadata.uid }

  /// Decodes the full typed value from ``raw`` with `JSONDecoder`, and sets its
  /// `metadata.resourceVersion` to the cached revision (the stored JSON does not carry it).
  ///
  /// - Throws: ``CacheError`` with code ``CacheError/Code/decodeFailed`` naming the key.
  public func decode<R: Resource>(as type: R.Type = R.self) throws(CacheError) -> R {
    do {
      var value = try JSONDecoder().decode(R.self, from: self.raw)
      value.metadata.resourceVersion = self.metadata.resourceVersion
      return value
    } catch {
      throw CacheError(
        code: .decodeFailed, key: self.key,
        message: "cannot decode \(self.key) as \(R.kind): \(error)", cause: error)
    }
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
