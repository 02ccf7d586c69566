import Capstan
import Foundation
import Testing

@Suite struct TimestampTests {
  @Test(arguments: [
    ("1970-01-01T00:00:00Z", Int64(0)),
    ("2006-01-02T15:04:05Z", Int64(1_136_214_245)),
    ("2024-02-29T23:59:59Z", Int64(1_709_251_199)),
    ("2006-01-02T15:04:05.123456Z", Int64(1_136_214_245)),
    ("2006-01-02T17:04:05+02:00", Int64(1_136_214_245)),
    ("1969-12-31T23:59:59Z", Int64(-1)),
  ])
  func parsesRFC3339(text: String, seconds: Int64) {
    #expect(Timestamp(rfc3339: text)?.secondsSince1970 == seconds)
  }

  @Test(arguments: ["", "2006-01-02", "2006-13-02T15:04:05Z", "2023-02-29T00:00:00Z", "2006-01-02T15:04:05",
    "2006-01-02T15:04:05Zjunk", "2006-01-02T25:04:05Z", "2006-01-02T15:04:05."])
  func rejectsMalformedTimes(text: String) {
    #expect(Timestamp(rfc3339: text) == nil)
  }

  @Test func formatsAndRoundTrips() throws {
    for seconds: Int64 in [0, -1, 951_782_400, 1_136_214_245, 4_102_444_800, -62_135_596_800] {
      let timestamp = Timestamp(secondsSince1970: seconds)
      #expect(Timestamp(rfc3339: timestamp.description) == timestamp)
    }
    #expect(Timestamp(secondsSince1970: 1_136_214_245).description == "2006-01-02T15:04:05Z")
    let encoded = try JSONEncoder().encode([Timestamp(secondsSince1970: 0)])
    #expect(String(decoding: encoded, as: UTF8.self) == #"["1970-01-01T00:00:00Z"]"#)
  }
}

@Suite struct ResourceLayoutTests {
  let pods = ResourceLayout(kind: "Pod", plural: "pods", isNamespaced: true)
  let nodes = ResourceLayout(kind: "Node", plural: "nodes", isNamespaced: false)

  @Test func namespacedAndClusterScopedKeysNeverCoincide() {
    #expect(self.pods.key(namespace: "default", name: "web") == "/registry/pods/default/web")
    #expect(self.nodes.key(namespace: "ignored", name: "n1") == "/registry/nodes/n1")
    #expect(self.pods.namespaceAndName(of: "/registry/pods/default/web")! == ("default", "web"))
    #expect(self.nodes.namespaceAndName(of: "/registry/nodes/n1")! == ("", "n1"))
    // A namespaced key cannot be read as cluster-scoped and vice versa.
    #expect(self.nodes.namespaceAndName(of: "/registry/nodes/default/n1") == nil)
    #expect(self.pods.namespaceAndName(of: "/registry/pods/web") == nil)
  }

  @Test(arguments: ["/registry/pods/", "/registry/pods//web", "/registry/pods/ns/", "/registry/pods/a/b/c",
    "/registry/podsx/a/b", "registry/pods/a/b"])
  func rejectsKeysThatDoNotFitTheLayout(key: String) {
    #expect(self.pods.namespaceAndName(of: key) == nil)
  }

  @Test func keyMatchesMetadata() {
    let metadata = ObjectMeta(uid: "u1", name: "web", namespace: "default")
    #expect(self.pods.keyMatches("/registry/pods/default/web", metadata: metadata))
    #expect(!self.pods.keyMatches("/registry/pods/other/web", metadata: metadata))
    #expect(!self.nodes.keyMatches("/registry/nodes/web", metadata: metadata))
  }

  @Test func objectMetaRoundTripsThroughJSON() throws {
    let metadata = ObjectMeta(
      uid: "u1", name: "web", namespace: "default", resourceVersion: 42, generation: 3, labels: ["app": "web"],
      annotations: ["a": "b"], ownerReferences: [OwnerReference(kind: "PodSet", name: "set", uid: "o1", controller: true)],
      finalizers: ["capstan.io/cleanup"], creationTimestamp: Timestamp(secondsSince1970: 1_136_214_245))
    let decoded = try JSONDecoder().decode(ObjectMeta.self, from: JSONEncoder().encode(metadata))
    #expect(decoded == metadata)
    #expect(try JSONDecoder().decode(ObjectMeta.self, from: Data("{}".utf8)) == ObjectMeta())
    #expect(throws: DecodingError.self) {
      try JSONDecoder().decode(ObjectMeta.self, from: Data(#"{"resourceVersion":"x"}"#.utf8))
    }
  }

  @Test func keyRangeContainsComparesBytes() {
    let range = KeyRange.prefix("/registry/pods/")
    #expect(range.rangeEnd == "/registry/pods0")
    #expect(range.contains("/registry/pods/a/b"))
    #expect(!range.contains("/registry/pods0"))
    #expect(!range.contains("/registry/pod"))
    #expect(KeyRange.from("b").contains("zzz"))
    #expect(!KeyRange.from("b").contains("a"))
    #expect(KeyRange.key("x").contains("x") && !KeyRange.key("x").contains("xy"))
    #expect(range.continuing(after: "/registry/pods/a").key == "/registry/pods/a\0")
  }
}
