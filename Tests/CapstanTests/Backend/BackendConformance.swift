import Capstan
import Foundation
import Testing

/// The behaviours every ``Backend`` must share, so a controller cannot tell ``MemoryBackend``
/// from etcd. Each check uses only keys under the prefix it is given, and asserts only revision
/// *relations* that hold while other tests write elsewhere in the same store (etcd's revision is
/// shared by everything on the server). Checks in ``storeWide`` compact the store: run each of
/// them on a store of its own.
enum BackendConformanceCheck: String, CaseIterable, Sendable, CustomTestStringConvertible {
  // Keys, values and revisions
  case putAssignsANewRevision
  case putKeepsCreateRevisionAndCountsVersions
  case recreatedKeyStartsAgainAtVersionOne
  case putReturnsThePreviousValue
  case emptyKeyIsInvalid
  case invertedRangeIsInvalid
  case deleteOfNothingChangesNothing
  case deleteRangeDeletesInOneRevision
  // Range reads
  case rangeSortsByUTF8Bytes
  case rangeLimitReportsMoreAndCount
  case rangeKeysOnlyOmitsValues
  case rangeFromKeyReachesTheEnd
  case rangeAtAnOldRevisionReadsThatRevision
  case rangeAtAFutureRevisionFails
  case paginationAtOneRevisionIsConsistent
  // Transactions
  case txnComparesModRevision
  case txnComparesRevisionsAndVersionsWithEveryRelation
  case txnComparesValuesAsBytes
  case txnSeesAMissingKeyAsZeroRevisions
  case txnWritesShareOneRevision
  case txnReadsItsOwnWrites
  case txnWithoutWritesChangesNothing
  case txnDuplicateKeyIsInvalid
  case txnWithTooManyOperationsIsInvalid
  case requestTooLargeIsRejected
  case txnWithAnUnknownLeaseChangesNothing
  // Watches
  case watchFromARevisionReplaysHistory
  case watchFromNowSkipsHistory
  case watchReportsPreviousValues
  case watchSeesADeleteRangeInKeyOrder
  case watchFiltersByRange
  case requestWatchProgressReturnsTheCurrentRevision
  // Leases
  case leaseGrantAndTimeToLive
  case leaseRevokeDeletesItsKeysInOneRevision
  case unknownLeaseIsNotFound
  case putWithoutLeaseDetachesTheKey
  case keepAliveRenewsAndReportsRevocation
  // Store-wide (compaction)
  case compactedRevisionCannotBeRead
  case compactionRejectsOldAndFutureRevisions
  case watchFromACompactedRevisionFails

  /// Checks that compact the whole store: each needs a store of its own.
  static let storeWide: Set<BackendConformanceCheck> = [
    .compactedRevisionCannotBeRead, .compactionRejectsOldAndFutureRevisions, .watchFromACompactedRevisionFails,
  ]

  /// Whether this check compacts the whole store.
  var isStoreWide: Bool { Self.storeWide.contains(self) }

  var testDescription: String { self.rawValue }

  /// Runs the check on `backend`, touching only keys that start with `prefix`.
  func run(on backend: any Backend, prefix: String) async throws {
    let checker = ConformanceChecker(backend: backend, prefix: prefix)
    switch self {
    case .putAssignsANewRevision: try await checker.putAssignsANewRevision()
    case .putKeepsCreateRevisionAndCountsVersions: try await checker.putKeepsCreateRevisionAndCountsVersions()
    case .recreatedKeyStartsAgainAtVersionOne: try await checker.recreatedKeyStartsAgainAtVersionOne()
    case .putReturnsThePreviousValue: try await checker.putReturnsThePreviousValue()
    case .emptyKeyIsInvalid: try await checker.emptyKeyIsInvalid()
    case .invertedRangeIsInvalid: try await checker.invertedRangeIsInvalid()
    case .deleteOfNothingChangesNothing: try await checker.deleteOfNothingChangesNothing()
    case .deleteRangeDeletesInOneRevision: try await checker.deleteRangeDeletesInOneRevision()
    case .rangeSortsByUTF8Bytes: try await checker.rangeSortsByUTF8Bytes()
    case .rangeLimitReportsMoreAndCount: try await checker.rangeLimitReportsMoreAndCount()
    case .rangeKeysOnlyOmitsValues: try await checker.rangeKeysOnlyOmitsValues()
    case .rangeFromKeyReachesTheEnd: try await checker.rangeFromKeyReachesTheEnd()
    case .rangeAtAnOldRevisionReadsThatRevision: try await checker.rangeAtAnOldRevisionReadsThatRevision()
    case .rangeAtAFutureRevisionFails: try await checker.rangeAtAFutureRevisionFails()
    case .paginationAtOneRevisionIsConsistent: try await checker.paginationAtOneRevisionIsConsistent()
    case .txnComparesModRevision: try await checker.txnComparesModRevision()
    case .txnComparesRevisionsAndVersionsWithEveryRelation:
      try await checker.txnComparesRevisionsAndVersionsWithEveryRelation()
    case .txnComparesValuesAsBytes: try await checker.txnComparesValuesAsBytes()
    case .txnSeesAMissingKeyAsZeroRevisions: try await checker.txnSeesAMissingKeyAsZeroRevisions()
    case .txnWritesShareOneRevision: try await checker.txnWritesShareOneRevision()
    case .txnReadsItsOwnWrites: try await checker.txnReadsItsOwnWrites()
    case .txnWithoutWritesChangesNothing: try await checker.txnWithoutWritesChangesNothing()
    case .txnDuplicateKeyIsInvalid: try await checker.txnDuplicateKeyIsInvalid()
    case .txnWithTooManyOperationsIsInvalid: try await checker.txnWithTooManyOperationsIsInvalid()
    case .requestTooLargeIsRejected: try await checker.requestTooLargeIsRejected()
    case .txnWithAnUnknownLeaseChangesNothing: try await checker.txnWithAnUnknownLeaseChangesNothing()
    case .watchFromARevisionReplaysHistory: try await checker.watchFromARevisionReplaysHistory()
    case .watchFromNowSkipsHistory: try await checker.watchFromNowSkipsHistory()
    case .watchReportsPreviousValues: try await checker.watchReportsPreviousValues()
    case .watchSeesADeleteRangeInKeyOrder: try await checker.watchSeesADeleteRangeInKeyOrder()
    case .watchFiltersByRange: try await checker.watchFiltersByRange()
    case .requestWatchProgressReturnsTheCurrentRevision: try await checker.requestWatchProgressReturnsTheCurrentRevision()
    case .leaseGrantAndTimeToLive: try await checker.leaseGrantAndTimeToLive()
    case .leaseRevokeDeletesItsKeysInOneRevision: try await checker.leaseRevokeDeletesItsKeysInOneRevision()
    case .unknownLeaseIsNotFound: try await checker.unknownLeaseIsNotFound()
    case .putWithoutLeaseDetachesTheKey: try await checker.putWithoutLeaseDetachesTheKey()
    case .keepAliveRenewsAndReportsRevocation: try await checker.keepAliveRenewsAndReportsRevocation()
    case .compactedRevisionCannotBeRead: try await checker.compactedRevisionCannotBeRead()
    case .compactionRejectsOldAndFutureRevisions: try await checker.compactionRejectsOldAndFutureRevisions()
    case .watchFromACompactedRevisionFails: try await checker.watchFromACompactedRevisionFails()
    }
  }
}

