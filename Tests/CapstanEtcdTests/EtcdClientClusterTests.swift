import CapstanEtcd
import CapstanTesting
import CapstanTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("EtcdClient against a 3-member cluster")
struct EtcdClientClusterTests {
  @Test("reads, writes and watches fail over to another member when one is stopped or frozen")
  func failover() async throws {
    let cluster = try await EtcdTestCluster.start(members: 3, name: "failover")
    defer { cluster.stop() }
    let prefix = uniquePrefix()
    try await withEtcdClient(try clientConfiguration(for: cluster.members), logger: testLogger) { etcd in
      #expect(etcd.currentEndpoint.description == cluster.endpoints[0])
      let start = try await etcd.put(prefix + "k", "0").header.revision
      let watch = etcd.watch(.prefix(prefix), options: WatchOptions(startRevision: start + 1))
      async let events = collect(4, from: watch, timeout: .seconds(60))
      try await etcd.put(prefix + "k", "1")
      cluster.stopMember(0)
      // A read is retried on the next member. (A write in flight on the dying connection would
      // not be: it may have been applied, so it is never sent twice.)
      #expect(try await etcd.get(prefix + "k")?.valueString == "1")
      #expect(etcd.currentEndpoint.description != cluster.endpoints[0])
      try await etcd.put(prefix + "k", "2")
      try await etcd.put(prefix + "k", "3")
      try await etcd.put(prefix + "k", "4")
      let values = try await events.compactMap { event -> String? in
        if case .put(let kv, _) = event { return kv.valueString } else { return nil }
      }
      #expect(values == ["1", "2", "3", "4"])
      let statuses = try await [1, 2].asyncMap { try await etcd.status(endpointIndex: $0) }
      #expect(Set(statuses.map(\.leader)).count == 1)
      // The stopped member's own status is a typed error, not a hang, and not another member's answer.
      let down = await #expect(throws: EtcdError.self) { try await etcd.status(endpointIndex: 0) }
      #expect(down?.code == .unavailable)

      // A member that is frozen (SIGSTOP: its connections stay open, nothing answers) costs one
      // call its deadline; that call reports the endpoint unavailable and the next one goes elsewhere.
      try await cluster.restartMember(0)
      let frozenIndex = try #require(cluster.endpoints.firstIndex(of: etcd.currentEndpoint.description))
      let frozenPID = cluster[frozenIndex].pid
      kill(frozenPID, SIGSTOP)
      defer { kill(frozenPID, SIGCONT) }
      let frozen = await #expect(throws: EtcdError.self) {
        try await etcd.range(.key(prefix + "k"), options: RangeOptions(serializable: true), timeout: .seconds(2))
      }
      #expect(frozen?.code == .unavailable)
      #expect(etcd.currentEndpoint.description != cluster.endpoints[frozenIndex])
      // Serializable reads: the frozen member may be the leader, and a linearizable read (or a
      // write) would wait for the next election, which can outlast its deadline.
      try await eventually("the next member answers") {
        let read = try await etcd.range(.key(prefix + "k"), options: RangeOptions(serializable: true))
        return read.kvs.first?.valueString == "4"
      }
      #expect(etcd.currentEndpoint.description != cluster.endpoints[frozenIndex])
      kill(frozenPID, SIGCONT)
      try await etcd.put(prefix + "k", "5")
    }

