import Capstan
import Foundation
import PodSetExample
import Testing

/// The resource types, the predicate and the writer's client on their own.
@Suite("PodSet types and client")
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

  @Test func clientScalesAndDeletes() async throws {
    let backend = MemoryBackend()
    let client = PodSetClient(backend: backend)
    #expect(try await client.create(PodSetWorld.set("web", replicas: 1)) != nil)
    #expect(try await client.create(PodSetWorld.set("web", replicas: 1)) == nil, "the key is taken")
    #expect(try await client.scale(namespace: "default", name: "web", replicas: 1)?.metadata.generation == 1)
    #expect(try await client.scale(namespace: "default", name: "web", replicas: 4)?.metadata.generation == 2)
    #expect(try await client.scale(namespace: "default", name: "missing", replicas: 4) == nil)
    #expect(try await client.requestDeletion(namespace: "default", name: "web") == .deleted, "no finalizers")
    #expect(try await client.get(namespace: "default", name: "web") == nil)
    #expect(try await client.requestDeletion(namespace: "default", name: "web") == .notFound)
    await #expect(throws: BackendError.self) {
      try await client.create(PodSet(name: "", namespace: "default", uid: "", replicas: 1, labels: [:]))
    }
  }
}