/// A lease ID that no test grants (etcd's are random 63-bit numbers; MemoryBackend counts from 1).
let unknownLeaseID: Int64 = 7_123_456_789_012_345

func bytes(_ text: String) -> Data { Data(text.utf8) }

/// The events a check expects, without progress notifications.
func collectEvents(
  _ watch: BackendWatchStream, count: Int, timeout: Duration = .seconds(10)
) async throws -> [BackendWatchEvent] {
  try await withDeadline(timeout, "\(count) watch events") {
    var events: [BackendWatchEvent] = []
    guard count > 0 else { return events }
    for try await event in watch {
      if case .progress = event { continue }
      events.append(event)
      if events.count == count { break }
    }
    return events
  }
}

/// The error a watch ends with (fails the test if it delivers an event or finishes instead).
func watchError(_ watch: BackendWatchStream, timeout: Duration = .seconds(10)) async throws -> BackendError? {
  try await withDeadline(timeout, "the watch to fail") {
    do {
      for try await event in watch {
        if case .progress = event { continue }
        Issue.record("expected the watch to fail, got \(event)")
        return nil
      }
      Issue.record("expected the watch to fail, it finished")
      return nil
    } catch let error as BackendError {
      return error
    }
  }
}

/// Runs `body`, failing with a timeout error after `timeout`.
func withDeadline<Result: Sendable>(
  _ timeout: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> Result
) async throws -> Result {
  try await withThrowingTaskGroup(of: Result.self) { group in
    group.addTask { try await body() }
    group.addTask {
      try await Task.sleep(for: timeout)
      throw ConformanceTimeout(message: "timed out after \(timeout) waiting for \(what)")
    }
    defer { group.cancelAll() }
    return try await group.next()!
  }
}

struct ConformanceTimeout: Error, CustomStringConvertible {
  var message: String
  var description: String { self.message }
}

/// Expects `body` to throw a ``BackendError`` with `code`; returns it.
@discardableResult
func expectBackendError(
  _ code: BackendError.Code, _ what: String, sourceLocation: SourceLocation = #_sourceLocation,
  _ body: () async throws -> Void
) async -> BackendError? {
  do {
    try await body()
    Issue.record("\(what): expected \(code), got success", sourceLocation: sourceLocation)
  } catch let error as BackendError {
    #expect(error.code == code, "\(what): \(error)", sourceLocation: sourceLocation)
    return error
  } catch {
    Issue.record("\(what): expected a BackendError \(code), got \(error)", sourceLocation: sourceLocation)
  }
  return nil
}

/// The checks themselves.
struct ConformanceChecker: Sendable {
  let backend: any Backend
  let prefix: String

  func key(_ name: String) -> String { self.prefix + name }

  func get(_ name: String, revision: Int64 = 0) async throws -> StoredKeyValue? {
    let page = try await self.backend.range(.key(self.key(name)), options: BackendRangeOptions(revision: revision))
    return page.kvs.first
  }

  @discardableResult
  func put(_ name: String, _ value: String, lease: Int64? = nil) async throws -> BackendWriteResult {
    try await self.backend.put(self.key(name), value: bytes(value), lease: lease)
  }

  func all(revision: Int64 = 0) async throws -> [StoredKeyValue] {
    try await self.backend.range(.prefix(self.prefix), options: BackendRangeOptions(revision: revision)).kvs
  }

  /// A watch of the whole prefix from the revision after `revision`.
  func watchAfter(_ revision: Int64, prevKV: Bool = false) -> BackendWatchStream {
    self.backend.watch(
      .prefix(self.prefix), options: BackendWatchOptions(startRevision: revision + 1, prevKV: prevKV, progressNotify: false))
  }

  // MARK: Keys, values and revisions

