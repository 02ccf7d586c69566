import Capstan
import Foundation
import Testing

@Suite struct CacheConsistencyReportTests {
  /// A backend with five objects and one invalid value, and a cache filled from it by hand.
  func fixture() async throws -> (MemoryBackend, ObjectCache, Int64) {
    let backend = MemoryBackend()
    let layout = ResourceLayout(kind: "Thing", plural: "things", isNamespaced: true)
    for index in 0..<5 {
      try await backend.put(TestObject(uid: "u\(index)", name: "o\(index)"), in: layout)
    }
    _ = try await backend.put(layout.key(namespace: "default", name: "bad"), value: Data("{}".utf8), lease: nil)
    let cache = ObjectCache(layout: layout)
    let ingestor = ObjectIngestor(layout: layout, logger: quietLogger)
    let page = try await backend.range(.prefix(layout.prefix), options: BackendRangeOptions())
    for kv in page.kvs {
      if case .success(let object) = ingestor.check(kv) { cache.upsert(object) }
    }
    return (backend, cache, page.revision)
  }

  @Test func anExactCacheIsConsistent() async throws {
    let (backend, cache, revision) = try await self.fixture()
    let report = try await CacheConsistencyReport.compare(cache, with: backend, at: revision, pageSize: 2)
    #expect(report.isConsistent, "\(report.differences)")
    #expect(report.cached.count == 5)
    #expect(report.rejected.map(\.key) == ["/registry/things/default/bad"])
  }

  @Test func everyKindOfDifferenceIsReported() async throws {
    let (backend, cache, revision) = try await self.fixture()
    cache.remove(uid: "u1")
    var stale = try #require(cache.object(uid: "u2"))
    stale.metadata.resourceVersion -= 1
    cache.upsert(stale)
    cache.upsert(CachedObject(
      key: "/registry/things/default/ghost", metadata: ObjectMeta(uid: "g", name: "ghost", namespace: "default", resourceVersion: 1),
      raw: TestObject(uid: "g", name: "ghost").json))
    let report = try await CacheConsistencyReport.compare(cache, with: backend, at: revision)
    #expect(!report.isConsistent)
    #expect(report.differences.count == 3, "\(report.differences)")
    #expect(report.differences.contains { $0.hasPrefix("missing from cache: /registry/things/default/o1 ") })
    #expect(report.differences.contains { $0.hasPrefix("differs: /registry/things/default/o2 ") })
    #expect(report.differences.contains { $0.hasPrefix("extra in cache: /registry/things/default/ghost ") })
  }
}
