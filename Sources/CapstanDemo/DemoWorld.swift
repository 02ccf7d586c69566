public import Capstan
import Foundation
import PodSetExample

/// What a fresh list of the store shows about the demo's world: the objects, the junk, and every
/// way it differs from what the specs ask for.
public struct DemoWorldReport: Sendable, Hashable {
  /// The revision the two prefixes were listed at.
  public var revision: Int64
  /// PodSets stored (junk keys not counted).
  public var podSets: Int
  /// Pods stored (junk keys not counted).
  public var pods: Int
  /// Keys whose name starts with `junk-` (the demo's deliberately bad objects).
  public var junkKeys: Int
  /// Each way the world differs from the specs (empty when converged), e.g.
  /// `podset demo-a/podset-0003 has 4 pods, wants 5`.
  public var mismatches: [String]
  /// Keys outside `junk-…` whose value is a zero-value object: empty, not a JSON object, `{}`,
  /// or without a UID or name. Someone other than the demo wrote them — the controller, if any.
  public var zeroValueKeys: [String]

  /// True when nothing differs and no zero-value key exists.
  public var isConverged: Bool { self.mismatches.isEmpty && self.zeroValueKeys.isEmpty }
}

/// Checks the demo's world by a fresh, consistent list of the store — never from a cache.
public enum DemoWorld {
  /// Whether the last segment of `key` marks it as demo junk (`junk-…`).
  public static func isJunk(_ key: String) -> Bool {
    key.split(separator: "/", omittingEmptySubsequences: false).last?.hasPrefix("junk-") == true
  }

  /// Lists PodSets and pods at one revision and compares them with the specs:
  /// - with `expected` (namespace/name → replicas), exactly those sets exist, with those replicas;
  /// - no set carries a `deletionTimestamp`;
  /// - every set controls exactly `spec.replicas` pods, each with exactly the template's labels;
  /// - its status has `readyReplicas` = its ready pods and `observedGeneration` = its generation;
  /// - no pod is controlled by a PodSet UID that no stored set has (an orphan);
  /// - no key outside `junk-…` holds a zero-value object.
  public static func check(backend: any Backend, expected: [String: Int]? = nil) async throws -> DemoWorldReport {
    let (setValues, revision) = try await Self.list(PodSet.layout.prefix, backend: backend, at: 0)
    let (podValues, _) = try await Self.list(Pod.layout.prefix, backend: backend, at: revision)
    var report = DemoWorldReport(revision: revision, podSets: 0, pods: 0, junkKeys: 0, mismatches: [], zeroValueKeys: [])
    let decoder = JSONDecoder()

    var sets: [PodSet] = []
    for keyValue in setValues {
      guard let set: PodSet = Self.decode(keyValue, layout: PodSet.layout, into: &report, decoder: decoder) else { continue }
      sets.append(set)
    }
    var pods: [Pod] = []
    for keyValue in podValues {
      guard let pod: Pod = Self.decode(keyValue, layout: Pod.layout, into: &report, decoder: decoder) else { continue }
      pods.append(pod)
    }
    report.podSets = sets.count
    report.pods = pods.count

    var podsBySetUID: [String: [Pod]] = [:]
    for pod in pods {
      guard let owner = pod.controllerReference, owner.kind == PodSet.kind else { continue }
      podsBySetUID[owner.uid, default: []].append(pod)
    }
    let liveUIDs = Set(sets.map(\.metadata.uid))
    for pod in pods {
      guard let owner = pod.controllerReference, owner.kind == PodSet.kind, !liveUIDs.contains(owner.uid) else { continue }
      report.mismatches.append(
        "pod \(pod.metadata.namespacedName) is an orphan: its PodSet \(pod.metadata.namespace)/\(owner.name) (\(owner.uid)) is gone")
    }

    for set in sets.sorted(by: { $0.metadata.namespacedName < $1.metadata.namespacedName }) {
      let name = "podset \(set.metadata.namespacedName)"
      if let expected {
        guard let replicas = expected[set.metadata.namespacedName] else {
          report.mismatches.append("\(name) should have been deleted")
          continue
        }
        if set.spec.replicas != replicas {
          report.mismatches.append("\(name) asks for \(set.spec.replicas) replicas, the demo set \(replicas)")
        }
      }
      if set.metadata.deletionTimestamp != nil {
        report.mismatches.append("\(name) still has a deletionTimestamp")
      }
      let owned = podsBySetUID[set.metadata.uid] ?? []
      if owned.count != set.spec.replicas {
        report.mismatches.append("\(name) has \(owned.count) pods, wants \(set.spec.replicas)")
      }
      for pod in owned where pod.metadata.labels != set.spec.template.labels {
        report.mismatches.append("pod \(pod.metadata.namespacedName) of \(name) has labels \(pod.metadata.labels)")
      }
      for pod in owned where pod.spec.image != set.spec.template.image {
        report.mismatches.append("pod \(pod.metadata.namespacedName) of \(name) runs \(pod.spec.image), not \(set.spec.template.image)")
      }
      let ready = owned.count(where: \.isReady)
      if let status = set.status {
        if status.readyReplicas != ready {
          report.mismatches.append("\(name) reports \(status.readyReplicas) ready replicas, has \(ready)")
        }
        if status.observedGeneration != set.metadata.generation {
          report.mismatches.append(
            "\(name) observed generation \(status.observedGeneration), is at \(set.metadata.generation)")
        }
      } else {
        report.mismatches.append("\(name) has no status")
      }
    }
    if let expected {
      let stored = Set(sets.map(\.metadata.namespacedName))
      for missing in expected.keys.filter({ !stored.contains($0) }).sorted() {
        report.mismatches.append("podset \(missing) is missing")
      }
    }
    return report
  }

  /// Every key-value under `prefix` at `revision` (0: now), in pages; and the revision read.
  static func list(_ prefix: String, backend: any Backend, at revision: Int64) async throws -> ([StoredKeyValue], Int64) {
    var range = KeyRange.prefix(prefix)
    var values: [StoredKeyValue] = []
    var revision = revision
    while true {
      let page = try await backend.range(range, options: BackendRangeOptions(limit: 1000, revision: revision))
      revision = page.revision
      values += page.kvs
      guard page.more, let last = page.kvs.last else { return (values, revision) }
      range = range.continuing(after: last.key)
    }
  }

  /// The object in `keyValue`, or nil after recording why it is not one (junk is only counted).
  private static func decode<R: Resource>(
    _ keyValue: StoredKeyValue, layout: ResourceLayout, into report: inout DemoWorldReport, decoder: JSONDecoder
  ) -> R? {
    if Self.isJunk(keyValue.key) {
      report.junkKeys += 1
      return nil
    }
    guard !keyValue.value.isEmpty, let shape = try? decoder.decode(MetadataOnly.self, from: keyValue.value),
      let metadata = shape.metadata, !metadata.uid.isEmpty, !metadata.name.isEmpty
    else {
      report.zeroValueKeys.append(keyValue.key)
      return nil
    }
    guard layout.keyMatches(keyValue.key, metadata: metadata) else {
      report.mismatches.append("\(keyValue.key) holds \(metadata.namespacedName), not the object its key names")
      return nil
    }
    do {
      var object = try decoder.decode(R.self, from: keyValue.value)
      object.metadata.resourceVersion = keyValue.modRevision
      return object
    } catch {
      report.mismatches.append("\(keyValue.key) does not decode as a \(R.kind): \(error)")
      return nil
    }
  }
}

/// The metadata of a stored value, decoded alone.
private struct MetadataOnly: Decodable {
  var metadata: ObjectMeta?
}
