import Capstan
import CapstanTestSupport
import Foundation
import PodSetExample
import Testing

/// The PodSet controller's rules, each on its own embedded backend.
@Suite("PodSet reconciler")
struct PodSetReconcilerTests {
  /// A set gets exactly its replicas, with its labels, and follows scaling up, down and to zero;
  /// its status follows, at the generation each scale bumped.
  @Test func scalesUpAndDown() async throws {
    let world = try PodSetWorld()
    try await world.run {
      _ = try await world.client.create(PodSetWorld.set("web", replicas: 3))
      try await eventually("3 pods") { try await world.isConverged("web", replicas: 3) }
      let set = try #require(try await world.set("web"))
      #expect(set.metadata.finalizers == [PodSetReconciler.finalizer])
      #expect(set.status?.observedGeneration == 1)

      for (replicas, generation) in [(5, Int64(2)), (1, 3), (0, 4), (2, 5)] {
        let scaled = try #require(try await world.client.scale(namespace: "default", name: "web", replicas: replicas))
        #expect(scaled.metadata.generation == generation)
        try await eventually("\(replicas) pods") { try await world.isConverged("web", replicas: replicas) }
      }
      let pods = try await world.pods(controlledBy: "uid-web")
      #expect(pods.allSatisfy { $0.metadata.name.hasPrefix("web-") && $0.controllerReference?.name == "web" })
    }
  }

  /// Pods controlled by a PodSet that no longer exists are deleted: one whose set never was, one
  /// pointing at an old UID of a live set's name, and the pods of a set whose key was deleted
  /// outright (skipping the finalizer).
  @Test func deletesOrphansWhoseOwnerIsGone() async throws {
    let world = try PodSetWorld()
    let ghost = OwnerReference(kind: PodSet.kind, name: "ghost", uid: "uid-ghost", controller: true)
    let staleWeb = OwnerReference(kind: PodSet.kind, name: "web", uid: "uid-web-before", controller: true)
    try await world.store(Pod(name: "ghost-1", namespace: "default", uid: "p-ghost", labels: ["app": "ghost"], owners: [ghost]))
    try await world.store(Pod(name: "web-old", namespace: "default", uid: "p-old", labels: ["app": "web"], owners: [staleWeb]))
    try await world.run {
      _ = try await world.client.create(PodSetWorld.set("web", replicas: 2))
      _ = try await world.client.create(PodSetWorld.set("api", replicas: 2))
      try await eventually("the orphans deleted") {
        let names = Set(try await world.pods().keys)
        return !names.contains("ghost-1") && !names.contains("web-old")
      }
      try await eventually("web converged") { try await world.isConverged("web", replicas: 2) }
      try await eventually("api converged") { try await world.isConverged("api", replicas: 2) }

      // The key deleted outright: its pods become orphans.
      _ = try await world.backend.delete(.key(PodSet.layout.key(namespace: "default", name: "api")))
      try await eventually("api's pods deleted") { try await world.pods(controlledBy: "uid-api").isEmpty }
      #expect(try await world.pods(controlledBy: "uid-web").count == 2)
    }
  }

  /// Pods the set does not control are never adopted, changed or deleted: matching labels and no
  /// owner, a non-controller reference to the set, a controller of another kind with the set's
  /// name. The set still creates its own replicas beside them.
  @Test func neverAdoptsOrTouchesForeignPods() async throws {
    let world = try PodSetWorld()
    let labels = ["app": "web"]
    let foreign = [
      Pod(name: "stray", namespace: "default", uid: "p-stray", labels: labels),
      Pod(
        name: "shared", namespace: "default", uid: "p-shared", labels: labels,
        owners: [OwnerReference(kind: PodSet.kind, name: "web", uid: "uid-web", controller: false)]),
      Pod(
        name: "elsewhere", namespace: "default", uid: "p-elsewhere", labels: labels,
        owners: [OwnerReference(kind: "ReplicaSet", name: "web", uid: "uid-rs", controller: true)]),
    ]
    for pod in foreign { try await world.store(pod) }
    let before = try await world.pods()
    try await world.run {
      _ = try await world.client.create(PodSetWorld.set("web", replicas: 2))
      try await eventually("2 own pods") { try await world.isConverged("web", replicas: 2) }
      _ = try await world.client.scale(namespace: "default", name: "web", replicas: 0)
      try await eventually("scaled to 0") { try await world.isConverged("web", replicas: 0) }
      let after = try await world.pods()
      #expect(after.count == 3)
      for pod in foreign {
        let name = pod.metadata.name
        #expect(after[name]?.metadata.resourceVersion == before[name]?.metadata.resourceVersion, "\(name) untouched")
      }
    }
  }