  func putAssignsANewRevision() async throws {
    let before = try await self.backend.currentRevision()
    #expect(before >= 1)
    let first = try await self.put("a", "1")
    #expect(first.revision > before)
    #expect(first.previous == nil)
    let second = try await self.put("b", "2")
    #expect(second.revision > first.revision)
    #expect(try await self.backend.currentRevision() >= second.revision)
    let page = try await self.backend.range(.key(self.key("a")), options: BackendRangeOptions())
    #expect(page.revision >= second.revision)
    #expect(page.kvs == [StoredKeyValue(key: self.key("a"), value: bytes("1"), createRevision: first.revision, modRevision: first.revision, version: 1)])
  }

  func putKeepsCreateRevisionAndCountsVersions() async throws {
    let first = try await self.put("a", "1")
    try await self.put("a", "2")
    let third = try await self.put("a", "3")
    let kv = try #require(try await self.get("a"))
    #expect(kv.createRevision == first.revision)
    #expect(kv.modRevision == third.revision)
    #expect(kv.version == 3)
    #expect(kv.value == bytes("3"))
    #expect(third.previous?.version == 2)
  }

  func recreatedKeyStartsAgainAtVersionOne() async throws {
    try await self.put("a", "1")
    let second = try await self.put("a", "2")
    let deletion = try await self.backend.delete(.key(self.key("a")))
    #expect(deletion.revision > second.revision)
    #expect(deletion.deleted.map(\.version) == [2])
    #expect(try await self.get("a") == nil)
    let again = try await self.put("a", "3")
    #expect(again.revision > deletion.revision)
    #expect(again.previous == nil)
    let kv = try #require(try await self.get("a"))
    #expect(kv.version == 1)
    #expect(kv.createRevision == again.revision)
  }

  func putReturnsThePreviousValue() async throws {
    try await self.put("a", "old")
    let before = try #require(try await self.get("a"))
    let result = try await self.put("a", "new")
    #expect(result.previous == before)
    let deletion = try await self.backend.delete(.key(self.key("a")))
    #expect(deletion.deleted.count == 1)
    #expect(deletion.deleted.first?.value == bytes("new"))
    #expect(deletion.deleted.first?.modRevision == result.revision)
  }

  func emptyKeyIsInvalid() async throws {
    await expectBackendError(.invalidArgument, "put with an empty key") {
      _ = try await self.backend.put("", value: bytes("x"), lease: nil)
    }
    await expectBackendError(.invalidArgument, "range of an empty key") {
      _ = try await self.backend.range(.key(""), options: BackendRangeOptions())
    }
    await expectBackendError(.invalidArgument, "delete of an empty key") {
      _ = try await self.backend.delete(.key(""))
    }
    await expectBackendError(.invalidArgument, "txn compare on an empty key") {
      _ = try await self.backend.txn(BackendTxn(compares: [.absent("")], success: [.put(key: self.key("a"), value: bytes("x"), lease: nil)]))
    }
    await expectBackendError(.invalidArgument, "txn put with an empty key") {
      _ = try await self.backend.txn(BackendTxn(success: [.put(key: "", value: bytes("x"), lease: nil)]))
    }
    #expect(try await self.all().isEmpty)
  }

  func invertedRangeIsInvalid() async throws {
    try await self.put("a", "1")
    try await self.put("b", "2")
    await expectBackendError(.invalidArgument, "range with its end before its key") {
      _ = try await self.backend.range(.range(from: self.key("b"), to: self.key("a")), options: BackendRangeOptions())
    }
    await expectBackendError(.invalidArgument, "delete with its end before its key") {
      _ = try await self.backend.delete(.range(from: self.key("b"), to: self.key("a")))
    }
    await expectBackendError(.invalidArgument, "range with its end equal to its key") {
      _ = try await self.backend.range(.range(from: self.key("a"), to: self.key("a")), options: BackendRangeOptions())
    }
    #expect(try await self.all().count == 2)
  }

