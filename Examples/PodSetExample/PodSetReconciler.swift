public import Capstan
import Foundation
import Logging

/// The tutorial controller's reconcile: keeps each ``PodSet``'s pods at `spec.replicas`.
///
/// For the set a request names, one reconcile:
/// 1. **Deletes orphans.** Pods whose controlling owner reference names this set (by namespace
///    and name) but whose owner UID is no live PodSet — the set was deleted, or deleted and
///    created again under the same name — are deleted. The pod informer's
///    ``podsByControllerName`` index finds them; the PodSet cache decides which owners live. Since
///    the ``Controller`` enqueues a pod's controlling owner by name on every pod event, every
///    orphan gets here, even when its set is long gone.
/// 2. **Honours deletion.** A set with a `deletionTimestamp` has its pods deleted, then loses the
///    ``finalizer``; if no finalizer is left, the controller deletes the set's key (see below).
/// 3. **Adds the finalizer** to a live set that lacks it.
/// 4. **Scales.** Its pods are the pods carrying a `controller: true` owner reference with the
///    set's UID (the ``podsByOwnerUID`` index). Pods whose labels or image no longer match the
///    template are deleted; surplus pods are deleted (unready ones first); missing pods are
///    created, named `<set>-<5 random characters>`, labelled exactly with the template's labels,
///    ready at once.
/// 5. **Writes status only if it changed**: `readyReplicas` (the set's matching pods that are
///    ready, after this reconcile's changes) and `observedGeneration` (the generation acted on).
///    Unchanged status is never written back.
///
/// It never touches a pod it does not control: pods with the template's labels but no owner, pods
/// whose owner reference to the set is not `controller: true`, and pods controlled by another
/// kind are left alone (no adoption).
///
/// **Deletion with finalizers on etcd.** There is no API server to turn a delete into a
/// `deletionTimestamp`, so the convention is the writers': a deleter of an object that has
/// finalizers sets `metadata.deletionTimestamp` in a transaction comparing the key's mod revision
/// (``PodSetClient/requestDeletion(namespace:name:at:)``), and deletes the key outright when it
/// has none. Each finalizer's owner, once its cleanup is done, removes its finalizer; whoever
/// removes the **last** one deletes the key (again comparing the mod revision) instead of writing
/// the object back. So a set with a `deletionTimestamp` always ends up deleted, and its pods are
/// gone first.
///
/// **Readiness.** No kubelet runs pods: created pods are `Running` and ready immediately (see
/// ``Pod``), and a pod marked unready by someone else stops counting in `readyReplicas`.
///
/// Every write is a revision-compared transaction through the ``ReconcileContext``; a conflict
/// requeues the set. A set that does not decode as a ``PodSet`` or asks for negative replicas is a
/// ``TerminalError`` (nothing to retry until it changes).
public struct PodSetReconciler: Reconciler {
  /// The finalizer the controller puts on every set: `capstan.dev/podset-cleanup`.
  public static let finalizer = "capstan.dev/podset-cleanup"

  /// Pods by the UID of each owner (``CacheIndex/ownerUID``): a set's pods.
  public static let podsByOwnerUID = CacheIndex.ownerUID

  /// Pods by `namespace/name` of their controlling PodSet owner reference: the candidates for
  /// orphan deletion when a reconcile finds no set (or another UID) under that name.
  public static let podsByControllerName = CacheIndex.custom(name: "podSetController") { pod in
    // `metadata` is decoded from the bytes on each read: skip pods without owners cheaply.
    guard !pod.ownerUIDs.isEmpty else { return [] }
    return pod.metadata.ownerReferences.compactMap { reference in
      guard reference.controller == true, reference.kind == PodSet.kind else { return nil }
      return "\(pod.namespace)/\(reference.name)"
    }
  }

  /// The indexes the pod informer needs: ``podsByOwnerUID`` and ``podsByControllerName``.
  public static var podIndexes: [CacheIndex] { [Self.podsByOwnerUID, Self.podsByControllerName] }

