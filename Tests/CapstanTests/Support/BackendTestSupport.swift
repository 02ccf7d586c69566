import Capstan
import CapstanEtcd
import CapstanTesting
import CapstanTestSupport
import Foundation
import Logging
import Synchronization
import Testing

/// Which store a parameterised test runs on.
enum BackendKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
  case memory, etcd
  var testDescription: String { self.rawValue }
}

/// Runs `body` with a backend of `kind`: a fresh `MemoryBackend`, or an `EtcdBackend` on the
/// suite's etcd (the suite needs the `.etcdServer` trait).
func withBackend<T: Sendable>(_ kind: BackendKind, _ body: (any Backend) async throws -> T) async throws -> T {
  switch kind {
  case .memory:
    return try await body(MemoryBackend())
  case .etcd:
    let server = try suiteServer()
    var configuration = EtcdClientConfiguration(endpoints: [try EtcdEndpoint(parsing: server.endpoint)])
    configuration.streamBackoff = EtcdBackoff(initial: .milliseconds(50), maximum: .seconds(1))
    return try await withEtcdClient(configuration, logger: quietLogger) { client in
      try await body(EtcdBackend(client: client))
    }
  }
}

/// A layout whose prefix no other test uses, so tests can share one etcd.
func uniqueLayout(namespaced: Bool = true, _ name: String = #function) -> ResourceLayout {
  let clean = name.filter { $0.isLetter || $0.isNumber }.lowercased()
  return ResourceLayout(kind: "Thing", plural: "\(clean)\(UInt32.random(in: 0...UInt32.max))", isNamespaced: namespaced)
}

/// A Pod-shaped test object.
struct TestObject: Codable, Sendable, Hashable {
  struct Spec: Codable, Sendable, Hashable {
    var image: String
    var replicas: Int
  }
  var metadata: ObjectMeta
  var spec: Spec

  init(uid: String, name: String, namespace: String = "default", image: String = "nginx", labels: [String: String] = [:]) {
    self.metadata = ObjectMeta(uid: uid, name: name, namespace: namespace, labels: labels)
    self.spec = Spec(image: image, replicas: 1)
  }

  var json: Data { try! JSONEncoder().encode(self) }
}

extension Backend {
  /// Writes `object` under its key in `layout`; returns the revision.
  @discardableResult
  func put(_ object: TestObject, in layout: ResourceLayout) async throws -> Int64 {
    try await self.put(
      layout.key(namespace: object.metadata.namespace, name: object.metadata.name), value: object.json, lease: nil
    ).revision
  }

  /// Deletes the object `name` in `namespace`; returns the revision.
  @discardableResult
  func delete(_ name: String, namespace: String = "default", in layout: ResourceLayout) async throws -> Int64 {
    try await self.delete(.key(layout.key(namespace: namespace, name: name))).revision
  }
}


/// Wraps a backend so a test can end every open watch with a transient error (at the watch's
/// next event, or at once if it is idle when the next event arrives): fault injection for any
/// backend, real etcd included.
final class WatchBreakingBackend: ForwardingBackend {
  let wrapped: any Backend
  /// Bumped to break the watches open at the time; with how many more events each may deliver.
  private let breaking = Mutex((generation: 0, allowance: 0))

  init(wrapping backend: any Backend) { self.wrapped = backend }

  /// While set, watches opened from now on wait before they start (a test holds a resume back
  /// until it has changed the store).
  private let holding = Mutex(false)

  /// Ends every watch open now once it has delivered `afterEvents` more events.
  func breakWatches(afterEvents: Int = 0) { self.breaking.withLock { $0 = ($0.generation + 1, afterEvents) } }

  /// Makes watches opened from now on wait until ``releaseWatches()``.
  func holdNewWatches() { self.holding.withLock { $0 = true } }

  /// Lets held and later watches start.
  func releaseWatches() { self.holding.withLock { $0 = false } }

  func watch(_ range: KeyRange, options: BackendWatchOptions) -> BackendWatchStream {
    let wrapped = self.wrapped
    return BackendWatchStream {
      let started = self.breaking.withLock { $0.generation }
      var delivered = 0
      var iterator: BackendWatchStream.AsyncIterator?
      return {
        if iterator == nil {
          while self.holding.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(10)) }
          iterator = wrapped.watch(range, options: options).makeAsyncIterator()
        }
        guard var current = iterator else { return nil }
        defer { iterator = current }
        let event = try await current.next()
        let (generation, allowance) = self.breaking.withLock { $0 }
        if generation != started {
          if case .progress = event {} else { delivered += 1 }
          if delivered > allowance { throw BackendError(code: .unavailable, message: "watch broken by the test") }
        }
        return event
      }
    }
  }

}

