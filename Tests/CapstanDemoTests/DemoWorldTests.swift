import Capstan
import CapstanDemo
import Foundation
import PodSetExample
import Testing

@Suite("DemoWorld check")
struct DemoWorldTests {
  /// The checker is not a rubber stamp: a world with a short set, wrong labels, an orphan, a
  /// stale status, a zero-value key and a set that should be gone fails with each named.
  @Test func checkerReportsEveryMismatch() async throws {
    let backend = MemoryBackend()
    func store<R: Resource>(_ object: R) async throws {
      _ = try await backend.put(object.key, value: try JSONEncoder().encode(object), lease: nil)
    }
    var web = PodSet(name: "web", namespace: "ns", uid: "uid-web", replicas: 2, labels: ["app": "web"])
    web.metadata.generation = 2
    web.status = PodSet.Status(readyReplicas: 1, observedGeneration: 1)
    try await store(web)
    try await store(
      Pod(name: "web-1", namespace: "ns", uid: "p1", image: "busybox", labels: ["app": "other"], owners: [web.controllerReference],
        status: Pod.Status(phase: .running, ready: true)))
    try await store(
      Pod(name: "lost-1", namespace: "ns", uid: "p2", owners: [OwnerReference(kind: PodSet.kind, name: "lost", uid: "uid-lost", controller: true)]))
    var dying = PodSet(name: "dying", namespace: "ns", uid: "uid-dying", replicas: 0, labels: [:])
    dying.metadata.deletionTimestamp = Timestamp(secondsSince1970: 1)
    dying.status = PodSet.Status(readyReplicas: 0, observedGeneration: 1)
    try await store(dying)
    _ = try await backend.put("/registry/pods/ns/empty", value: Data("{}".utf8), lease: nil)
    _ = try await backend.put("/registry/pods/ns/junk-fine", value: Data(), lease: nil)

    let report = try await DemoWorld.check(backend: backend, expected: ["ns/web": 2, "ns/gone": 1])
    #expect(!report.isConverged)
    #expect(report.zeroValueKeys == ["/registry/pods/ns/empty"])
    #expect(report.junkKeys == 1)
    #expect(report.podSets == 2 && report.pods == 2)
    let expected = [
      "pod ns/lost-1 is an orphan",
      "podset ns/dying should have been deleted",
      "podset ns/web has 1 pods, wants 2",
      "pod ns/web-1 of podset ns/web has labels",
      "pod ns/web-1 of podset ns/web runs busybox, not nginx",
      "podset ns/web observed generation 1, is at 2",
      "podset ns/gone is missing",
    ]
    for text in expected {
      #expect(report.mismatches.contains { $0.hasPrefix(text) }, "\(text) in \(report.mismatches)")
    }
    #expect(!report.mismatches.contains { $0.contains("ready replicas") }, "1 ready of 1 is right")
  }
}
