public import Capstan

/// A set of identical ``Pod``s kept at a number of replicas: the primary kind of the tutorial
/// controller (``PodSetReconciler``), Capstan's ReplicaSet.
///
/// Stored as JSON under `/registry/podsets/<namespace>/<name>`. Writers bump
/// `metadata.generation` whenever they change ``spec`` (``PodSetClient`` does); the controller
/// writes only ``status``, copying the generation it acted on into
/// ``Status/observedGeneration``.
public struct PodSet: Resource, Hashable {
  /// `PodSet`.
  public static let kind = "PodSet"
  /// `podsets`.
  public static let plural = "podsets"

  /// The set's metadata (the controller's finalizer lives in `metadata.finalizers`).
  public var metadata: ObjectMeta
  /// What the set asks for.
  public var spec: Spec
  /// What the controller last observed; absent until its first reconcile.
  public var status: Status?

  /// What a PodSet asks for.
  public struct Spec: Codable, Sendable, Hashable {
    /// How many pods the set keeps (at least 0).
    public var replicas: Int
    /// What each of its pods looks like.
    public var template: PodTemplate

    /// A spec of `replicas` pods made from `template`.
    public init(replicas: Int, template: PodTemplate) {
      self.replicas = replicas
      self.template = template
    }
  }

  /// The shape of the pods a set creates.
  public struct PodTemplate: Codable, Sendable, Hashable {
    /// The labels every pod of the set carries, exactly.
    public var labels: [String: String]
    /// The image the pods run (default `nginx`).
    public var image: String

    /// A template with `labels` running `image`.
    public init(labels: [String: String], image: String = "nginx") {
      self.labels = labels
      self.image = image
    }

    private enum CodingKeys: String, CodingKey { case labels, image }

    /// Decodes a template; a missing `labels` is empty and a missing `image` is `nginx`.
    public init(from decoder: any Decoder) throws {
      let container = try decoder.container(keyedBy: CodingKeys.self)
      self.labels = try container.decodeIfPresent([String: String].self, forKey: .labels) ?? [:]
      self.image = try container.decodeIfPresent(String.self, forKey: .image) ?? "nginx"
    }
  }

  /// What the controller observed.
  public struct Status: Codable, Sendable, Hashable {
    /// How many of the set's pods (those matching its template) are ready.
    public var readyReplicas: Int
    /// The `metadata.generation` the controller acted on last.
    public var observedGeneration: Int64

    /// A status of `readyReplicas` ready pods, observed at `observedGeneration`.
    public init(readyReplicas: Int, observedGeneration: Int64) {
      self.readyReplicas = readyReplicas
      self.observedGeneration = observedGeneration
    }

    private enum CodingKeys: String, CodingKey { case readyReplicas, observedGeneration }

    /// Decodes a status; missing fields are 0.
    public init(from decoder: any Decoder) throws {
      let container = try decoder.container(keyedBy: CodingKeys.self)
      self.readyReplicas = try container.decodeIfPresent(Int.self, forKey: .readyReplicas) ?? 0
      self.observedGeneration = try container.decodeIfPresent(Int64.self, forKey: .observedGeneration) ?? 0
    }
  }

  /// A set named `name` in `namespace` with its UID, keeping `replicas` pods labelled `labels`.
  /// Its generation starts at 1.
  public init(
    name: String, namespace: String, uid: String, replicas: Int, labels: [String: String], image: String = "nginx"
  ) {
    self.metadata = ObjectMeta(uid: uid, name: name, namespace: namespace, generation: 1)
    self.spec = Spec(replicas: replicas, template: PodTemplate(labels: labels, image: image))
    self.status = nil
  }

  /// The owner reference a pod controlled by this set carries (`controller: true`).
  public var controllerReference: OwnerReference {
    OwnerReference(
      apiVersion: PodSet.apiVersion, kind: PodSet.kind, name: self.metadata.name, uid: self.metadata.uid,
      controller: true, blockOwnerDeletion: true)
  }

  /// The API version written into owner references: `example.capstan.dev/v1`.
  public static let apiVersion = "example.capstan.dev/v1"
}
