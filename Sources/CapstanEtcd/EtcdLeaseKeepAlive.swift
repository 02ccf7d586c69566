import CapstanEtcdAPI
import GRPCCore
import Logging
import NIOCore
import SwiftProtobuf
import Synchronization

/// What happens to a lease kept alive by the client.
public enum LeaseKeepAliveEvent: Sendable, Hashable {
  /// etcd renewed the lease; it now has `ttl` seconds to live.
  case renewed(ttl: Int64)
  /// The lease is gone (revoked, expired, or not renewed in time). No more events follow.
  case lost(EtcdError)
}

/// A lease being kept alive by ``EtcdClient/keepAlive(_:)``.
public struct EtcdLeaseKeepAlive: Sendable {
  /// The lease.
  public let lease: EtcdLease
  /// Renewals, then `.lost` if the lease is lost; finishes after `.lost` or ``cancel()``.
  public let events: AsyncStream<LeaseKeepAliveEvent>
  let keeper: EtcdLeaseKeeper

  /// Stops refreshing the lease (it then expires after its TTL unless revoked).
  public func cancel() { self.keeper.remove(self.lease.id) }

  /// Waits until the lease is lost and returns why; returns `nil` if keep-alive was cancelled.
  public func waitUntilLost() async -> EtcdError? {
    for await event in self.events {
      if case .lost(let error) = event { return error }
    }
    return nil
  }
}

/// Refreshes every kept-alive lease of a client on ONE shared LeaseKeepAlive stream, each at a
/// third of its TTL, and reports a lease as lost when etcd answers TTL ≤ 0 or when no renewal
/// arrived before the lease's last known expiry.
final class EtcdLeaseKeeper: Sendable {
  private struct Entry {
    let lease: EtcdLease
    let continuation: AsyncStream<LeaseKeepAliveEvent>.Continuation
    var nextRefresh: ContinuousClock.Instant
    var expiry: ContinuousClock.Instant
  }

  private struct State {
    var entries: [Int64: Entry] = [:]
    var closed = false
  }

  private static let tick = Duration.milliseconds(200)
  private let state = Mutex(State())
  private let pool: EtcdConnectionPool
  private let logger: Logger
  private let wakeups: AsyncStream<Void>
  private let wake: AsyncStream<Void>.Continuation

