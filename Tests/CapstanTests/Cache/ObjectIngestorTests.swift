@testable import Capstan
import CapstanTestSupport
import Foundation
import Logging
import PropertyBased
import Testing

@Suite struct ObjectIngestorTests {
  let metrics = RecordingMetrics()
  let logger: Logger
  let logs: RecordingLogHandler.Store

  init() { (self.logger, self.logs) = RecordingLogHandler.logger() }

  func ingestor(
    _ layout: ResourceLayout = CacheFixtures.pods, limit: Int = 10_000, transform: ObjectIngestor.Transform? = nil
  ) -> ObjectIngestor {
    ObjectIngestor(
      layout: layout, transform: transform, logger: self.logger, metricsFactory: self.metrics, reportedKeyLimit: limit)
  }

  func counter(_ label: String, _ plural: String = "pods") -> Double? {
    self.metrics.value(label, [("resource", plural)])
  }

  static let webJSON = #"{"metadata":{"uid":"u1","name":"web","namespace":"default","resourceVersion":"3"},"spec":{"image":"nginx"}}"#

  @Test func acceptsAValidObjectWithItsModRevision() throws {
    let kv = CacheFixtures.stored("/registry/pods/default/web", Self.webJSON, revision: 42)
    let object = try self.ingestor().ingest(kv).get()
    #expect(object.key == kv.key)
    #expect(object.raw == kv.value)
    #expect(object.metadata == ObjectMeta(uid: "u1", name: "web", namespace: "default", resourceVersion: 42))
    let pod = try object.decode(as: TestPod.self)
    #expect(pod.metadata.resourceVersion == 42)
    #expect(pod.spec.image == "nginx")
    #expect(self.counter("capstan_cache_zero_value_keys_total") == 0)
    #expect(self.counter("capstan_cache_decode_errors_total") == 0)
    #expect(self.logs.all.isEmpty)
  }

