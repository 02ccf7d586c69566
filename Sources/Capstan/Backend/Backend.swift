public import struct Foundation.Data

/// The store a controller runs on: a revisioned key-value store with range reads, transactions,
/// watches from a revision, leases and compaction — etcd v3's data model.
///
/// Two implementations: ``EtcdBackend`` (a real etcd through `EtcdClient`) and ``MemoryBackend``
/// (the embedded default, an in-process MVCC store). Both pass the same conformance suite, so a
/// controller cannot tell them apart. Every method throws only ``BackendError``.
///
/// Keys are UTF-8 strings and are ordered by their UTF-8 bytes, as etcd orders them.
public protocol Backend: Sendable {
  /// The store's current revision (the revision of the last write; 1 for an empty store).
  func currentRevision() async throws -> Int64

  /// Reads the keys in `range` at `options.revision` (0: now), sorted by key, at most
  /// `options.limit` of them (0: no limit). Page on with ``KeyRange/continuing(after:)`` and the
  /// returned ``BackendRangePage/revision`` so every page reads the same revision.
  func range(_ range: KeyRange, options: BackendRangeOptions) async throws -> BackendRangePage

  /// Writes `value` at `key`, attached to `lease` if given. Returns the new revision and the
  /// previous value.
  func put(_ key: String, value: Data, lease: Int64?) async throws -> BackendWriteResult

  /// Deletes the keys in `range`. Returns the new revision (unchanged if nothing was deleted) and
  /// the deleted values.
  func delete(_ range: KeyRange) async throws -> BackendDeleteResult

  /// Atomically: if every compare holds, runs `success`, otherwise `failure`. All writes of one
  /// transaction share one revision.
  func txn(_ txn: BackendTxn) async throws -> BackendTxnResult

  /// Watches `range` from `options.startRevision` (0: from now). History since that revision is
  /// replayed first, then live changes follow, in revision order. A compacted start revision
  /// ends the sequence with ``BackendError/Code/compacted``; a broken connection ends it with a
  /// transient error (the caller resumes from its last revision + 1).
  func watch(_ range: KeyRange, options: BackendWatchOptions) -> BackendWatchStream

  /// Asks every open watch of this backend to report its progress; returns the store revision
  /// once the watch connection has answered. Used to tell a silent watch from a stalled one.
  func requestWatchProgress() async throws -> Int64

  /// Grants a lease that expires after `ttl` seconds unless kept alive.
  func grantLease(ttl: Int64) async throws -> BackendLease

  /// Revokes a lease and deletes every key attached to it.
  func revokeLease(_ id: Int64) async throws

  /// The seconds the lease has left; throws ``BackendError/Code/leaseNotFound`` if it is gone.
  func leaseTimeToLive(_ id: Int64) async throws -> Int64

  /// Keeps `lease` alive until the returned keep-alive is cancelled or the lease is lost.
  func keepAlive(_ lease: BackendLease) -> BackendLeaseKeepAlive

  /// Discards history before `revision`: reads and watches below it fail with
  /// ``BackendError/Code/compacted``.
  func compact(revision: Int64) async throws
}

/// A key or a range of keys: `[key, rangeEnd)`; an empty `rangeEnd` means the single key `key`.
public struct KeyRange: Sendable, Hashable, CustomStringConvertible {
  /// The first key.
  public var key: String
  /// The end of the range (exclusive); empty for a single key; `"\0"` for every key from `key` on.
  public var rangeEnd: String

  public init(key: String, rangeEnd: String = "") {
    self.key = key
    self.rangeEnd = rangeEnd
  }

  /// Exactly one key.
  public static func key(_ key: String) -> KeyRange { KeyRange(key: key) }

  /// Every key that starts with `prefix`.
  public static func prefix(_ prefix: String) -> KeyRange {
    KeyRange(key: prefix, rangeEnd: Self.prefixEnd(of: prefix))
  }