  func deleteOfNothingChangesNothing() async throws {
    let before = try await self.backend.currentRevision()
    // From an explicit revision: a watch "from now" starts when the store registers it, which on
    // a loaded etcd may be after the marker below.
    let watch = self.watchAfter(before)
    let single = try await self.backend.delete(.key(self.key("missing")))
    #expect(single.deleted.isEmpty)
    #expect(single.revision >= before)
    let range = try await self.backend.delete(.prefix(self.key("nothing/")))
    #expect(range.deleted.isEmpty)
    // The watch's first event is the marker: the deletes of nothing left no event.
    let marker = try await self.put("marker", "m")
    let events = try await collectEvents(watch, count: 1)
    #expect(events.first?.revision == marker.revision)
    if case .put(let kv, _)? = events.first { #expect(kv.key == self.key("marker")) } else { Issue.record("expected the marker's put, got \(events)") }
  }

  func deleteRangeDeletesInOneRevision() async throws {
    for name in ["a", "b", "c", "d"] { try await self.put(name, name) }
    let lastPut = try #require(try await self.get("d")).modRevision
    let deletion = try await self.backend.delete(.range(from: self.key("a"), to: self.key("c")))
    #expect(deletion.revision > lastPut)
    #expect(deletion.deleted.map(\.key) == [self.key("a"), self.key("b")])
    #expect(deletion.deleted.map(\.value) == [bytes("a"), bytes("b")])
    #expect(try await self.all().map(\.key) == [self.key("c"), self.key("d")])
    // One revision: just before it, both keys were still there.
    #expect(try await self.all(revision: deletion.revision - 1).map(\.key) == ["a", "b", "c", "d"].map(self.key))
  }

  // MARK: Range reads

  func rangeSortsByUTF8Bytes() async throws {
    // "ae\u{301}" and "a\u{E9}" are canonically equivalent Swift strings but different keys.
    let names = ["b", "a\u{E9}", "ae\u{301}", "a", "A", "\u{1F600}", "\u{FF61}", "z", "a/b", "a.b"]
    for (index, name) in names.enumerated() { try await self.put(name, "\(index)") }
    let page = try await self.backend.range(.prefix(self.prefix), options: BackendRangeOptions())
    let expected = names.map { Array(self.key($0).utf8) }.sorted { $0.lexicographicallyPrecedes($1) }
    #expect(page.count == names.count)
    #expect(page.kvs.map { Array($0.key.utf8) } == expected)
    let composed = try #require(try await self.get("a\u{E9}"))
    let decomposed = try #require(try await self.get("ae\u{301}"))
    #expect(Array(composed.key.utf8) != Array(decomposed.key.utf8))
    #expect(composed.value != decomposed.value)
  }

  func rangeLimitReportsMoreAndCount() async throws {
    for name in ["e", "d", "c", "b", "a"] { try await self.put(name, name) }
    let two = try await self.backend.range(.prefix(self.prefix), options: BackendRangeOptions(limit: 2))
    #expect(two.kvs.map(\.key) == [self.key("a"), self.key("b")])
    #expect(two.more)
    #expect(two.count == 5)
    let five = try await self.backend.range(.prefix(self.prefix), options: BackendRangeOptions(limit: 5))
    #expect(five.kvs.count == 5)
    #expect(!five.more)
    #expect(five.count == 5)
    let unlimited = try await self.backend.range(.prefix(self.prefix), options: BackendRangeOptions(limit: 0))
    #expect(unlimited.kvs.count == 5)
    #expect(!unlimited.more)
    let missing = try await self.backend.range(.prefix(self.key("none/")), options: BackendRangeOptions(limit: 1))
    #expect(missing.kvs.isEmpty && !missing.more && missing.count == 0)
  }

  func rangeKeysOnlyOmitsValues() async throws {
    try await self.put("a", "value-a")
    try await self.put("b", "value-b")
    let full = try await self.backend.range(.prefix(self.prefix), options: BackendRangeOptions())
    let keysOnly = try await self.backend.range(.prefix(self.prefix), options: BackendRangeOptions(keysOnly: true))
    #expect(keysOnly.kvs.map(\.key) == full.kvs.map(\.key))
    #expect(keysOnly.kvs.allSatisfy { $0.value.isEmpty })
    #expect(keysOnly.kvs.map(\.modRevision) == full.kvs.map(\.modRevision))
    #expect(keysOnly.kvs.map(\.version) == full.kvs.map(\.version))
    #expect(keysOnly.count == 2)
  }

  func rangeFromKeyReachesTheEnd() async throws {
    for name in ["a", "b", "c", "d"] { try await self.put(name, name) }
    // Any key between two keys of this prefix has this prefix, so the first keys are ours.
    let page = try await self.backend.range(.from(self.key("b")), options: BackendRangeOptions(limit: 2))
    #expect(page.kvs.map(\.key) == [self.key("b"), self.key("c")])
    #expect(page.more)
    #expect(page.count >= 3)
    let everything = try await self.backend.range(KeyRange(key: "\0", rangeEnd: "\0"), options: BackendRangeOptions(keysOnly: true))
    #expect(everything.count >= 4)
    #expect(Set(everything.kvs.map(\.key)).isSuperset(of: ["a", "b", "c", "d"].map(self.key)))
  }

  func rangeAtAnOldRevisionReadsThatRevision() async throws {
    let first = try await self.put("a", "1")
    let second = try await self.put("a", "2")
    try await self.put("b", "b")
    let deletion = try await self.backend.delete(.key(self.key("a")))
    #expect(try await self.get("a", revision: first.revision - 1) == nil)
    #expect(try await self.get("a", revision: first.revision)?.value == bytes("1"))
    #expect(try await self.get("a", revision: first.revision)?.modRevision == first.revision)
    #expect(try await self.get("a", revision: second.revision)?.value == bytes("2"))
    #expect(try await self.get("a", revision: second.revision)?.version == 2)
    #expect(try await self.get("a", revision: deletion.revision - 1)?.value == bytes("2"))
    #expect(try await self.get("a", revision: deletion.revision) == nil)
    let page = try await self.backend.range(.prefix(self.prefix), options: BackendRangeOptions(revision: second.revision))
    #expect(page.revision == second.revision)
    #expect(page.kvs.map(\.key) == [self.key("a")])
  }

  func rangeAtAFutureRevisionFails() async throws {
    try await self.put("a", "1")
    let current = try await self.backend.currentRevision()
    await expectBackendError(.futureRevision, "range at a future revision") {
      _ = try await self.backend.range(.key(self.key("a")), options: BackendRangeOptions(revision: current + 1_000_000))
    }
  }

  func paginationAtOneRevisionIsConsistent() async throws {
    for name in ["b", "c", "d", "e", "f"] { try await self.put(name, "old") }
    var range = KeyRange.prefix(self.prefix)
    let first = try await self.backend.range(range, options: BackendRangeOptions(limit: 2))
    var seen = first.kvs
    // Writes between pages must not show in later pages read at the first page's revision.
    try await self.put("a", "new")
    try await self.put("e", "new")
    _ = try await self.backend.delete(.key(self.key("f")))
    var more = first.more
    while more, let last = seen.last {
      range = range.continuing(after: last.key)
      let page = try await self.backend.range(range, options: BackendRangeOptions(limit: 2, revision: first.revision))
      #expect(page.revision == first.revision)
      seen += page.kvs
      more = page.more
    }
    #expect(seen.map(\.key) == ["b", "c", "d", "e", "f"].map(self.key))
    #expect(seen.allSatisfy { $0.value == bytes("old") })
  }

  // MARK: Transactions

  func txnComparesModRevision() async throws {
    let written = try await self.put("a", "1")
    let won = try await self.backend.txn(
      BackendTxn(
        compares: [.modRevision(self.key("a"), equals: written.revision)],
        success: [.put(key: self.key("a"), value: bytes("won"), lease: nil)],
        failure: [.put(key: self.key("a"), value: bytes("lost"), lease: nil)]))
    #expect(won.succeeded)
    #expect(won.results.count == 1)
    #expect(try await self.get("a")?.value == bytes("won"))
    let stale = try await self.backend.txn(
      BackendTxn(
        compares: [.modRevision(self.key("a"), equals: written.revision)],
        success: [.put(key: self.key("a"), value: bytes("won again"), lease: nil)],
        failure: [.range(.key(self.key("a")), BackendRangeOptions())]))
    #expect(!stale.succeeded)
    guard case .range(let page)? = stale.results.first else {
      Issue.record("expected the failure branch's range, got \(stale.results)")
      return
    }
    #expect(page.kvs.first?.value == bytes("won"))
    #expect(page.kvs.first?.modRevision == won.revision)
  }

  func txnComparesRevisionsAndVersionsWithEveryRelation() async throws {
    let created = try await self.put("a", "1")
    let modified = try await self.put("a", "2")
    let key = self.key("a")
    let cases: [(BackendCompare.Target, BackendCompare.Relation, Bool)] = [
      (.version(2), .equal, true), (.version(2), .notEqual, false), (.version(3), .less, true),
      (.version(2), .less, false), (.version(1), .greater, true), (.version(2), .greater, false),
      (.createRevision(created.revision), .equal, true), (.createRevision(modified.revision), .less, true),
      (.createRevision(created.revision), .greater, false), (.createRevision(created.revision), .notEqual, false),
      (.modRevision(modified.revision), .equal, true), (.modRevision(created.revision), .greater, true),
      (.modRevision(modified.revision + 1), .less, true), (.modRevision(created.revision), .notEqual, true),
    ]
    for (target, relation, expected) in cases {
      let result = try await self.backend.txn(BackendTxn(compares: [BackendCompare(key: key, target: target, relation: relation)]))
      #expect(result.succeeded == expected, "\(relation) \(target)")
    }
    // All compares must hold.
    let mixed = try await self.backend.txn(
      BackendTxn(compares: [
        BackendCompare(key: key, target: .version(2)), BackendCompare(key: key, target: .version(5), relation: .greater),
      ]))
    #expect(!mixed.succeeded)
  }

  func txnComparesValuesAsBytes() async throws {
    try await self.put("a", "m")
    let key = self.key("a")
    let cases: [(String, BackendCompare.Relation, Bool)] = [
      ("m", .equal, true), ("m", .notEqual, false), ("n", .less, true), ("a", .greater, true),
      ("m", .less, false), ("mm", .less, true), ("", .greater, true), ("\u{E9}", .less, true),
    ]
    for (value, relation, expected) in cases {
      let result = try await self.backend.txn(BackendTxn(compares: [BackendCompare(key: key, target: .value(bytes(value)), relation: relation)]))
      #expect(result.succeeded == expected, "value \(relation) \(value)")
    }
    // A value compare on a missing key always fails (etcd).
    let missing = self.key("missing")
    for relation in [BackendCompare.Relation.equal, .notEqual, .less, .greater] {
      for value in ["", "x"] {
        let result = try await self.backend.txn(BackendTxn(compares: [BackendCompare(key: missing, target: .value(bytes(value)), relation: relation)]))
        #expect(!result.succeeded, "value \(relation) \(value) on a missing key")
      }
    }
  }

  func txnSeesAMissingKeyAsZeroRevisions() async throws {
    let missing = self.key("missing")
    for compare in [
      BackendCompare.absent(missing), BackendCompare(key: missing, target: .modRevision(0)),
      BackendCompare(key: missing, target: .version(0)), BackendCompare(key: missing, target: .version(1), relation: .less),
    ] {
      #expect(try await self.backend.txn(BackendTxn(compares: [compare])).succeeded, "\(compare)")
    }
    try await self.put("a", "1")
    #expect(!(try await self.backend.txn(BackendTxn(compares: [.absent(self.key("a"))])).succeeded))
    // Create-if-absent.
    let create = try await self.backend.txn(
      BackendTxn(compares: [.absent(self.key("b"))], success: [.put(key: self.key("b"), value: bytes("1"), lease: nil)]))
    #expect(create.succeeded)
    let again = try await self.backend.txn(
      BackendTxn(compares: [.absent(self.key("b"))], success: [.put(key: self.key("b"), value: bytes("2"), lease: nil)]))
    #expect(!again.succeeded)
    #expect(try await self.get("b")?.value == bytes("1"))
  }

  func txnWritesShareOneRevision() async throws {
    let existing = try await self.put("c", "c")
    let watch = self.watchAfter(existing.revision)
    let result = try await self.backend.txn(
      BackendTxn(success: [
        .put(key: self.key("b"), value: bytes("b"), lease: nil), .put(key: self.key("a"), value: bytes("a"), lease: nil),
        .delete(.key(self.key("c"))),
      ]))
    #expect(result.succeeded)
    #expect(result.revision > existing.revision)
    let revisions = result.results.map { result -> Int64 in
      switch result {
      case .put(let write): write.revision
      case .delete(let deletion): deletion.revision
      case .range(let page): page.revision
      }
    }
    #expect(revisions == [result.revision, result.revision, result.revision])
    #expect(try await self.get("a")?.modRevision == result.revision)
    #expect(try await self.get("b")?.modRevision == result.revision)
    let events = try await collectEvents(watch, count: 3)
    #expect(events.map(\.revision) == [result.revision, result.revision, result.revision])
    guard events.count == 3, case .put(let first, _) = events[0], case .put(let second, _) = events[1],
      case .delete(let deleted, _, _) = events[2]
    else {
      Issue.record("expected put b, put a, delete c; got \(events)")
      return
    }
    #expect([first.key, second.key, deleted] == [self.key("b"), self.key("a"), self.key("c")])
  }

  func txnReadsItsOwnWrites() async throws {
    try await self.put("b", "old")
    let result = try await self.backend.txn(
      BackendTxn(success: [
        .put(key: self.key("a"), value: bytes("new"), lease: nil), .delete(.key(self.key("b"))),
        .range(.prefix(self.prefix), BackendRangeOptions()),
      ]))
    guard case .range(let page)? = result.results.last else {
      Issue.record("expected a range result, got \(result.results)")
      return
    }
    #expect(page.kvs.map(\.key) == [self.key("a")])
    #expect(page.kvs.first?.modRevision == result.revision)
    #expect(page.kvs.first?.value == bytes("new"))
  }

  func txnWithoutWritesChangesNothing() async throws {
    let existing = try await self.put("a", "1")
    let watch = self.watchAfter(existing.revision)
    let readOnly = try await self.backend.txn(BackendTxn(success: [.range(.key(self.key("a")), BackendRangeOptions())]))
    #expect(readOnly.succeeded)
    #expect(readOnly.revision >= existing.revision)
    let failed = try await self.backend.txn(
      BackendTxn(
        compares: [.absent(self.key("a"))], success: [.put(key: self.key("a"), value: bytes("2"), lease: nil)]))
    #expect(!failed.succeeded)
    #expect(failed.results.isEmpty)
    #expect(try await self.get("a") == StoredKeyValue(key: self.key("a"), value: bytes("1"), createRevision: existing.revision, modRevision: existing.revision, version: 1))
    let marker = try await self.put("marker", "m")
    let events = try await collectEvents(watch, count: 1)
    #expect(events.map(\.revision) == [marker.revision])
  }

  func txnDuplicateKeyIsInvalid() async throws {
    let put = BackendOperation.put(key: self.key("a"), value: bytes("1"), lease: nil)
    await expectBackendError(.invalidArgument, "a key put twice") {
      _ = try await self.backend.txn(BackendTxn(success: [put, put]))
    }
    await expectBackendError(.invalidArgument, "a key put and deleted") {
      _ = try await self.backend.txn(BackendTxn(success: [put, .delete(.prefix(self.prefix))]))
    }
    await expectBackendError(.invalidArgument, "a key put twice in the branch that does not run") {
      _ = try await self.backend.txn(BackendTxn(success: [], failure: [put, put]))
    }
    #expect(try await self.all().isEmpty)
    // Deleting a key twice is fine; the second delete finds nothing.
    try await self.put("b", "1")
    let twice = try await self.backend.txn(BackendTxn(success: [.delete(.key(self.key("b"))), .delete(.key(self.key("b")))]))
    guard twice.results.count == 2, case .delete(let first) = twice.results[0], case .delete(let second) = twice.results[1] else {
      Issue.record("expected two delete results, got \(twice.results)")
      return
    }
    #expect(first.deleted.count == 1)
    #expect(second.deleted.isEmpty)
  }

  func txnWithTooManyOperationsIsInvalid() async throws {
    let puts = (0..<129).map { BackendOperation.put(key: self.key("k\($0)"), value: bytes("v"), lease: nil) }
    await expectBackendError(.invalidArgument, "129 operations") {
      _ = try await self.backend.txn(BackendTxn(success: puts))
    }
    #expect(try await self.all().isEmpty)
    let result = try await self.backend.txn(BackendTxn(success: Array(puts.prefix(128))))
    let page = try await self.backend.range(.prefix(self.prefix), options: BackendRangeOptions(keysOnly: true))
    #expect(page.count == 128)
    #expect(page.kvs.allSatisfy { $0.modRevision == result.revision })
  }

  func requestTooLargeIsRejected() async throws {
    let big = Data(repeating: 0x61, count: 1_600_000)
    await expectBackendError(.requestTooLarge, "a 1.6 MB put") {
      _ = try await self.backend.put(self.key("big"), value: big, lease: nil)
    }
    let half = Data(repeating: 0x62, count: 900_000)
    await expectBackendError(.requestTooLarge, "a txn of 1.8 MB") {
      _ = try await self.backend.txn(
        BackendTxn(success: [.put(key: self.key("x"), value: half, lease: nil), .put(key: self.key("y"), value: half, lease: nil)]))
    }
    #expect(try await self.all().isEmpty)
    let fine = Data(repeating: 0x63, count: 1_000_000)
    _ = try await self.backend.put(self.key("fine"), value: fine, lease: nil)
    #expect(try await self.get("fine")?.value == fine)
  }

  func txnWithAnUnknownLeaseChangesNothing() async throws {
    await expectBackendError(.leaseNotFound, "a txn putting with an unknown lease") {
      _ = try await self.backend.txn(
        BackendTxn(success: [
          .put(key: self.key("a"), value: bytes("1"), lease: nil),
          .put(key: self.key("b"), value: bytes("1"), lease: unknownLeaseID),
        ]))
    }
    #expect(try await self.all().isEmpty)
  }

  // MARK: Watches

  func watchFromARevisionReplaysHistory() async throws {
    let first = try await self.put("a", "1")
    let other = try await self.put("b", "b")
    let deletion = try await self.backend.delete(.key(self.key("a")))
    let again = try await self.put("a", "2")
    let watch = self.watchAfter(first.revision - 1)
    let events = try await collectEvents(watch, count: 4)
    #expect(events.map(\.revision) == [first.revision, other.revision, deletion.revision, again.revision])
    #expect(
      events == [
        .put(StoredKeyValue(key: self.key("a"), value: bytes("1"), createRevision: first.revision, modRevision: first.revision, version: 1), previous: nil),
        .put(StoredKeyValue(key: self.key("b"), value: bytes("b"), createRevision: other.revision, modRevision: other.revision, version: 1), previous: nil),
        .delete(key: self.key("a"), revision: deletion.revision, previous: nil),
        .put(StoredKeyValue(key: self.key("a"), value: bytes("2"), createRevision: again.revision, modRevision: again.revision, version: 1), previous: nil),
      ])
    // From the middle, then on into live events.
    let middle = self.watchAfter(deletion.revision - 1)
    let live = try await self.put("c", "c")
    let tail = try await collectEvents(middle, count: 3)
    #expect(tail.map(\.revision) == [deletion.revision, again.revision, live.revision])
  }

