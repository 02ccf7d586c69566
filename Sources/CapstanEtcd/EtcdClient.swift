import CapstanEtcdAPI
public import Foundation
import GRPCCore
public import Logging
public import ServiceLifecycle
import Synchronization

/// A client for etcd v3: KV, transactions, a multiplexed watch stream, leases with keep-alive,
/// maintenance status and auth, over one gRPC connection per endpoint with failover.
///
/// The client does its background work (connections, the shared watch stream, the shared
/// keep-alive stream) inside ``run()``: run it as a swift-service-lifecycle `Service`, or use
/// ``withEtcdClient(_:logger:_:)`` which runs it for the duration of a closure.
///
/// ```swift
/// try await withEtcdClient(EtcdClientConfiguration(endpoints: "127.0.0.1:2379")) { etcd in
///   try await etcd.put("/hello", "world")
///   let value = try await etcd.get("/hello")?.valueString
/// }
/// ```
public final class EtcdClient: Service, Sendable {
  /// The configuration the client was created with.
  public let configuration: EtcdClientConfiguration
  let pool: EtcdConnectionPool
  let watchHub: EtcdWatchHub
  let leaseKeeper: EtcdLeaseKeeper
  let logger: Logger
  private let shutdownRequested = Mutex(false)
  /// Finishes when ``shutdown()`` is called, to cancel the long-lived streams.
  private let shutdownSignal: AsyncStream<Void>
  private let shutdownSignalContinuation: AsyncStream<Void>.Continuation

  /// Creates a client. Nothing connects until ``run()`` is running.
  ///
  /// - Throws: ``EtcdError`` with code ``EtcdError/Code/invalidArgument`` for a bad configuration.
  public init(configuration: EtcdClientConfiguration, logger: Logger = Logger(label: "capstan.etcd")) throws(EtcdError) {
    self.configuration = configuration
    self.logger = logger
    self.pool = try EtcdConnectionPool(configuration: configuration, logger: logger)
    self.watchHub = EtcdWatchHub(pool: self.pool, logger: logger)
    self.leaseKeeper = EtcdLeaseKeeper(pool: self.pool, logger: logger)
    (self.shutdownSignal, self.shutdownSignalContinuation) = AsyncStream.makeStream(of: Void.self)
  }

  /// Runs the connections and the shared watch and keep-alive streams until ``shutdown()`` is
  /// called, graceful shutdown is triggered, or the task is cancelled.
  public func run() async throws {
    // However run() ends (graceful shutdown, cancellation, an error), watchers, keep-alives and
    // connections are released.
    defer { self.shutdown() }
    try await withGracefulShutdownHandler {
      try await withThrowingDiscardingTaskGroup { group in
        group.addTask { try await self.pool.run() }
        group.addTask {
          // The shared streams live until shutdown; then they are cancelled rather than waited
          // for (a watch stream never ends by itself), and the connections drain gracefully.
          await withTaskGroup(of: Void.self) { streams in
            streams.addTask { await self.watchHub.run() }
            streams.addTask { await self.leaseKeeper.run() }
            streams.addTask { for await _ in self.shutdownSignal {} }
            // The streams return only once shut down; the signal ends first or together.
            await streams.next()
            streams.cancelAll()
          }
        }
      }
    } onGracefulShutdown: {
      self.shutdown()
    }
  }

  /// Stops the client: ends every watch and keep-alive (their sequences finish with
  /// ``EtcdError/Code/clientClosed``) and closes the connections once in-flight calls finish.
  public func shutdown() {
    let first = self.shutdownRequested.withLock { requested in
      defer { requested = true }
      return !requested
    }
    guard first else { return }
    self.watchHub.shutdown()
    self.leaseKeeper.shutdown()
    self.shutdownSignalContinuation.finish()
    self.pool.shutdown()
  }

  // MARK: KV

  /// Reads one key; `nil` if it does not exist.
  public func get(_ key: String, revision: Int64 = 0, serializable: Bool = false) async throws(EtcdError) -> KeyValue? {
    try await self.range(.key(key), options: RangeOptions(revision: revision, serializable: serializable)).kvs.first
  }

