@testable import Capstan
import Foundation
import Testing

/// The memory store remembers where a paginated read continues, so a page does not recount the
/// rest of the range: these tests check that every page's `count` and `more` stay exactly what a
/// full count of the remaining range says, whatever happens between pages.
@Suite struct MemoryBackendPaginationTests {
  /// What an unpaginated read of `[begin, end)` at `revision` counts (no remembered position).
  private func fullCount(_ backend: MemoryBackend, from begin: String, to end: String, at revision: Int64) async throws -> Int {
    try await backend.range(.range(from: begin, to: end), options: BackendRangeOptions(revision: revision)).count
  }

  @Test("pages at a pinned revision report the remaining count exactly while the store changes underneath")
  func pinnedRevisionCountsStayExact() async throws {
    var generator = SystemRandomNumberGenerator()
    for round in 0..<5 {
      let backend = MemoryBackend()
      let keys = (0..<Int.random(in: 50...400, using: &generator)).map { String(format: "/p/%05d", $0 * 3 + round) }
      for key in keys { _ = try await backend.put(key, value: Data("v".utf8), lease: nil) }
      // Some keys are deleted before the pinned revision, so the index holds keys it must skip.
      for key in keys where Int.random(in: 0..<5, using: &generator) == 0 { _ = try await backend.delete(.key(key)) }
      let pinned = try await backend.currentRevision()
      let expected = try await self.fullCount(backend, from: "/p/", to: "/p0", at: pinned)
      let pageSize = Int.random(in: 1...60, using: &generator)
      var begin = "/p/"
      var seen = 0
      while true {
        let page = try await backend.range(
          .range(from: begin, to: "/p0"), options: BackendRangeOptions(limit: pageSize, revision: pinned))
        #expect(page.count == expected - seen, "round \(round), page from \(begin)")
        #expect(page.count == (try await self.fullCount(backend, from: begin, to: "/p0", at: pinned)))
        seen += page.kvs.count
        #expect(page.more == (seen < expected))
        // Writes between pages: new keys inside and outside the range, deletions of keys ahead.
        _ = try await backend.put(begin + "~", value: Data("new".utf8), lease: nil)
        _ = try await backend.put("/q/\(seen)", value: Data("x".utf8), lease: nil)
        if let ahead = keys.last(where: { $0 > begin }) { _ = try await backend.delete(.key(ahead)) }
        guard page.more, let last = page.kvs.last else { break }
        begin = last.key + "\u{0}"
      }
      #expect(seen == expected)
    }
  }

  @Test("pages at the current revision count the range as it is now, and a page asked twice counts the same")
  func currentRevisionAndRepeatedPages() async throws {
    let backend = MemoryBackend()
    for index in 0..<100 { _ = try await backend.put(String(format: "/c/%03d", index), value: Data("v".utf8), lease: nil) }
    let first = try await backend.range(.prefix("/c/"), options: BackendRangeOptions(limit: 10))
    #expect(first.count == 100 && first.more)
    let next = KeyRange.range(from: first.kvs.last!.key + "\u{0}", to: KeyRange.prefix("/c/").rangeEnd)
    // The store moves on: the next page, read at "now", sees the deletion.
    _ = try await backend.delete(.key("/c/050"))
    let second = try await backend.range(next, options: BackendRangeOptions(limit: 10))
    #expect(second.count == 89)
    // The same page again, at its revision: the same answer, although nothing is remembered now.
    let again = try await backend.range(next, options: BackendRangeOptions(limit: 10, revision: second.revision))
    #expect(again == second)
    let atFirst = try await backend.range(next, options: BackendRangeOptions(limit: 10, revision: first.revision))
    #expect(atFirst.count == 90)
  }
}