  /// Passes what a set's reconcile must see — adds, deletes, and updates that change the
  /// generation (spec), the deletion timestamp or the finalizers — and drops status-only updates,
  /// such as the controller's own status writes.
  public static let podSetChanged = EventPredicate { event in
    guard case .updated(let old, let new) = event else { return true }
    // `metadata` is decoded from the bytes on each read: read each side once.
    let (before, after) = (old.metadata, new.metadata)
    return before.generation != after.generation || before.deletionTimestamp != after.deletionTimestamp
      || before.finalizers != after.finalizers
  }

  /// The informer of the pods the sets own (with ``podIndexes``).
  public let pods: Informer
  /// How long a reconcile waits for the pod informer's first list.
  public let podSyncTimeout: Duration

  /// A reconciler reading pods from `pods`, an informer created with ``podIndexes``.
  public init(pods: Informer, podSyncTimeout: Duration = .seconds(30)) {
    self.pods = pods
    self.podSyncTimeout = podSyncTimeout
  }

  /// Reconciles the set `request` names; see the type's documentation for the steps.
  public func reconcile(_ request: ReconcileRequest, context: ReconcileContext) async throws -> ReconcileResult {
    let podCache = try await self.pods.waitForSync(timeout: self.podSyncTimeout)
    try await self.deleteOrphans(controlledBy: request, pods: podCache, context: context)
    guard let cached = context.cache.object(namespace: request.namespace, name: request.name) else { return .done }
    var set: PodSet
    do {
      set = try cached.decode(as: PodSet.self)
    } catch {
      throw TerminalError("\(cached.key) is not a PodSet", cause: error)
    }
    guard set.spec.replicas >= 0 else {
      throw TerminalError("\(cached.key) asks for \(set.spec.replicas) replicas")
    }
    let owned = try Self.ownedPods(of: set, in: podCache)

    if set.metadata.deletionTimestamp != nil {
      try await self.finalize(set, deleting: owned, context: context)
      return .done
    }
    if !set.metadata.finalizers.contains(Self.finalizer) {
      set.metadata.finalizers.append(Self.finalizer)
      set.metadata.resourceVersion = try await context.update(set)
    }

    let template = set.spec.template
    var matching: [OwnedPod] = []
    var toDelete: [OwnedPod] = []
    for pod in owned {
      if let decoded = pod.pod, decoded.metadata.labels == template.labels, decoded.spec.image == template.image {
        matching.append(pod)
      } else {
        toDelete.append(pod)
      }
    }
    if matching.count > set.spec.replicas {
      // Unready pods go first, then by name, so that the choice is stable.
      matching.sort { ($0.isReady ? 1 : 0, $0.metadata.name) < ($1.isReady ? 1 : 0, $1.metadata.name) }
      let surplus = matching.count - set.spec.replicas
      toDelete += matching.prefix(surplus)
      matching.removeFirst(surplus)
    }
    let toCreate = (0..<max(0, set.spec.replicas - matching.count)).map { _ in Self.newPod(for: set) }
    if !toDelete.isEmpty || !toCreate.isEmpty {
      context.logger.debug(
        "scaling pod set",
        metadata: ["creating": "\(toCreate.count)", "deleting": "\(toDelete.count)", "replicas": "\(set.spec.replicas)"])
    }
    try await Self.write(creating: toCreate, deleting: toDelete.map(\.reference), context: context)

    let status = PodSet.Status(
      readyReplicas: matching.count(where: \.isReady) + toCreate.count(where: \.isReady),
      observedGeneration: set.metadata.generation)
    if set.status != status {
      set.status = status
      try await context.update(set)
    }
    return .done
  }

  // MARK: steps

  /// Deletes the pods whose controlling PodSet reference names `request` but whose owner UID is
  /// no live set.
  private func deleteOrphans(
    controlledBy request: ReconcileRequest, pods: ObjectCache, context: ReconcileContext
  ) async throws {
    let candidates = try pods.objects(in: Self.podsByControllerName, value: "\(request.namespace)/\(request.name)")
    let orphans = candidates.filter { pod in
      pod.metadata.ownerReferences.contains { reference in
        reference.controller == true && reference.kind == PodSet.kind && reference.name == request.name
          && context.cache.object(uid: reference.uid) == nil
      }
    }
    guard !orphans.isEmpty else { return }
    context.logger.info("deleting orphaned pods", metadata: ["count": "\(orphans.count)"])
    try await Self.write(creating: [], deleting: orphans.map { PodReference(metadata: $0.metadata) }, context: context)
  }

