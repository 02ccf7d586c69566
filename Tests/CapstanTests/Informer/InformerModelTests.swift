@testable import Capstan
import CapstanEtcd
import CapstanTesting
import CapstanTestSupport
import Foundation
import PropertyBased
import Synchronization
import Testing

/// Model-based tests: random histories of puts, deletes, name reuse with new UIDs, invalid values,
/// compactions, broken watches and restarts; afterwards the cache equals the store exactly and
/// every handler has seen a consistent history (no lost delete, no update across a UID change).
@Suite("Informer model", .shrinking(false))
struct InformerModelTests {
  @Test func cacheMatchesTheEmbeddedBackendAfterRandomHistories() async {
    await propertyCheck(count: 60, input: Gen.int(in: 0...9_999).array(of: 5...60)) { codes in
      let backend = MemoryBackend()
      try await InformerModel.check(codes, on: backend) { kind in
        switch kind {
        case .breakWatches: backend.faults.breakWatches()
        case .restart:
          // What an informer sees of a restart: its watch breaks and history is gone.
          backend.faults.breakWatches()
          try await backend.compact(revision: try await backend.currentRevision())
        }
      }
    }
  }
}

@Suite("Informer model on a real etcd", .etcdServer("capstan-informer-model"), .shrinking(false))
struct EtcdInformerModelTests {
  @Test func cacheMatchesEtcdAfterRandomHistories() async throws {
    let server = try suiteServer()
    try await withBackend(.etcd) { etcd in
      let backend = WatchBreakingBackend(wrapping: etcd)
      await propertyCheck(count: 4, input: Gen.int(in: 0...9_999).array(of: 10...30)) { codes in
        try await InformerModel.check(codes, on: backend, restartsAllowed: true) { kind in
          switch kind {
          case .breakWatches: backend.breakWatches()
          case .restart: try await server.restart()
          }
        }
      }
    }
  }
}

enum InformerModel {
  enum Disruption { case breakWatches, restart }

  /// One step of a history, decoded from a random integer.
  enum Step: CustomStringConvertible {
    case put(name: Int, image: Int)
    case reuseName(name: Int)
    case delete(name: Int)
    case writeInvalid(name: Int)
    case compact
    case breakWatches
    case restart

    init(code: Int, restartsAllowed: Bool) {
      let name = code / 100 % 6
      switch code % 100 {
      case 0..<45: self = .put(name: name, image: code / 1000)
      case 45..<55: self = .reuseName(name: name)
      case 55..<75: self = .delete(name: name)
      case 75..<82: self = .writeInvalid(name: name)
      case 82..<90: self = .compact
      case 90..<98: self = .breakWatches
      default: self = restartsAllowed ? .restart : .breakWatches
      }
    }

    var description: String {
      switch self {
      case .put(let name, let image): "put o\(name) v\(image)"
      case .reuseName(let name): "reuse o\(name)"
      case .delete(let name): "delete o\(name)"
      case .writeInvalid(let name): "invalid o\(name)"
      case .compact: "compact"
      case .breakWatches: "break"
      case .restart: "restart"
      }
    }
  }

  /// What a handler has seen, replayed into a map by UID; records every inconsistency.
  final class HandlerReplay: Sendable {
    struct State {
      var objects: [String: CachedObject] = [:]
      var violations: [String] = []
    }
    let state = Mutex(State())

    func apply(_ event: InformerEvent) {
      self.state.withLock { state in
        switch event {
        case .added(let new):
          if state.objects[new.uid] != nil { state.violations.append("added twice: \(new.uid)") }
          if let clash = state.objects.values.first(where: { $0.key == new.key }) {
            state.violations.append("added \(new.uid) while \(clash.uid) still holds \(new.key) (lost delete)")
          }
          state.objects[new.uid] = new
        case .updated(let old, let new):
          if old.uid != new.uid { state.violations.append("update across UIDs: \(old.uid) -> \(new.uid)") }
          if state.objects[new.uid] == nil { state.violations.append("update of unknown \(new.uid)") }
          state.objects[new.uid] = new
        case .deleted(let last, _):
          if state.objects.removeValue(forKey: last.uid) == nil {
            state.violations.append("delete of unknown \(last.uid)")
          }
        }
      }
    }
  }

