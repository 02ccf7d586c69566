import CapstanTesting
import CapstanTestSupport
import Foundation
import Testing

/// The `capstan` executable against a real etcd, side by side with `etcdctl`.
@Suite("capstan CLI", .etcdServer("cli"))
struct CapstanCLITests {
  func capstan(_ arguments: String..., timeout: Duration = .seconds(30)) async throws -> TestCommand.Output {
    let server = try suiteServer()
    return try await TestCommand.run(try TestCommand.builtProduct("capstan"), arguments + ["--endpoints", server.endpoint], timeout: timeout)
  }

  @Test("what capstan writes etcdctl reads, and the other way round")
  func interoperatesWithEtcdctl() async throws {
    let server = try suiteServer()
    let prefix = uniquePrefix()
    let put = try await capstan("kv", "put", prefix + "a", "from capstan")
    #expect(put.exitStatus == 0)
    #expect(put.standardOutput == "OK\n")
    #expect(try server.etcdctl("get", prefix + "a", "--print-value-only") == "from capstan\n")

    _ = try server.etcdctl("put", prefix + "b", "from etcdctl")
    let get = try await capstan("kv", "get", prefix, "--prefix")
    #expect(get.standardOutput == "\(prefix)a\nfrom capstan\n\(prefix)b\nfrom etcdctl\n")
    #expect(get.standardOutput == (try server.etcdctl("get", prefix, "--prefix")))

    let json = try await capstan("kv", "get", prefix + "a", "-o", "json")
    let object = try JSONSerialization.jsonObject(with: Data(json.standardOutput.utf8)) as? [String: Any]
    #expect(object?["count"] as? Int == 1)

    let deleted = try await capstan("kv", "del", prefix, "--prefix")
    #expect(deleted.standardOutput == "2\n")
    #expect(try server.etcdctl("get", prefix, "--prefix").isEmpty)
  }

  @Test("kv txn reads etcdctl's txn format and prints what etcdctl prints")
  func txn() async throws {
    let server = try suiteServer()
    let prefix = uniquePrefix()
    _ = try server.etcdctl("put", prefix + "k", "1")
    let script = "value(\"\(prefix)k\") = \"1\"\n\nput \(prefix)k 2\nget \(prefix)k\n\nget \(prefix)k\n\n"
    let shell = URL(fileURLWithPath: "/bin/sh")
    let capstanPath = try TestCommand.builtProduct("capstan").path
    let ours = try await TestCommand.run(shell, ["-c", "printf '%s' \"$0\" | \(capstanPath) kv txn --endpoints \(server.endpoint)", script])
    #expect(ours.exitStatus == 0, "\(ours.standardError)")
    _ = try server.etcdctl("put", prefix + "k", "1")
    let theirs = try await TestCommand.run(
      shell, ["-c", "printf '%s' \"$0\" | ETCDCTL_API=3 etcdctl --endpoints=\(server.endpoint) txn", script])
    #expect(ours.standardOutput == theirs.standardOutput)
    #expect(ours.standardOutput.hasPrefix("SUCCESS\n"))
  }

  @Test("watch prints one line per event written by etcdctl")
  func watch() async throws {
    let server = try suiteServer()
    let prefix = uniquePrefix()
    let revision = try #require(Int(try server.etcdctl("put", prefix + "seed", "0", "-w", "json")
      .split(separator: "\"revision\":").last?.prefix(while: { $0.isNumber }) ?? ""))
    _ = try server.etcdctl("put", prefix + "x", "1")
    _ = try server.etcdctl("del", prefix + "x")
    let watch = try await capstan("watch", prefix, "--prefix", "--rev", "\(revision + 1)", "--count", "2")
    #expect(watch.exitStatus == 0)
    #expect(watch.standardOutput == "PUT \(prefix)x 1\nDELETE \(prefix)x\n")
  }

  @Test("bad input ends with exit code 1 and one readable line", arguments: [
    (["kv", "get", "/x", "--endpoints", "not an endpoint"], "invalidArgument"),
    (["kv", "get", "/x", "--endpoints", "127.0.0.1:1", "--dial-timeout", "1"], "unavailable"),
    (["lease", "revoke", "7fffffff"], "leaseNotFound"),
  ])
  func badInput(_ arguments: [String], code: String) async throws {
    let server = try suiteServer()
    let hasEndpoints = arguments.contains("--endpoints")
    let output = try await TestCommand.run(
      try TestCommand.builtProduct("capstan"), hasEndpoints ? arguments : arguments + ["--endpoints", server.endpoint])
    #expect(output.exitStatus == 1)
    let lines = output.standardError.split(separator: "\n").filter { !$0.hasPrefix("{") }  // JSON log lines aside
    #expect(lines.count == 1, "\(output.standardError)")
    #expect(lines.first?.hasPrefix("capstan: error: \(code): ") == true, "\(output.standardError)")
  }

  @Test("run against etcd serves the HTTP endpoints, the etcd client's metrics among them, and exits 0 on SIGTERM")
  func runAgainstEtcd() async throws {
    let server = try suiteServer()
    let port = try LoopbackHTTP.freePort()
    let command = try TestCommand.start(
      try TestCommand.builtProduct("capstan"),
      ["run", "--endpoints", server.endpoint, "--metrics-addr", "127.0.0.1:\(port)", "--service-name", "cli-etcd"],
      environment: CapstanRunCLITests.environment())
    try await CapstanRunCLITests.checkEndpointsThenStop(command, port: port, service: "cli-etcd", onEtcd: true)
  }

  @Test("demo converges against etcd and exits 0")
  func demoAgainstEtcd() async throws {
    let server = try suiteServer()
    let output = try await TestCommand.run(
      try TestCommand.builtProduct("capstan"),
      ["demo", "--endpoints", server.endpoint, "--sets", "4", "--replicas", "2", "--rounds", "1", "--metrics-addr", "off"],
      environment: CapstanRunCLITests.environment(), timeout: .seconds(120))
    #expect(output.exitStatus == 0, "\(output.standardOutput)\n\(output.standardError)")
    #expect(output.standardOutput.hasSuffix("converged: yes\n"), "\(output.standardOutput)")
  }

  @Test("bench put prints the baseline's one-line format")
  func benchPut() async throws {
    let bench = try await capstan("bench", "put", "--n", "200", "--concurrency", "8", "--value-size", "64")
    #expect(bench.exitStatus == 0)
    let pattern = #/^put: 200 ops in [0-9.]+ s = [0-9]+ ops/s, p50 [0-9.]+ ms, p99 [0-9.]+ ms\n$/#
    #expect(bench.standardOutput.wholeMatch(of: pattern) != nil, "\(bench.standardOutput)")
  }
}