  /// Keys from `from` (inclusive) to `to` (exclusive).
  public static func range(from: String, to: String) -> KeyRange { KeyRange(key: from, rangeEnd: to) }

  /// Every key from `key` on.
  public static func from(_ key: String) -> KeyRange { KeyRange(key: key, rangeEnd: "\0") }

  /// Whether this is a single key rather than a range.
  public var isSingleKey: Bool { self.rangeEnd.isEmpty }

  /// The rest of this range after `lastKey` (for the next page of a paginated read).
  public func continuing(after lastKey: String) -> KeyRange {
    KeyRange(key: lastKey + "\0", rangeEnd: self.rangeEnd)
  }

  /// Whether `candidate` lies in this range, comparing UTF-8 bytes as etcd does.
  public func contains(_ candidate: String) -> Bool {
    if self.isSingleKey { return candidate == self.key }
    guard !candidate.utf8.lexicographicallyPrecedes(self.key.utf8) else { return false }
    if self.rangeEnd == "\0" { return true }
    return candidate.utf8.lexicographicallyPrecedes(self.rangeEnd.utf8)
  }

  /// The smallest key greater than every key with this prefix ("\0" when there is none).
  static func prefixEnd(of prefix: String) -> String {
    var bytes = Array(prefix.utf8)
    while let last = bytes.last {
      if last < 0x7F {
        bytes[bytes.count - 1] = last + 1
        return String(decoding: bytes, as: UTF8.self)
      }
      bytes.removeLast()
    }
    return "\0"
  }

  public var description: String {
    self.isSingleKey ? self.key : "[\(self.key), \(self.rangeEnd == "\0" ? "∞" : self.rangeEnd))"
  }
}

/// A stored key and its value with their revisions (etcd's `mvccpb.KeyValue`). Encodes with
/// these field names and the value in base64.
public struct StoredKeyValue: Sendable, Hashable, Codable {
  /// The key.
  public var key: String
  /// The value's bytes.
  public var value: Data
  /// The revision that created the key (since its last deletion).
  public var createRevision: Int64
  /// The revision of the last write to the key — a cached object's `resourceVersion`.
  public var modRevision: Int64
  /// How many times the key was written since it was created (1 on creation).
  public var version: Int64
  /// The lease the key is attached to, 0 for none.
  public var lease: Int64

  public init(key: String, value: Data, createRevision: Int64, modRevision: Int64, version: Int64, lease: Int64 = 0) {
    self.key = key
    self.value = value
    self.createRevision = createRevision
    self.modRevision = modRevision
    self.version = version
    self.lease = lease
  }
}

/// How to read a range.
public struct BackendRangeOptions: Sendable, Hashable {
  /// At most this many keys (0: no limit).
  public var limit: Int
  /// Read at this revision (0: the current one).
  public var revision: Int64
  /// Return keys and revisions but empty values.
  public var keysOnly: Bool

  public init(limit: Int = 0, revision: Int64 = 0, keysOnly: Bool = false) {
    self.limit = limit
    self.revision = revision
    self.keysOnly = keysOnly
  }
}

/// One page of a range read.
public struct BackendRangePage: Sendable, Hashable {
  /// The keys read, sorted by key.
  public var kvs: [StoredKeyValue]
  /// Whether more keys in the range follow this page.
  public var more: Bool
  /// How many keys the whole range holds at this revision.
  public var count: Int
  /// The revision the page was read at (the current revision when the request said 0).
  public var revision: Int64

  public init(kvs: [StoredKeyValue], more: Bool, count: Int, revision: Int64) {
    self.kvs = kvs
    self.more = more
    self.count = count
    self.revision = revision
  }
}

/// The outcome of a put.
public struct BackendWriteResult: Sendable, Hashable {
  /// The revision of the write.
  public var revision: Int64
  /// The value before the write, if the key existed.
  public var previous: StoredKeyValue?

  public init(revision: Int64, previous: StoredKeyValue?) {
    self.revision = revision
    self.previous = previous
  }
}

