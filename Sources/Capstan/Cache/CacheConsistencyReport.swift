import Logging

/// How an ``ObjectCache`` compares with the store at one revision: what `capstan cache verify`
/// reports. Build one with ``compare(_:with:at:pageSize:)``.
public struct CacheConsistencyReport: Sendable {
  /// One object as the cache or the store has it.
  public struct Entry: Sendable, Hashable {
    public var key: String
    public var uid: String
    public var resourceVersion: Int64
  }

  /// The revision compared at.
  public var revision: Int64
  /// The cache's objects, sorted by key.
  public var cached: [Entry]
  /// One readable line per difference; empty when the cache equals the store.
  public var differences: [String]
  /// Values in the store that are not valid objects (excluded from the comparison).
  public var rejected: [IngestRejection]

  /// Whether the cache equals the store's valid objects.
  public var isConsistent: Bool { self.differences.isEmpty }

  /// Lists the cache's prefix in `backend` at `revision` (in pages of `pageSize`), keeps the valid
  /// objects (as an informer would) and describes every way `cache` differs from them: objects
  /// missing from the cache, extra in it, or with another UID or resource version. Stop the
  /// informer that fills `cache` first, and pass the revision it had reached.
  public static func compare(
    _ cache: ObjectCache, with backend: any Backend, at revision: Int64, pageSize: Int = 500
  ) async throws -> CacheConsistencyReport {
    let ingestor = ObjectIngestor(layout: cache.layout, logger: Logger(label: "capstan.cache.consistency"))
    var stored: [String: Entry] = [:]
    var rejected: [IngestRejection] = []
    var range = KeyRange.prefix(cache.layout.prefix)
    while true {
      let page = try await backend.range(range, options: BackendRangeOptions(limit: pageSize, revision: revision))
      for kv in page.kvs {
        switch ingestor.check(kv) {
        case .success(let object):
          stored[kv.key] = Entry(key: kv.key, uid: object.uid, resourceVersion: kv.modRevision)
        case .failure(let rejection):
          rejected.append(rejection)
        }
      }
      guard page.more, let last = page.kvs.last else { break }
      range = range.continuing(after: last.key)
    }
    let cached = cache.allObjects().map {
      Entry(key: $0.key, uid: $0.uid, resourceVersion: $0.resourceVersion)
    }.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
    var differences: [String] = []
    var seen = Set<String>()
    for entry in cached {
      seen.insert(entry.key)
      guard let expected = stored[entry.key] else {
        differences.append("extra in cache: \(entry.key) uid \(entry.uid) resourceVersion \(entry.resourceVersion)")
        continue
      }
      if expected != entry {
        differences.append(
          "differs: \(entry.key) cache uid \(entry.uid) resourceVersion \(entry.resourceVersion), "
            + "store uid \(expected.uid) resourceVersion \(expected.resourceVersion)")
      }
    }
    for (key, entry) in stored.sorted(by: { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }) where !seen.contains(key) {
      differences.append("missing from cache: \(key) uid \(entry.uid) resourceVersion \(entry.resourceVersion)")
    }
    return CacheConsistencyReport(revision: revision, cached: cached, differences: differences, rejected: rejected)
  }
}
