import Foundation

/// A Kubernetes-shaped Pod holding every field of ``PodFixture``'s documents: the typed value the
/// benchmarks (and `capstan bench ingest`) decode with `JSONDecoder` as the baseline.
public struct SamplePod: Resource, Hashable {
  public static let kind = "Pod"
  public static let plural = "pods"

  public var apiVersion: String
  public var kind: String
  public var metadata: ObjectMeta
  public var spec: Spec
  public var status: Status
}

extension SamplePod {
  /// The desired state: containers, volumes, node.
  public struct Spec: Codable, Sendable, Hashable {
    public var containers: [Container]
    public var volumes: [Volume]
    public var nodeName: String
    public var restartPolicy: String
  }

  /// One container of the Pod.
  public struct Container: Codable, Sendable, Hashable {
    public var name: String
    public var image: String
    public var args: [String]
    public var ports: [ContainerPort]
    public var env: [EnvVar]
    public var resources: ResourceRequirements
    public var volumeMounts: [VolumeMount]
  }

  /// A port a container exposes.
  public struct ContainerPort: Codable, Sendable, Hashable {
    public var containerPort: Int
    public var `protocol`: String
  }

  /// An environment variable of a container.
  public struct EnvVar: Codable, Sendable, Hashable {
    public var name: String
    public var value: String
  }

  /// CPU and memory requests and limits.
  public struct ResourceRequirements: Codable, Sendable, Hashable {
    public var requests: [String: String]
    public var limits: [String: String]
  }

  /// Where a volume is mounted in a container.
  public struct VolumeMount: Codable, Sendable, Hashable {
    public var name: String
    public var mountPath: String
    public var readOnly: Bool
  }

  /// A volume of the Pod.
  public struct Volume: Codable, Sendable, Hashable {
    /// The config map a volume is made from.
    public struct ConfigMapSource: Codable, Sendable, Hashable {
      public var name: String
    }

    public var name: String
    public var configMap: ConfigMapSource
  }

  /// The observed state: phase, IP, conditions, container statuses.
  public struct Status: Codable, Sendable, Hashable {
    public var phase: String
    public var podIP: String
    public var conditions: [Condition]
    public var containerStatuses: [ContainerStatus]
  }

  /// One condition of the Pod.
  public struct Condition: Codable, Sendable, Hashable {
    public var type: String
    public var status: String
    public var lastTransitionTime: String
  }

  /// The status of one container.
  public struct ContainerStatus: Codable, Sendable, Hashable {
    public var name: String
    public var ready: Bool
    public var restartCount: Int
    public var containerID: String
  }
}