  init(pool: EtcdConnectionPool, logger: Logger) {
    self.pool = pool
    self.logger = logger
    (self.wakeups, self.wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
  }

  func add(_ lease: EtcdLease) -> EtcdLeaseKeepAlive {
    let (events, continuation) = AsyncStream.makeStream(of: LeaseKeepAliveEvent.self, bufferingPolicy: .bufferingNewest(8))
    let now = ContinuousClock.now
    let accepted = self.state.withLock { state -> Bool in
      guard !state.closed else { return false }
      state.entries[lease.id]?.continuation.finish()
      state.entries[lease.id] = Entry(
        lease: lease, continuation: continuation, nextRefresh: now, expiry: now + .seconds(lease.ttl))
      return true
    }
    if accepted {
      self.wake.yield()
    } else {
      continuation.yield(.lost(EtcdError(code: .clientClosed, message: "keep-alive: the client is shut down")))
      continuation.finish()
    }
    return EtcdLeaseKeepAlive(lease: lease, events: events, keeper: self)
  }

  func remove(_ id: Int64) {
    let entry = self.state.withLock { $0.entries.removeValue(forKey: id) }
    entry?.continuation.finish()
  }

  func shutdown() {
    let entries = self.state.withLock { state in
      state.closed = true
      defer { state.entries = [:] }
      return Array(state.entries.values)
    }
    for entry in entries {
      entry.continuation.yield(.lost(EtcdError(code: .clientClosed, message: "keep-alive ended: the client is shut down")))
      entry.continuation.finish()
    }
    self.wake.finish()
  }

  /// Declares lost every lease whose expiry passed without a renewal.
  private func expireOverdue() {
    let now = ContinuousClock.now
    let lost = self.state.withLock { state -> [Entry] in
      let overdue = state.entries.values.filter { $0.expiry <= now }
      for entry in overdue { state.entries[entry.lease.id] = nil }
      return overdue
    }
    for entry in lost {
      self.logger.warning("etcd lease expired before it could be renewed", metadata: ["lease": "\(entry.lease.id)"])
      entry.continuation.yield(.lost(EtcdError(
        code: .leaseExpired, message: "lease \(entry.lease.id) was not renewed within its TTL of \(entry.lease.ttl) s")))
      entry.continuation.finish()
    }
  }

  func run() async {
    await withDiscardingTaskGroup { group in
      // Expiry is checked on its own clock, so a lease is reported lost on time even while the
      // stream is being re-established (connecting or authenticating can take seconds).
      group.addTask {
        while !Task.isCancelled, !self.state.withLock({ $0.closed }) {
          self.expireOverdue()
          try? await Task.sleep(for: Self.tick)
        }
      }
      group.addTask { await self.superviseKeepAliveStream() }
    }
  }

  private func superviseKeepAliveStream() async {
    await self.pool.superviseStream(
      "lease keep-alive",
      wakeups: self.wakeups,
      maximumDelay: .seconds(1),  // leases expire: never wait long to reconnect
      status: { self.state.withLock { ($0.closed, $0.entries.isEmpty) } },
      session: { await self.session(on: $0) },
      afterBreak: {
        self.pool.metrics.streamBroke(.leaseKeepAlive)
        self.expireOverdue()
      }
    )
  }

  /// One life of the shared keep-alive stream. Returns why it ended.
  private func session(on member: EtcdConnectionPool.Member) async -> EtcdError {
    do {
      if self.pool.auth.needsToken {
        try await self.pool.auth.authenticate(using: member.client, until: .now + self.pool.configuration.requestTimeout)
      }
      if let lean = member.unary { return try await self.leanSession(on: lean) }
      return try await self.grpcSession(on: member.client)
    } catch {
      let error = EtcdError.wrapping(error, operation: "lease keep-alive stream")
      if error.code == .invalidAuthToken { self.pool.auth.invalidate() }
      return error
    }
  }

  private static let keepAlivePath = "/" + Etcdserverpb_Lease.Method.LeaseKeepAlive.descriptor.fullyQualifiedMethod

  /// The stream on the lean path (``EtcdUnaryChannel``), as for the watch: responses are handled
  /// on the connection's event loop as they arrive.
  private func leanSession(on channel: EtcdUnaryChannel) async throws -> EtcdError {
    var metadata: [(String, String)] = []
    if let token = self.pool.auth.currentToken { metadata.append(("token", token)) }
    let stream = try await channel.openStream(path: Self.keepAlivePath, metadata: metadata) { message in
      do {
        self.handle(try Etcdserverpb_LeaseKeepAliveResponse(serializedBytes: message.readableBytesSpan))
        return nil
      } catch {
        return EtcdError(code: .internalError, message: "lease keep-alive stream: undecodable response", cause: error)
      }
    }
    let end = await withTaskGroup(of: Void.self) { group in
      group.addTask {
        while !Task.isCancelled {
          for id in self.dueLeases() {
            var request = Etcdserverpb_LeaseKeepAliveRequest()
            request.id = id
            do {
              try stream.send(request)
            } catch {
              stream.cancel(
                with: EtcdError(code: .internalError, message: "lease keep-alive stream: unserializable request", cause: error))
              return
            }
          }
          if self.state.withLock({ $0.closed }) {
            stream.finishSending()
            return
          }
          try? await Task.sleep(for: Self.tick)
        }
      }
      let end = await stream.ended()
      group.cancelAll()
      return end
    }
    if let end { throw end }
    return EtcdError(code: .unavailable, message: "keep-alive stream closed by the server")
  }

  /// The stream through grpc-swift (used when user interceptors must see every call).
  private func grpcSession(on client: EtcdConnectionPool.Client) async throws -> EtcdError {
    var options = CallOptions.defaults
    options.waitForReady = false
    return try await Etcdserverpb_Lease.Client(wrapping: client).leaseKeepAlive(
      request: StreamingClientRequest { writer in
        while !Task.isCancelled {
          for id in self.dueLeases() {
            var request = Etcdserverpb_LeaseKeepAliveRequest()
            request.id = id
            try await writer.write(request)
          }
          if self.state.withLock({ $0.closed }) { return }
          try await Task.sleep(for: Self.tick)
        }
      },
      options: options
    ) { response in
      for try await message in response.messages { self.handle(message) }
      return EtcdError(code: .unavailable, message: "keep-alive stream closed by the server")
    }
  }

  /// The leases to refresh now; each is then not due again for a while (a third of its TTL, or
  /// one second if no answer comes back).
  private func dueLeases() -> [Int64] {
    let now = ContinuousClock.now
    return self.state.withLock { state in
      var due: [Int64] = []
      for (id, entry) in state.entries where entry.nextRefresh <= now {
        due.append(id)
        state.entries[id]?.nextRefresh = now + .seconds(1)
      }
      return due
    }
  }

  private func handle(_ response: Etcdserverpb_LeaseKeepAliveResponse) {
    let now = ContinuousClock.now
    let (entry, event) = self.state.withLock { state -> (Entry?, LeaseKeepAliveEvent?) in
      guard var entry = state.entries[response.id] else { return (nil, nil) }
      if response.ttl <= 0 {
        state.entries[response.id] = nil
        return (entry, .lost(EtcdError(
          code: .leaseNotFound, message: "lease \(response.id) is gone (revoked or expired)")))
      }
      entry.expiry = now + .seconds(response.ttl)
      entry.nextRefresh = now + .milliseconds(response.ttl * 1000 / 3)
      state.entries[response.id] = entry
      return (entry, .renewed(ttl: response.ttl))
    }
    guard let entry, let event else { return }
    entry.continuation.yield(event)
    if case .lost = event {
      self.logger.warning("etcd lease lost", metadata: ["lease": "\(response.id)"])
      entry.continuation.finish()
    }
  }
}