  /// Deletes every pod of a set being deleted, then removes the finalizer — deleting the set's key
  /// when no finalizer is left.
  private func finalize(_ set: PodSet, deleting owned: [OwnedPod], context: ReconcileContext) async throws {
    try await Self.write(creating: [], deleting: owned.map(\.reference), context: context)
    var set = set
    let hadFinalizer = set.metadata.finalizers.contains(Self.finalizer)
    set.metadata.finalizers.removeAll { $0 == Self.finalizer }
    if set.metadata.finalizers.isEmpty {
      context.logger.info("pod set cleaned up: deleting it", metadata: ["pods_deleted": "\(owned.count)"])
      try await context.delete(set)
    } else if hadFinalizer {
      // Other finalizers remain: their owners delete the set once they are done.
      try await context.update(set)
    }
  }

  /// At most this many of one reconcile's pod writes are in flight at once.
  static let maximumConcurrentWrites = 16

  /// Creates and deletes pods, up to ``maximumConcurrentWrites`` at a time; the first failure is
  /// thrown once every write started has finished (none is started after a failure).
  private static func write(creating: [Pod], deleting: [PodReference], context: ReconcileContext) async throws {
    guard !creating.isEmpty || !deleting.isEmpty else { return }
    enum Write: Sendable {
      case create(Pod)
      case delete(PodReference)
    }
    let writes = creating.map(Write.create) + deleting.map(Write.delete)
    try await withThrowingTaskGroup(of: Void.self) { group in
      var firstFailure: (any Error)?
      var inFlight = 0
      for write in writes {
        if inFlight == Self.maximumConcurrentWrites {
          do { try await group.next() } catch { firstFailure = firstFailure ?? error }
          inFlight -= 1
        }
        guard firstFailure == nil else { break }
        group.addTask {
          switch write {
          case .create(let pod): try await context.create(pod)
          case .delete(let pod): try await context.delete(pod)
          }
        }
        inFlight += 1
      }
      while inFlight > 0 {
        do { try await group.next() } catch { firstFailure = firstFailure ?? error }
        inFlight -= 1
      }
      if let firstFailure { throw firstFailure }
    }
  }

  /// The pods `set` controls: a `controller: true` reference of kind PodSet with its UID.
  private static func ownedPods(of set: PodSet, in pods: ObjectCache) throws(CacheError) -> [OwnedPod] {
    try pods.objects(in: Self.podsByOwnerUID, value: set.metadata.uid).compactMap { cached in
      let controls = cached.metadata.ownerReferences.contains {
        $0.controller == true && $0.kind == PodSet.kind && $0.uid == set.metadata.uid
      }
      guard controls else { return nil }
      return OwnedPod(metadata: cached.metadata, pod: try? cached.decode(as: Pod.self))
    }
  }

  /// A new ready pod for `set`, controlled by it.
  private static func newPod(for set: PodSet) -> Pod {
    var pod = Pod(
      name: "\(set.metadata.name)-\(Self.randomSuffix())", namespace: set.metadata.namespace,
      uid: UUID().uuidString.lowercased(), image: set.spec.template.image, labels: set.spec.template.labels,
      owners: [set.controllerReference], status: Pod.Status(phase: .running, ready: true))
    pod.metadata.creationTimestamp = Timestamp(secondsSince1970: Int64(Date().timeIntervalSince1970))
    return pod
  }

  private static let suffixAlphabet = Array("bcdfghjklmnpqrstvwxz2456789")

  /// Five characters from Kubernetes' name-suffix alphabet (no vowels, no confusable digits).
  private static func randomSuffix() -> String {
    String((0..<5).map { _ in Self.suffixAlphabet.randomElement()! })
  }
}

/// A pod a set controls: its cached metadata and, when the bytes decode, the typed pod.
private struct OwnedPod {
  var metadata: ObjectMeta
  var pod: Pod?

  var isReady: Bool { self.pod?.isReady == true }
  var reference: PodReference { PodReference(metadata: self.metadata) }
}

/// Just enough of a pod to delete it (its key and revision), even when its bytes do not decode
/// as a ``Pod``.
private struct PodReference: Resource {
  static var kind: String { Pod.kind }
  static var plural: String { Pod.plural }
  var metadata: ObjectMeta
}
