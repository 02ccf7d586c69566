public import Logging
import Foundation
import Synchronization

/// What a reconcile works with: a logger carrying its `request_id`, the primary informer's cache,
/// the backend, and write helpers that use optimistic concurrency.
///
/// Every write is a transaction comparing the key's mod revision (an object's `resourceVersion`);
/// a failed compare throws ``ReconcileConflict``. The context records what it wrote, so the
/// controller can make the next reconcile of the key wait until the informers watching the
/// written keys have seen it (read your writes).
public struct ReconcileContext: Sendable {
  /// Logs with `controller`, `request` and a `request_id` unique to this reconcile.
  public let logger: Logger
  /// The id of this reconcile (also in the logger's metadata as `request_id`).
  public let requestID: String
  /// The primary informer's cache (synced).
  public let cache: ObjectCache
  /// The store the controller writes to.
  public let backend: any Backend
  let writes: ReconcileWriteRecorder

  init(logger: Logger, requestID: String, cache: ObjectCache, backend: any Backend, writes: ReconcileWriteRecorder) {
    self.logger = logger
    self.requestID = requestID
    self.cache = cache
    self.backend = backend
    self.writes = writes
  }

  /// The highest revision this reconcile wrote so far (0 when it wrote nothing).
  public var highestWrittenRevision: Int64 { self.writes.highest }

  // MARK: reading

  /// The cached primary object `request` names, decoded as `type`; nil when the cache has none.
  ///
  /// - Throws: ``CacheError`` when the cached bytes do not decode as `type`.
  public func object<R: Resource>(_ request: ReconcileRequest, as type: R.Type = R.self) throws(CacheError) -> R? {
    try self.cache.object(namespace: request.namespace, name: request.name)?.decode(as: type)
  }

  // MARK: writing

  /// Writes `object` over its stored version, if the key is still at
  /// `object.metadata.resourceVersion`. Returns the write's revision.
  ///
  /// - Throws: ``ReconcileConflict`` when the key moved on (or is gone); a ``BackendError`` when
  ///   the write fails; an `EncodingError` when `object` does not encode.
  @discardableResult
  public func update<R: Resource>(_ object: R) async throws -> Int64 {
    let key = object.key
    let expected = object.metadata.resourceVersion
    return try await self.write(
      key: key, expected: expected, compare: .modRevision(key, equals: expected),
      operation: .put(key: key, value: try Self.encode(object), lease: nil))
  }

  /// Creates `object` under its key, if the key is absent. Returns the write's revision. The
  /// object needs its UID and name set (the cache refuses objects without them).
  ///
  /// - Throws: ``ReconcileConflict`` when the key exists; a ``BackendError`` when the write fails.
  @discardableResult
  public func create<R: Resource>(_ object: R) async throws -> Int64 {
    let key = object.key
    return try await self.write(
      key: key, expected: 0, compare: .absent(key),
      operation: .put(key: key, value: try Self.encode(object), lease: nil))
  }

  /// Deletes `object`, if its key is still at `object.metadata.resourceVersion`. Returns the
  /// deletion's revision.
  ///
  /// - Throws: ``ReconcileConflict`` when the key moved on or is already gone; a
  ///   ``BackendError`` when the delete fails.
  @discardableResult
  public func delete<R: Resource>(_ object: R) async throws -> Int64 {
    let key = object.key
    let expected = object.metadata.resourceVersion
    return try await self.write(
      key: key, expected: expected, compare: .modRevision(key, equals: expected), operation: .delete(.key(key)))
  }

  private func write(
    key: String, expected: Int64, compare: BackendCompare, operation: BackendOperation
  ) async throws -> Int64 {
    let result = try await self.backend.txn(BackendTxn(compares: [compare], success: [operation]))
    guard result.succeeded else { throw ReconcileConflict(key: key, expectedRevision: expected) }
    self.writes.record(key: key, revision: result.revision)
    return result.revision
  }

  /// The stored JSON of `object`: without `resourceVersion`, which the store's mod revision is.
  private static func encode<R: Resource>(_ object: R) throws -> Data {
    var stored = object
    stored.metadata.resourceVersion = 0
    return try JSONEncoder().encode(stored)
  }
}

/// What one reconcile wrote: the highest revision per key.
final class ReconcileWriteRecorder: Sendable {
  private let revisions = Mutex<[String: Int64]>([:])

  func record(key: String, revision: Int64) {
    self.revisions.withLock { $0[key] = max($0[key] ?? 0, revision) }
  }

  /// The highest revision written (0 when nothing was).
  var highest: Int64 { self.revisions.withLock { $0.values.max() ?? 0 } }

  /// The highest revision written under `prefix` (nil when nothing was).
  func highest(under prefix: String) -> Int64? {
    self.revisions.withLock { revisions in
      revisions.lazy.filter { $0.key.hasPrefix(prefix) }.map(\.value).max()
    }
  }
}
