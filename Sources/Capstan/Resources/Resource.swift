/// A kind of object that Capstan stores, caches and reconciles: a `Codable` type with
/// ``ObjectMeta`` under `metadata` and a fixed key layout in the store:
/// `/registry/<plural>/<namespace>/<name>`, or `/registry/<plural>/<name>` when cluster-scoped.
public protocol Resource: Codable, Sendable {
  /// The kind, e.g. `Pod`.
  static var kind: String { get }
  /// The plural used in keys, e.g. `pods`.
  static var plural: String { get }
  /// Whether objects live in a namespace (default `true`).
  static var isNamespaced: Bool { get }
  /// The object's metadata.
  var metadata: ObjectMeta { get set }
}

extension Resource {
  public static var isNamespaced: Bool { true }

  /// The key layout of this kind.
  public static var layout: ResourceLayout {
    ResourceLayout(kind: Self.kind, plural: Self.plural, isNamespaced: Self.isNamespaced)
  }

  /// The key this object is stored under.
  public var key: String { Self.layout.key(namespace: self.metadata.namespace, name: self.metadata.name) }
}

/// Where the objects of one kind live in the store, and how keys map to names.
public struct ResourceLayout: Sendable, Hashable {
  public var kind: String
  public var plural: String
  public var isNamespaced: Bool

  public init(kind: String, plural: String, isNamespaced: Bool) {
    self.kind = kind
    self.plural = plural
    self.isNamespaced = isNamespaced
  }

  /// The prefix every key of this kind starts with: `/registry/<plural>/`.
  public var prefix: String { "/registry/\(self.plural)/" }

  /// The key of the object `name` in `namespace` (ignored when cluster-scoped).
  public func key(namespace: String, name: String) -> String {
    self.isNamespaced ? "\(self.prefix)\(namespace)/\(name)" : "\(self.prefix)\(name)"
  }

  /// The namespace and name a key stands for, or `nil` if the key does not fit this layout
  /// (wrong prefix, wrong number of segments, an empty segment).
  public func namespaceAndName(of key: String) -> (namespace: String, name: String)? {
    guard key.hasPrefix(self.prefix) else { return nil }
    let rest = key.utf8.dropFirst(self.prefix.utf8.count)
    let segments = rest.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
    if self.isNamespaced {
      guard segments.count == 2, !segments[0].isEmpty, !segments[1].isEmpty else { return nil }
      return (String(Substring(segments[0])), String(Substring(segments[1])))
    }
    guard segments.count == 1, !segments[0].isEmpty else { return nil }
    return ("", String(Substring(segments[0])))
  }

  /// Whether `metadata` is the object that `key` stands for (same namespace and name; an empty
  /// namespace for cluster-scoped kinds).
  public func keyMatches(_ key: String, metadata: ObjectMeta) -> Bool {
    guard let (namespace, name) = self.namespaceAndName(of: key) else { return false }
    return namespace == metadata.namespace && name == metadata.name
  }
}