/// The outcome of a delete.
public struct BackendDeleteResult: Sendable, Hashable {
  /// The store's revision after the delete (unchanged if nothing was deleted).
  public var revision: Int64
  /// The values deleted.
  public var deleted: [StoredKeyValue]

  public init(revision: Int64, deleted: [StoredKeyValue]) {
    self.revision = revision
    self.deleted = deleted
  }
}

/// A condition of a transaction on one key. A missing key has create, mod revision and version 0.
public struct BackendCompare: Sendable, Hashable {
  /// What to compare.
  public enum Target: Sendable, Hashable {
    case modRevision(Int64)
    case createRevision(Int64)
    case version(Int64)
    case value(Data)
  }
  /// How the key's current value relates to the target.
  public enum Relation: Sendable, Hashable { case equal, notEqual, less, greater }

  public var key: String
  public var target: Target
  public var relation: Relation

  public init(key: String, target: Target, relation: Relation = .equal) {
    self.key = key
    self.target = target
    self.relation = relation
  }

  /// The key was last written at `revision` (optimistic concurrency on `resourceVersion`).
  public static func modRevision(_ key: String, equals revision: Int64) -> BackendCompare {
    BackendCompare(key: key, target: .modRevision(revision))
  }

  /// The key does not exist.
  public static func absent(_ key: String) -> BackendCompare {
    BackendCompare(key: key, target: .createRevision(0))
  }
}

/// One operation of a transaction.
public enum BackendOperation: Sendable, Hashable {
  case range(KeyRange, BackendRangeOptions)
  case put(key: String, value: Data, lease: Int64?)
  case delete(KeyRange)
}

/// An atomic compare-and-then transaction.
public struct BackendTxn: Sendable, Hashable {
  public var compares: [BackendCompare]
  public var success: [BackendOperation]
  public var failure: [BackendOperation]

  public init(compares: [BackendCompare] = [], success: [BackendOperation] = [], failure: [BackendOperation] = []) {
    self.compares = compares
    self.success = success
    self.failure = failure
  }
}

/// The result of one transaction operation.
public enum BackendOperationResult: Sendable, Hashable {
  case range(BackendRangePage)
  case put(BackendWriteResult)
  case delete(BackendDeleteResult)
}

/// The outcome of a transaction.
public struct BackendTxnResult: Sendable, Hashable {
  /// Whether the compares held (and `success` ran).
  public var succeeded: Bool
  /// The store's revision after the transaction.
  public var revision: Int64
  /// One result per operation that ran.
  public var results: [BackendOperationResult]

  public init(succeeded: Bool, revision: Int64, results: [BackendOperationResult]) {
    self.succeeded = succeeded
    self.revision = revision
    self.results = results
  }
}

/// How to watch.
public struct BackendWatchOptions: Sendable, Hashable {
  /// Replay from this revision (0: only changes after now).
  public var startRevision: Int64
  /// Include each key's previous value in its events.
  public var prevKV: Bool
  /// Ask the store for periodic ``BackendWatchEvent/progress(revision:)`` while idle.
  public var progressNotify: Bool

  public init(startRevision: Int64 = 0, prevKV: Bool = false, progressNotify: Bool = true) {
    self.startRevision = startRevision
    self.prevKV = prevKV
    self.progressNotify = progressNotify
  }
}

/// One thing a watch reports.
public enum BackendWatchEvent: Sendable, Hashable {
  /// A key was created or updated (`kv.version == 1` on creation).
  case put(StoredKeyValue, previous: StoredKeyValue?)
  /// A key was deleted at `revision`.
  case delete(key: String, revision: Int64, previous: StoredKeyValue?)
  /// Nothing in the watched range changed up to `revision`.
  case progress(revision: Int64)

  /// The revision of the event.
  public var revision: Int64 {
    switch self {
    case .put(let kv, _): kv.modRevision
    case .delete(_, let revision, _): revision
    case .progress(let revision): revision
    }
  }
}

