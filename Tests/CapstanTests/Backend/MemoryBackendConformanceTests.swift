import Capstan
import Testing

/// The conformance suite on ``MemoryBackend``.
@Suite struct MemoryBackendConformanceTests {
  @Test(arguments: BackendConformanceCheck.allCases)
  func conformance(_ check: BackendConformanceCheck) async throws {
    try await check.run(on: MemoryBackend(), prefix: "/conformance/\(check.rawValue)/")
  }

  /// Every check that is not store-wide at once on ONE store, with another writer busy beside
  /// them — as they run against a shared etcd: proves the checks only assert revision relations.
  @Test func sharedStoreWithConcurrentWriters() async throws {
    let backend = MemoryBackend()
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask {
        for index in 0..<300 {
          _ = try await backend.put("/noise/\(index % 7)", value: bytes("\(index)"), lease: nil)
          await Task.yield()
        }
      }
      for check in BackendConformanceCheck.allCases where !check.isStoreWide {
        group.addTask { try await check.run(on: backend, prefix: "/shared/\(check.rawValue)/") }
      }
      try await group.waitForAll()
    }
  }
}
