@testable import Capstan
import CapstanTesting
import CapstanTestSupport
import Foundation
import Testing

/// Runs `informer` while `body` runs, then stops it.
func whileRunning<T: Sendable>(_ informer: Informer, _ body: () async throws -> T) async throws -> T {
  try await withThrowingTaskGroup(of: Void.self) { group in
    group.addTask { try await informer.run() }
    defer { group.cancelAll() }
    return try await body()
  }
}

/// A compact description of an event: `added uid`, `updated uid image`, `deleted uid certain`.
func describe(_ event: InformerEvent) -> String {
  func image(_ object: CachedObject) -> String {
    (try? JSONDecoder().decode(TestObject.self, from: object.raw).spec.image) ?? "?"
  }
  switch event {
  case .added(let new): return "added \(new.metadata.uid) \(image(new))"
  case .updated(let old, let new): return "updated \(old.metadata.uid) \(image(old))->\(image(new))"
  case .deleted(let last, let certain): return "deleted \(last.metadata.uid) \(certain ? "certain" : "inferred")"
  }
}

/// Takes the next `count` events of `stream`, failing after `timeout`.
func take(_ count: Int, from stream: InformerEventStream, timeout: Duration = .seconds(20)) async throws -> [InformerEvent] {
  try await firstElements(count, of: stream, timeout: timeout, what: "informer events")
}

