import CapstanEtcd
import CapstanTesting
import CapstanTestSupport
import Foundation
import GRPCCore
import Synchronization
import Testing

@Suite("EtcdClient KV against a real etcd", .etcdServer("kv"))
struct EtcdClientKVTests {
  @Test("put, get, delete one key; etcdctl sees what the client wrote and vice versa")
  func putGetDelete() async throws {
    let prefix = uniquePrefix()
    let server = try suiteServer()
    try await withSuiteClient { etcd in
      let put = try await etcd.put(prefix + "a", "1")
      #expect(put.header.revision > 0)
      let kv = try #require(try await etcd.get(prefix + "a"))
      #expect(kv.valueString == "1")
      #expect(kv.modRevision == put.header.revision)
      #expect(kv.createRevision == put.header.revision)
      #expect(kv.version == 1)
      #expect(try server.etcdctl("get", prefix + "a", "--print-value-only").trimmingCharacters(in: .whitespacesAndNewlines) == "1")

      _ = try server.etcdctl("put", prefix + "b", "from-etcdctl")
      #expect(try await etcd.get(prefix + "b")?.valueString == "from-etcdctl")

      let again = try await etcd.put(prefix + "a", "2", options: PutOptions(prevKV: true))
      #expect(again.prevKV?.valueString == "1")
      #expect(try await etcd.get(prefix + "a")?.version == 2)

      let deleted = try await etcd.delete(.key(prefix + "a"), prevKV: true)
      #expect(deleted.deleted == 1)
      #expect(deleted.prevKVs.first?.valueString == "2")
      #expect(try await etcd.get(prefix + "a") == nil)
      #expect(try await etcd.delete(prefix + "missing").deleted == 0)
    }
  }

  @Test("prefix and range reads, limit and more, keys-only, count-only, serializable, sorting")
  func rangeOptions() async throws {
    let prefix = uniquePrefix()
    try await withSuiteClient { etcd in
      for index in 0..<10 { try await etcd.put(prefix + String(format: "k%02d", index), "v\(index)") }
      try await etcd.put(String(prefix.dropLast()) + "0-outside", "x")

      let all = try await etcd.range(.prefix(prefix))
      #expect(all.kvs.count == 10)
      #expect(all.count == 10)
      #expect(!all.more)

      let limited = try await etcd.range(.prefix(prefix), options: RangeOptions(limit: 3))
      #expect(limited.kvs.map(\.keyString) == [prefix + "k00", prefix + "k01", prefix + "k02"])
      #expect(limited.more)
      #expect(limited.count == 10)

      let between = try await etcd.range(.range(from: prefix + "k03", to: prefix + "k06"))
      #expect(between.kvs.map(\.valueString) == ["v3", "v4", "v5"])

      let keysOnly = try await etcd.range(.prefix(prefix), options: RangeOptions(keysOnly: true))
      #expect(keysOnly.kvs.allSatisfy { $0.value.isEmpty })

      let countOnly = try await etcd.range(.prefix(prefix), options: RangeOptions(countOnly: true))
      #expect(countOnly.kvs.isEmpty)
      #expect(countOnly.count == 10)

      let serializable = try await etcd.range(.prefix(prefix), options: RangeOptions(serializable: true))
      #expect(serializable.kvs.count == 10)

      let descending = try await etcd.range(.prefix(prefix), options: RangeOptions(sortOrder: .descend, sortTarget: .key))
      #expect(descending.kvs.first?.keyString == prefix + "k09")

      let fromKey = try await etcd.range(.from(prefix + "k08"), options: RangeOptions(limit: 2))
      #expect(fromKey.kvs.map(\.keyString) == [prefix + "k08", prefix + "k09"])
    }
  }