  static func check(
    _ codes: [Int], on backend: any Backend, restartsAllowed: Bool = false,
    disrupt: @escaping @Sendable (Disruption) async throws -> Void
  ) async throws {
    let layout = uniqueLayout()
    var steps = codes.map { Step(code: $0, restartsAllowed: restartsAllowed) }
    // Every history on a store that can restart restarts at least once, after the first sync.
    if restartsAllowed { steps.insert(.restart, at: steps.count / 2 + 1) }
    let configuration = InformerConfiguration(
      backoff: EtcdBackoff(initial: .milliseconds(20), maximum: .milliseconds(200)), stallTimeout: .seconds(5))
    let informer = try Informer(layout: layout, backend: backend, configuration: configuration, logger: quietLogger)
    let replay = HandlerReplay()
    let events = informer.addHandler("model")
    // The model: name -> (uid, image) of valid objects.
    var model: [Int: (uid: String, image: Int)] = [:]
    var nextUID = 0
    func newUID() -> String {
      nextUID += 1
      return "\(layout.plural)-uid\(nextUID)"
    }

    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await informer.run() }
      group.addTask { for await event in events { replay.apply(event) } }
      defer { group.cancelAll() }

      // Half the history before the informer has synced, half after.
      for (index, step) in steps.enumerated() {
        if index == steps.count / 2 { _ = try await informer.waitForSync() }
        switch step {
        case .put(let name, let image):
          let uid = model[name]?.uid ?? newUID()
          try await Self.retrying { try await backend.put(TestObject(uid: uid, name: "o\(name)", image: "v\(image)"), in: layout) }
          model[name] = (uid, image)
        case .reuseName(let name):
          let uid = newUID()
          try await Self.retrying { try await backend.put(TestObject(uid: uid, name: "o\(name)", image: "v0"), in: layout) }
          model[name] = (uid, 0)
        case .delete(let name):
          try await Self.retrying { try await backend.delete("o\(name)", in: layout) }
          model[name] = nil
        case .writeInvalid(let name):
          try await Self.retrying {
            try await backend.put(layout.key(namespace: "default", name: "o\(name)"), value: Data("{}".utf8), lease: nil)
          }
          model[name] = nil
        case .compact:
          try await Self.retrying {
            do {
              try await backend.compact(revision: try await backend.currentRevision())
            } catch let error as BackendError where error.code == .compacted {
              // Already compacted to the current revision.
            }
          }
        case .breakWatches:
          try await disrupt(.breakWatches)
        case .restart:
          try await disrupt(.restart)
        }
      }
      _ = try await informer.waitForSync()
      let revision = try await Self.retrying { try await backend.currentRevision() }
      try await informer.waitUntil(revision: revision, timeout: .seconds(30))

      let cache = try informer.cache
      let expected = Set(model.map { name, entry in "o\(name) \(entry.uid) v\(entry.image)" })
      @Sendable func render(_ objects: [CachedObject]) -> Set<String> {
        Set(objects.map { "\($0.metadata.name) \($0.uid) \(describe(.added($0)).split(separator: " ").last!)" })
      }
      #expect(render(cache.allObjects()) == expected, "history: \(steps)")
      #expect(cache.zeroValueScan().isEmpty)
      // The handler catches up to the same state, with a consistent history.
      try await eventually("the handler to catch up") {
        render(Array(replay.state.withLock { $0.objects.values })) == expected
      }
      let violations = replay.state.withLock { $0.violations }
      #expect(violations.isEmpty, "history: \(steps)")
    }
  }

  /// Retries a backend call that failed transiently (etcd restarting).
  @discardableResult
  static func retrying<T: Sendable>(_ body: () async throws -> T) async throws -> T {
    var attempt = 0
    while true {
      do {
        return try await body()
      } catch let error as BackendError where error.isTransient && attempt < 50 {
        attempt += 1
        try await Task.sleep(for: .milliseconds(100))
      }
    }
  }
}
