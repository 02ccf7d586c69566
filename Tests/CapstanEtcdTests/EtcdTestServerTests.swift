import CapstanTesting
import CapstanTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Smoke tests for the etcd launchers in CapstanTesting. They need a real etcd and FAIL
/// (never skip) when it is not installed.
@Suite("EtcdTestServer")
struct EtcdTestServerTests {
  @Test("a server starts and etcdctl can put and get")
  func putAndGet() async throws {
    try await withEtcdTestServer { server in
      #expect(server.endpoint == "127.0.0.1:\(server.port)")
      #expect(server.clientURL == "http://127.0.0.1:\(server.port)")
      #expect(server.isRunning)
      _ = try server.etcdctl("put", "/capstan/smoke", "hello")
      let value = try server.etcdctl("get", "/capstan/smoke", "--print-value-only")
      #expect(value.trimmingCharacters(in: .whitespacesAndNewlines) == "hello")
      #expect(FileManager.default.fileExists(atPath: server.logFile.path))
    }
  }

  @Test("kill and restart keep the data on the same port")
  func killAndRestart() async throws {
    let server = try await EtcdTestServer.start(name: "restart")
    defer { server.stop() }
    _ = try server.etcdctl("put", "survivor", "still-here")
    let firstPID = server.pid
    server.kill()
    #expect(!server.isRunning)
    #expect(kill(firstPID, 0) != 0)
    #expect(throws: (any Error).self) { try server.etcdctl("--dial-timeout=1s", "--command-timeout=1s", "get", "survivor") }
    try await server.restart()
    #expect(server.pid != firstPID)
    let value = try server.etcdctl("get", "survivor", "--print-value-only")
    #expect(value.trimmingCharacters(in: .whitespacesAndNewlines) == "still-here")
  }

  @Test("stop ends the process and removes the data; it is idempotent")
  func stopRemovesProcess() async throws {
    let server = try await EtcdTestServer.start(name: "stop")
    let pid = server.pid
    #expect(pid > 0)
    #expect(kill(pid, 0) == 0)
    server.stop()
    #expect(kill(pid, 0) != 0)
    #expect(!server.isRunning)
    #expect(!FileManager.default.fileExists(atPath: server.dataDirectory.path))
    server.stop()
    await #expect(throws: EtcdTestServerError.self) { try await server.restart() }
  }

  @Test("withEtcdTestServer stops the server even when the body throws")
  func withServerStops() async throws {
    struct Boom: Error {}
    var pid: Int32 = 0
    do {
      try await withEtcdTestServer(name: "scoped") { server in
        pid = server.pid
        throw Boom()
      }
      Issue.record("withEtcdTestServer should have rethrown")
    } catch is Boom {}
    #expect(pid > 0)
    #expect(kill(pid, 0) != 0)
  }

  @Test("a 3-member cluster starts and survives losing one member")
  func cluster() async throws {
    let cluster = try await EtcdTestCluster.start()
    defer { cluster.stop() }
    #expect(cluster.endpoints.count == 3)
    #expect(Set(cluster.endpoints).count == 3)
    let list = try cluster.etcdctl("member", "list")
    #expect(list.split(separator: "\n").count == 3)
    _ = try cluster.etcdctl("put", "before", "1")

    cluster.stopMember(0)
    #expect(!cluster[0].isRunning)
    for index in 1..<3 {
      _ = try cluster[index].etcdctl("put", "during-\(index)", "2")
      let value = try cluster[index].etcdctl("get", "before", "--print-value-only")
      #expect(value.trimmingCharacters(in: .whitespacesAndNewlines) == "1")
    }
    _ = try cluster.etcdctl("put", "during", "3")

    try await cluster.restartMember(0)
    let value = try cluster[0].etcdctl("get", "during", "--print-value-only")
    #expect(value.trimmingCharacters(in: .whitespacesAndNewlines) == "3")

    let pids = cluster.members.map(\.pid)
    cluster.stop()
    for pid in pids { #expect(kill(pid, 0) != 0) }
  }

  @Test("a TLS server answers etcdctl with the client certificate and rejects clients without one")
  func tls() async throws {
    let tls = try EtcdTestTLS.generate()
    defer { try? tls.remove() }
    #expect(tls.requireClientCertificates)
    try await withEtcdTestServer(name: "tls", tls: tls) { server in
      #expect(server.clientURL == "https://127.0.0.1:\(server.port)")
      _ = try server.etcdctl("put", "secure", "yes")
      let value = try server.etcdctl("get", "secure", "--print-value-only")
      #expect(value.trimmingCharacters(in: .whitespacesAndNewlines) == "yes")
      #expect(try runEtcdctlWithoutClientCertificate(server, ca: tls.caFile) != 0)
    }
  }

  @Test("client certificates are optional with requireClientCertificates = false")
  func tlsWithoutClientCertificates() async throws {
    var tls = try EtcdTestTLS.generate()
    defer { try? tls.remove() }
    tls.requireClientCertificates = false
    try await withEtcdTestServer(name: "tls-open", tls: tls) { server in
      _ = try server.etcdctl("put", "open", "yes")
      #expect(try runEtcdctlWithoutClientCertificate(server, ca: tls.caFile) == 0)
    }
  }

  /// Runs `etcdctl get` over TLS trusting `ca` but presenting no client certificate; returns
  /// its exit status.
  private func runEtcdctlWithoutClientCertificate(_ server: EtcdTestServer, ca: URL) throws -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [
      "ETCDCTL_API=3", "etcdctl", "--endpoints=\(server.clientURL)", "--cacert=\(ca.path)",
      "--dial-timeout=2s", "--command-timeout=2s", "get", "anything",
    ]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    return process.terminationStatus
  }
}
