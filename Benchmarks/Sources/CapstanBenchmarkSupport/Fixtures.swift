import Capstan
import CapstanTesting
import Foundation
import Logging

/// The data every benchmark uses: ``PodFixture``'s ~1.6 KB Pod documents under `/registry/pods/`.
public enum Fixtures {
  /// Where the Pods live.
  public static let layout = Pod.layout

  /// The three user indexes of every benchmarked cache (besides the built-in namespace index):
  /// a label (`app.kubernetes.io/name`: 3 values), the owner's UID (one owner per 10 Pods), and a
  /// custom index by finalizer (every Pod has one) — the kinds of index a controller keeps.
  public static let threeIndexes: [CacheIndex] = [
    .label("app.kubernetes.io/name"),
    .ownerUID,
    .custom(name: "finalizer") { $0.finalizers },
  ]

  /// The key of document `index`.
  public static func key(index: Int) -> String {
    self.layout.key(namespace: PodFixture.namespace(index: index), name: PodFixture.name(index: index))
  }

  /// Documents `range` as stored key-values, each with its own bytes, at revisions from
  /// `firstRevision` on.
  public static func keyValues(_ range: Range<Int>, firstRevision: Int64 = 2) -> [StoredKeyValue] {
    range.map { index in
      let revision = firstRevision + Int64(index - range.lowerBound)
      return StoredKeyValue(
        key: self.key(index: index), value: PodFixture.data(index: index), createRevision: revision,
        modRevision: revision, version: 1)
    }
  }

  /// A logger that drops everything (informer notices would interleave with the goal lines).
  public static let silentLogger = Logger(label: "capstan.benchmarks") { _ in SwiftLogNoOpLogHandler() }
}

/// A large population of distinct Pods held two ways — as ``CachedObject``s (for the cache) and as
/// decoded ``Pod`` values (for the baseline dictionary) — with the same UIDs, names, namespaces,
/// labels and owners.
///
/// Building a million real documents and decoding each with `JSONDecoder` would take minutes on
/// this machine, so object `i` is derived from template document `i % templateCount` (both
/// decoded for real): its metadata is the template's with object `i`'s own UID, name, owner UID
/// and revision (namespace and labels already match, since the template count is a multiple of
/// 60), and its raw bytes and spec/status are the template's, shared. Lookups and upserts never
/// read the raw bytes or the spec, so the sharing changes neither side's work; it only keeps the
/// process small. The memory benchmark uses real, unshared documents instead.
public struct PodPopulation: Sendable {
  /// The cached form of each object.
  public let objects: [CachedObject]
  /// The decoded form of each object (its metadata is the same value as in ``objects``).
  public let pods: [Pod]
  /// Every distinct owner UID.
  public let ownerUIDs: [String]

  public init(count: Int, templateCount: Int = 600) {
    precondition(templateCount % 60 == 0, "namespace and labels of a template must fit every object derived from it")
    let templates = (0..<templateCount).map { PodFixture.data(index: $0) }
    let templateMetadata = templates.map { try! scanObjectMeta($0) }
    let decoder = JSONDecoder()
    let templatePods = templates.map { try! decoder.decode(Pod.self, from: $0) }
    var objects: [CachedObject] = []
    var pods: [Pod] = []
    var ownerUIDs: [String] = []
    objects.reserveCapacity(count)
    pods.reserveCapacity(count)
    ownerUIDs.reserveCapacity(count / 10 + 1)
    for index in 0..<count {
      let template = index % templateCount
      if index % 10 == 0 { ownerUIDs.append(PodFixture.uid(index: index / 10 + 1_000_000)) }
      var metadata = templateMetadata[template]
      metadata.uid = PodFixture.uid(index: index)
      metadata.name = PodFixture.name(index: index)
      metadata.resourceVersion = Int64(index + 2)
      metadata.ownerReferences[0].uid = ownerUIDs[index / 10]
      let key = Fixtures.layout.key(namespace: metadata.namespace, name: metadata.name)
      objects.append(CachedObject(key: key, metadata: metadata, raw: templates[template]))
      var pod = templatePods[template]
      pod.metadata = metadata
      pods.append(pod)
    }
    self.objects = objects
    self.pods = pods
    self.ownerUIDs = ownerUIDs
  }
}

/// A deterministic shuffle (SplitMix64), so every run looks up the same keys in the same order.
public func shuffled<T>(_ values: [T], seed: UInt64 = 0x5EED) -> [T] {
  var values = values
  var state = seed
  func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
  guard values.count > 1 else { return values }
  for index in stride(from: values.count - 1, to: 0, by: -1) {
    let other = Int(next() % UInt64(index + 1))
    values.swapAt(index, other)
  }
  return values
}
