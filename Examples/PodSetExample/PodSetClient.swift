public import Capstan
import Foundation

/// The writer's side of the example, as a user or a tool (the demo) changes PodSets: creation,
/// scaling (which bumps the generation), deletion through the finalizer convention, and marking
/// pods ready or not.
///
/// Every change is a read-modify-write transaction comparing the key's mod revision, retried on
/// conflict with a fresh read (up to ``maxAttempts`` times; then a ``ReconcileConflict`` is
/// thrown). Reads decode with `JSONDecoder`: a stored value that is not a valid object of the
/// kind throws its `DecodingError`.
public struct PodSetClient: Sendable {
  /// The store written.
  public let backend: any Backend
  /// How many times a read-modify-write is tried before a conflict is thrown.
  public let maxAttempts: Int

  /// A client writing to `backend`.
  public init(backend: any Backend, maxAttempts: Int = 10) {
    self.backend = backend
    self.maxAttempts = max(1, maxAttempts)
  }

  /// What ``requestDeletion(namespace:name:at:)`` did.
  public enum DeletionOutcome: Sendable, Hashable {
    /// The set had no finalizers: its key was deleted.
    case deleted
    /// The set has finalizers: its `deletionTimestamp` is set (or already was); their owners
    /// finish the deletion.
    case markedForDeletion
    /// There was no such set.
    case notFound
  }

  /// Stores `set` if its key is free; returns the revision, or nil when the key is taken. The
  /// set needs a UID and a name; its generation is set to 1 if it was 0.
  @discardableResult
  public func create(_ set: PodSet) async throws -> Int64? {
    guard !set.metadata.uid.isEmpty, !set.metadata.name.isEmpty else {
      throw BackendError(code: .invalidArgument, message: "a PodSet needs a uid and a name to be stored")
    }
    var stored = set
    stored.metadata.resourceVersion = 0
    if stored.metadata.generation == 0 { stored.metadata.generation = 1 }
    if stored.metadata.creationTimestamp == nil { stored.metadata.creationTimestamp = Self.now() }
    let key = stored.key
    let result = try await self.backend.txn(
      BackendTxn(
        compares: [.absent(key)],
        success: [.put(key: key, value: try JSONEncoder().encode(stored), lease: nil)]))
    return result.succeeded ? result.revision : nil
  }

  /// The stored set `name` in `namespace`, with its `resourceVersion`; nil if there is none.
  public func get(namespace: String, name: String) async throws -> PodSet? {
    try await self.load(PodSet.self, key: PodSet.layout.key(namespace: namespace, name: name))
  }

  /// Sets the set's `spec.replicas` and bumps its generation (when the count changes). Returns the
  /// stored set, or nil if there is none.
  @discardableResult
  public func scale(namespace: String, name: String, replicas: Int) async throws -> PodSet? {
    try await self.modify(PodSet.self, key: PodSet.layout.key(namespace: namespace, name: name)) { set in
      guard set.spec.replicas != replicas else { return .keep }
      set.spec.replicas = replicas
      set.metadata.generation += 1
      return .write
    }
  }

  /// Deletes the set the way every writer must: a set with finalizers gets a
  /// `deletionTimestamp` (`at`, default now) and stays until its finalizers are removed; a set
  /// without finalizers is deleted at once.
  @discardableResult
  public func requestDeletion(namespace: String, name: String, at time: Timestamp? = nil) async throws
    -> DeletionOutcome
  {
    var outcome = DeletionOutcome.notFound
    _ = try await self.modify(PodSet.self, key: PodSet.layout.key(namespace: namespace, name: name)) { set in
      if set.metadata.finalizers.isEmpty {
        outcome = .deleted
        return .delete
      }
      outcome = .markedForDeletion
      guard set.metadata.deletionTimestamp == nil else { return .keep }
      set.metadata.deletionTimestamp = time ?? Self.now()
      return .write
    }
    return outcome
  }

  /// Marks the pod `name` in `namespace` ready or not (what a kubelet would report). Returns false
  /// if there is no such pod.
  @discardableResult
  public func setPodReady(namespace: String, name: String, ready: Bool) async throws -> Bool {
    let pod = try await self.modify(Pod.self, key: Pod.layout.key(namespace: namespace, name: name)) { pod in
      let status = Pod.Status(phase: ready ? .running : pod.status?.phase ?? .pending, ready: ready)
      guard pod.status != status else { return .keep }
      pod.status = status
      return .write
    }
    return pod != nil
  }

  // MARK: helpers

  private enum Change { case keep, write, delete }

  /// Reads `key` as `R`, lets `change` decide, and writes or deletes it comparing the mod revision
  /// read; retries with a fresh read on conflict. Returns the object as last read and changed (nil
  /// when absent).
  ///
  /// - Throws: ``ReconcileConflict`` (with the last revision read) when every attempt conflicted.
  private func modify<R: Resource>(
    _ type: R.Type, key: String, _ change: (inout R) -> Change
  ) async throws -> R? {
    var revision: Int64 = 0
    for _ in 0..<self.maxAttempts {
      guard var object = try await self.load(R.self, key: key) else { return nil }
      revision = object.metadata.resourceVersion
      let operation: BackendOperation
      switch change(&object) {
      case .keep:
        return object
      case .write:
        var stored = object
        stored.metadata.resourceVersion = 0
        operation = .put(key: key, value: try JSONEncoder().encode(stored), lease: nil)
      case .delete:
        operation = .delete(.key(key))
      }
      let result = try await self.backend.txn(
        BackendTxn(compares: [.modRevision(key, equals: revision)], success: [operation]))
      if result.succeeded {
        object.metadata.resourceVersion = result.revision
        return object
      }
    }
    throw ReconcileConflict(key: key, expectedRevision: revision)
  }

  private func load<R: Resource>(_ type: R.Type, key: String) async throws -> R? {
    guard let keyValue = try await self.backend.range(.key(key), options: BackendRangeOptions()).kvs.first else {
      return nil
    }
    var object = try JSONDecoder().decode(R.self, from: keyValue.value)
    object.metadata.resourceVersion = keyValue.modRevision
    return object
  }

  private static func now() -> Timestamp { Timestamp(secondsSince1970: Int64(Date().timeIntervalSince1970)) }
}