  func watchFromNowSkipsHistory() async throws {
    let old = try await self.put("a", "old")
    let watch = self.backend.watch(.prefix(self.prefix), options: BackendWatchOptions(startRevision: 0, progressNotify: false))
    let events = try await self.eventsAfterProbing(watch, count: 1)
    guard case .put(let kv, _)? = events.first else {
      Issue.record("expected a put, got \(events)")
      return
    }
    #expect(kv.key.hasPrefix(self.key("probe")))
    #expect(kv.modRevision > old.revision)
  }

  /// Puts probe keys until the watch (created "from now", so its start depends on when the
  /// store registers it) reports `count` events.
  func eventsAfterProbing(_ watch: BackendWatchStream, count: Int) async throws -> [BackendWatchEvent] {
    try await withThrowingTaskGroup(of: [BackendWatchEvent]?.self) { group in
      group.addTask { try await collectEvents(watch, count: count) }
      group.addTask {
        for probe in 0..<100 {
          try await Task.sleep(for: .milliseconds(probe == 0 ? 20 : 100))
          try await self.put("probe\(probe)", "p")
        }
        return nil
      }
      defer { group.cancelAll() }
      while let result = try await group.next() {
        if let events = result { return events }
      }
      return []
    }
  }

  func watchReportsPreviousValues() async throws {
    let created = try await self.put("a", "1")
    let withPrevious = self.watchAfter(created.revision, prevKV: true)
    let without = self.watchAfter(created.revision, prevKV: false)
    let before = try #require(try await self.get("a"))
    let updated = try await self.put("a", "2")
    let updatedValue = try #require(try await self.get("a"))
    let deletion = try await self.backend.delete(.key(self.key("a")))
    let events = try await collectEvents(withPrevious, count: 2)
    #expect(events == [.put(updatedValue, previous: before), .delete(key: self.key("a"), revision: deletion.revision, previous: updatedValue)])
    #expect(updatedValue.modRevision == updated.revision)
    let plain = try await collectEvents(without, count: 2)
    #expect(plain == [.put(updatedValue, previous: nil), .delete(key: self.key("a"), revision: deletion.revision, previous: nil)])
  }

