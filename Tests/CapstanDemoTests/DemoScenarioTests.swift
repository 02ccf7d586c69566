import Capstan
@testable import CapstanDemo
import CapstanEtcd
import CapstanTesting
import CapstanTestSupport
import Foundation
import PodSetExample
import Testing

@Suite("Demo on the embedded backend")
struct DemoScenarioTests {
  /// The small demo converges; the summary's figures are real and end with `converged: yes`; the
  /// junk was written and rejected; no zero-value key was written outside it.
  @Test func smallDemoConverges() async throws {
    let backend = MemoryBackend()
    let progress = ProgressLog()
    let summary = try await DemoRunner.run(
      configuration: smallDemo, backend: backend, logger: silentLogger, progress: progress.record)
    #expect(summary.converged, "mismatches: \(summary.mismatches)")
    #expect(summary.mismatches.isEmpty)
    #expect(summary.lines().last == "converged: yes")
    #expect(summary.zeroValueKeys.isEmpty)
    #expect(try await zeroValueKeysOutsideJunk(in: backend).isEmpty)
    #expect(summary.junkKeys == 12)
    // 12 junk objects: each of the 6 kinds under both prefixes; bad JSON is the malformed kind.
    #expect(summary.malformedRejected >= 2)
    #expect(summary.zeroValueRejected >= 10)
    // 10 sets, two rounds each deleting one set: 8 remain.
    #expect(summary.podSets == 8)
    #expect(summary.disturbances.rounds == 2 && summary.disturbances.setsDeleted == 2)
    #expect(summary.disturbances.podsDeleted == 2 && summary.disturbances.setsScaled == 2)
    #expect(summary.disturbances.junkWritten == 12)
    #expect(summary.disturbances.podsMadeUnready == 2)
    #expect(summary.reconciles >= 10)
    #expect(summary.reconcileP50 != nil && summary.reconcileP99 != nil)
    #expect(summary.reconcileP50! <= summary.reconcileP99!)
    #expect(summary.timeToConverge != nil && summary.initialConvergence != nil)
    #expect(summary.informerEvents > 0)
    #expect(summary.peakObjects >= 40)
    #expect(!progress.all.isEmpty)
    #expect(progress.all.last?.phase == .done)

    let world = try await DemoWorld.check(backend: backend)
    #expect(world.isConverged)
    #expect(world.pods == summary.pods)
  }

  /// The checker is not a rubber stamp: a world with a short set, wrong labels, an orphan, a
  /// stale status, a zero-value key and a set that should be gone fails with each named.
  @Test func checkerReportsEveryMismatch() async throws {
    let backend = MemoryBackend()
    func store<R: Resource>(_ object: R) async throws {
      _ = try await backend.put(object.key, value: try JSONEncoder().encode(object), lease: nil)
    }
    var web = PodSet(name: "web", namespace: "ns", uid: "uid-web", replicas: 2, labels: ["app": "web"])
    web.metadata.generation = 2
    web.status = PodSet.Status(readyReplicas: 1, observedGeneration: 1)
    try await store(web)
    try await store(
      Pod(name: "web-1", namespace: "ns", uid: "p1", labels: ["app": "other"], owners: [web.controllerReference],
        status: Pod.Status(phase: .running, ready: true)))
    try await store(
      Pod(name: "lost-1", namespace: "ns", uid: "p2", owners: [OwnerReference(kind: PodSet.kind, name: "lost", uid: "uid-lost", controller: true)]))
    var dying = PodSet(name: "dying", namespace: "ns", uid: "uid-dying", replicas: 0, labels: [:])
    dying.metadata.deletionTimestamp = Timestamp(secondsSince1970: 1)
    dying.status = PodSet.Status(readyReplicas: 0, observedGeneration: 1)
    try await store(dying)
    _ = try await backend.put("/registry/pods/ns/empty", value: Data("{}".utf8), lease: nil)
    _ = try await backend.put("/registry/pods/ns/junk-fine", value: Data(), lease: nil)

    let report = try await DemoWorld.check(backend: backend, expected: ["ns/web": 2, "ns/gone": 1])
    #expect(!report.isConverged)
    #expect(report.zeroValueKeys == ["/registry/pods/ns/empty"])
    #expect(report.junkKeys == 1)
    #expect(report.podSets == 2 && report.pods == 2)
    let expected = [
      "pod ns/lost-1 is an orphan",
      "podset ns/dying should have been deleted",
      "podset ns/web has 1 pods, wants 2",
      "pod ns/web-1 of podset ns/web has labels",
      "podset ns/web observed generation 1, is at 2",
      "podset ns/gone is missing",
    ]
    for text in expected {
      #expect(report.mismatches.contains { $0.hasPrefix(text) }, "\(text) in \(report.mismatches)")
    }
    #expect(!report.mismatches.contains { $0.contains("ready replicas") }, "1 ready of 1 is right")
  }
}

