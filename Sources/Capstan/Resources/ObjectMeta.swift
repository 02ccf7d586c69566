/// The metadata every Capstan object carries, with Kubernetes' JSON field names.
///
/// `resourceVersion` is the etcd `mod_revision` of the object's key: it is filled in when the
/// object is read from a ``Backend`` and is not part of the stored JSON (it is encoded only when
/// non-zero, as a decimal string like Kubernetes does, and ignored by the codec when stored).
public struct ObjectMeta: Sendable, Hashable, Codable {
  /// The object's unique ID; the cache's primary key. Never empty in a valid object.
  public var uid: String
  /// The object's name, unique within its namespace (or cluster-wide when cluster-scoped).
  public var name: String
  /// The namespace; empty for cluster-scoped objects.
  public var namespace: String
  /// The etcd mod revision the object was read at (0 before it is stored).
  public var resourceVersion: Int64
  /// Incremented by writers on every change of the desired state (spec).
  public var generation: Int64
  public var labels: [String: String]
  public var annotations: [String: String]
  public var ownerReferences: [OwnerReference]
  public var finalizers: [String]
  public var creationTimestamp: Timestamp?
  /// Set when deletion was requested while finalizers remain.
  public var deletionTimestamp: Timestamp?

  public init(
    uid: String = "",
    name: String = "",
    namespace: String = "",
    resourceVersion: Int64 = 0,
    generation: Int64 = 0,
    labels: [String: String] = [:],
    annotations: [String: String] = [:],
    ownerReferences: [OwnerReference] = [],
    finalizers: [String] = [],
    creationTimestamp: Timestamp? = nil,
    deletionTimestamp: Timestamp? = nil
  ) {
    self.uid = uid
    self.name = name
    self.namespace = namespace
    self.resourceVersion = resourceVersion
    self.generation = generation
    self.labels = labels
    self.annotations = annotations
    self.ownerReferences = ownerReferences
    self.finalizers = finalizers
    self.creationTimestamp = creationTimestamp
    self.deletionTimestamp = deletionTimestamp
  }

  /// `namespace/name`, or just `name` for cluster-scoped objects: the unique name index's key.
  public var namespacedName: String { self.namespace.isEmpty ? self.name : "\(self.namespace)/\(self.name)" }

  private enum CodingKeys: String, CodingKey {
    case uid, name, namespace, resourceVersion, generation, labels, annotations, ownerReferences, finalizers
    case creationTimestamp, deletionTimestamp
  }

  public init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    self.uid = try container.decodeIfPresent(String.self, forKey: .uid) ?? ""
    self.name = try container.decodeIfPresent(String.self, forKey: .name) ?? ""
    self.namespace = try container.decodeIfPresent(String.self, forKey: .namespace) ?? ""
    if let text = try container.decodeIfPresent(String.self, forKey: .resourceVersion), !text.isEmpty {
      guard let value = Int64(text), value >= 0 else {
        throw DecodingError.dataCorruptedError(
          forKey: .resourceVersion, in: container, debugDescription: "resourceVersion \"\(text)\" is not a revision")
      }
      self.resourceVersion = value
    } else {
      self.resourceVersion = 0
    }
    self.generation = try container.decodeIfPresent(Int64.self, forKey: .generation) ?? 0
    self.labels = try container.decodeIfPresent([String: String].self, forKey: .labels) ?? [:]
    self.annotations = try container.decodeIfPresent([String: String].self, forKey: .annotations) ?? [:]
    self.ownerReferences = try container.decodeIfPresent([OwnerReference].self, forKey: .ownerReferences) ?? []
    self.finalizers = try container.decodeIfPresent([String].self, forKey: .finalizers) ?? []
    self.creationTimestamp = try container.decodeIfPresent(Timestamp.self, forKey: .creationTimestamp)
    self.deletionTimestamp = try container.decodeIfPresent(Timestamp.self, forKey: .deletionTimestamp)
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.container(keyedBy: CodingKeys.self)
    if !self.name.isEmpty { try container.encode(self.name, forKey: .name) }
    if !self.namespace.isEmpty { try container.encode(self.namespace, forKey: .namespace) }
    if !self.uid.isEmpty { try container.encode(self.uid, forKey: .uid) }
    if self.resourceVersion != 0 { try container.encode(String(self.resourceVersion), forKey: .resourceVersion) }
    if self.generation != 0 { try container.encode(self.generation, forKey: .generation) }
    if let creationTimestamp { try container.encode(creationTimestamp, forKey: .creationTimestamp) }
    if let deletionTimestamp { try container.encode(deletionTimestamp, forKey: .deletionTimestamp) }
    if !self.labels.isEmpty { try container.encode(self.labels, forKey: .labels) }
    if !self.annotations.isEmpty { try container.encode(self.annotations, forKey: .annotations) }
    if !self.ownerReferences.isEmpty { try container.encode(self.ownerReferences, forKey: .ownerReferences) }
    if !self.finalizers.isEmpty { try container.encode(self.finalizers, forKey: .finalizers) }
  }
}

/// A reference from an owned object to its owner (Kubernetes' `OwnerReference`).
public struct OwnerReference: Sendable, Hashable, Codable {
  public var apiVersion: String
  public var kind: String
  public var name: String
  /// The owner's UID: what owner lookups index.
  public var uid: String
  /// Whether the owner is the managing controller (at most one reference has this).
  public var controller: Bool?
  public var blockOwnerDeletion: Bool?

  public init(
    apiVersion: String = "capstan.io/v1", kind: String, name: String, uid: String, controller: Bool? = nil,
    blockOwnerDeletion: Bool? = nil
  ) {
    self.apiVersion = apiVersion
    self.kind = kind
    self.name = name
    self.uid = uid
    self.controller = controller
    self.blockOwnerDeletion = blockOwnerDeletion
  }
}