  func watchSeesADeleteRangeInKeyOrder() async throws {
    for name in ["c", "a", "b"] { try await self.put(name, name) }
    let last = try await self.backend.currentRevision()
    let watch = self.watchAfter(last)
    let deletion = try await self.backend.delete(.prefix(self.prefix))
    let events = try await collectEvents(watch, count: 3)
    #expect(events == ["a", "b", "c"].map { .delete(key: self.key($0), revision: deletion.revision, previous: nil) })
  }

  func watchFiltersByRange() async throws {
    let start = try await self.backend.currentRevision()
    let directory = self.backend.watch(
      .prefix(self.key("x/")), options: BackendWatchOptions(startRevision: start + 1, progressNotify: false))
    let single = self.backend.watch(
      .key(self.key("x/2")), options: BackendWatchOptions(startRevision: start + 1, progressNotify: false))
    let span = self.backend.watch(
      .range(from: self.key("x/1"), to: self.key("x/3")), options: BackendWatchOptions(startRevision: start + 1, progressNotify: false))
    for name in ["y/1", "x/1", "xy", "x", "x/2", "x/3", "w/x/1"] { try await self.put(name, name) }
    func keys(_ events: [BackendWatchEvent]) -> [String] {
      events.compactMap { if case .put(let kv, _) = $0 { kv.key } else { nil } }
    }
    #expect(keys(try await collectEvents(directory, count: 3)) == ["x/1", "x/2", "x/3"].map(self.key))
    #expect(keys(try await collectEvents(single, count: 1)) == [self.key("x/2")])
    #expect(keys(try await collectEvents(span, count: 2)) == ["x/1", "x/2"].map(self.key))
  }

