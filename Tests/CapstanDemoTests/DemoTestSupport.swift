import Capstan
import CapstanDemo
import CapstanTestSupport
import Foundation
import Logging
import Synchronization

let silentLogger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

/// A small demo: 10 sets × 3 replicas over two namespaces, two disturbance rounds, 12 junk objects.
let smallDemo = DemoConfiguration(
  podSets: 10, replicas: 3, namespaces: ["demo-a", "demo-b"], disturbanceRounds: 2, junkObjects: 12,
  convergenceTimeout: .seconds(30), seed: 7, progressInterval: .milliseconds(100), roundInterval: .milliseconds(50))

/// Collects progress reports.
final class ProgressLog: Sendable {
  private let reports = Mutex<[DemoProgress]>([])
  var all: [DemoProgress] { self.reports.withLock { $0 } }
  func record(_ progress: DemoProgress) { self.reports.withLock { $0.append(progress) } }
}

/// Every key under `/registry/` whose value is not a valid object (empty, not a JSON object with
/// a metadata UID and name), apart from the demo's `junk-…` keys: what the controller must never
/// write. An independent check of ``DemoWorld``'s scan.
func zeroValueKeysOutsideJunk(in backend: any Backend) async throws -> [String] {
  struct Shape: Decodable { var metadata: ObjectMeta? }
  let page = try await backend.range(.prefix("/registry/"), options: BackendRangeOptions())
  return page.kvs.compactMap { keyValue in
    guard !(keyValue.key.split(separator: "/").last?.hasPrefix("junk-") ?? false) else { return nil }
    guard let shape = try? JSONDecoder().decode(Shape.self, from: keyValue.value), let metadata = shape.metadata,
      !metadata.uid.isEmpty, !metadata.name.isEmpty
    else { return keyValue.key }
    return nil
  }
}
