import Capstan
import Foundation
import PodSetExample
import Testing

/// The resource types and the reconciler's predicate on their own.
@Suite("PodSet and Pod")
struct PodSetTests {
  @Test func podSetDecodesWithoutStatusAndRoundTrips() throws {
    let json = #"{"metadata":{"uid":"u","name":"web","namespace":"ns","generation":2},"spec":{"replicas":3,"template":{"labels":{"app":"web"}}}}"#
    let set = try JSONDecoder().decode(PodSet.self, from: Data(json.utf8))
    #expect(set.status == nil)
    #expect(set.spec.template.image == "nginx")
    #expect(set.spec.template.labels == ["app": "web"])
    var withStatus = set
    withStatus.status = PodSet.Status(readyReplicas: 3, observedGeneration: 2)
    let again = try JSONDecoder().decode(PodSet.self, from: try JSONEncoder().encode(withStatus))
    #expect(again == withStatus)

    let pod = Pod(
      name: "web-abcde", namespace: "ns", uid: "p", labels: ["app": "web"], owners: [set.controllerReference],
      status: Pod.Status(phase: .running, ready: true))
    let decoded = try JSONDecoder().decode(Pod.self, from: try JSONEncoder().encode(pod))
    #expect(decoded == pod)
    #expect(decoded.isReady)
    #expect(decoded.controllerReference?.uid == "u")
    #expect(PodSet.layout.key(namespace: "ns", name: "web") == "/registry/podsets/ns/web")
  }

  @Test func predicatePassesSpecDeletionAndFinalizerChangesOnly() {
    func object(generation: Int64, status: Int = 0, deleting: Bool = false, finalizers: [String] = []) -> CachedObject {
      var metadata = ObjectMeta(uid: "u", name: "web", namespace: "ns", generation: generation, finalizers: finalizers)
      if deleting { metadata.deletionTimestamp = Timestamp(secondsSince1970: 1) }
      return CachedObject(key: "/registry/podsets/ns/web", metadata: metadata, raw: Data("{\"s\":\(status)}".utf8))
    }
    let predicate = PodSetReconciler.podSetChanged
    let base = object(generation: 1)
    #expect(predicate(.added(base)))
    #expect(predicate(.deleted(base, certain: true)))
    #expect(!predicate(.updated(old: base, new: object(generation: 1, status: 3))), "status only")
    #expect(predicate(.updated(old: base, new: object(generation: 2))))
    #expect(predicate(.updated(old: base, new: object(generation: 1, deleting: true))))
    #expect(predicate(.updated(old: base, new: object(generation: 1, finalizers: ["f"]))))
  }
}
