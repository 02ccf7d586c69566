public import Capstan
import Foundation

/// A test backend that changes one behaviour of a wrapped backend and forwards everything else:
/// a conformer implements only what it changes.
public protocol ForwardingBackend: Backend {
  /// The backend everything not overridden goes to.
  var wrapped: any Backend { get }
}

extension ForwardingBackend {
  public func watch(_ range: KeyRange, options: BackendWatchOptions) -> BackendWatchStream {
    self.wrapped.watch(range, options: options)
  }

  public func currentRevision() async throws -> Int64 { try await self.wrapped.currentRevision() }
  public func range(_ range: KeyRange, options: BackendRangeOptions) async throws -> BackendRangePage {
    try await self.wrapped.range(range, options: options)
  }
  public func put(_ key: String, value: Data, lease: Int64?) async throws -> BackendWriteResult {
    try await self.wrapped.put(key, value: value, lease: lease)
  }
  public func delete(_ range: KeyRange) async throws -> BackendDeleteResult { try await self.wrapped.delete(range) }
  public func txn(_ txn: BackendTxn) async throws -> BackendTxnResult { try await self.wrapped.txn(txn) }
  public func requestWatchProgress() async throws -> Int64 { try await self.wrapped.requestWatchProgress() }
  public func grantLease(ttl: Int64) async throws -> BackendLease { try await self.wrapped.grantLease(ttl: ttl) }
  public func revokeLease(_ id: Int64) async throws { try await self.wrapped.revokeLease(id) }
  public func leaseTimeToLive(_ id: Int64) async throws -> Int64 { try await self.wrapped.leaseTimeToLive(id) }
  public func keepAlive(_ lease: BackendLease) -> BackendLeaseKeepAlive { self.wrapped.keepAlive(lease) }
  public func compact(revision: Int64) async throws { try await self.wrapped.compact(revision: revision) }
}

/// Polls `condition` every 20 ms until it holds; throws ``TestTimeout`` naming `what` after
/// `timeout`.
public func eventually(
  _ what: String, timeout: Duration = .seconds(20), _ condition: @Sendable () async throws -> Bool
) async throws {
  let deadline = ContinuousClock.now + timeout
  while ContinuousClock.now < deadline {
    if try await condition() { return }
    try await Task.sleep(for: .milliseconds(20))
  }
  throw TestTimeout(message: "timed out waiting for \(what)")
}