  /// Reads a key range with the given options.
  public func range(_ range: EtcdKeyRange, options: RangeOptions = RangeOptions(), timeout: Duration? = nil) async throws(EtcdError) -> RangeResult {
    try range.validate("range")
    try options.validate("range")
    let request = options.request(for: range)
    let response = try await self.pool.performUnary(
      "range", policy: .idempotent, timeout: timeout, method: Etcdserverpb_KV.Method.Range.descriptor, request: request
    ) { client, callOptions in
      try await Etcdserverpb_KV.Client(wrapping: client).range(request, options: callOptions)
    }
    return RangeResult(response)
  }

  /// Reads every key of a range in pages of `pageSize`, all at one revision (the first page's),
  /// so the result is a consistent snapshot even while others write.
  ///
  /// - Returns: the key-values and the revision they were read at.
  public func rangeAll(
    _ range: EtcdKeyRange, pageSize: Int64 = 1000, revision: Int64 = 0, keysOnly: Bool = false
  ) async throws(EtcdError) -> (kvs: [KeyValue], revision: Int64) {
    guard pageSize > 0 else {
      throw EtcdError(code: .invalidArgument, message: "rangeAll: page size must be positive")
    }
    var kvs: [KeyValue] = []
    var next = range
    var atRevision = revision
    while true {
      let page = try await self.range(
        next, options: RangeOptions(limit: pageSize, revision: atRevision, keysOnly: keysOnly))
      if atRevision == 0 { atRevision = page.header.revision }
      kvs.append(contentsOf: page.kvs)
      guard page.more, let last = page.kvs.last else { break }
      next = EtcdKeyRange(key: last.key + Data([0]), rangeEnd: range.rangeEnd)
    }
    return (kvs, atRevision)
  }

  /// Writes a key.
  @discardableResult
  public func put(_ key: String, _ value: String, options: PutOptions = PutOptions()) async throws(EtcdError) -> PutResult {
    try await self.put(key: Data(key.utf8), value: Data(value.utf8), options: options)
  }

  /// Writes a key (raw bytes).
  @discardableResult
  public func put(key: Data, value: Data, options: PutOptions = PutOptions(), timeout: Duration? = nil) async throws(EtcdError) -> PutResult {
    guard !key.isEmpty else { throw EtcdError(code: .invalidArgument, message: "put: the key must not be empty") }
    let request = makePutRequest(key: key, value: value, options: options)
    let response = try await self.pool.performUnary(
      "put", policy: .nonIdempotent, timeout: timeout, method: Etcdserverpb_KV.Method.Put.descriptor, request: request
    ) { client, callOptions in
      try await Etcdserverpb_KV.Client(wrapping: client).put(request, options: callOptions)
    }
    return PutResult(response)
  }

  /// Deletes a key or a range.
  @discardableResult
  public func delete(_ range: EtcdKeyRange, prevKV: Bool = false, timeout: Duration? = nil) async throws(EtcdError) -> DeleteResult {
    try range.validate("delete")
    let request = makeDeleteRequest(range: range, prevKV: prevKV)
    let response = try await self.pool.performUnary(
      "delete", policy: .nonIdempotent, timeout: timeout, method: Etcdserverpb_KV.Method.DeleteRange.descriptor,
      request: request
    ) { client, callOptions in
      try await Etcdserverpb_KV.Client(wrapping: client).deleteRange(request, options: callOptions)
    }
    return DeleteResult(response)
  }

  /// Deletes one key.
  @discardableResult
  public func delete(_ key: String) async throws(EtcdError) -> DeleteResult {
    try await self.delete(.key(key))
  }

  /// Runs a transaction atomically.
  public func txn(_ txn: EtcdTxn, timeout: Duration? = nil) async throws(EtcdError) -> TxnResult {
    try txn.validate()
    let request = txn.proto
    let readOnly = (txn.success + txn.failure).allSatisfy { if case .range = $0 { true } else { false } }
    let response = try await self.pool.performUnary(
      "txn", policy: readOnly ? .idempotent : .nonIdempotent, timeout: timeout,
      method: Etcdserverpb_KV.Method.Txn.descriptor, request: request
    ) { client, callOptions in
      try await Etcdserverpb_KV.Client(wrapping: client).txn(request, options: callOptions)
    }
    return TxnResult(response)
  }

