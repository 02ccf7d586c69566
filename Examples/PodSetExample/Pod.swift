public import Capstan

/// A pod: the kind a ``PodSet`` owns. Stored as JSON under `/registry/pods/<namespace>/<name>`.
///
/// There is no kubelet in Capstan, so nothing runs a pod. The example keeps readiness simple
/// and explicit: ``PodSetReconciler`` creates each pod already `Running` and ready (an instant
/// "kubelet"), and anyone may later mark a pod unready (``PodSetClient/setPodReady(namespace:name:ready:)``);
/// a set's `status.readyReplicas` counts the pods whose ``Status/ready`` is true.
public struct Pod: Resource, Hashable {
  /// `Pod`.
  public static let kind = "Pod"
  /// `pods`.
  public static let plural = "pods"

  /// The pod's metadata: the template's labels and the owner reference to its set.
  public var metadata: ObjectMeta
  /// What the pod runs.
  public var spec: Spec
  /// Whether it runs and is ready; absent means pending and not ready.
  public var status: Status?

  /// What a pod runs.
  public struct Spec: Codable, Sendable, Hashable {
    /// The container image.
    public var image: String

    /// A spec running `image`.
    public init(image: String) { self.image = image }
  }

  /// A pod's lifecycle phase, as Kubernetes names it.
  public enum Phase: String, Codable, Sendable, Hashable {
    /// Accepted, not running yet.
    case pending = "Pending"
    /// Running.
    case running = "Running"
    /// Terminated with success.
    case succeeded = "Succeeded"
    /// Terminated with failure.
    case failed = "Failed"
  }

  /// A pod's observed state.
  public struct Status: Codable, Sendable, Hashable {
    /// The phase.
    public var phase: Phase
    /// Whether the pod serves (what `readyReplicas` counts).
    public var ready: Bool

    /// A status in `phase`, `ready` or not.
    public init(phase: Phase, ready: Bool) {
      self.phase = phase
      self.ready = ready
    }
  }

  /// A pod named `name` in `namespace` with its UID, running `image`, with `labels` and `owners`.
  public init(
    name: String, namespace: String, uid: String, image: String = "nginx", labels: [String: String] = [:],
    owners: [OwnerReference] = [], status: Status? = nil
  ) {
    self.metadata = ObjectMeta(uid: uid, name: name, namespace: namespace, labels: labels, ownerReferences: owners)
    self.spec = Spec(image: image)
    self.status = status
  }

  /// Whether the pod counts as ready.
  public var isReady: Bool { self.status?.ready == true }

  /// The owner reference marked `controller: true`, if any.
  public var controllerReference: OwnerReference? {
    self.metadata.ownerReferences.first { $0.controller == true }
  }
}
