import CapstanEtcdAPI
import Foundation
import GRPCCore
import Logging
import NIOCore
import SwiftProtobuf
import Synchronization

/// Options of a watch.
public struct WatchOptions: Sendable, Hashable {
  /// The first revision to deliver (0: only changes after the watch is created).
  public var startRevision: Int64
  /// Include each key's previous value in events.
  public var prevKV: Bool
  /// Leave out put events.
  public var noPut: Bool
  /// Leave out delete events.
  public var noDelete: Bool
  /// Ask etcd for periodic ``WatchEvent/progress(revision:)`` events while nothing changes
  /// (every 10 minutes by default on the server).
  public var progressNotify: Bool
  /// Let etcd split very large revisions into fragments (the client reassembles them).
  public var fragment: Bool

  /// Creates watch options.
  public init(
    startRevision: Int64 = 0, prevKV: Bool = false, noPut: Bool = false, noDelete: Bool = false,
    progressNotify: Bool = false, fragment: Bool = true
  ) {
    self.startRevision = startRevision
    self.prevKV = prevKV
    self.noPut = noPut
    self.noDelete = noDelete
    self.progressNotify = progressNotify
    self.fragment = fragment
  }
}

/// One thing a watch reports.
public enum WatchEvent: Sendable, Hashable {
  /// A key was created or updated (`kv.version == 1` on creation).
  case put(KeyValue, previous: KeyValue?)
  /// A key was deleted; `kv.modRevision` is the revision of the deletion.
  case delete(KeyValue, previous: KeyValue?)
  /// Nothing in the range changed up to this revision.
  case progress(revision: Int64)

  /// The revision of the event.
  public var revision: Int64 {
    switch self {
    case .put(let kv, _), .delete(let kv, _): kv.modRevision
    case .progress(let revision): revision
    }
  }
}

/// The events of one watch, in revision order. Iterate it (from one task); stop iterating, or
/// cancel the iterating task, to cancel the watch. Errors thrown are always ``EtcdError``.
public struct EtcdWatch: AsyncSequence, Sendable {
  public typealias Element = WatchEvent
  public typealias Failure = any Error

  /// The client-side ID of this watch (also its etcd watch ID).
  public let id: Int64
  let consumer: WatchConsumer

  /// Iterates the events of an ``EtcdWatch``.
  public struct AsyncIterator: AsyncIteratorProtocol {
    public typealias Element = WatchEvent
    public typealias Failure = any Error

    let consumer: WatchConsumer

    /// The next event; `nil` once the watch was cancelled. Throws the ``EtcdError`` that
    /// ended the watch (after the events before it).
    public mutating func next() async throws -> WatchEvent? {
      try await self.consumer.queue.next()
    }
  }

  public func makeAsyncIterator() -> AsyncIterator {
    AsyncIterator(consumer: self.consumer)
  }
}

/// Multiplexes every watch of a client onto ONE gRPC Watch stream, and re-creates them all from
/// their next revision on a new stream (on another member if needed) when it breaks.
final class EtcdWatchHub: Sendable {

  private struct Watcher {
    let range: EtcdKeyRange
    let options: WatchOptions
    /// The next revision this watcher must deliver (0 until etcd tells us where "now" is).
    var nextRevision: Int64
    let queue: WatchEventQueue
    /// Events of a fragmented response still waiting for their last fragment.
    var fragments: [Mvccpb_Event] = []
  }

  private struct State {
    var watchers: [Int64: Watcher] = [:]
    var nextID: Int64 = 1
    /// Where to send requests on the open stream, if one is open.
    var outbound: AsyncStream<Etcdserverpb_WatchRequest>.Continuation?
    var progressWaiters: [Int: CheckedContinuation<Int64, any Error>] = [:]
    var nextWaiterID = 0
    var closed = false
  }

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