  func requestWatchProgressReturnsTheCurrentRevision() async throws {
    let watch = self.backend.watch(.prefix(self.prefix), options: BackendWatchOptions(startRevision: 0, progressNotify: false))
    let written = try await self.put("a", "1")
    let revision = try await self.backend.requestWatchProgress()
    #expect(revision >= written.revision)
    _ = watch
  }

  // MARK: Leases

  func leaseGrantAndTimeToLive() async throws {
    let first = try await self.backend.grantLease(ttl: 30)
    let second = try await self.backend.grantLease(ttl: 30)
    #expect(first.id > 0 && second.id > 0)
    #expect(first.id != second.id)
    #expect(first.ttl == 30)
    let left = try await self.backend.leaseTimeToLive(first.id)
    #expect(left > 0 && left <= 30)
    for ttl: Int64 in [0, -5] {
      await expectBackendError(.invalidArgument, "a lease with TTL \(ttl)") { _ = try await self.backend.grantLease(ttl: ttl) }
    }
    try await self.backend.revokeLease(first.id)
    try await self.backend.revokeLease(second.id)
  }

  func leaseRevokeDeletesItsKeysInOneRevision() async throws {
    let lease = try await self.backend.grantLease(ttl: 60)
    for name in ["c", "a", "b"] { try await self.put(name, name, lease: lease.id) }
    try await self.put("d", "d")
    #expect(try await self.all().map(\.lease) == [lease.id, lease.id, lease.id, 0])
    let last = try await self.backend.currentRevision()
    let watch = self.watchAfter(last)
    try await self.backend.revokeLease(lease.id)
    let events = try await collectEvents(watch, count: 3)
    let revision = events.first?.revision ?? 0
    #expect(revision > last)
    #expect(events == ["a", "b", "c"].map { .delete(key: self.key($0), revision: revision, previous: nil) })
    #expect(try await self.all().map(\.key) == [self.key("d")])
    await expectBackendError(.leaseNotFound, "time to live of a revoked lease") { _ = try await self.backend.leaseTimeToLive(lease.id) }
    await expectBackendError(.leaseNotFound, "revoking a revoked lease") { try await self.backend.revokeLease(lease.id) }
  }

