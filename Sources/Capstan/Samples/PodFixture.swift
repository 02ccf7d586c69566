import Foundation

/// Realistic Pod documents for tests, benchmarks and `capstan bench ingest`: every field a
/// Kubernetes Pod commonly holds (metadata with labels, annotations, an owner reference, a finalizer and timestamps; a spec with
/// a container, its env, ports, resources and mounts, and a volume; a status with conditions and a
/// container status), about 1.5 KB of compact JSON each.
///
/// Document `i` has its own name and uid, a namespace from a small set, labels that repeat across
/// documents, and (every 50th) a deletion timestamp. One annotation holds escapes (`\u003c`, `\"`,
/// `\n`), as Go's encoder writes them.
public enum PodFixture {
  /// The namespaces documents are spread over.
  public static let namespaces = ["default", "team-a", "team-b", "payments-production", "observability"]

  /// The name of document `index`.
  public static func name(index: Int) -> String {
    "web-\(self.templateHash(index: index))-\(String(index, radix: 36))"
  }

  /// The uid of document `index` (UUID-shaped, distinct per index).
  public static func uid(index: Int) -> String {
    let hex = String(UInt64(truncatingIfNeeded: index) &* 0x9E37_79B9_7F4A_7C15, radix: 16)
    let padded = String(repeating: "0", count: 16 - hex.count) + hex
    let low = String(String(index, radix: 16).suffix(12))
    let lowPadded = String(repeating: "0", count: 12 - low.count) + low
    return "\(padded.prefix(8))-\(padded.dropFirst(8).prefix(4))-4\(padded.suffix(3))-8\(padded.suffix(3))-\(lowPadded)"
  }

  /// The namespace of document `index`.
  public static func namespace(index: Int) -> String { self.namespaces[index % self.namespaces.count] }

  static func templateHash(index: Int) -> String {
    ["7f9c4b", "5d8e21", "c4a7f0", "9b1e3d"][index % 4]
  }

  /// Pod document `index` as compact UTF-8 JSON.
  public static func document(index: Int) -> [UInt8] {
    let namespace = self.namespace(index: index)
    let name = self.name(index: index)
    let uid = self.uid(index: index)
    let hash = self.templateHash(index: index)
    let app = ["web", "api", "worker"][index % 3]
    let second = String(format: "%02d", index % 60)
    let created = "2024-05-\(String(format: "%02d", 1 + index % 28))T12:\(String(format: "%02d", index / 60 % 60)):\(second)Z"
    let deletion = index % 50 == 0 ? #","deletionTimestamp":"2024-06-01T00:00:00Z""# : ""
    let node = "node-\(index % 97)"
    let ip = "10.\(index >> 16 & 255).\(index >> 8 & 255).\(index & 255)"
    let containerID = String(repeating: String(UInt64(truncatingIfNeeded: index) &* 0x2545_F491_4F6C_DD1D, radix: 16), count: 4).prefix(64)
    let json =
      #"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"\#(name)","namespace":"\#(namespace)","uid":"\#(uid)","#
      + #""generation":1,"creationTimestamp":"\#(created)"\#(deletion),"labels":{"app.kubernetes.io/name":"\#(app)","#
      + #""app.kubernetes.io/instance":"\#(app)-\#(namespace)","pod-template-hash":"\#(hash)","tier":"frontend"},"#
      + #""annotations":{"prometheus.io/scrape":"true","#
      + #""capstan.io/note":"serves \u003cstorefront\u003e for \"\#(namespace)\"\n"},"ownerReferences":[{"apiVersion":"apps/v1","#
      + #""kind":"ReplicaSet","name":"\#(app)-\#(hash)","uid":"\#(self.uid(index: index / 10 + 1_000_000))","#
      + #""controller":true,"blockOwnerDeletion":true}],"finalizers":["capstan.io/cleanup"]},"spec":{"containers":[{"#
      + #""name":"\#(app)","image":"registry.example.com/\#(app):1.4.\#(index % 7)","args":["--port=8080","--shard=\#(index % 16)"],"#
      + #""ports":[{"containerPort":8080,"protocol":"TCP"}],"env":[{"name":"MODE","value":"production"},"#
      + #"{"name":"POD_INDEX","value":"\#(index)"}],"resources":{"requests":{"cpu":"100m","memory":"128Mi"},"#
      + #""limits":{"cpu":"500m","memory":"256Mi"}},"volumeMounts":[{"name":"config","mountPath":"/etc/\#(app)","readOnly":true}]}],"#
      + #""volumes":[{"name":"config","configMap":{"name":"\#(app)-config"}}],"nodeName":"\#(node)","restartPolicy":"Always"},"#
      + #""status":{"phase":"Running","podIP":"\#(ip)","#
      + #""conditions":[{"type":"Ready","status":"True","lastTransitionTime":"\#(created)"},{"type":"PodScheduled","#
      + #""status":"True","lastTransitionTime":"\#(created)"}],"containerStatuses":[{"name":"\#(app)","ready":true,"#
      + #""restartCount":\#(index % 3),"containerID":"containerd://\#(containerID)"}]}}"#
    return Array(json.utf8)
  }

  /// Pod document `index` as `Data`.
  public static func data(index: Int) -> Data { Data(self.document(index: index)) }
}