    // A watch whose member freezes while the stream is quiet: the connection's keepalive PING
    // goes unanswered, the connection is closed, and the watch resumes on another member with
    // no event lost or repeated.
    var quickKeepalive = try clientConfiguration(for: cluster.members)
    quickKeepalive.keepalive = EtcdKeepalive(interval: EtcdKeepalive.minimumInterval, timeout: .seconds(1))
    try await withEtcdClient(quickKeepalive, logger: testLogger) { etcd in
      let start = try await etcd.put(prefix + "w", "0").header.revision
      let watch = etcd.watch(.prefix(prefix + "w"), options: WatchOptions(startRevision: start + 1))
      async let events = collect(3, from: watch, timeout: .seconds(60))
      try await etcd.put(prefix + "w", "1")
      _ = try await etcd.requestWatchProgress()  // the stream is open, on the current member
      let watchedIndex = try #require(cluster.endpoints.firstIndex(of: etcd.currentEndpoint.description))
      let frozenPID = cluster[watchedIndex].pid
      kill(frozenPID, SIGSTOP)
      defer { kill(frozenPID, SIGCONT) }
      try await eventually("the watch stream answers again from another member", timeout: .seconds(30)) {
        (try? await etcd.requestWatchProgress(timeout: .milliseconds(500))) != nil
      }
      #expect(etcd.currentEndpoint.description != cluster.endpoints[watchedIndex])
      kill(frozenPID, SIGCONT)
      try await etcd.put(prefix + "w", "2")
      try await etcd.put(prefix + "w", "3")
      let values = try await events.compactMap { event -> String? in
        if case .put(let kv, _) = event { return kv.valueString } else { return nil }
      }
      #expect(values == ["1", "2", "3"])
    }
  }
}

@Suite("EtcdClient connection errors")
struct EtcdClientConnectionErrorTests {
  @Test("an unreachable endpoint list fails within the dial timeout with a clear error")
  func unreachable() async throws {
    var configuration = try EtcdClientConfiguration(endpoints: "127.0.0.1:1,127.0.0.1:2")
    configuration.dialTimeout = .seconds(2)
    configuration.requestTimeout = .seconds(30)
    try await withEtcdClient(configuration, logger: testLogger) { etcd in
      let started = ContinuousClock.now
      let error = await #expect(throws: EtcdError.self) { try await etcd.put("/k", "v") }
      let elapsed = ContinuousClock.now - started
      #expect(error?.code == .unavailable)
      #expect(error?.message.contains("127.0.0.1:1,127.0.0.1:2") == true)
      // Bounded by the 2 s dial timeout, not the 30 s request timeout (with slack for a loaded
      // 2-core CI machine running suites in parallel).
      #expect(elapsed >= .seconds(1) && elapsed < .seconds(10), "answered after the dial timeout, not the request timeout")
      // A read fails the same way.
      let read = await #expect(throws: EtcdError.self) { try await etcd.get("/k") }
      #expect(read?.code == .unavailable)
    }
  }

  @Test("malformed endpoints are rejected before connecting", arguments: ["", "localhost", "127.0.0.1:", "127.0.0.1:99999", "a b:1", ":2379", "[::1:2379"])
  func malformed(_ text: String) throws {
    let error = #expect(throws: EtcdError.self) { try EtcdClientConfiguration(endpoints: text) }
    #expect(error?.code == .invalidArgument)
  }

  @Test("keepalive PINGs more often than etcd allows, or with no timeout, are rejected before connecting")
  func keepaliveLimits() async throws {
    for keepalive in [EtcdKeepalive(interval: .seconds(1), timeout: .seconds(10)), EtcdKeepalive(interval: .seconds(30), timeout: .zero)] {
      var configuration = try EtcdClientConfiguration(endpoints: "127.0.0.1:2379")
      configuration.keepalive = keepalive
      let error = await #expect(throws: EtcdError.self) {
        try await withEtcdClient(configuration, logger: testLogger) { _ in }
      }
      #expect(error?.code == .invalidArgument)
      #expect(error?.message.contains("keepalive") == true)
    }
  }

  @Test("well-formed endpoints parse")
  func wellFormed() throws {
    let endpoints = try EtcdEndpoint.parseList("127.0.0.1:2379, http://etcd-1:22379,[::1]:2379")
    #expect(endpoints.map(\.description) == ["127.0.0.1:2379", "etcd-1:22379", "[::1]:2379"])
  }
}

extension Array {
  func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
    var result: [T] = []
    for element in self { result.append(try await transform(element)) }
    return result
  }
}
