public import CapstanEtcd
import Foundation

/// A ``Backend`` on a real etcd cluster, through an `EtcdClient`.
///
/// The client must be running (as a `Service`, or inside `withEtcdClient`). Its watch already
/// resumes across disconnects and failovers without loss, so an ``EtcdBackend`` watch ends only
/// on compaction, shutdown or cancellation. Every `EtcdError` is mapped to a ``BackendError``
/// with the same meaning, keeping the original as ``BackendError/cause``.
public struct EtcdBackend: Backend {
  /// The client every call goes through.
  public let client: EtcdClient

  /// A backend on `client`.
  public init(client: EtcdClient) { self.client = client }

  public func currentRevision() async throws -> Int64 {
    try await Self.mapping {
      try await self.client.range(.key("\0"), options: RangeOptions(countOnly: true)).header.revision
    }
  }

  public func range(_ range: KeyRange, options: BackendRangeOptions) async throws -> BackendRangePage {
    guard options.limit >= 0 else {
      throw BackendError(code: .invalidArgument, message: "range: limit must not be negative (\(options.limit))")
    }
    let result = try await Self.mapping {
      try await self.client.range(
        EtcdKeyRange(range),
        options: RangeOptions(limit: Int64(options.limit), revision: options.revision, keysOnly: options.keysOnly))
    }
    var page = BackendRangePage(result)
    // etcd's header carries the current revision; the page was read at the one asked for.
    if options.revision > 0 { page.revision = options.revision }
    return page
  }

  public func put(_ key: String, value: Data, lease: Int64?) async throws -> BackendWriteResult {
    let result = try await Self.mapping {
      try await self.client.put(key: Data(key.utf8), value: value, options: PutOptions(lease: lease ?? 0, prevKV: true))
    }
    return BackendWriteResult(revision: result.header.revision, previous: result.prevKV.map(StoredKeyValue.init))
  }

  public func delete(_ range: KeyRange) async throws -> BackendDeleteResult {
    let result = try await Self.mapping { try await self.client.delete(EtcdKeyRange(range), prevKV: true) }
    return BackendDeleteResult(result)
  }

  public func txn(_ txn: BackendTxn) async throws -> BackendTxnResult {
    let request = EtcdTxn(
      compares: txn.compares.map(EtcdCompare.init), success: txn.success.map(EtcdOperation.init),
      failure: txn.failure.map(EtcdOperation.init))
    let result = try await Self.mapping { try await self.client.txn(request) }
    return BackendTxnResult(
      succeeded: result.succeeded, revision: result.header.revision,
      results: result.responses.compactMap(BackendOperationResult.init))
  }

  public func watch(_ range: KeyRange, options: BackendWatchOptions) -> BackendWatchStream {
    let watch = self.client.watch(
      EtcdKeyRange(range),
      options: WatchOptions(
        startRevision: options.startRevision, prevKV: options.prevKV, progressNotify: options.progressNotify))
    return BackendWatchStream {
      var iterator = watch.makeAsyncIterator()
      return {
        do {
          guard let event = try await iterator.next() else { return nil }
          return BackendWatchEvent(event)
        } catch {
          throw BackendError(error)
        }
      }
    }
  }

  public func requestWatchProgress() async throws -> Int64 {
    try await Self.mapping { try await self.client.requestWatchProgress() }
  }

  public func grantLease(ttl: Int64) async throws -> BackendLease {
    guard ttl > 0 else { throw BackendError(code: .invalidArgument, message: "grantLease: ttl must be positive (\(ttl))") }
    let lease = try await Self.mapping { try await self.client.grantLease(ttl: ttl) }
    return BackendLease(id: lease.id, ttl: lease.ttl)
  }

  public func revokeLease(_ id: Int64) async throws {
    try await Self.mapping { try await self.client.revokeLease(id) }
  }

  public func leaseTimeToLive(_ id: Int64) async throws -> Int64 {
    let info = try await Self.mapping { try await self.client.leaseTimeToLive(id) }
    // etcd answers TTL -1 for a lease that does not exist (any more).
    guard info.ttl >= 0 else { throw BackendError(code: .leaseNotFound, message: "lease \(id) not found") }
    return info.ttl
  }

  public func keepAlive(_ lease: BackendLease) -> BackendLeaseKeepAlive {
    let keepAlive = self.client.keepAlive(EtcdLease(id: lease.id, ttl: lease.ttl))
    let events = BackendLeaseEvents {
      var iterator = keepAlive.events.makeAsyncIterator()
      return {
        switch await iterator.next() {
        case .renewed(let ttl): .renewed(ttl: ttl)
        case .lost(let error): .lost(reason: error.description)
        case nil: nil
        }
      }
    }
    return BackendLeaseKeepAlive(lease: lease, events: events, onCancel: { keepAlive.cancel() })
  }

