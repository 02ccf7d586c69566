/// A secondary index of an ``ObjectCache``: a function from an object to the values it is found
/// under. An object may have no value, one, or several.
///
/// Index functions must be pure: the cache recomputes them from the stored object to remove its
/// entries, so a function that answered differently for the same object would leave stale entries
/// (``ObjectCache/zeroValueScan()`` would report them). Values are compared as UTF-8 bytes, as
/// etcd compares keys.
public struct CacheIndex: Sendable, CustomStringConvertible {
  enum Kind: Sendable {
    case namespace
    case label(String)
    case ownerUID
    case custom(@Sendable (CachedObject) -> [String])
  }

  /// The index's name; names are unique within one cache (`namespace` is reserved).
  public let name: String
  let kind: Kind

  private init(name: String, kind: Kind) {
    self.name = name
    self.kind = kind
  }

  /// Objects by the value of the label `key` (objects without the label are not indexed). Named
  /// `label:<key>`.
  public static func label(_ key: String) -> CacheIndex { CacheIndex(name: "label:\(key)", kind: .label(key)) }

  /// Objects by the UID of each of their owners (`metadata.ownerReferences[].uid`). Named `ownerUID`.
  public static var ownerUID: CacheIndex { CacheIndex(name: "ownerUID", kind: .ownerUID) }

  /// Objects by any values `values` computes from them. `values` must be pure; duplicates count once.
  ///
  /// `values` runs on every write of an object (twice on an update): read the object's direct
  /// accessors (``CachedObject/label(_:)``, ``CachedObject/ownerUIDs``, ``CachedObject/finalizers``,
  /// ``CachedObject/namespace``…), which read the cached bytes in place, rather than
  /// ``CachedObject/metadata``, which decodes the whole `ObjectMeta` on each read.
  public static func custom(name: String, _ values: @escaping @Sendable (CachedObject) -> [String]) -> CacheIndex {
    CacheIndex(name: name, kind: .custom(values))
  }

  /// The built-in index of every namespaced cache: objects by namespace.
  static var namespace: CacheIndex { CacheIndex(name: "namespace", kind: .namespace) }

  public var description: String { self.name }

  /// Calls `body` with each value `object` is indexed under (without allocating for the built-in
  /// kinds). A value may repeat for custom indexes.
  @inline(__always)
  func forEachValue(of object: CachedObject, _ body: (String) -> Void) {
    switch self.kind {
    case .namespace:
      body(object.namespace)
    case .label(let key):
      if let value = object.label(key) { body(value) }
    case .ownerUID:
      object.forEachOwnerUID(body)
    case .custom(let values):
      for value in values(object) { body(value) }
    }
  }

  /// Whether `object` is indexed under `value`.
  func contains(_ value: String, for object: CachedObject) -> Bool {
    switch self.kind {
    case .namespace: return object.namespace == value
    case .label(let key): return object.label(key) == value
    case .ownerUID: return object.ownerUIDs.contains(value)
    case .custom(let values): return values(object).contains(value)
    }
  }

  /// Whether `old` and `new` are indexed under the same values (then an update leaves the index alone).
  func sameValues(_ old: CachedObject, _ new: CachedObject) -> Bool {
    switch self.kind {
    case .namespace:
      return old.namespace == new.namespace
    case .label(let key):
      return old.label(key) == new.label(key)
    case .ownerUID:
      return old.ownerUIDs == new.ownerUIDs
    case .custom(let values):
      return values(old) == values(new)
    }
  }

  /// The values of `object`, for the rare paths that need them all at once.
  func values(of object: CachedObject) -> [String] {
    var values: [String] = []
    self.forEachValue(of: object) { values.append($0) }
    return values
  }
}