  func add(range: EtcdKeyRange, options: WatchOptions) -> EtcdWatch {
    let queue = WatchEventQueue()
    let consumer = WatchConsumer(queue: queue)
    do {
      try range.validate("watch")
      guard options.startRevision >= 0 else {
        throw EtcdError(code: .invalidArgument, message: "watch: start revision must not be negative")
      }
    } catch {
      queue.finish(throwing: error)
      return EtcdWatch(id: 0, consumer: consumer)
    }
    let id = self.state.withLock { state -> Int64? in
      guard !state.closed else { return nil }
      let id = state.nextID
      state.nextID += 1
      let watcher = Watcher(range: range, options: options, nextRevision: options.startRevision, queue: queue)
      state.watchers[id] = watcher
      if let outbound = state.outbound {
        outbound.yield(Self.createRequest(id: id, watcher))
      }
      return id
    }
    guard let id else {
      queue.finish(throwing: EtcdError(code: .clientClosed, message: "watch: the client is shut down"))
      return EtcdWatch(id: 0, consumer: consumer)
    }
    self.wake.yield()
    queue.onConsumerGone { [weak self] in self?.cancel(id) }
    return EtcdWatch(id: id, consumer: consumer)
  }

  /// The consumer stopped iterating: forget the watcher and cancel it on the server.
  private func cancel(_ id: Int64) {
    self.state.withLock { state in
      guard state.watchers.removeValue(forKey: id) != nil else { return }
      var request = Etcdserverpb_WatchRequest()
      request.cancelRequest.watchID = id
      state.outbound?.yield(request)
    }
  }

  private static let progressRequest: Etcdserverpb_WatchRequest = {
    var request = Etcdserverpb_WatchRequest()
    request.progressRequest = Etcdserverpb_WatchProgressRequest()
    return request
  }()

  private static func createRequest(id: Int64, _ watcher: Watcher) -> Etcdserverpb_WatchRequest {
    var create = Etcdserverpb_WatchCreateRequest()
    create.key = watcher.range.key
    create.rangeEnd = watcher.range.rangeEnd
    create.startRevision = watcher.nextRevision
    create.prevKv = watcher.options.prevKV
    create.progressNotify = watcher.options.progressNotify
    create.fragment = watcher.options.fragment
    create.watchID = id
    if watcher.options.noPut { create.filters.append(.noput) }
    if watcher.options.noDelete { create.filters.append(.nodelete) }
    var request = Etcdserverpb_WatchRequest()
    request.createRequest = create
    return request
  }

  func shutdown() {
    let (watchers, waiters) = self.state.withLock { state in
      state.closed = true
      state.outbound?.finish()
      defer {
        state.watchers = [:]
        state.progressWaiters = [:]
      }
      return (Array(state.watchers.values), Array(state.progressWaiters.values))
    }
    let error = EtcdError(code: .clientClosed, message: "watch ended: the client is shut down")
    for watcher in watchers { watcher.queue.finish(throwing: error) }
    for waiter in waiters { waiter.resume(throwing: error) }
    self.wake.finish()
  }

  /// Keeps the shared stream open while there are watchers, re-establishing it with jittered
  /// exponential backoff when it breaks, until shutdown.
  func run() async {
    await self.pool.superviseStream(
      "watch",
      wakeups: self.wakeups,
      status: { self.state.withLock { ($0.closed, $0.watchers.isEmpty) } },
      session: { await self.session(on: $0) },
      afterBreak: { self.pool.metrics.streamBroke(.watch) }
    )
  }

  /// One life of the shared stream. Returns why it ended.
  private func session(on member: EtcdConnectionPool.Member) async -> EtcdError {
    let (requests, outbound) = AsyncStream.makeStream(of: Etcdserverpb_WatchRequest.self)
    self.state.withLock { state in
      state.outbound = outbound
      for (id, watcher) in state.watchers.sorted(by: { $0.key < $1.key }) {
        state.watchers[id]?.fragments = []
        outbound.yield(Self.createRequest(id: id, watcher))
      }
      if !state.progressWaiters.isEmpty { outbound.yield(Self.progressRequest) }
    }
    defer {
      outbound.finish()
      let waiters = self.state.withLock { state in
        state.outbound = nil
        defer { state.progressWaiters = [:] }
        return Array(state.progressWaiters.values)
      }
      let error = EtcdError(code: .unavailable, message: "watch stream broke before the progress response")
      for waiter in waiters { waiter.resume(throwing: error) }
    }
    do {
      if self.pool.auth.needsToken {
        try await self.pool.auth.authenticate(using: member.client, until: .now + self.pool.configuration.requestTimeout)
      }
      if let lean = member.unary {
        return try await self.leanSession(on: lean, requests: requests)
      }
      return try await self.grpcSession(on: member.client, requests: requests)
    } catch {
      let error = EtcdError.wrapping(error, operation: "watch stream")
      if error.code == .invalidAuthToken { self.pool.auth.invalidate() }
      return error
    }
  }