  @Test(arguments: ["not json", "[1,2]", "null", #"{"metadata":5}"#, #"{"metadata":{"uid":7}}"#,
    #"{"metadata":{"uid":"u","name":"web","namespace":"default","resourceVersion":"x"}}"#])
  func refusesUndecodableValues(json: String) {
    let result = self.ingestor().ingest(CacheFixtures.stored("/registry/pods/default/web", json))
    guard case .failure(let rejection) = result, case .undecodable = rejection.reason else {
      Issue.record("expected an undecodable rejection, got \(result)")
      return
    }
    #expect(!rejection.reason.isZeroValue)
    #expect(rejection.key == "/registry/pods/default/web")
    #expect(self.counter("capstan_cache_decode_errors_total") == 1)
    #expect(self.counter("capstan_cache_zero_value_keys_total") == 0)
  }

  @Test(arguments: [
    ("/registry/pods/default/web", "", IngestRejectionReason.emptyPayload),
    ("/registry/pods/default/web", "{}", .emptyUID),
    ("/registry/pods/default/web", #"{"metadata":{"name":"web","namespace":"default"}}"#, .emptyUID),
    ("/registry/pods/default/web", #"{"metadata":{"uid":"u1","namespace":"default"}}"#, .emptyName),
    ("/registry/pods/other/web", Self.webJSON, .keyMismatch(namespace: "default", name: "web")),
    ("/registry/pods/default/db", Self.webJSON, .keyMismatch(namespace: "default", name: "web")),
    ("/registry/pods/web", #"{"metadata":{"uid":"u1","name":"web"}}"#, .keyMismatch(namespace: "", name: "web")),
    ("/registry/pods/default/a/b", #"{"metadata":{"uid":"u1","name":"a/b","namespace":"default"}}"#,
      .keyMismatch(namespace: "default", name: "a/b")),
  ])
  func refusesZeroValueObjects(key: String, json: String, reason: IngestRejectionReason) {
    let result = self.ingestor().ingest(CacheFixtures.stored(key, json))
    #expect(result == .failure(IngestRejection(key: key, modRevision: 7, reason: reason)))
    #expect(reason.isZeroValue)
    #expect(self.counter("capstan_cache_zero_value_keys_total") == 1)
    #expect(self.counter("capstan_cache_decode_errors_total") == 0)
  }

  @Test func clusterScopedLayoutRefusesNamespacedObjects() throws {
    let nodes = self.ingestor(CacheFixtures.nodes)
    let namespaced = #"{"metadata":{"uid":"u1","name":"n1","namespace":"default"}}"#
    #expect(throws: IngestRejection.self) { try nodes.ingest(CacheFixtures.stored("/registry/nodes/n1", namespaced)).get() }
    #expect(throws: IngestRejection.self) {
      try nodes.ingest(CacheFixtures.stored("/registry/nodes/default/n1", namespaced)).get()
    }
    let clusterScoped = #"{"metadata":{"uid":"u1","name":"n1"}}"#
    #expect(try nodes.ingest(CacheFixtures.stored("/registry/nodes/n1", clusterScoped)).get().metadata.name == "n1")
    #expect(self.counter("capstan_cache_zero_value_keys_total", "nodes") == 2)
  }

  @Test func logsOncePerKeyUntilTheKeyRecoversOrIsForgotten() {
    let ingestor = self.ingestor()
    let bad = CacheFixtures.stored("/registry/pods/default/web", "{}")
    let otherBad = CacheFixtures.stored("/registry/pods/default/db", "garbage")
    for _ in 0..<3 { _ = ingestor.ingest(bad) }
    _ = ingestor.ingest(otherBad)
    _ = ingestor.ingest(otherBad)
    #expect(self.logs.warnings.count == 2)
    #expect(self.logs.warnings.first?.metadata["key"] == "/registry/pods/default/web")
    #expect(self.logs.warnings.first?.metadata["reason"] == "empty metadata.uid")
    #expect(self.logs.warnings.last?.metadata["key"] == "/registry/pods/default/db")
    #expect(self.counter("capstan_cache_zero_value_keys_total") == 3)
    #expect(self.counter("capstan_cache_decode_errors_total") == 2)
    #expect(ingestor.reportedKeyCount == 2)

    // The key ingests fine: forgotten, so the next refusal is logged again.
    _ = ingestor.ingest(CacheFixtures.stored("/registry/pods/default/web", Self.webJSON))
    #expect(ingestor.reportedKeyCount == 1)
    _ = ingestor.ingest(bad)
    #expect(self.logs.warnings.count == 3)

    // The other key is deleted.
    ingestor.forget(key: "/registry/pods/default/db")
    _ = ingestor.ingest(otherBad)
    #expect(self.logs.warnings.count == 4)
    #expect(ingestor.rejectionsNotLogged == 0)
  }

  @Test func remembersAtMostTheLimitAndCountsWhatItDoesNotLog() {
    let ingestor = self.ingestor(limit: 2)
    for index in 0..<5 { _ = ingestor.ingest(CacheFixtures.stored("/registry/pods/default/p\(index)", "{}")) }
    let warnings = self.logs.warnings
    #expect(warnings.count == 3)  // two keys, then one notice that the rest are only counted
    #expect(warnings.filter { $0.metadata["key"] != nil }.count == 2)
    #expect(ingestor.rejectionsNotLogged == 3)
    #expect(ingestor.reportedKeyCount == 2)
    #expect(self.counter("capstan_cache_zero_value_keys_total") == 5)
  }

  @Test func transformRunsBeforeCachingAndItsResultIsChecked() throws {
    let json = #"{"metadata":{"uid":"u1","name":"web","namespace":"default","annotations":{"big":"x"}},"spec":{"image":"nginx"}}"#
    let stripping = self.ingestor { metadata, raw in
      metadata.annotations = [:]
      raw = Data(#"{"metadata":{"uid":"u1","name":"web","namespace":"default"},"spec":{"image":"nginx"}}"#.utf8)
      metadata.resourceVersion = 0  // the ingestor puts the mod revision back
    }
    let object = try stripping.ingest(CacheFixtures.stored("/registry/pods/default/web", json, revision: 9)).get()
    #expect(object.metadata.annotations.isEmpty)
    #expect(object.metadata.resourceVersion == 9)
    #expect(try object.decode(as: TestPod.self).metadata.annotations.isEmpty)

    let blanking = self.ingestor { metadata, _ in metadata.uid = "" }
    let rejection = #expect(throws: IngestRejection.self) {
      try blanking.ingest(CacheFixtures.stored("/registry/pods/default/web", json)).get()
    }
    #expect(rejection?.reason == .emptyUID)
  }

  @Test func decodeFailureNamesTheKey() {
    let object = CachedObject(
      key: "/registry/pods/default/web", metadata: ObjectMeta(uid: "u1", name: "web", namespace: "default"),
      raw: Data(#"{"metadata":{"uid":"u1"}}"#.utf8))
    do {
      _ = try object.decode(as: TestPod.self)
      Issue.record("decoded a pod without a spec")
    } catch {
      #expect(error.code == .decodeFailed)
      #expect(error.key == "/registry/pods/default/web")
      #expect(error.cause is DecodingError)
    }
  }

  /// The validator's fast key check agrees with `ResourceLayout.keyMatches` (plus the empty checks).
  @Test func validatorAgreesWithKeyMatches() async {
    let parts = ["a", "b", "/", "é", "e\u{301}", "x/y", "", "registry"]
    let segment = Gen.int(in: 0...(parts.count - 1)).map { parts[$0] }.array(of: 0...3).map { $0.joined() }
    await propertyCheck(input: segment, segment, segment, segment, Gen.bool) {
      keyNamespace, keyName, namespace, name, namespaced in
      let layout = namespaced ? CacheFixtures.pods : CacheFixtures.nodes
      let key = namespaced ? "/registry/pods/\(keyNamespace)/\(keyName)" : "/registry/nodes/\(keyName)"
      let metadata = ObjectMeta(uid: "u", name: name, namespace: namespace)
      let expected = !name.isEmpty && layout.keyMatches(key, metadata: metadata)
      let actual = ObjectValidator(layout: layout).rejectionReason(key: key, metadata: metadata, raw: Data("{}".utf8))
      #expect((actual == nil) == expected, "\(key) vs \(namespace)/\(name)")
    }
  }
}