  /// Writes `key` only if its `mod_revision` is still `expectedModRevision` (0: only if absent).
  ///
  /// - Throws: ``EtcdError/Code/txnConflict`` when someone else changed the key first.
  @discardableResult
  public func putIfUnchanged(
    _ key: String, _ value: String, expectedModRevision: Int64, options: PutOptions = PutOptions()
  ) async throws(EtcdError) -> PutResult {
    let result = try await self.txn(
      EtcdTxn(compares: [.modRevision(key, is: expectedModRevision)], success: [.put(key, value, options)]))
    guard result.succeeded, case .put(let put)? = result.responses.first else {
      throw EtcdError(
        code: .txnConflict,
        message: "\(key) changed since revision \(expectedModRevision) (store at \(result.header.revision))"
      )
    }
    return put
  }

  /// Compacts the history up to `revision`. With `physical`, waits until the space is reclaimed.
  @discardableResult
  public func compact(revision: Int64, physical: Bool = false) async throws(EtcdError) -> EtcdResponseHeader {
    var request = Etcdserverpb_CompactionRequest()
    request.revision = revision
    request.physical = physical
    let response = try await self.pool.performUnary(
      "compact", policy: .nonIdempotent, mayTakeLong: physical, method: Etcdserverpb_KV.Method.Compact.descriptor,
      request: request
    ) { client, callOptions in
      try await Etcdserverpb_KV.Client(wrapping: client).compact(request, options: callOptions)
    }
    return EtcdResponseHeader(response.header)
  }

  // MARK: Leases

  /// Grants a lease of `ttl` seconds (`id` 0 lets etcd choose the ID).
  public func grantLease(ttl: Int64, id: Int64 = 0) async throws(EtcdError) -> EtcdLease {
    guard ttl > 0 else { throw EtcdError(code: .invalidArgument, message: "lease grant: TTL must be positive, got \(ttl)") }
    var request = Etcdserverpb_LeaseGrantRequest()
    request.ttl = ttl
    request.id = id
    let response = try await self.pool.performUnary(
      "lease grant", policy: .nonIdempotent, method: Etcdserverpb_Lease.Method.LeaseGrant.descriptor, request: request
    ) { client, callOptions in
      try await Etcdserverpb_Lease.Client(wrapping: client).leaseGrant(request, options: callOptions)
    }
    if !response.error.isEmpty {
      throw EtcdError(code: .invalidArgument, message: "lease grant: \(response.error)")
    }
    return EtcdLease(id: response.id, ttl: response.ttl)
  }

  /// Revokes a lease: every key attached to it is deleted.
  ///
  /// - Throws: ``EtcdError/Code/leaseNotFound`` if the lease does not exist.
  public func revokeLease(_ id: Int64) async throws(EtcdError) {
    var request = Etcdserverpb_LeaseRevokeRequest()
    request.id = id
    let _: Etcdserverpb_LeaseRevokeResponse = try await self.pool.performUnary(
      "lease revoke", policy: .nonIdempotent, method: Etcdserverpb_Lease.Method.LeaseRevoke.descriptor, request: request
    ) { client, callOptions in
      try await Etcdserverpb_Lease.Client(wrapping: client).leaseRevoke(request, options: callOptions)
    }
  }

  /// What etcd knows of a lease (TTL -1 when it does not exist).
  public func leaseTimeToLive(_ id: Int64, keys: Bool = false) async throws(EtcdError) -> EtcdLeaseInfo {
    var request = Etcdserverpb_LeaseTimeToLiveRequest()
    request.id = id
    request.keys = keys
    let response = try await self.pool.performUnary(
      "lease time-to-live", policy: .idempotent, method: Etcdserverpb_Lease.Method.LeaseTimeToLive.descriptor,
      request: request
    ) { client, callOptions in
      try await Etcdserverpb_Lease.Client(wrapping: client).leaseTimeToLive(request, options: callOptions)
    }
    return EtcdLeaseInfo(id: response.id, ttl: response.ttl, grantedTTL: response.grantedTtl, keys: response.keys)
  }

  /// The IDs of every live lease.
  public func leases() async throws(EtcdError) -> [Int64] {
    let request = Etcdserverpb_LeaseLeasesRequest()
    let response = try await self.pool.performUnary(
      "lease list", policy: .idempotent, method: Etcdserverpb_Lease.Method.LeaseLeases.descriptor, request: request
    ) { client, callOptions in
      try await Etcdserverpb_Lease.Client(wrapping: client).leaseLeases(request, options: callOptions)
    }
    return response.leases.map(\.id)
  }