  /// The stream on the lean path (``EtcdUnaryChannel``): responses are decoded and routed on the
  /// connection's event loop as they arrive, with no task switch between them and the watchers'
  /// event streams. The same messages and semantics as ``grpcSession(on:requests:)``.
  private func leanSession(
    on channel: EtcdUnaryChannel, requests: AsyncStream<Etcdserverpb_WatchRequest>
  ) async throws -> EtcdError {
    var metadata: [(String, String)] = []
    if self.pool.configuration.requireLeaderOnWatches { metadata.append(("hasleader", "true")) }
    if let token = self.pool.auth.currentToken { metadata.append(("token", token)) }
    let stream = try await channel.openStream(path: Self.watchPath, metadata: metadata) { message in
      let response: Etcdserverpb_WatchResponse
      do {
        response = try Etcdserverpb_WatchResponse(serializedBytes: message.readableBytesSpan)
      } catch {
        return EtcdError(code: .internalError, message: "watch stream: undecodable response", cause: error)
      }
      return self.handle(response)
    }
    let end = await withTaskGroup(of: Void.self) { group in
      group.addTask {
        for await request in requests {
          do {
            try stream.send(request)
          } catch {
            stream.cancel(with: EtcdError(code: .internalError, message: "watch stream: unserializable request", cause: error))
            return
          }
        }
        stream.finishSending()
      }
      let end = await stream.ended()
      group.cancelAll()
      return end
    }
    // Thrown, so that `session` handles it as it does the grpc-swift path's errors (an expired
    // auth token is invalidated there).
    if let end { throw end }
    return EtcdError(code: .unavailable, message: "watch stream closed by the server")
  }

  private static let watchPath = "/" + Etcdserverpb_Watch.Method.Watch.descriptor.fullyQualifiedMethod

  /// The stream through grpc-swift (used when user interceptors must see every call).
  private func grpcSession(
    on client: EtcdConnectionPool.Client, requests: AsyncStream<Etcdserverpb_WatchRequest>
  ) async throws -> EtcdError {
    var metadata: Metadata = [:]
    if self.pool.configuration.requireLeaderOnWatches { metadata.addString("true", forKey: "hasleader") }
    var options = CallOptions.defaults
    options.waitForReady = false
    return try await Etcdserverpb_Watch.Client(wrapping: client).watch(
      request: StreamingClientRequest(metadata: metadata) { writer in
        for await request in requests { try await writer.write(request) }
      },
      options: options
    ) { response in
      for try await message in response.messages {
        if let restart = self.handle(message) { return restart }
      }
      return EtcdError(code: .unavailable, message: "watch stream closed by the server")
    }
  }