/// The events of one watch, in revision order. Stop iterating to cancel the watch. Errors thrown
/// are always ``BackendError``.
public struct BackendWatchStream: AsyncSequence, Sendable {
  public typealias Element = BackendWatchEvent
  public typealias Failure = any Error

  private let makeNext: @Sendable () -> () async throws -> BackendWatchEvent?

  /// A watch whose iterator calls the closure that `makeNext` returns for each element.
  public init(makeNext: @escaping @Sendable () -> () async throws -> BackendWatchEvent?) {
    self.makeNext = makeNext
  }

  /// A watch that delivers what `stream` yields.
  public init(_ stream: AsyncThrowingStream<BackendWatchEvent, any Error>) {
    self.makeNext = {
      var iterator = stream.makeAsyncIterator()
      return { try await iterator.next() }
    }
  }

  public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(next: self.makeNext()) }

  public struct AsyncIterator: AsyncIteratorProtocol {
    let nextElement: () async throws -> BackendWatchEvent?

    init(next: @escaping () async throws -> BackendWatchEvent?) { self.nextElement = next }

    public mutating func next() async throws -> BackendWatchEvent? { try await self.nextElement() }
  }
}

/// A granted lease.
public struct BackendLease: Sendable, Hashable {
  /// The lease's ID.
  public var id: Int64
  /// Its time to live in seconds, as granted.
  public var ttl: Int64

  public init(id: Int64, ttl: Int64) {
    self.id = id
    self.ttl = ttl
  }
}

/// What happens to a lease being kept alive.
public enum BackendLeaseEvent: Sendable, Hashable {
  /// The lease was renewed; it now has `ttl` seconds to live.
  case renewed(ttl: Int64)
  /// The lease is gone (revoked, expired or not renewed in time). No more events follow.
  case lost(reason: String)
}

/// A lease being kept alive by ``Backend/keepAlive(_:)``.
public struct BackendLeaseKeepAlive: Sendable {
  /// The lease.
  public let lease: BackendLease
  /// Renewals, then `.lost` if the lease is lost; finishes after `.lost` or ``cancel()``.
  public let events: BackendLeaseEvents
  private let onCancel: @Sendable () -> Void

  public init(lease: BackendLease, events: BackendLeaseEvents, onCancel: @escaping @Sendable () -> Void) {
    self.lease = lease
    self.events = events
    self.onCancel = onCancel
  }

  public init(lease: BackendLease, events: AsyncStream<BackendLeaseEvent>, onCancel: @escaping @Sendable () -> Void) {
    self.init(lease: lease, events: BackendLeaseEvents(events), onCancel: onCancel)
  }

  /// Stops keeping the lease alive (it then expires after its TTL unless revoked).
  public func cancel() { self.onCancel() }

  /// Waits until the lease is lost and returns why; `nil` if keep-alive was cancelled.
  public func waitUntilLost() async -> String? {
    for await event in self.events {
      if case .lost(let reason) = event { return reason }
    }
    return nil
  }
}

/// The events of a lease keep-alive.
public struct BackendLeaseEvents: AsyncSequence, Sendable {
  public typealias Element = BackendLeaseEvent
  public typealias Failure = Never

  private let makeNext: @Sendable () -> () async -> BackendLeaseEvent?

  /// Events produced by the closure that `makeNext` returns, called once per element.
  public init(makeNext: @escaping @Sendable () -> () async -> BackendLeaseEvent?) { self.makeNext = makeNext }

  /// The events that `stream` yields.
  public init(_ stream: AsyncStream<BackendLeaseEvent>) {
    self.makeNext = {
      var iterator = stream.makeAsyncIterator()
      return { await iterator.next() }
    }
  }

  public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(next: self.makeNext()) }

  public struct AsyncIterator: AsyncIteratorProtocol {
    let nextElement: () async -> BackendLeaseEvent?

    init(next: @escaping () async -> BackendLeaseEvent?) { self.nextElement = next }

    public mutating func next() async -> BackendLeaseEvent? { await self.nextElement() }
  }
}