  /// Keeps a lease alive on the client's shared keep-alive stream, refreshing it every TTL/3,
  /// until the handle is cancelled or the lease is lost (expired or revoked), which the handle's
  /// ``EtcdLeaseKeepAlive/events`` report.
  public func keepAlive(_ lease: EtcdLease) -> EtcdLeaseKeepAlive {
    self.leaseKeeper.add(lease)
  }

  // MARK: Watch

  /// Watches a key range. The sequence yields every event from `options.startRevision` (or from
  /// now) on, in revision order, without loss or duplicates across reconnects and failovers.
  ///
  /// It ends by throwing ``EtcdError`` with code ``EtcdError/Code/compacted`` (and
  /// ``EtcdError/compactRevision``) when the revision it needs has been compacted away — relist
  /// then — or ``EtcdError/Code/clientClosed`` when the client shuts down. Stop iterating (or
  /// cancel the task) to cancel the watch.
  public func watch(_ range: EtcdKeyRange, options: WatchOptions = WatchOptions()) -> EtcdWatch {
    self.watchHub.add(range: range, options: options)
  }

  /// Asks etcd for a progress notification on the shared watch stream and returns the revision
  /// it reports: proof that the stream is alive. Does not advance any watcher's position
  /// (etcd 3.4 may send it while a watcher is still catching up).
  public func requestWatchProgress(timeout: Duration? = nil) async throws(EtcdError) -> Int64 {
    try await self.watchHub.requestProgress(timeout: timeout ?? self.configuration.requestTimeout)
  }

  // MARK: Maintenance

  /// The status of the member the client currently talks to (or of `endpointIndex`).
  public func status(endpointIndex: Int? = nil) async throws(EtcdError) -> EtcdStatus {
    if let endpointIndex, !self.pool.members.indices.contains(endpointIndex) {
      throw EtcdError(code: .invalidArgument, message: "status: no endpoint number \(endpointIndex)")
    }
    let request = Etcdserverpb_StatusRequest()
    let (status, memberIndex) = try await self.pool.performUnaryReportingMember(
      "status", policy: .idempotent, pinnedTo: endpointIndex, method: Etcdserverpb_Maintenance.Method.Status.descriptor,
      request: request
    ) { client, callOptions in
      try await Etcdserverpb_Maintenance.Client(wrapping: client).status(request, options: callOptions)
    }
    let endpoint = self.pool.members[memberIndex].endpoint
    return EtcdStatus(
      header: EtcdResponseHeader(status.header), version: status.version, dbSize: status.dbSize,
      dbSizeInUse: status.dbSizeInUse, leader: status.leader, raftIndex: status.raftIndex,
      raftTerm: status.raftTerm, raftAppliedIndex: status.raftAppliedIndex, errors: status.errors,
      endpoint: endpoint)
  }

  /// The active alarms of the cluster (e.g. `NOSPACE`).
  public func alarms() async throws(EtcdError) -> [EtcdAlarm] {
    var request = Etcdserverpb_AlarmRequest()
    request.action = .get
    let response = try await self.pool.performUnary(
      "alarm list", policy: .idempotent, method: Etcdserverpb_Maintenance.Method.Alarm.descriptor, request: request
    ) { client, callOptions in
      try await Etcdserverpb_Maintenance.Client(wrapping: client).alarm(request, options: callOptions)
    }
    return response.alarms.map { EtcdAlarm(memberID: $0.memberID, alarm: "\($0.alarm)".uppercased()) }
  }

  /// The endpoints in use, in order of preference.
  public var endpoints: [EtcdEndpoint] { self.pool.members.map(\.endpoint) }

  /// The endpoint calls currently go to.
  public var currentEndpoint: EtcdEndpoint { self.pool.currentMember.member.endpoint }
}

/// Creates an ``EtcdClient``, runs it while `body` runs, and shuts it down afterwards.
public func withEtcdClient<Result: Sendable>(
  _ configuration: EtcdClientConfiguration,
  logger: Logger = Logger(label: "capstan.etcd"),
  _ body: (EtcdClient) async throws -> Result
) async throws -> Result {
  let client = try EtcdClient(configuration: configuration, logger: logger)
  return try await withThrowingTaskGroup(of: Void.self) { group in
    group.addTask { try await client.run() }
    do {
      let result = try await body(client)
      client.shutdown()
      try await group.waitForAll()
      return result
    } catch {
      client.shutdown()
      group.cancelAll()
      throw error
    }
  }
}