  @Test("paginated rangeAll reads a consistent snapshot at one revision")
  func paginatedRange() async throws {
    let prefix = uniquePrefix()
    try await withSuiteClient { etcd in
      for index in 0..<25 { try await etcd.put(prefix + String(format: "%03d", index), "\(index)") }
      let (kvs, revision) = try await etcd.rangeAll(.prefix(prefix), pageSize: 4)
      #expect(kvs.count == 25)
      #expect(Set(kvs.map(\.keyString)).count == 25)
      // Writes after the snapshot revision are invisible at that revision.
      try await etcd.put(prefix + "999", "late")
      let (again, sameRevision) = try await etcd.rangeAll(.prefix(prefix), pageSize: 7, revision: revision)
      #expect(sameRevision == revision)
      #expect(again.count == 25)
      await #expect(throws: EtcdError.self) { try await etcd.rangeAll(.prefix(prefix), pageSize: 0) }
    }
  }

  @Test("transactions compare value, version, create and mod revision, with nested branches")
  func transactions() async throws {
    let prefix = uniquePrefix()
    try await withSuiteClient { etcd in
      let key = prefix + "t"
      let created = try await etcd.txn(EtcdTxn(
        compares: [.absent(key)], success: [.put(key, "v1"), .get(key)], failure: [.get(key)]))
      #expect(created.succeeded)
      #expect(created.responses.count == 2)
      guard case .range(let read)? = created.responses.last else { Issue.record("expected a range result"); return }
      #expect(read.kvs.first?.valueString == "v1")

      let modRevision = try #require(try await etcd.get(key)).modRevision
      let compares: [EtcdCompare] = [
        .value(key, is: "v1"),
        EtcdCompare(.key(key), .version(1)),
        EtcdCompare(.key(key), .createRevision(modRevision)),
        .modRevision(key, is: modRevision),
        EtcdCompare(.key(key), .version(0), .greater),
        EtcdCompare(.key(key), .value(Data("zzz".utf8)), .less),
      ]
      let nested = EtcdTxn(compares: [.absent(prefix + "n")], success: [.put(prefix + "n", "nested")])
      let allHold = try await etcd.txn(EtcdTxn(compares: compares, success: [.put(key, "v2"), .txn(nested)]))
      #expect(allHold.succeeded)
      guard case .txn(let inner)? = allHold.responses.last else { Issue.record("expected a nested txn result"); return }
      #expect(inner.succeeded)
      #expect(try await etcd.get(prefix + "n")?.valueString == "nested")

      let stale = try await etcd.txn(EtcdTxn(
        compares: [.modRevision(key, is: modRevision)], success: [.put(key, "lost")], failure: [.delete(prefix + "n")]))
      #expect(!stale.succeeded)
      #expect(try await etcd.get(key)?.valueString == "v2")
      #expect(try await etcd.get(prefix + "n") == nil)

      let conflict = await #expect(throws: EtcdError.self) {
        try await etcd.putIfUnchanged(key, "v3", expectedModRevision: modRevision)
      }
      #expect(conflict?.code == .txnConflict)
      let current = try #require(try await etcd.get(key)).modRevision
      try await etcd.putIfUnchanged(key, "v3", expectedModRevision: current)
      #expect(try await etcd.get(key)?.valueString == "v3")
    }
  }

  @Test("put attached to a lease, ignore-value and ignore-lease")
  func putWithLease() async throws {
    let prefix = uniquePrefix()
    try await withSuiteClient { etcd in
      let lease = try await etcd.grantLease(ttl: 30)
      try await etcd.put(prefix + "l", "value", options: PutOptions(lease: lease.id))
      #expect(try await etcd.get(prefix + "l")?.lease == lease.id)
      try await etcd.put(key: Data((prefix + "l").utf8), value: Data(), options: PutOptions(lease: 0, ignoreValue: true))
      let detached = try #require(try await etcd.get(prefix + "l"))
      #expect(detached.valueString == "value")
      #expect(detached.lease == 0)
      try await etcd.put(prefix + "l", "changed", options: PutOptions(ignoreLease: true))
      #expect(try await etcd.get(prefix + "l")?.valueString == "changed")
      try await etcd.revokeLease(lease.id)
    }
  }

  @Test("bad input gives typed errors with clear messages")
  func badInput() async throws {
    let prefix = uniquePrefix()
    try await withSuiteClient { etcd in
      let empty = await #expect(throws: EtcdError.self) { try await etcd.put("", "x") }
      #expect(empty?.code == .invalidArgument)

      let tooLarge = await #expect(throws: EtcdError.self) {
        try await etcd.put(key: Data((prefix + "big").utf8), value: Data(repeating: 0x61, count: 2 * 1024 * 1024))
      }
      #expect(tooLarge?.code == .requestTooLarge)

      let operations = (0..<200).map { EtcdOperation.put(prefix + "op\($0)", "x") }
      let tooMany = await #expect(throws: EtcdError.self) { try await etcd.txn(EtcdTxn(success: operations)) }
      #expect(tooMany?.code == .tooManyTxnOps)

      let duplicate = await #expect(throws: EtcdError.self) {
        try await etcd.txn(EtcdTxn(success: [.put(prefix + "d", "1"), .put(prefix + "d", "2")]))
      }
      #expect(duplicate?.code == .duplicateKeyInTxn)

      let lease = try await etcd.grantLease(ttl: 30)
      try await etcd.revokeLease(lease.id)
      let revoked = await #expect(throws: EtcdError.self) {
        try await etcd.put(prefix + "leased", "x", options: PutOptions(lease: lease.id))
      }
      #expect(revoked?.code == .leaseNotFound)
      #expect(revoked?.message.contains("lease not found") == true)
      let revokeAgain = await #expect(throws: EtcdError.self) { try await etcd.revokeLease(lease.id) }
      #expect(revokeAgain?.code == .leaseNotFound)
      let backwards = EtcdKeyRange(key: Data((prefix + "b").utf8), rangeEnd: Data((prefix + "a").utf8))
      let badRange = await #expect(throws: EtcdError.self) { try await etcd.range(backwards) }
      #expect(badRange?.code == .invalidArgument)
      let badWatch = await #expect(throws: EtcdError.self) { for try await _ in etcd.watch(backwards) {} }
      #expect(badWatch?.code == .invalidArgument)
      // The client is still healthy after all that.
      try await etcd.put(prefix + "ok", "fine")
    }
  }

  @Test("status and alarms describe the member")
  func maintenance() async throws {
    let server = try suiteServer()
    try await withSuiteClient { etcd in
      let status = try await etcd.status()
      #expect(status.version.hasPrefix("3."))
      #expect(status.dbSize > 0)
      #expect(status.dbSizeInUse > 0)
      #expect(status.leader != 0)
      #expect(status.leader == status.header.memberID)
      #expect(status.raftIndex > 0)
      #expect(status.raftTerm > 0)
      #expect(status.endpoint.description == server.endpoint)
      #expect(try await etcd.alarms().isEmpty)
      let invalid = await #expect(throws: EtcdError.self) { try await etcd.status(endpointIndex: 5) }
      #expect(invalid?.code == .invalidArgument)
    }
  }

  @Test("user interceptors see every call and stream, KV, watch and keep-alive included (which then leave the lean path)")
  func interceptorsSeeKVCalls() async throws {
    let prefix = uniquePrefix()
    let recorder = RecordingInterceptor()
    var configuration = try clientConfiguration(for: [try suiteServer()])
    configuration.interceptors = [recorder]
    try await withEtcdClient(configuration, logger: testLogger) { etcd in
      try await etcd.put(prefix + "i", "1")
      #expect(try await etcd.get(prefix + "i")?.valueString == "1")
      _ = try await etcd.txn(EtcdTxn(compares: [.value(prefix + "i", is: "1")], success: [.put(prefix + "i", "2")]))
      try await etcd.delete(prefix + "i")
      _ = try await etcd.status()
      // The watch stream then runs through grpc-swift too, with the same events.
      let written = try await etcd.put(prefix + "w/a", "1")
      let watch = etcd.watch(.prefix(prefix + "w/"), options: WatchOptions(startRevision: written.header.revision))
      var events = watch.makeAsyncIterator()
      let event = try await events.next()
      #expect(event == .put(try #require(try await etcd.get(prefix + "w/a")), previous: nil))
      #expect(event?.revision == written.header.revision)
      // And the lease keep-alive stream.
      let keepAlive = etcd.keepAlive(try await etcd.grantLease(ttl: 30))
      var renewals = keepAlive.events.makeAsyncIterator()
      #expect(await renewals.next() == .renewed(ttl: 30))
      keepAlive.cancel()
    }
    let methods = Set(recorder.methods)
    for method in ["Put", "Range", "Txn", "DeleteRange"] {
      #expect(methods.contains("etcdserverpb.KV/\(method)"), "missing \(method) in \(methods)")
    }
    #expect(methods.contains("etcdserverpb.Maintenance/Status"))
    #expect(methods.contains("etcdserverpb.Watch/Watch"))
    #expect(methods.contains("etcdserverpb.Lease/LeaseKeepAlive"))
  }

  @Test("calls are counted by operation and outcome, and timed")
  func metrics() async throws {
    let prefix = uniquePrefix()
    let metrics = RecordingMetrics()
    try await withSuiteClient(metrics: metrics) { etcd in
      try await etcd.put(prefix + "m", "1")
      try await etcd.put(prefix + "m", "2")
      #expect(try await etcd.get(prefix + "m")?.valueString == "2")
      let revoke = await #expect(throws: EtcdError.self) { try await etcd.revokeLease(0x7ead_beef) }
      #expect(revoke?.code == .leaseNotFound)
    }
    #expect(metrics.value("capstan_etcd_requests_total", [("operation", "put"), ("code", "ok")]) == 2)
    #expect(metrics.value("capstan_etcd_requests_total", [("operation", "range"), ("code", "ok")]) == 1)
    #expect(metrics.value("capstan_etcd_requests_total", [("operation", "lease_revoke"), ("code", "leaseNotFound")]) == 1)
    #expect(metrics.value("capstan_etcd_requests_total", [("operation", "lease_revoke"), ("code", "ok")]) == 0)
    #expect((metrics.value("capstan_etcd_request_duration_seconds", [("operation", "put")]) ?? 0) > 0)
  }

  @Test("20,000 requests on one connection: etcd's PINGs never make the client drop it")
  func manyRequestsOnOneConnection() async throws {
    let prefix = uniquePrefix()
    try await withSuiteClient { etcd in
      try await runManyRequests(etcd, prefix: prefix, count: 20_000)
    }
  }
}

