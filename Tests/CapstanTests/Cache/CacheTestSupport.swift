import Capstan
import Foundation
import Logging
import Metrics
import Synchronization

/// A namespaced test kind.
struct TestPod: Resource, Equatable {
  static let kind = "Pod"
  static let plural = "pods"

  struct Spec: Codable, Sendable, Equatable {
    var image: String
  }

  var metadata: ObjectMeta
  var spec: Spec
}

/// A cluster-scoped test kind.
struct TestNode: Resource, Equatable {
  static let kind = "Node"
  static let plural = "nodes"
  static let isNamespaced = false

  var metadata: ObjectMeta
}

enum CacheFixtures {
  static let pods = TestPod.layout
  static let nodes = TestNode.layout

  /// A pod as the cache would hold it: stored JSON (without resourceVersion) plus metadata.
  static func pod(
    uid: String, namespace: String = "default", name: String, revision: Int64 = 1, labels: [String: String] = [:],
    owners: [String] = [], image: String = "nginx"
  ) -> CachedObject {
    var metadata = ObjectMeta(
      uid: uid, name: name, namespace: namespace, labels: labels,
      ownerReferences: owners.map { OwnerReference(kind: "PodSet", name: "set-\($0)", uid: $0) })
    let raw = try! JSONEncoder().encode(TestPod(metadata: metadata, spec: .init(image: image)))
    metadata.resourceVersion = revision
    return CachedObject(key: pods.key(namespace: namespace, name: name), metadata: metadata, raw: raw)
  }

  static func node(uid: String, name: String, revision: Int64 = 1) -> CachedObject {
    var metadata = ObjectMeta(uid: uid, name: name)
    let raw = try! JSONEncoder().encode(TestNode(metadata: metadata))
    metadata.resourceVersion = revision
    return CachedObject(key: nodes.key(namespace: "", name: name), metadata: metadata, raw: raw)
  }

  /// A stored key-value with `json` as its value.
  static func stored(_ key: String, _ json: String, revision: Int64 = 7) -> StoredKeyValue {
    StoredKeyValue(key: key, value: Data(json.utf8), createRevision: revision, modRevision: revision, version: 1)
  }
}


/// A log handler that keeps what is logged, for one test.
struct RecordingLogHandler: LogHandler {
  struct Entry: Sendable {
    var level: Logger.Level
    var message: String
    var metadata: [String: String]
  }

  final class Store: Sendable {
    let entries = Mutex<[Entry]>([])
    var all: [Entry] { self.entries.withLock { $0 } }
    var warnings: [Entry] { self.all.filter { $0.level == .warning } }
  }

  let store: Store
  var metadata: Logger.Metadata = [:]
  var logLevel: Logger.Level = .trace

  subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { self.metadata[key] }
    set { self.metadata[key] = newValue }
  }

  func log(event: LogEvent) {
    let metadata = self.metadata.merging(event.metadata ?? [:]) { $1 }.mapValues { "\($0)" }
    self.store.entries.withLock {
      $0.append(Entry(level: event.level, message: event.message.description, metadata: metadata))
    }
  }

  /// A logger that records into a fresh store.
  static func logger() -> (Logger, Store) {
    let store = Store()
    return (Logger(label: "test") { _ in RecordingLogHandler(store: store) }, store)
  }
}
