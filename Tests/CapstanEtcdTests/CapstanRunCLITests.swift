import CapstanTesting
import Foundation
import Testing

/// `capstan run` as a process: HTTP endpoints while it runs, exit 0 on SIGTERM, and one-line
/// configuration errors before anything starts.
@Suite("capstan run")
struct CapstanRunCLITests {
  /// This process's environment without any Capstan setting, plus `extra`.
  static func environment(_ extra: [String: String] = [:]) -> [String: String] {
    let settings: Set<String> = [
      "CAPSTAN_ENDPOINTS", "SERVICE_NAME", "LOG_LEVEL", "CAPSTAN_METRICS_ADDR", "CAPSTAN_WORKERS",
      "CAPSTAN_SHUTDOWN_TIMEOUT", "CAPSTAN_RETRY_QPS", "CAPSTAN_RETRY_BURST",
    ]
    return ProcessInfo.processInfo.environment.filter { !settings.contains($0.key) }.merging(extra) { _, new in new }
  }

  /// GETs `path` until the server answers (it is starting) or `timeout` passes.
  static func getWhenUp(port: Int, path: String, timeout: Duration = .seconds(20)) async throws -> LoopbackHTTP.Response {
    let deadline = ContinuousClock.now + timeout
    while true {
      do {
        return try await LoopbackHTTP.get(port: port, path: path)
      } catch {
        if ContinuousClock.now >= deadline { throw error }
        try await Task.sleep(for: .milliseconds(20))
      }
    }
  }

  /// Scrapes a running `capstan run` on `port`, stops it with SIGTERM and checks a clean exit.
  /// With `onEtcd`, `/metrics` must also carry the etcd client's request counts.
  static func checkEndpointsThenStop(
    _ command: RunningTestCommand, port: Int, service: String, onEtcd: Bool = false
  ) async throws {
    let health = try await getWhenUp(port: port, path: "/healthz")
    #expect(health.status == 200, "\(command.standardError)")
    #expect(health.body == "ok\n")
    // The informers sync right after start; /readyz says 503 until they have.
    var ready = try await LoopbackHTTP.get(port: port, path: "/readyz")
    let deadline = ContinuousClock.now + .seconds(20)
    while ready.status == 503, ContinuousClock.now < deadline {
      #expect(ready.body.hasPrefix("informer "), "\(ready.body)")
      try await Task.sleep(for: .milliseconds(20))
      ready = try await LoopbackHTTP.get(port: port, path: "/readyz")
    }
    #expect(ready.status == 200, "\(ready.body)")
    let metrics = try await LoopbackHTTP.get(port: port, path: "/metrics")
    #expect(metrics.status == 200)
    #expect(metrics.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true)
    for expected in [
      #"capstan_build_info{service="\#(service)",version=""#, #"capstan_informer_synced{resource="podsets"} 1.0"#,
      #"capstan_informer_synced{resource="pods"} 1.0"#, #"workqueue_depth{name="podsets"}"#,
    ] {
      #expect(metrics.body.contains(expected), "\(expected) not in \(metrics.body.prefix(3000))")
    }
    if onEtcd {
      // The informers' initial lists were range calls that succeeded.
      let ranges = metrics.body.split(separator: "\n").filter {
        $0.hasPrefix("capstan_etcd_requests_total{") && $0.contains(#"operation="range""#) && $0.contains(#"code="ok""#)
      }
      #expect(ranges.count == 1, "no successful range counted in \(metrics.body.prefix(3000))")
      #expect(ranges.first.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0 >= 2)
    }

    command.send(SIGTERM)
    let output = await command.waitForExit(timeout: .seconds(30))
    #expect(!output.timedOut)
    #expect(output.exitStatus == 0, "\(output.standardError)")
    let lines = output.standardError.split(separator: "\n")
    #expect(!lines.isEmpty)
    for line in lines {
      let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
      #expect(object?["service"] as? String == service, "\(line)")
      #expect((object?["ts"] as? String)?.wholeMatch(of: #/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/#) != nil, "\(line)")
    }
    #expect(output.standardError.contains(#""message":"HTTP server listening""#), "\(output.standardError)")
    #expect(output.standardError.contains(#""message":"capstan run stopped""#), "\(output.standardError)")
  }

  @Test("run --embedded serves /metrics, /healthz, /readyz and exits 0 on SIGTERM")
  func embeddedRun() async throws {
    let port = try LoopbackHTTP.freePort()
    let command = try TestCommand.start(
      try TestCommand.builtProduct("capstan"),
      ["run", "--embedded", "--metrics-addr", "127.0.0.1:\(port)", "--shutdown-timeout", "5s"],
      environment: Self.environment(["SERVICE_NAME": "cli-run-test"]))
    try await Self.checkEndpointsThenStop(command, port: port, service: "cli-run-test")
  }

  @Test("demo converges on the embedded store: plain progress lines, the summary, exit 0")
  func embeddedDemo() async throws {
    let output = try await TestCommand.run(
      try TestCommand.builtProduct("capstan"),
      ["demo", "--sets", "6", "--replicas", "2", "--rounds", "1", "--metrics-addr", "off"],
      environment: Self.environment(), timeout: .seconds(120))
    #expect(output.exitStatus == 0, "\(output.standardOutput)\n\(output.standardError)")
    #expect(!output.standardOutput.contains("\r"))
    #expect(output.standardOutput.hasSuffix("converged: yes\n"), "\(output.standardOutput)")
    #expect(output.standardOutput.contains("zero-value keys written: 0\n"), "\(output.standardOutput)")
  }

  @Test("a bad SERVICE_NAME is one line naming it, and a non-zero exit before anything starts")
  func badServiceName() async throws {
    let output = try await TestCommand.run(
      try TestCommand.builtProduct("capstan"), ["run", "--embedded"],
      environment: Self.environment(["SERVICE_NAME": "My_Svc"]))
    #expect(output.exitStatus != 0)
    #expect(
      output.standardError
        == #"capstan: error: invalidConfiguration: invalid SERVICE_NAME "My_Svc": must be a DNS-1123 label (lowercase letters, digits, '-', at most 63, starting and ending with a letter or digit)"#
        + "\n")
    #expect(output.standardOutput.isEmpty)
  }

  @Test("bad settings from flags and environment each end in one line naming the setting", arguments: [
    (["run", "--embedded", "--workers", "0"], [String: String](), "invalid --workers \"0\": "),
    (["run", "--embedded"], ["CAPSTAN_SHUTDOWN_TIMEOUT": "forever"], "invalid CAPSTAN_SHUTDOWN_TIMEOUT \"forever\": "),
    (["run"], ["CAPSTAN_ENDPOINTS": "etcd:99999"], "invalid CAPSTAN_ENDPOINTS \"etcd:99999\": "),
    (["run"], [:], "missing --endpoints / CAPSTAN_ENDPOINTS: "),
    (["demo", "--metrics-addr", "localhost"], [:], "invalid --metrics-addr \"localhost\": "),
    (["demo"], ["LOG_LEVEL": "loud"], "invalid LOG_LEVEL \"loud\": "),
  ])
  func badSettings(_ arguments: [String], _ environment: [String: String], _ prefix: String) async throws {
    let output = try await TestCommand.run(
      try TestCommand.builtProduct("capstan"), arguments, environment: Self.environment(environment))
    #expect(output.exitStatus == 1)
    let lines = output.standardError.split(separator: "\n")
    #expect(lines.count == 1, "\(output.standardError)")
    #expect(lines.first?.hasPrefix("capstan: error: invalidConfiguration: " + prefix) == true, "\(output.standardError)")
  }
}