/// Sends `count` requests, 32 in flight, and checks each succeeded; a dropped connection
/// (GOAWAY ENHANCE_YOUR_CALM) would fail some of them.
func runManyRequests(_ etcd: EtcdClient, prefix: String, count: Int) async throws {
  let concurrency = 32
  try await withThrowingTaskGroup(of: Int.self) { group in
    for worker in 0..<concurrency {
      group.addTask {
        var done = 0
        for index in stride(from: worker, to: count, by: concurrency) {
          if index % 2 == 0 {
            try await etcd.put(prefix + "\(index % 100)", "\(index)")
          } else {
            _ = try await etcd.get(prefix + "\(index % 100)")
          }
          done += 1
        }
        return done
      }
    }
    var total = 0
    for try await done in group { total += done }
    #expect(total == count)
  }
}

/// Records the method of every call it sees.
final class RecordingInterceptor: ClientInterceptor {
  private let seen = Mutex<[String]>([])
  var methods: [String] { self.seen.withLock { $0 } }

  func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingClientRequest<Input>,
    context: ClientContext,
    next: (StreamingClientRequest<Input>, ClientContext) async throws -> StreamingClientResponse<Output>
  ) async throws -> StreamingClientResponse<Output> {
    self.seen.withLock { $0.append(context.descriptor.fullyQualifiedMethod) }
    return try await next(request, context)
  }
}