@Suite("Demo configuration and summary")
struct DemoConfigurationTests {
  @Test func defaultsValidate() throws {
    let configuration = DemoConfiguration()
    try configuration.validate()
    #expect(configuration.podSets == 200 && configuration.replicas == 5)
  }

  /// Each bad value, as `setting:case`.
  static let badValues = [
    "podSets:zero", "replicas:negative", "namespaces:none", "namespaces:invalid", "namespaces:repeated",
    "disturbanceRounds:negative", "junkObjects:too-many", "convergenceTimeout:zero", "workers:zero",
    "progressInterval:zero", "roundInterval:negative",
  ]

  @Test(arguments: Self.badValues)
  func badSettingIsNamed(badValue: String) {
    var configuration = DemoConfiguration()
    switch badValue {
    case "podSets:zero": configuration.podSets = 0
    case "replicas:negative": configuration.replicas = -1
    case "namespaces:none": configuration.namespaces = []
    case "namespaces:invalid": configuration.namespaces = ["Bad_Name"]
    case "namespaces:repeated": configuration.namespaces = ["a", "a"]
    case "disturbanceRounds:negative": configuration.disturbanceRounds = -1
    case "junkObjects:too-many": configuration.junkObjects = 10_001
    case "convergenceTimeout:zero": configuration.convergenceTimeout = .zero
    case "workers:zero": configuration.workers = 0
    case "progressInterval:zero": configuration.progressInterval = .zero
    case "roundInterval:negative": configuration.roundInterval = .milliseconds(-1)
    default: Issue.record("unknown case \(badValue)")
    }
    let setting = String(badValue.prefix { $0 != ":" })
    let error = #expect(throws: DemoConfigurationError.self) { try configuration.validate() }
    #expect(error?.setting == setting)
    #expect(error?.description.hasPrefix("invalid demo setting \(setting): ") == true)
  }

  @Test func summaryLinesEndWithTheVerdict() {
    var summary = DemoSummary(
      podSets: 2, pods: 6, peakObjects: 8, disturbances: DemoDisturbances(), reconciles: 12, reconcileErrors: 0, reconcileP50: .milliseconds(2),
      reconcileP99: .milliseconds(9), initialConvergence: .seconds(1), timeToConverge: .milliseconds(1500),
      elapsed: .seconds(4), informerEvents: 40, malformedRejected: 2, zeroValueRejected: 10, junkKeys: 12,
      zeroValueKeys: [], peakMemoryPerObject: nil, converged: true, mismatches: [])
    #expect(summary.lines().last == "converged: yes")
    #expect(summary.lines().contains("reconcile latency: p50 2.00ms, p99 9.00ms"))
    #expect(summary.lines().contains("informer events: 40 in 4.00s (10 events/s)"))
    #expect(summary.lines().contains("peak memory per object: n/a"))
    summary.converged = false
    summary.mismatches = ["podset a/b has 1 pods, wants 2"]
    #expect(Array(summary.lines().suffix(2)) == ["  mismatch: podset a/b has 1 pods, wants 2", "converged: no"])
  }
}

/// The small demo against a real etcd. Its own server: the demo's key prefixes are fixed.
@Suite("Demo on etcd", .etcdServer("capstan-demo"))
struct DemoOnEtcdTests {
  @Test func smallDemoConvergesAndWritesNoZeroValueKeys() async throws {
    let server = try suiteServer()
    var configuration = EtcdClientConfiguration(endpoints: [try EtcdEndpoint(parsing: server.endpoint)])
    configuration.streamBackoff = EtcdBackoff(initial: .milliseconds(50), maximum: .seconds(1))
    try await withEtcdClient(configuration, logger: silentLogger) { client in
      let backend = EtcdBackend(client: client)
      let summary = try await DemoRunner.run(configuration: smallDemo, backend: backend, logger: silentLogger)
      #expect(summary.converged, "mismatches: \(summary.mismatches)")
      #expect(summary.lines().last == "converged: yes")
      #expect(summary.zeroValueKeys.isEmpty)
      #expect(summary.junkKeys == 12)
      #expect(summary.disturbances.setsDeleted == 2 && summary.disturbances.podsDeleted == 2)
      #expect(summary.malformedRejected >= 2 && summary.zeroValueRejected >= 10)
      // Scanning etcd itself after the run: no zero-value key outside the junk.
      #expect(try await zeroValueKeysOutsideJunk(in: backend).isEmpty)
      let junk = try await backend.range(.prefix("/registry/"), options: BackendRangeOptions()).kvs
        .filter { $0.key.split(separator: "/").last?.hasPrefix("junk-") == true }
      #expect(junk.count == 12)
    }
  }
}
