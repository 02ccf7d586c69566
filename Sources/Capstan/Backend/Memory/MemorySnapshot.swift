import Foundation
import HeapModule

/// The on-disk snapshot of a ``MemoryBackend``: JSON lines (UTF-8, one JSON object per line).
///
/// ```
/// {"header":{"format":"capstan-memory-snapshot","version":1,"revision":42,"nextLeaseID":3}}
/// {"lease":{"id":2,"ttl":10,"remainingMilliseconds":7350}}
/// {"kv":{"key":"/a","value":"aGVsbG8=","createRevision":5,"modRevision":40,"version":3,"lease":2}}
/// ```
///
/// The header comes first; then every lease with the time it had left when saved; then every
/// live key with its latest value (base64) and revisions, in key order. History is not saved:
/// a restored store is compacted at the snapshot's revision.
struct MemorySnapshot: Sendable {
  static let format = "capstan-memory-snapshot"
  static let version = 1

  struct Header: Codable, Sendable {
    var format: String
    var version: Int
    var revision: Int64
    var nextLeaseID: Int64
  }

  struct Lease: Codable, Sendable {
    var id: Int64
    var ttl: Int64
    var remainingMilliseconds: Int64
  }


  /// One line of the file: exactly one field is set.
  struct Line: Codable, Sendable {
    var header: Header?
    var lease: Lease?
    /// A key-value, in `StoredKeyValue`'s own encoding (its field names; the value in base64).
    var kv: StoredKeyValue?
  }

  var header: Header
  var leases: [Lease]
  var kvs: [StoredKeyValue]

  func encoded() throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    var data = Data()
    func append(_ line: Line) throws {
      data.append(try encoder.encode(line))
      data.append(UInt8(ascii: "\n"))
    }
    try append(Line(header: self.header))
    for lease in self.leases { try append(Line(lease: lease)) }
    for kv in self.kvs { try append(Line(kv: kv)) }
    return data
  }

  static func decode(_ data: Data) throws(BackendError) -> MemorySnapshot {
    let decoder = JSONDecoder()
    var header: Header?
    var leases: [Lease] = []
    var kvs: [StoredKeyValue] = []
    for (number, line) in data.split(separator: UInt8(ascii: "\n")).enumerated() where !line.isEmpty {
      let decoded: Line
      do {
        decoded = try decoder.decode(Line.self, from: Data(line))
      } catch {
        throw BackendError(code: .internalError, message: "snapshot line \(number + 1) is not valid", cause: error)
      }
      if let lineHeader = decoded.header {
        guard number == 0 else {
          throw BackendError(code: .internalError, message: "snapshot line \(number + 1): a second header")
        }
        guard lineHeader.format == Self.format, lineHeader.version == Self.version else {
          throw BackendError(
            code: .internalError,
            message: "not a Capstan memory snapshot of version \(Self.version) (format \(lineHeader.format), version \(lineHeader.version))")
        }
        header = lineHeader
      } else if number == 0 {
        throw BackendError(code: .internalError, message: "snapshot has no header line")
      } else if let lease = decoded.lease {
        leases.append(lease)
      } else if let kv = decoded.kv {
        kvs.append(kv)
      }
    }
    guard let header else { throw BackendError(code: .internalError, message: "snapshot is empty") }
    return MemorySnapshot(header: header, leases: leases, kvs: kvs)
  }
}

extension MemoryStoreState {
  /// The current state as a snapshot.
  func snapshot() -> MemorySnapshot {
    var kvs: [StoredKeyValue] = []
    kvs.reserveCapacity(self.liveKeys)
    self.index.forEach(in: StoreKeyRange(.from("\0"))) { key in
      if let kv = self.latest(key) { kvs.append(kv) }
      return true
    }
    let leases = self.leases.values.sorted { $0.id < $1.id }.map { lease in
      let remaining = lease.keepers.isEmpty ? lease.expiresAt - self.now : .seconds(lease.ttl)
      let milliseconds = remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000
      return MemorySnapshot.Lease(id: lease.id, ttl: lease.ttl, remainingMilliseconds: max(0, milliseconds))
    }
    return MemorySnapshot(
      header: MemorySnapshot.Header(
        format: MemorySnapshot.format, version: MemorySnapshot.version, revision: self.revision,
        nextLeaseID: self.nextLeaseID),
      leases: leases, kvs: kvs)
  }

  /// Replaces the state with `snapshot` (on an empty store, at start-up).
  mutating func restore(_ snapshot: MemorySnapshot) {
    self.revision = snapshot.header.revision
    self.compactRevision = snapshot.header.revision
    self.nextLeaseID = snapshot.header.nextLeaseID
    for lease in snapshot.leases {
      let expiry = self.now + .milliseconds(lease.remainingMilliseconds)
      self.leases[lease.id] = LeaseState(id: lease.id, ttl: lease.ttl, expiresAt: expiry)
      self.leaseDeadlines.insert(LeaseDeadline(deadline: expiry, id: lease.id))
      self.nextLeaseID = max(self.nextLeaseID, lease.id + 1)
    }
    for kv in snapshot.kvs {
      let key = StoreKey(kv.key)
      self.histories[key] = [KeyRevision(revision: kv.modRevision, kv: kv)]
      self.index.insert(key)
      self.liveKeys += 1
      if kv.lease != 0 { self.leases[kv.lease]?.keys.insert(key) }
    }
  }
}
