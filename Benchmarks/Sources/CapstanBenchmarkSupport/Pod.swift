import Capstan

/// A Kubernetes-shaped Pod holding every field of ``PodFixture``'s documents: the typed value the
/// baselines decode with `JSONDecoder` and keep in plain dictionaries.
public struct Pod: Resource, Hashable {
  public static let kind = "Pod"
  public static let plural = "pods"

  public var apiVersion: String
  public var kind: String
  public var metadata: ObjectMeta
  public var spec: PodSpec
  public var status: PodStatus
}

public struct PodSpec: Codable, Sendable, Hashable {
  public var containers: [Container]
  public var volumes: [Volume]
  public var nodeName: String
  public var restartPolicy: String
}

public struct Container: Codable, Sendable, Hashable {
  public var name: String
  public var image: String
  public var args: [String]
  public var ports: [ContainerPort]
  public var env: [EnvVar]
  public var resources: ResourceRequirements
  public var volumeMounts: [VolumeMount]
}

public struct ContainerPort: Codable, Sendable, Hashable {
  public var containerPort: Int
  public var `protocol`: String
}

public struct EnvVar: Codable, Sendable, Hashable {
  public var name: String
  public var value: String
}

public struct ResourceRequirements: Codable, Sendable, Hashable {
  public var requests: [String: String]
  public var limits: [String: String]
}

public struct VolumeMount: Codable, Sendable, Hashable {
  public var name: String
  public var mountPath: String
  public var readOnly: Bool
}

public struct Volume: Codable, Sendable, Hashable {
  public struct ConfigMapSource: Codable, Sendable, Hashable {
    public var name: String
  }

  public var name: String
  public var configMap: ConfigMapSource
}

public struct PodStatus: Codable, Sendable, Hashable {
  public var phase: String
  public var podIP: String
  public var conditions: [PodCondition]
  public var containerStatuses: [ContainerStatus]
}

public struct PodCondition: Codable, Sendable, Hashable {
  public var type: String
  public var status: String
  public var lastTransitionTime: String
}

public struct ContainerStatus: Codable, Sendable, Hashable {
  public var name: String
  public var ready: Bool
  public var restartCount: Int
  public var containerID: String
}