  /// Routes one response. Returns an error when the whole stream must be re-established.
  private func handle(_ response: Etcdserverpb_WatchResponse) -> EtcdError? {
    let revision = response.header.revision
    // A response concerns one watch ID: at most one delivery or ending.
    var delivery: (WatchEventQueue, [WatchEvent])?
    var ending: (WatchEventQueue, EtcdError)?
    var progressWaiters: [CheckedContinuation<Int64, any Error>] = []
    var restart: EtcdError?
    self.state.withLock { state in
      let id = response.watchID
      if id == -1, !response.created, !response.canceled {
        // Answer to requestProgress: a liveness proof for the whole stream.
        progressWaiters = Array(state.progressWaiters.values)
        state.progressWaiters = [:]
        return
      }
      guard var watcher = state.watchers[id] else { return }  // cancelled by the consumer
      if response.canceled {
        if response.cancelReason.contains("no leader") {
          restart = EtcdError(code: .noLeader, message: "watch cancelled: \(response.cancelReason)")
          return
        }
        state.watchers[id] = nil
        if response.compactRevision > 0 {
          ending = (watcher.queue, EtcdError(
            code: .compacted,
            message: "watch from revision \(watcher.nextRevision) of \(watcher.range.key.debugText): history compacted",
            compactRevision: response.compactRevision))
        } else {
          ending = (watcher.queue, EtcdError(
            code: .watchCanceled, message: "etcd cancelled the watch: \(response.cancelReason)"))
        }
        return
      }
      if response.created {
        if watcher.nextRevision == 0 { watcher.nextRevision = revision + 1 }
        state.watchers[id] = watcher
        return
      }
      if response.fragment {
        watcher.fragments.append(contentsOf: response.events)
        state.watchers[id] = watcher
        return
      }
      let raw = watcher.fragments.isEmpty ? response.events : watcher.fragments + response.events
      watcher.fragments = []
      var events: [WatchEvent] = []
      events.reserveCapacity(raw.count)
      for event in raw where event.kv.modRevision >= watcher.nextRevision {
        let previous = event.hasPrevKv ? KeyValue(event.prevKv) : nil
        events.append(event.type == .put ? .put(KeyValue(event.kv), previous: previous) : .delete(KeyValue(event.kv), previous: previous))
      }
      if let last = raw.last {
        watcher.nextRevision = max(watcher.nextRevision, last.kv.modRevision + 1)
      } else if revision + 1 > watcher.nextRevision {
        // A progress notification for this watcher: nothing changed up to `revision`.
        watcher.nextRevision = revision + 1
        events.append(.progress(revision: revision))
      }
      state.watchers[id] = watcher
      if !events.isEmpty { delivery = (watcher.queue, events) }
    }
    if let (queue, events) = delivery { queue.yield(events) }
    if let (queue, error) = ending { queue.finish(throwing: error) }
    for waiter in progressWaiters { waiter.resume(returning: revision) }
    return restart
  }

  func requestProgress(timeout: Duration) async throws(EtcdError) -> Int64 {
    do {
      return try await withThrowingTaskGroup(of: Int64.self) { group in
        group.addTask { try await self.awaitProgress() }
        group.addTask {
          try await Task.sleep(for: timeout)
          throw EtcdError(code: .deadlineExceeded, message: "no watch progress response within \(timeout)")
        }
        defer { group.cancelAll() }
        return try await group.next()!
      }
    } catch {
      throw EtcdError.wrapping(error, operation: "watch progress request")
    }
  }

  private func awaitProgress() async throws -> Int64 {
    let waiterID = self.state.withLock { state in
      defer { state.nextWaiterID += 1 }
      return state.nextWaiterID
    }
    return try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Int64, any Error>) in
        let failure: EtcdError? = self.state.withLock { state in
          if state.closed { return EtcdError(code: .clientClosed, message: "the client is shut down") }
          // Cancelled before registering: onCancel found nothing to remove, so answer now.
          if Task.isCancelled { return EtcdError(code: .cancelled, message: "watch progress request was cancelled") }
          guard state.outbound != nil || !state.watchers.isEmpty else {
            return EtcdError(code: .unavailable, message: "no watch stream is open (no active watch)")
          }
          state.progressWaiters[waiterID] = continuation
          // Sent now on the open stream, or right after the creates when the stream opens.
          state.outbound?.yield(Self.progressRequest)
          return nil
        }
        if let failure { continuation.resume(throwing: failure) }
      }
    } onCancel: {
      let waiter = self.state.withLock { $0.progressWaiters.removeValue(forKey: waiterID) }
      waiter?.resume(throwing: CancellationError())
    }
  }
}

extension Data {
  /// The bytes as UTF-8 text for messages.
  var debugText: String { String(decoding: self, as: UTF8.self) }
}