  public func compact(revision: Int64) async throws {
    _ = try await Self.mapping { try await self.client.compact(revision: revision) }
  }

  /// Runs `body`, turning its `EtcdError` into a ``BackendError``.
  private static func mapping<Result>(_ body: () async throws -> Result) async throws(BackendError) -> Result {
    do {
      return try await body()
    } catch {
      throw BackendError(error)
    }
  }
}

// MARK: - Conversions between the client's types and the backend's

extension BackendError {
  /// The backend error with the same meaning as `error` (an `EtcdError` or anything else).
  init(_ error: any Error) {
    guard let error = error as? EtcdError else {
      if error is CancellationError {
        self.init(code: .cancelled, message: "cancelled", cause: error)
      } else {
        self.init(code: .internalError, message: "\(error)", cause: error)
      }
      return
    }
    let code: BackendError.Code =
      switch error.code {
      case .unavailable, .noLeader, .leaderChanged, .serverTimeout: .unavailable
      case .deadlineExceeded: .deadlineExceeded
      case .cancelled: .cancelled
      case .compacted: .compacted
      case .futureRevision: .futureRevision
      case .leaseNotFound, .leaseExpired: .leaseNotFound
      case .invalidArgument, .tooManyTxnOps, .duplicateKeyInTxn, .keyNotFound: .invalidArgument
      case .permissionDenied, .invalidAuthToken, .authenticationFailed: .permissionDenied
      case .tooManyRequests: .tooManyRequests
      case .noSpace: .noSpace
      case .requestTooLarge: .requestTooLarge
      case .clientClosed: .closed
      default: .internalError
      }
    self.init(code: code, message: error.message, compactRevision: error.compactRevision, cause: error)
  }
}

extension EtcdKeyRange {
  init(_ range: KeyRange) {
    self.init(key: Data(range.key.utf8), rangeEnd: Data(range.rangeEnd.utf8))
  }
}

extension StoredKeyValue {
  init(_ kv: KeyValue) {
    self.init(
      key: String(decoding: kv.key, as: UTF8.self), value: kv.value, createRevision: kv.createRevision,
      modRevision: kv.modRevision, version: kv.version, lease: kv.lease)
  }
}

extension BackendRangePage {
  init(_ result: RangeResult) {
    self.init(
      kvs: result.kvs.map(StoredKeyValue.init), more: result.more, count: Int(result.count),
      revision: result.header.revision)
  }
}

extension BackendDeleteResult {
  init(_ result: DeleteResult) {
    self.init(revision: result.header.revision, deleted: result.prevKVs.map(StoredKeyValue.init))
  }
}

extension EtcdCompare {
  init(_ compare: BackendCompare) {
    let target: EtcdCompare.Target =
      switch compare.target {
      case .modRevision(let revision): .modRevision(revision)
      case .createRevision(let revision): .createRevision(revision)
      case .version(let version): .version(version)
      case .value(let value): .value(value)
      }
    let result: EtcdCompare.Result =
      switch compare.relation {
      case .equal: .equal
      case .notEqual: .notEqual
      case .less: .less
      case .greater: .greater
      }
    self.init(EtcdKeyRange(.key(compare.key)), target, result)
  }
}

extension EtcdOperation {
  init(_ operation: BackendOperation) {
    switch operation {
    case .range(let range, let options):
      self = .range(
        EtcdKeyRange(range),
        RangeOptions(limit: Int64(options.limit), revision: options.revision, keysOnly: options.keysOnly))
    case .put(let key, let value, let lease):
      self = .put(key: Data(key.utf8), value: value, PutOptions(lease: lease ?? 0, prevKV: true))
    case .delete(let range):
      self = .delete(EtcdKeyRange(range), prevKV: true)
    }
  }
}

extension BackendOperationResult {
  init?(_ result: EtcdOperationResult) {
    switch result {
    case .range(let range): self = .range(BackendRangePage(range))
    case .put(let put):
      self = .put(BackendWriteResult(revision: put.header.revision, previous: put.prevKV.map(StoredKeyValue.init)))
    case .delete(let delete): self = .delete(BackendDeleteResult(delete))
    case .txn: return nil  // the backend never sends nested transactions
    }
  }
}

extension BackendWatchEvent {
  init(_ event: WatchEvent) {
    switch event {
    case .put(let kv, let previous):
      self = .put(StoredKeyValue(kv), previous: previous.map(StoredKeyValue.init))
    case .delete(let kv, let previous):
      self = .delete(
        key: String(decoding: kv.key, as: UTF8.self), revision: kv.modRevision,
        previous: previous.map(StoredKeyValue.init))
    case .progress(let revision):
      self = .progress(revision: revision)
    }
  }
}