  /// The controller writes a set twice (finalizer, status) and then only when the status changes:
  /// reconciles triggered by unrelated pod changes write nothing; a pod turning unready writes the
  /// status once.
  @Test func unchangedStatusIsNotWritten() async throws {
    let world = try PodSetWorld()
    let key = PodSet.layout.key(namespace: "default", name: "web")
    try await world.run {
      _ = try await world.client.create(PodSetWorld.set("web", replicas: 3))
      try await eventually("converged") { try await world.isConverged("web", replicas: 3) }
      try await eventually("the echo of the last write reconciled") { world.metrics.reconciles >= 2 }
      #expect(world.backend.writes(to: key) == 3, "create, finalizer, status")
      let settledRevision = try #require(try await world.set("web")).metadata.resourceVersion

      // An annotation on a pod enqueues the set; the reconcile finds nothing to write.
      var pods = try await world.pods(controlledBy: "uid-web")
      let reconcilesBefore = world.metrics.reconciles
      pods[0].metadata.annotations["touched"] = "yes"
      try await world.store(pods[0])
      try await eventually("the touch reconciled") { world.metrics.reconciles > reconcilesBefore }
      #expect(try await world.set("web")?.metadata.resourceVersion == settledRevision)
      #expect(world.backend.writes(to: key) == 3)

      // A pod turning unready changes the status: one write.
      try await world.client.setPodReady(namespace: "default", name: pods[1].metadata.name, ready: false)
      try await eventually("readyReplicas 2") { try await world.set("web")?.status?.readyReplicas == 2 }
      #expect(world.backend.writes(to: key) == 4)
      #expect(try await world.pods(controlledBy: "uid-web").count == 3, "an unready pod is kept")
    }
  }

  /// Deletion through the finalizer: the deleter sets `deletionTimestamp`; the controller deletes
  /// the pods, removes its finalizer and deletes the set. With another finalizer left, the set
  /// stays (pods gone, only the other finalizer) until its owner finishes.
  @Test func finalizerFlow() async throws {
    let world = try PodSetWorld()
    try await world.run {
      _ = try await world.client.create(PodSetWorld.set("web", replicas: 3))
      var other = PodSetWorld.set("keep", replicas: 2)
      other.metadata.finalizers = ["example.com/keep"]
      _ = try await world.client.create(other)
      try await eventually("web converged") { try await world.isConverged("web", replicas: 3) }
      try await eventually("keep converged") { try await world.isConverged("keep", replicas: 2) }
      #expect(try await world.set("keep")?.metadata.finalizers == ["example.com/keep", PodSetReconciler.finalizer])

      #expect(try await world.client.requestDeletion(namespace: "default", name: "web") == .markedForDeletion)
      try await eventually("web deleted") { try await world.set("web") == nil }
      #expect(try await world.pods(controlledBy: "uid-web").isEmpty)

      #expect(try await world.client.requestDeletion(namespace: "default", name: "keep") == .markedForDeletion)
      try await eventually("keep's pods deleted and its finalizer removed") {
        let set = try await world.set("keep")
        let pods = try await world.pods(controlledBy: "uid-keep")
        return set?.metadata.finalizers == ["example.com/keep"] && pods.isEmpty
      }
      #expect(try await world.set("keep")?.metadata.deletionTimestamp != nil)
    }
  }

  /// A set whose spec cannot be honoured (negative replicas) is a terminal error: nothing is
  /// created, and a later valid spec is reconciled normally.
  @Test func negativeReplicasCreateNothing() async throws {
    let world = try PodSetWorld()
    try await world.run {
      _ = try await world.client.create(PodSetWorld.set("bad", replicas: -1))
      _ = try await world.client.create(PodSetWorld.set("good", replicas: 1))
      try await eventually("good converged") { try await world.isConverged("good", replicas: 1) }
      #expect(try await world.pods(controlledBy: "uid-bad").isEmpty)
      _ = try await world.client.scale(namespace: "default", name: "bad", replicas: 2)
      try await eventually("bad fixed and converged") { try await world.isConverged("bad", replicas: 2) }
    }
  }
}
