import Foundation

/// A Kubernetes-shaped Pod holding every field of ``PodFixture``'s documents: the typed value the
/// benchmarks (and `capstan bench ingest`) decode with `JSONDecoder` as the baseline.
public struct SamplePod: Resource, Hashable {
  /// `Pod`.
  public static let kind = "Pod"
  /// `pods`: the documents live under `/registry/pods/`.
  public static let plural = "pods"

  /// `v1`.
  public var apiVersion: String
  /// `Pod`.
  public var kind: String
  /// The metadata.
  public var metadata: ObjectMeta
  /// The spec.
  public var spec: Spec
  /// The status.
  public var status: Status
}

extension SamplePod {
  /// The desired state: containers, volumes, node.
  public struct Spec: Codable, Sendable, Hashable {
    /// The containers.
    public var containers: [Container]
    /// The volumes.
    public var volumes: [Volume]
    /// The node name.
    public var nodeName: String
    /// The restart policy.
    public var restartPolicy: String
  }

  /// One container of the Pod.
  public struct Container: Codable, Sendable, Hashable {
    /// The name.
    public var name: String
    /// The image.
    public var image: String
    /// The args.
    public var args: [String]
    /// The ports.
    public var ports: [ContainerPort]
    /// The env.
    public var env: [EnvVar]
    /// The resources.
    public var resources: ResourceRequirements
    /// The volume mounts.
    public var volumeMounts: [VolumeMount]
  }

  /// A port a container exposes.
  public struct ContainerPort: Codable, Sendable, Hashable {
    /// The container port.
    public var containerPort: Int
    /// The protocol.
    public var `protocol`: String
  }

  /// An environment variable of a container.
  public struct EnvVar: Codable, Sendable, Hashable {
    /// The name.
    public var name: String
    /// The value.
    public var value: String
  }

  /// CPU and memory requests and limits.
  public struct ResourceRequirements: Codable, Sendable, Hashable {
    /// The requests.
    public var requests: [String: String]
    /// The limits.
    public var limits: [String: String]
  }

  /// Where a volume is mounted in a container.
  public struct VolumeMount: Codable, Sendable, Hashable {
    /// The name.
    public var name: String
    /// The mount path.
    public var mountPath: String
    /// The read only.
    public var readOnly: Bool
  }

  /// A volume of the Pod.
  public struct Volume: Codable, Sendable, Hashable {
    /// The config map a volume is made from.
    public struct ConfigMapSource: Codable, Sendable, Hashable {
      /// The name.
      public var name: String
    }

    /// The name.
    public var name: String
    /// The config map.
    public var configMap: ConfigMapSource
  }

  /// The observed state: phase, IP, conditions, container statuses.
  public struct Status: Codable, Sendable, Hashable {
    /// The phase.
    public var phase: String
    /// The pod i p.
    public var podIP: String
    /// The conditions.
    public var conditions: [Condition]
    /// The container statuses.
    public var containerStatuses: [ContainerStatus]
  }

  /// One condition of the Pod.
  public struct Condition: Codable, Sendable, Hashable {
    /// The type.
    public var type: String
    /// The status.
    public var status: String
    /// The last transition time.
    public var lastTransitionTime: String
  }

  /// The status of one container.
  public struct ContainerStatus: Codable, Sendable, Hashable {
    /// The name.
    public var name: String
    /// The ready.
    public var ready: Bool
    /// The restart count.
    public var restartCount: Int
    /// The container i d.
    public var containerID: String
  }
}
