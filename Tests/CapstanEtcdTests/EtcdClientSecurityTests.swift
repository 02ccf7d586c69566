import CapstanEtcd
import CapstanTesting
import CapstanTestSupport
import Foundation
import Testing

@Suite("EtcdClient auth against a real etcd", .etcdServer("auth", extraArguments: ["--auth-token", "simple", "--auth-token-ttl", "2"]))
struct EtcdClientAuthTests {
  @Test("user and password get a token; wrong passwords and missing credentials are typed errors")
  func userAndPassword() async throws {
    let server = try suiteServer()
    let prefix = uniquePrefix()
    _ = try server.etcdctl("user", "add", "root:rootpw")
    _ = try server.etcdctl("user", "add", "alice:alicepw")
    _ = try server.etcdctl("role", "add", "writer")
    _ = try server.etcdctl("role", "grant-permission", "writer", "--prefix=true", "readwrite", prefix)
    _ = try server.etcdctl("user", "grant-role", "alice", "writer")
    _ = try server.etcdctl("auth", "enable")

    try await withSuiteClient(credentials: EtcdCredentials(user: "alice", password: "alicepw")) { etcd in
      try await etcd.put(prefix + "a", "secret")
      #expect(try await etcd.get(prefix + "a")?.valueString == "secret")
      let denied = await #expect(throws: EtcdError.self) { try await etcd.put("/elsewhere", "x") }
      #expect(denied?.code == .permissionDenied)
      // Watches authenticate too.
      let events = try await collect(1, from: etcd.watch(.prefix(prefix), options: WatchOptions(startRevision: 1)))
      #expect(events.count == 1)
      // The token (TTL 2 s here) expires; the next calls re-authenticate transparently.
      try await Task.sleep(for: .seconds(4))
      try await etcd.put(prefix + "after-expiry", "still works")
      #expect(try await etcd.get(prefix + "after-expiry")?.valueString == "still works")
      let lease = try await etcd.grantLease(ttl: 30)
      try await etcd.revokeLease(lease.id)
    }
    let wrong = await #expect(throws: EtcdError.self) {
      try await withSuiteClient(credentials: EtcdCredentials(user: "alice", password: "nope")) { etcd in
        try await etcd.get(prefix + "a")
      }
    }
    #expect(wrong?.code == .authenticationFailed)
    let anonymous = await #expect(throws: EtcdError.self) {
      try await withSuiteClient { etcd in try await etcd.put(prefix + "b", "x") }
    }
    #expect(anonymous?.code == .invalidArgument || anonymous?.code == .permissionDenied || anonymous?.code == .invalidAuthToken)
  }
}

@Suite("EtcdClient over TLS with client certificates", .etcdServer("tls", tls: true))
struct EtcdClientTLSTests {
  @Test("KV, watch and 20,000 requests over mutual TLS")
  func mutualTLS() async throws {
    let server = try suiteServer()
    let prefix = uniquePrefix()
    try await withSuiteClient { etcd in
      let watch = etcd.watch(.prefix(prefix))
      _ = try await etcd.requestWatchProgress()
      async let events = collect(1, from: watch)
      try await etcd.put(prefix + "tls", "encrypted")
      #expect(try await events.count == 1)
      #expect(try server.etcdctl("get", prefix + "tls", "--print-value-only").contains("encrypted"))
      try await runManyRequests(etcd, prefix: prefix, count: 20_000)
    }
  }

  @Test("a client without the CA is rejected with a clear error")
  func untrustedServer() async throws {
    let server = try suiteServer()
    var configuration = try clientConfiguration(for: [server])
    configuration.tls?.caFile = nil
    configuration.dialTimeout = .seconds(2)
    let error = await #expect(throws: EtcdError.self) {
      try await withEtcdClient(configuration, logger: testLogger) { etcd in try await etcd.get("/x") }
    }
    #expect(error?.code == .unavailable)
  }
}
