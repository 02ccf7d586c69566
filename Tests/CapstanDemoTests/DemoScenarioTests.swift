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
