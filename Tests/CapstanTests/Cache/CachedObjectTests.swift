@testable import Capstan
import CapstanTestSupport
import CapstanTesting
import Foundation
import Logging
import PropertyBased
import Testing

/// The compact representation reads back what the scanner reads, through `metadata` and through
/// every direct accessor; late decode errors are reported like early ones.
@Suite struct CachedObjectTests {
  let metrics = RecordingMetrics()
  let logger: Logger
  let logs: RecordingLogHandler.Store

  init() { (self.logger, self.logs) = RecordingLogHandler.logger() }

  /// Every accessor agrees with `metadata`, and `metadata` with `expected`.
  static func expectReads(_ object: CachedObject, _ expected: ObjectMeta, _ comment: Comment? = nil) {
    #expect(object.metadata == expected, comment)
    #expect(object.uid == expected.uid, comment)
    #expect(object.name == expected.name, comment)
    #expect(object.namespace == expected.namespace, comment)
    #expect(object.resourceVersion == expected.resourceVersion, comment)
    #expect(object.ownerUIDs == expected.ownerReferences.map(\.uid), comment)
    #expect(object.finalizers == expected.finalizers, comment)
    for (key, value) in expected.labels { #expect(object.label(key) == value, comment) }
    #expect(object.label("no-such-label-\(expected.labels.count)") == expected.labels["no-such-label-\(expected.labels.count)"])
  }

  @Test func podFixturesAreCompactAndReadBack() throws {
    let ingestor = ObjectIngestor(layout: TestPod.layout, logger: self.logger, metricsFactory: self.metrics)
    for index in [0, 1, 49, 50, 12_345] {
      let data = PodFixture.data(index: index)
      let key = TestPod.layout.key(namespace: PodFixture.namespace(index: index), name: PodFixture.name(index: index))
      let object = try ingestor.ingest(
        StoredKeyValue(key: key, value: data, createRevision: 3, modRevision: 9, version: 1)
      ).get()
      #expect(object.storage.header.explicitMetadata == nil, "the fixture takes the compact path")
      var expected = try scanObjectMeta(data)
      expected.resourceVersion = 9
      Self.expectReads(object, expected)
      #expect(object.key == key)
      #expect(object.raw == data)
      #expect(object.rawByteCount == data.count)
      #expect(object == CachedObject(key: key, metadata: expected, raw: data))
    }
  }

  /// `raw` is a copy: changing it never changes the cached object or its other copies.
  @Test func changingRawNeverChangesTheCache() throws {
    let ingestor = ObjectIngestor(layout: TestPod.layout, logger: self.logger, metricsFactory: self.metrics)
    let data = PodFixture.data(index: 7)
    let key = TestPod.layout.key(namespace: PodFixture.namespace(index: 7), name: PodFixture.name(index: 7))
    let object = try ingestor.ingest(StoredKeyValue(key: key, value: data, createRevision: 1, modRevision: 2, version: 1)).get()
    let before = object.metadata
    var bytes = object.raw
    for index in bytes.indices { bytes[index] = UInt8(ascii: " ") }
    #expect(object.raw == data)
    #expect(object.metadata == before)
  }

  /// Metadata with more labels, annotations and finalizers than the compact form records takes
  /// the full path and reads back whole (65,536 finalizers once trapped a 16-bit count).
  @Test(arguments: [300, 70_000])
  func manyEntriesTakeTheFullPath(count: Int) throws {
    let ingestor = ObjectIngestor(layout: TestPod.layout, logger: self.logger, metricsFactory: self.metrics)
    var metadata = ObjectMeta(uid: "uid-many", name: "many", namespace: "default")
    metadata.finalizers = (0..<count).map { "f\($0)" }
    metadata.annotations = Dictionary(uniqueKeysWithValues: (0..<min(count, 5_000)).map { ("a\($0)", "v") })
    metadata.labels = Dictionary(uniqueKeysWithValues: (0..<300).map { ("l\($0)", "v\($0)") })
    let data = try JSONEncoder().encode(TestPod(metadata: metadata, spec: TestPod.Spec(image: "nginx")))
    let key = TestPod.layout.key(namespace: "default", name: "many")
    let object = try ingestor.ingest(StoredKeyValue(key: key, value: data, createRevision: 1, modRevision: 4, version: 1)).get()
    metadata.resourceVersion = 4
    Self.expectReads(object, metadata)
  }

  /// Random metadata documents (whitespace, escapes, duplicates, unusual strings): objects made
  /// from them — compact when the scan allows, as given otherwise — read back the scanner's
  /// metadata through every accessor, and one made from differing parts keeps its parts.
  @Test func randomDocumentsReadBack() async {
    let generator = Generator<RandomMetadataDocument, Shrink.None<RandomMetadataDocument>>(run: { rng in
      var random = ErasedRandom(base: rng)
      defer { rng = random.base }
      return RandomMetadataDocument.make(using: &random)
    })
    await propertyCheck(count: 300, input: generator) { document in
      guard var scanned = ScannerOracle.scanned(document.bytes) else { return }
      scanned.resourceVersion = 17
      let raw = Data(document.bytes)
      let object = CachedObject(key: "/registry/pods/k", metadata: scanned, raw: raw)
      Self.expectReads(object, scanned, "\(document)")
      // Where the compact form applies it must be taken: falling back to the given metadata
      // would hide a compact read-back that differs from the scan.
      let compactApplies = raw.withUnsafeBytes { bytes in
        var sink = CompactMetadataSink()
        return (try? ObjectMetaScanner().scan(bytes, into: &sink)) != nil && sink.isSupported
      }
      if compactApplies { #expect(object.storage.header.explicitMetadata == nil, "\(document)") }
      #expect(object.raw == raw)

      var changed = scanned
      changed.labels["added"] = "yes"
      changed.finalizers.append("extra")
      var copy = object
      copy.metadata = changed
      Self.expectReads(copy, changed, "\(document)")
      #expect(copy != object)
      Self.expectReads(object, scanned, "the original is unchanged")
    }
  }

  @Test func canonicalUUIDsArePackedAndRoundTrip() {
    let uuid = "0123abcd-4567-89ef-0123-456789abcdef"
    var bytes = Array(uuid.utf8)
    let packed = bytes.withUnsafeMutableBufferPointer { UIDKey(bytes: UnsafeBufferPointer($0)) }
    #expect(packed == UIDKey(uuid))
    #expect(packed.string == uuid)
    #expect(packed.hash == UIDKey(uuid).hash)
    for other in ["0123ABCD-4567-89ef-0123-456789abcdef", "0123abcd-4567-89ef-0123-456789abcde", "u1", "", "0123abcd_4567-89ef-0123-456789abcdef"] {
      let key = UIDKey(other)
      #expect(key.string == other)
      #expect(key != packed)
      #expect(key.isEmpty == other.isEmpty)
    }
    #expect(UIDKey("é") != UIDKey("e\u{301}"), "UIDs compare as bytes")
  }

  @Test func slotTableAgreesWithADictionary() async {
    struct Entry: SlotEntry, Equatable {
      var key: Int
      var value: Int
      var slotHash: UInt64 { UInt64(self.key % 7) }  // many collisions on purpose
    }
    let operation = Gen.int(in: 0...40).array(of: 0...300)
    await propertyCheck(count: 100, input: operation) { keys in
      var table = SlotTable<Entry>()
      var model: [Int: Int] = [:]
      for (step, key) in keys.enumerated() {
        let slot = table.find(hash: UInt64(key % 7)) { $0.key == key }
        #expect((slot != nil) == (model[key] != nil))
        if let slot, step % 3 != 0 {
          table.remove(at: slot)
          model[key] = nil
        } else if let slot {
          table[slot].value = step
          model[key] = step
        } else {
          table.insert(Entry(key: key, value: step))
          model[key] = step
        }
        #expect(table.count == model.count)
      }
      var seen: [Int: Int] = [:]
      table.forEach { seen[$0.key] = $0.value }
      #expect(seen == model)
    }
  }

  /// A typed read that fails on an object that passed ingest counts as a decode error and is
  /// logged once per key, like a value refused at ingest.
  @Test func lateDecodeErrorsAreCountedAndLoggedOncePerKey() throws {
    let ingestor = ObjectIngestor(layout: TestPod.layout, logger: self.logger, metricsFactory: self.metrics)
    let json = #"{"metadata":{"uid":"u1","name":"web","namespace":"default"},"spec":{"image":5}}"#
    let object = try ingestor.ingest(CacheFixtures.stored("/registry/pods/default/web", json)).get()
    for _ in 0..<3 {
      #expect(throws: CacheError.self) { try object.decode(as: TestPod.self) }
    }
    #expect(self.metrics.value("capstan_cache_decode_errors_total", [("resource", "pods")]) == 3)
    let warnings = self.logs.warnings
    #expect(warnings.count == 1)
    #expect(warnings.first?.metadata["key"] == "/registry/pods/default/web")
    #expect(warnings.first?.message == "a cached object does not decode")
    #expect(warnings.first?.metadata["reason"]?.contains("spec.image") == true)

    // A good object of the same ingestor decodes without a report.
    let good = #"{"metadata":{"uid":"u2","name":"db","namespace":"default"},"spec":{"image":"pg"}}"#
    let pod = try ingestor.ingest(CacheFixtures.stored("/registry/pods/default/db", good)).get().decode(as: TestPod.self)
    #expect(pod.spec.image == "pg")
    #expect(self.metrics.value("capstan_cache_decode_errors_total", [("resource", "pods")]) == 3)
  }
}