  func unknownLeaseIsNotFound() async throws {
    await expectBackendError(.leaseNotFound, "put with an unknown lease") {
      _ = try await self.backend.put(self.key("a"), value: bytes("1"), lease: unknownLeaseID)
    }
    await expectBackendError(.leaseNotFound, "revoking an unknown lease") { try await self.backend.revokeLease(unknownLeaseID) }
    await expectBackendError(.leaseNotFound, "time to live of an unknown lease") {
      _ = try await self.backend.leaseTimeToLive(unknownLeaseID)
    }
    #expect(try await self.all().isEmpty)
  }

  func putWithoutLeaseDetachesTheKey() async throws {
    let lease = try await self.backend.grantLease(ttl: 60)
    try await self.put("a", "1", lease: lease.id)
    try await self.put("b", "1", lease: lease.id)
    try await self.put("a", "2")
    #expect(try await self.get("a")?.lease == 0)
    try await self.backend.revokeLease(lease.id)
    #expect(try await self.all().map(\.key) == [self.key("a")])
  }

  func keepAliveRenewsAndReportsRevocation() async throws {
    let lease = try await self.backend.grantLease(ttl: 5)
    let keepAlive = self.backend.keepAlive(lease)
    defer { keepAlive.cancel() }
    let events = keepAlive.events
    let outcome = try await withDeadline(.seconds(15), "keep-alive events") { () -> [BackendLeaseEvent] in
      var seen: [BackendLeaseEvent] = []
      var revoked = false
      for await event in events {
        seen.append(event)
        if case .lost = event { break }
        if !revoked {
          revoked = true
          try await self.backend.revokeLease(lease.id)
        }
      }
      return seen
    }
    guard case .renewed(let ttl)? = outcome.first else {
      Issue.record("expected a renewal first, got \(outcome)")
      return
    }
    #expect(ttl > 0 && ttl <= 5)
    guard case .lost? = outcome.last else {
      Issue.record("expected the keep-alive to report the revoked lease lost, got \(outcome)")
      return
    }
  }

  // MARK: Store-wide

  func compactedRevisionCannotBeRead() async throws {
    let first = try await self.put("a", "1")
    let second = try await self.put("a", "2")
    let third = try await self.put("a", "3")
    try await self.backend.compact(revision: second.revision)
    await expectBackendError(.compacted, "range below the compaction") {
      _ = try await self.backend.range(.key(self.key("a")), options: BackendRangeOptions(revision: first.revision))
    }
    #expect(try await self.get("a", revision: second.revision)?.value == bytes("2"))
    #expect(try await self.get("a", revision: third.revision)?.value == bytes("3"))
    #expect(try await self.get("a")?.version == 3)
  }

  func compactionRejectsOldAndFutureRevisions() async throws {
    let first = try await self.put("a", "1")
    let second = try await self.put("a", "2")
    try await self.backend.compact(revision: second.revision)
    await expectBackendError(.compacted, "compacting at the compacted revision") { try await self.backend.compact(revision: second.revision) }
    await expectBackendError(.compacted, "compacting below it") { try await self.backend.compact(revision: first.revision) }
    let current = try await self.backend.currentRevision()
    await expectBackendError(.futureRevision, "compacting in the future") { try await self.backend.compact(revision: current + 1_000) }
  }

  func watchFromACompactedRevisionFails() async throws {
    let first = try await self.put("a", "1")
    let second = try await self.put("a", "2")
    try await self.backend.compact(revision: second.revision)
    let error = try await watchError(self.watchAfter(first.revision - 1))
    #expect(error?.code == .compacted)
    #expect(error?.compactRevision == second.revision)
    // From the compaction revision itself, the watch works.
    let events = try await collectEvents(self.watchAfter(second.revision - 1), count: 1)
    #expect(events.map(\.revision) == [second.revision])
  }
}
