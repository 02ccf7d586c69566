import CapstanEtcd
import CapstanTesting
import CapstanTestSupport
import Foundation
import Testing

@Suite("EtcdClient leases against a real etcd", .etcdServer("lease"))
struct EtcdClientLeaseTests {
  @Test("grant, time-to-live with keys, list, revoke deletes the keys")
  func lifecycle() async throws {
    let prefix = uniquePrefix()
    try await withSuiteClient { etcd in
      let lease = try await etcd.grantLease(ttl: 60)
      #expect(lease.ttl == 60)
      try await etcd.put(prefix + "owned", "x", options: PutOptions(lease: lease.id))
      let info = try await etcd.leaseTimeToLive(lease.id, keys: true)
      #expect(info.grantedTTL == 60)
      #expect(info.ttl > 50)
      #expect(info.keys.map { String(decoding: $0, as: UTF8.self) } == [prefix + "owned"])
      #expect(try await etcd.leases().contains(lease.id))
      try await etcd.revokeLease(lease.id)
      #expect(try await etcd.get(prefix + "owned") == nil)
      #expect(try await etcd.leaseTimeToLive(lease.id).ttl == -1)
      let invalid = await #expect(throws: EtcdError.self) { try await etcd.grantLease(ttl: 0) }
      #expect(invalid?.code == .invalidArgument)
    }
  }

  @Test("keep-alive keeps a key alive for 3 × TTL, and loss is reported after a revoke")
  func keepAlive() async throws {
    let prefix = uniquePrefix()
    try await withSuiteClient { etcd in
      // Long enough that a renewal at TTL/3 arrives in time on a loaded 2-core CI machine.
      let ttl: Int64 = 4
      let lease = try await etcd.grantLease(ttl: ttl)
      try await etcd.put(prefix + "alive", "yes", options: PutOptions(lease: lease.id))
      let keepAlive = etcd.keepAlive(lease)
      let unattended = try await etcd.grantLease(ttl: ttl)
      try await etcd.put(prefix + "unattended", "yes", options: PutOptions(lease: unattended.id))

      try await Task.sleep(for: .seconds(3 * ttl))
      #expect(try await etcd.get(prefix + "alive")?.valueString == "yes")
      #expect(try await etcd.get(prefix + "unattended") == nil, "a lease without keep-alive expires")

      try await etcd.revokeLease(lease.id)
      let lost = await withThrowingTaskGroup(of: EtcdError?.self) { group -> EtcdError? in
        group.addTask { await keepAlive.waitUntilLost() }
        group.addTask {
          try await Task.sleep(for: .seconds(10))
          return nil
        }
        defer { group.cancelAll() }
        return (try? await group.next()) ?? nil
      }
      #expect(lost?.code == .leaseNotFound)
      #expect(try await etcd.get(prefix + "alive") == nil)
    }
  }

  @Test("cancelling keep-alive lets the lease expire")
  func cancelKeepAlive() async throws {
    let prefix = uniquePrefix()
    try await withSuiteClient { etcd in
      let lease = try await etcd.grantLease(ttl: 2)
      try await etcd.put(prefix + "k", "v", options: PutOptions(lease: lease.id))
      let keepAlive = etcd.keepAlive(lease)
      var renewals = 0
      for await event in keepAlive.events {
        if case .renewed = event { renewals += 1 }
        if renewals == 2 { break }
      }
      keepAlive.cancel()
      #expect(await keepAlive.waitUntilLost() == nil)
      try await Task.sleep(for: .seconds(4))
      #expect(try await etcd.get(prefix + "k") == nil)
    }
  }
}

@Suite("EtcdClient shutdown", .etcdServer("shutdown"))
struct EtcdClientShutdownTests {
  @Test("after shutdown every call, watch and keep-alive ends with clientClosed, and run() returns")
  func shutdown() async throws {
    let server = try suiteServer()
    let prefix = uniquePrefix()
    let client = try EtcdClient(configuration: try clientConfiguration(for: [server]), logger: testLogger)
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await client.run() }
      try await client.put(prefix + "k", "v")
      let lease = try await client.grantLease(ttl: 30)
      let keepAlive = client.keepAlive(lease)
      let watch = client.watch(.prefix(prefix))
      _ = try await client.requestWatchProgress()
      client.shutdown()
      try await group.waitForAll()  // run() returned
      let put = await #expect(throws: EtcdError.self) { try await client.put(prefix + "k", "again") }
      #expect(put?.code == .clientClosed)
      let watchEnd = await #expect(throws: EtcdError.self) { for try await _ in watch {} }
      #expect(watchEnd?.code == .clientClosed)
      #expect(await keepAlive.waitUntilLost()?.code == .clientClosed)
    }
  }
}
