import GRPCCore
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import NIOSSL
import SwiftProtobuf
import Synchronization

/// A lean path for gRPC calls and streams: per endpoint, one HTTP/2 connection per event loop
/// (a lane), on which one handler (``UnaryCallDispatcher``) runs every call as a stream of its
/// own, entirely on the connection's event loop: it writes the HEADERS and DATA frames, routes
/// the response frames by stream ID and resumes the caller. The client's two long-lived streams
/// (watch, lease keep-alive) run on it too, as ``EtcdLeanStream``s.
///
/// Why: grpc-swift's general client spends most of a small call's CPU in per-call machinery (task
/// groups, async sequences, a deadline task, generic metadata), about twice what etcd's Go client
/// spends per put, and about 10 µs per watch response in its stream machinery. Every call and
/// stream takes this path unless interceptors must see them; grpc-swift keeps authentication.
/// The HTTP/2 handler runs in frame mode (no child channel per stream: creating, activating and
/// tearing down a stream channel and its pipeline was about a third of a call's CPU), so the
/// dispatcher does what stream channels did: it gives back inbound flow-control window
/// (connection and stream), resets streams it abandons, and fails calls whose stream closed.
/// Outbound flow control, stream-state validation and the concurrent stream limit stay with
/// `NIOHTTP2Handler`.
///
/// A call here has the same semantics as on grpc-swift: `grpc-timeout` is sent and the deadline
/// enforced locally, errors are `RPCError`s with the same codes and messages (so
/// ``EtcdError/wrapping(_:operation:)`` and the retry rules apply unchanged), and a call that
/// could not get a connection, or whose HEADERS never left the client, fails as "not sent".
final class EtcdUnaryChannel: Sendable {
  /// One connection per event loop of NIO's singleton group (at most 4), so that with many calls
  /// in flight the work (frames, HPACK, completions and the callers resumed on the loop) is
  /// spread over the loops' threads instead of one.
  private let lanes: [EtcdUnaryLane]

  init(
    endpoint: EtcdEndpoint, sslContext: NIOSSLContext?, serverHostname: String?, connectTimeout: Duration,
    keepalive: EtcdKeepalive
  ) {
    var loops: [any EventLoop] = []
    for loop in MultiThreadedEventLoopGroup.singleton.makeIterator() where loops.count < 4 { loops.append(loop) }
    self.lanes = loops.map {
      EtcdUnaryLane(
        endpoint: endpoint, sslContext: sslContext, serverHostname: serverHostname, connectTimeout: connectTimeout,
        keepalive: keepalive, eventLoop: $0)
    }
  }

  /// Stops taking calls (later ones fail with "channel is closed") and closes the connections
  /// once the calls in flight on them have finished.
  func close() {
    for lane in self.lanes { lane.close() }
  }

  /// The lane for the next call: the one with the fewest calls in flight, preferring the
  /// caller's own event loop (no thread hop) unless it has two more in flight than another. A
  /// sequential caller thus stays on one connection, and a caller off the loops starts on the
  /// first; lanes beyond it connect only when calls overlap.
  private func lane() -> EtcdUnaryLane {
    guard self.lanes.count > 1 else { return self.lanes[0] }
    var best = self.lanes[0]
    var bestScore = Int.max
    for lane in self.lanes {
      let score = lane.inFlight.load(ordering: .relaxed) * 2 - (lane.eventLoop.inEventLoop ? 3 : 0)
      if score < bestScore { (best, bestScore) = (lane, score) }
    }
    return best
  }

  /// Runs one unary call at `path` (e.g. `/etcdserverpb.KV/Put`); see
  /// ``EtcdUnaryLane/call(path:request:metadata:deadline:mayTakeLong:)``.
  func call<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
    path: String,
    request: Request,
    metadata: [(String, String)],
    deadline: ContinuousClock.Instant,
    mayTakeLong: Bool = false
  ) async throws -> Response {
    let lane = self.lane()
    lane.inFlight.add(1, ordering: .relaxed)
    defer { lane.inFlight.subtract(1, ordering: .relaxed) }
    return try await lane.call(path: path, request: request, metadata: metadata, deadline: deadline, mayTakeLong: mayTakeLong)
  }

  /// Opens a bidirectional stream at `path` (e.g. `/etcdserverpb.Watch/Watch`) on the lane with
  /// the fewest calls in flight. `onMessage` runs on the connection's event loop with each
  /// response message, in order (decode and route it there; do not block); an error it returns
  /// ends the stream.
  func openStream(
    path: String,
    metadata: [(String, String)],
    onMessage: @escaping @Sendable (ByteBuffer) -> (any Error)?
  ) async throws -> EtcdLeanStream {
    try await self.lane().openStream(path: path, metadata: metadata, onMessage: onMessage)
  }
}

/// A bidirectional gRPC stream on the lean path (see ``EtcdUnaryChannel/openStream(path:metadata:onMessage:)``).
struct EtcdLeanStream: Sendable {
  let stream: UnaryCallDispatcher.Stream
  let dispatcher: NIOLoopBound<UnaryCallDispatcher>
  let eventLoop: any EventLoop

  /// Sends `message` (in order with earlier sends); dropped once the stream has ended.
  func send(_ message: some SwiftProtobuf.Message) throws {
    let frame = (try message.serializedBytes() as GRPCMessageFrame).framed
    let (stream, dispatcher) = (self.stream, self.dispatcher)
    self.eventLoop.execute { dispatcher.value.send(frame, on: stream) }
  }

  /// Tells the server no more messages follow; it ends the stream in turn.
  func finishSending() {
    let (stream, dispatcher) = (self.stream, self.dispatcher)
    self.eventLoop.execute { dispatcher.value.finishSending(stream) }
  }

  /// Ends the stream now with `error` (it resets it on the server).
  func cancel(with error: any Error = RPCError(code: .cancelled, message: "The stream was cancelled.")) {
    let (stream, dispatcher) = (self.stream, self.dispatcher)
    self.eventLoop.execute { dispatcher.value.reset(stream, error) }
  }

  /// Waits until the stream ends: nil when the server ended it with status OK, else why it
  /// ended. Cancelling the waiting task cancels the stream.
  func ended() async -> (any Error)? {
    let (stream, eventLoop) = (self.stream, self.eventLoop)
    return await withTaskCancellationHandler {
      await withUnsafeContinuation { waiter in
        eventLoop.execute { stream.whenEnded(waiter) }
      }
    } onCancel: {
      self.cancel()
    }
  }
}

/// One HTTP/2 connection of an ``EtcdUnaryChannel``, on one event loop, (re)connected on demand.
final class EtcdUnaryLane: Sendable {
  private struct Connection: Sendable {
    let channel: any Channel
    let dispatcher: NIOLoopBound<UnaryCallDispatcher>
    let activity: ConnectionActivity

    /// Closes the connection once no call is in flight on it.
    func closeWhenIdle() {
      let dispatcher = self.dispatcher
      self.channel.eventLoop.execute { dispatcher.value.closeWhenIdle() }
    }
  }

  private enum State {
    case idle
    case connecting(EventLoopFuture<Connection>)
    case ready(Connection)
    case closed
  }

  private let endpoint: EtcdEndpoint
  private let authority: String
  private let scheme: String
  private let sslContext: NIOSSLContext?
  private let serverHostname: String?
  private let connectTimeout: Duration
  private let keepalive: EtcdKeepalive
  let eventLoop: any EventLoop
  /// Calls in flight on this lane (maintained by ``EtcdUnaryChannel``, read to balance lanes).
  let inFlight = Atomic<Int>(0)
  private let state = Mutex(State.idle)

  init(
    endpoint: EtcdEndpoint, sslContext: NIOSSLContext?, serverHostname: String?, connectTimeout: Duration,
    keepalive: EtcdKeepalive, eventLoop: any EventLoop
  ) {
    self.endpoint = endpoint
    self.authority = endpoint.description
    self.scheme = sslContext == nil ? "http" : "https"
    self.sslContext = sslContext
    self.serverHostname = serverHostname ?? (endpoint.isIPv4Literal || endpoint.host.contains(":") ? nil : endpoint.host)
    self.connectTimeout = connectTimeout
    self.keepalive = keepalive
    self.eventLoop = eventLoop
  }

  /// Stops taking calls (later ones fail with "channel is closed") and closes the connection
  /// once the calls in flight on it have finished.
  func close() {
    let previous = self.state.withLock { state -> State in
      defer { state = .closed }
      return state
    }
    switch previous {
    case .ready(let connection): connection.closeWhenIdle()
    case .connecting(let future): future.whenSuccess { $0.closeWhenIdle() }
    case .idle, .closed: ()
    }
  }

  /// The connection calls go to now: at once when it is up (the common case, no future and no
  /// suspension), else a future that completes when it is.
  private func connection() -> Result<Connection, any Error>? {
    switch self.state.withLock({ state -> State in state }) {
    case .ready(let connection) where !connection.activity.isDraining: .success(connection)
    case .closed: .failure(RPCError.notSent(.channelClosed))
    default: nil
    }
  }

  private func connectionFuture() -> EventLoopFuture<Connection> {
    enum Action {
      case use(EventLoopFuture<Connection>)
      case connect(EventLoopPromise<Connection>, replacing: Connection?)
    }
    let action = self.state.withLock { state -> Action in
      switch state {
      case .ready(let connection) where !connection.activity.isDraining:
        return .use(connection.channel.eventLoop.makeSucceededFuture(connection))
      case .ready(let draining):
        // The server sent GOAWAY (or stream IDs ran out): calls in flight finish there, new ones
        // get a new connection, and the old one closes once idle.
        let promise = self.eventLoop.makePromise(of: Connection.self)
        state = .connecting(promise.futureResult)
        return .connect(promise, replacing: draining)
      case .connecting(let future):
        return .use(future)
      case .closed:
        return .use(self.eventLoop.makeFailedFuture(RPCError.notSent(.channelClosed)))
      case .idle:
        let promise = self.eventLoop.makePromise(of: Connection.self)
        state = .connecting(promise.futureResult)
        return .connect(promise, replacing: nil)
      }
    }
    switch action {
    case .use(let future):
      return future
    case .connect(let promise, let replaced):
      replaced?.closeWhenIdle()
      self.connect().whenComplete { result in
        let closeNow = self.state.withLock { state -> Bool in
          switch (state, result) {
          case (.closed, _): return true
          case (_, .success(let connection)): state = .ready(connection)
          case (_, .failure): state = .idle
          }
          return false
        }
        switch result {
        case .success(let connection):
          if closeNow { connection.channel.close(promise: nil) }
          connection.channel.closeFuture.whenComplete { _ in
            self.state.withLock { state in
              if case .ready(let current) = state, current.channel === connection.channel { state = .idle }
            }
          }
          promise.succeed(connection)
        case .failure(let error):
          promise.fail(
            RPCError.notSent(.connectionFailed, message: "Could not establish a connection to \(self.endpoint).", cause: error))
        }
      }
      return promise.futureResult
    }
  }

  private func connect() -> EventLoopFuture<Connection> {
    let sslContext = self.sslContext
    let serverHostname = self.serverHostname
    let timeout = TimeAmount.nanoseconds(Int64(self.connectTimeout.seconds * 1e9))
    let activity = ConnectionActivity()
    let keepalive = self.keepalive
    return ClientBootstrap(group: self.eventLoop)
      .connectTimeout(timeout)
      .channelOption(.socketOption(.tcp_nodelay), value: 1)
      .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          let operations = channel.pipeline.syncOperations
          if let sslContext {
            try operations.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: serverHostname))
          }
          try operations.addHandler(HTTP2PingResponder())
          var connectionConfiguration = NIOHTTP2Handler.ConnectionConfiguration()
          connectionConfiguration.initialSettings = [
            HTTP2Setting(parameter: .enablePush, value: 0),
            HTTP2Setting(parameter: .initialWindowSize, value: UnaryCallDispatcher.streamWindowTarget),
            HTTP2Setting(parameter: .maxHeaderListSize, value: 1 << 16),
          ]
          // Frames may still arrive on a stream after we reset it (a call's deadline passed while
          // the server was sending): the HTTP/2 handler ignores them only for the streams in its
          // list of recently reset ones, and takes any other for a protocol error that ends the
          // connection. 32 by default is too few when many calls time out at once.
          connectionConfiguration.maximumRecentlyResetStreams = 4096
          // Our request headers are constants, a method path, a number and etcd's own auth token,
          // and the server is the one we chose: validating each header block both ways cost
          // about 2% of a call's CPU.
          connectionConfiguration.headerBlockValidation = .disabled
          connectionConfiguration.contentLengthValidation = .disabled
          // No stream multiplexer: the HTTP/2 handler passes frames and stream events to the
          // dispatcher, which owns every stream of this connection.
          try operations.addHandler(NIOHTTP2Handler(mode: .client, connectionConfiguration: connectionConfiguration))
          try operations.addHandler(UnaryCallDispatcher(activity: activity, keepalive: keepalive))
        }
      }
      .connect(host: self.endpoint.host, port: self.endpoint.port)
      .flatMapThrowing { channel in
        let dispatcher = try channel.pipeline.syncOperations.handler(type: UnaryCallDispatcher.self)
        return Connection(
          channel: channel, dispatcher: NIOLoopBound(dispatcher, eventLoop: channel.eventLoop), activity: activity)
      }
  }

  /// The connection calls go to: at once when it is up, else once it has connected.
  private func readyConnection() async throws -> Connection {
    switch self.connection() {
    case .success(let ready): return ready
    case .failure(let error): throw error
    case nil: return try await self.connectionFuture().get()
    }
  }

  /// A request's HEADERS: gRPC's, `grpc-timeout` when the call has a deadline, then `metadata`.
  private func requestHeaders(path: String, metadata: [(String, String)], timeout: Duration?) -> HPACKHeaders {
    var headers = HPACKHeaders()
    headers.reserveCapacity(7 + metadata.count)
    headers.add(name: ":method", value: "POST")
    headers.add(name: ":scheme", value: self.scheme)
    headers.add(name: ":path", value: path)
    headers.add(name: ":authority", value: self.authority)
    headers.add(name: "content-type", value: "application/grpc")
    headers.add(name: "te", value: "trailers")
    if let timeout { headers.add(name: "grpc-timeout", value: Self.grpcTimeout(timeout)) }
    for (name, value) in metadata { headers.add(name: name, value: value) }
    return headers
  }

  /// Runs one unary call at `path` (e.g. `/etcdserverpb.KV/Put`) on this lane's connection.
  /// `mayTakeLong`: the server may legitimately stay silent until the deadline (a physical
  /// compaction), so a timeout says nothing about the connection.
  func call<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
    path: String,
    request: Request,
    metadata: [(String, String)],
    deadline: ContinuousClock.Instant,
    mayTakeLong: Bool = false
  ) async throws -> Response {
    guard deadline > .now else {
      throw RPCError(code: .deadlineExceeded, message: "Timed out before the call started.")
    }
    // Serialized straight into the frame that goes out (prefix and message, one allocation).
    let message = try request.serializedBytes() as GRPCMessageFrame
    let connection = try await self.readyConnection()
    // Connecting may have taken a while: what is left of the deadline is what counts.
    let remaining = deadline - .now
    guard remaining > .zero else {
      throw RPCError(code: .deadlineExceeded, message: "Timed out while connecting to \(self.endpoint).")
    }
    let headers = self.requestHeaders(path: path, metadata: metadata, timeout: remaining)

    let eventLoop = connection.channel.eventLoop
    let call = UnaryCallDispatcher.Call(
      headers: headers, message: message.framed,
      deadline: .now() + .nanoseconds(Int64(remaining.components.seconds) * 1_000_000_000 + remaining.components.attoseconds / 1_000_000_000))
    let dispatcher = connection.dispatcher
    let started = ContinuousClock.now
    let response: ByteBuffer
    do {
      response = try await withTaskCancellationHandler {
        try await withUnsafeThrowingContinuation { continuation in
          if eventLoop.inEventLoop {
            dispatcher.value.start(call, continuation)
          } else {
            eventLoop.execute { dispatcher.value.start(call, continuation) }
          }
        }
      } onCancel: {
        eventLoop.execute {
          dispatcher.value.abandon(call, RPCError(code: .cancelled, message: "The call was cancelled."))
        }
      }
    } catch {
      // Nothing at all came back on this connection while the call waited: the peer is frozen or
      // the network dropped it without a reset. Close the connection (the next call reconnects)
      // and report the endpoint unavailable, so that calls fail over to another member.
      // (Only after a wait of a second or more: a short deadline says nothing about the peer.)
      if let rpcError = error as? RPCError, rpcError.code == .deadlineExceeded,
        !mayTakeLong, remaining >= .seconds(1), connection.activity.lastResponse < started
      {
        connection.channel.close(promise: nil)
        throw RPCError(
          code: .unavailable,
          message: "No response from \(self.endpoint) within the deadline; closed the connection as dead.")
      }
      throw error
    }
    // Decoded in place from the received bytes.
    return try Response(serializedBytes: response.readableBytesSpan)
  }

  /// Opens a bidirectional stream at `path` on this lane's connection.
  func openStream(
    path: String,
    metadata: [(String, String)],
    onMessage: @escaping @Sendable (ByteBuffer) -> (any Error)?
  ) async throws -> EtcdLeanStream {
    let connection = try await self.readyConnection()
    let headers = self.requestHeaders(path: path, metadata: metadata, timeout: nil)
    let stream = UnaryCallDispatcher.Stream(headers: headers, onMessage: onMessage)
    let dispatcher = connection.dispatcher
    connection.channel.eventLoop.execute { dispatcher.value.open(stream) }
    return EtcdLeanStream(stream: stream, dispatcher: dispatcher, eventLoop: connection.channel.eventLoop)
  }

  /// `grpc-timeout` in whole milliseconds, rounded up (seconds beyond 8 digits of them).
  ///
  /// Why milliseconds: calls with the same configured timeout then send the same value (a call
  /// starts well within a millisecond of its deadline being set), which HPACK sends as a one-byte
  /// index into the connection's header table. Distinct microsecond values were a new literal
  /// per call that also filled the table, making every header lookup (ours) and insertion
  /// (etcd's) slower. The server's deadline is at most 1 ms later than ours; we enforce ours
  /// locally and reset the stream when it passes, which ends the call on the server too.
  static func grpcTimeout(_ duration: Duration) -> String {
    let (seconds, attoseconds) = duration.components
    let milliseconds = max(1, seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
    if milliseconds < 100_000_000 { return "\(milliseconds)m" }
    return "\(min((milliseconds + 999) / 1000, 99_999_999))S"
  }
}

/// Runs every unary call (one stream per call) and every bidirectional stream of one HTTP/2
/// connection, on the connection's event loop. Sits after `NIOHTTP2Handler` (which runs without a
/// stream multiplexer, in frame mode).
///
/// Per call: allocates the next client stream ID, writes HEADERS and the request as one DATA
/// frame with END_STREAM, collects the response's DATA, and resumes the caller with the result of the
/// trailers' `grpc-status`. It also does what HTTP/2 stream channels would otherwise do:
/// - **Inbound flow control.** Nobody else sends WINDOW_UPDATE in frame mode, so the dispatcher
///   tops up the connection window (to ``connectionWindowTarget``) and each open stream's window
///   (to ``streamWindowTarget``) whenever the HTTP/2 handler reports it at half or less; without
///   this the server stalls after 64 KiB on the connection or one large response.
/// - **Outbound flow control** stays with `NIOHTTP2Handler`, which queues DATA beyond the peer's
///   windows (and HEADERS beyond its concurrent-stream limit) until they open.
/// - **Abandoned calls** (deadline, cancellation) get RST_STREAM(CANCEL), so the server stops work.
/// - **Stream closure** (RST_STREAM from the server, a stream error, GOAWAY, the connection going
///   away) fails the call; a call whose HEADERS never left the client, or whose stream ID is above
///   a GOAWAY's last stream ID, fails as "not processed" (safe to retry).
/// - **Stream IDs** are odd and increasing; when they near 2³¹ the connection is marked draining
///   so new calls go to a new connection, and it closes once idle.
final class UnaryCallDispatcher: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = HTTP2Frame
  typealias OutboundOut = HTTP2Frame

  /// The inbound window kept open per stream (also advertised as SETTINGS_INITIAL_WINDOW_SIZE).
  static let streamWindowTarget = 1 << 20
  /// The inbound window kept open on the connection.
  static let connectionWindowTarget = 8 << 20
  /// From this stream ID on the connection drains (about 1 billion calls per connection).
  static let drainingStreamID = Int32.max - (1 << 20)

  /// One call: made by the caller, then touched only on the connection's event loop.
  final class Call: @unchecked Sendable {
    let headers: HPACKHeaders
    let message: ByteBuffer
    /// When the call fails with "deadline exceeded" unless it has finished.
    let deadline: NIODeadline
    /// The caller, until the call finishes (resumed exactly once).
    var continuation: UnsafeContinuation<ByteBuffer, any Error>?
    /// The call's stream, once started.
    var streamID: HTTP2StreamID?
    /// Why the call was given up before it started (cancelled early), if it was.
    var abandonedBeforeStart: RPCError?
    /// True once the HEADERS frame was written to the socket: the server may have the request.
    var headersSent = false
    var receivedHeaders = false
    var remoteEnded = false
    var body: ByteBuffer?

    init(headers: HPACKHeaders, message: ByteBuffer, deadline: NIODeadline) {
      self.headers = headers
      self.message = message
      self.deadline = deadline
    }
  }

  /// A bidirectional stream: made by its opener, then touched only on the connection's event loop.
  final class Stream: @unchecked Sendable {
    let headers: HPACKHeaders
    /// Runs on the event loop for each response message, in order; an error ends the stream.
    let onMessage: @Sendable (ByteBuffer) -> (any Error)?
    var streamID: HTTP2StreamID?
    var receivedHeaders = false
    var remoteEnded = false
    var localEnded = false
    /// Received bytes of a message not yet complete.
    var pending: ByteBuffer?
    private(set) var isEnded = false
    /// Why the stream ended: nil when the server ended it with status OK.
    private var endError: (any Error)?
    private var endWaiter: UnsafeContinuation<(any Error)?, Never>?

    init(headers: HPACKHeaders, onMessage: @escaping @Sendable (ByteBuffer) -> (any Error)?) {
      self.headers = headers
      self.onMessage = onMessage
    }

    /// Records how the stream ended (the first time) and wakes whoever waits for it.
    func end(_ error: (any Error)?) {
      guard !self.isEnded else { return }
      self.isEnded = true
      self.endError = error
      self.endWaiter?.resume(returning: error)
      self.endWaiter = nil
    }

    /// Resumes `waiter` with how the stream ended, once it has.
    func whenEnded(_ waiter: UnsafeContinuation<(any Error)?, Never>) {
      if self.isEnded { waiter.resume(returning: self.endError) } else { self.endWaiter = waiter }
    }
  }

  private let activity: ConnectionActivity
  private var context: ChannelHandlerContext?
  private var calls: [HTTP2StreamID: Call] = [:]
  private var nextStreamID: Int32 = 1
  private var isOpen = true
  private var closeWhenDone = false
  private var needsFlush = false
  private var flushScheduled = false
  /// One timer per connection, not one per call: it fires at the earliest deadline of the calls
  /// in flight (a call that finished leaves its deadline behind; the timer then finds nothing
  /// due and re-arms for the earliest deadline still pending).
  private var deadlineTimer: Scheduled<Void>?
  private var deadlineTimerFiresAt = NIODeadline.distantFuture
  /// The bidirectional streams open on this connection (the watch).
  private var streams: [HTTP2StreamID: Stream] = [:]
  /// When data last arrived, kept while streams are open (for keepalive).
  private var lastRead = NIODeadline.now()
  /// Frames were delivered during the current read (one clock reading per read, not per frame).
  private var framesDelivered = false
  /// Responses or stream frames were delivered during the current read (recorded as the
  /// connection's activity at its end: one clock reading per read).
  private var responsesDelivered = false
  /// Checks that a connection carrying streams is alive while it is quiet.
  private var keepaliveTimer: Scheduled<Void>?
  /// When the keepalive PING in flight was sent (nil: none is, or its ACK came).
  private var pingSentAt: NIODeadline?

  init(activity: ConnectionActivity, keepalive: EtcdKeepalive) {
    self.activity = activity
    self.keepaliveInterval = .nanoseconds(Int64(keepalive.interval.seconds * 1e9))
    self.keepaliveTimeout = .nanoseconds(Int64(keepalive.timeout.seconds * 1e9))
  }

  func handlerAdded(context: ChannelHandlerContext) { self.context = context }

  func handlerRemoved(context: ChannelHandlerContext) {
    self.context = nil
    self.failAll(sentMessage: "Stream unexpectedly closed.")
  }

  // MARK: Calls

  /// Starts a call: HEADERS and the message go out with this event-loop turn's flush, the
  /// deadline is watched; `continuation` is resumed when the call finishes.
  func start(_ call: Call, _ continuation: UnsafeContinuation<ByteBuffer, any Error>) {
    if let error = call.abandonedBeforeStart {
      continuation.resume(throwing: error)
      return
    }
    guard self.isOpen, let context = self.context else {
      continuation.resume(throwing: RPCError.notSent(.channelClosed))
      return
    }
    guard self.nextStreamID > 0 else {
      // Every stream ID of this connection was used (it is draining since long before).
      continuation.resume(
        throwing: RPCError.notSent(.streamRefused))
      return
    }
    let streamID = HTTP2StreamID(self.nextStreamID)
    self.nextStreamID = self.nextStreamID < Int32.max - 2 ? self.nextStreamID + 2 : -1
    if self.nextStreamID >= Self.drainingStreamID || self.nextStreamID < 0 { self.activity.markDraining() }

    call.continuation = continuation
    call.streamID = streamID
    self.calls[streamID] = call
    if call.deadline < self.deadlineTimerFiresAt { self.armDeadlineTimer(at: call.deadline, context: context) }
    let headersWritten = context.eventLoop.makePromise(of: Void.self)
    headersWritten.futureResult.assumeIsolated().whenComplete { result in
      switch result {
      case .success: call.headersSent = true
      case .failure(let error):
        // The HEADERS never reached the socket: the server cannot have processed the request.
        self.finish(
          streamID,
          .failure(
            RPCError.notSent(.streamRefused, cause: error)
          ))
      }
    }
    context.write(
      self.wrapOutboundOut(HTTP2Frame(streamID: streamID, payload: .headers(.init(headers: call.headers)))),
      promise: headersWritten)
    context.write(
      self.wrapOutboundOut(
        HTTP2Frame(streamID: streamID, payload: .data(.init(data: .byteBuffer(call.message), endStream: true)))),
      promise: nil)
    self.flushSoon(context: context)
  }

  private func armDeadlineTimer(at deadline: NIODeadline, context: ChannelHandlerContext) {
    self.deadlineTimer?.cancel()
    self.deadlineTimerFiresAt = deadline
    self.deadlineTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
      self.expireCalls()
    }
  }

  /// Fails the calls whose deadline has passed and re-arms the timer for the earliest one left.
  private func expireCalls() {
    self.deadlineTimer = nil
    self.deadlineTimerFiresAt = .distantFuture
    let now = NIODeadline.now()
    var expired: [HTTP2StreamID] = []
    var earliest = NIODeadline.distantFuture
    for (streamID, call) in self.calls {
      if call.deadline <= now { expired.append(streamID) } else { earliest = min(earliest, call.deadline) }
    }
    for streamID in expired {
      self.abandon(streamID, RPCError(code: .deadlineExceeded, message: "Timed out waiting for the response."))
    }
    if earliest < .distantFuture, let context = self.context { self.armDeadlineTimer(at: earliest, context: context) }
  }

  /// Flushes once the event loop has run what is queued now: the calls that callers resumed in
  /// the same tick start (many, with many in flight) leave in one write system call, not one each.
  private func flushSoon(context: ChannelHandlerContext) {
    guard !self.flushScheduled else { return }
    self.flushScheduled = true
    context.eventLoop.assumeIsolated().execute {
      self.flushScheduled = false
      self.context?.flush()
    }
  }

  /// Gives up on `call` (task cancellation): at once if it is in flight, else as soon as it
  /// starts. Nothing to do if it already finished.
  func abandon(_ call: Call, _ error: RPCError) {
    if let streamID = call.streamID {
      if self.calls[streamID] === call { self.abandon(streamID, error) }
    } else {
      call.abandonedBeforeStart = error
    }
  }

  /// Fails the call on `streamID` with `error` and resets its stream, so the server stops work.
  private func abandon(_ streamID: HTTP2StreamID, _ error: RPCError) {
    guard self.finish(streamID, .failure(error)) else { return }
    self.context?.writeAndFlush(self.wrapOutboundOut(HTTP2Frame(streamID: streamID, payload: .rstStream(.cancel))), promise: nil)
  }

  /// Completes and forgets the call on `streamID`; false if it was no longer in flight.
  @discardableResult
  private func finish(_ streamID: HTTP2StreamID, _ result: Result<ByteBuffer, any Error>) -> Bool {
    guard let call = self.calls.removeValue(forKey: streamID) else { return false }
    call.continuation?.resume(with: result)
    call.continuation = nil
    self.closeIfIdleAndDone()
    return true
  }

  /// Fails every call in flight: those whose HEADERS never left as "not processed".
  private func failAll(sentMessage: String) {
    let calls = self.calls
    self.calls = [:]
    self.deadlineTimer?.cancel()
    self.deadlineTimer = nil
    self.deadlineTimerFiresAt = .distantFuture
    for (_, call) in calls {
      if call.headersSent {
        call.continuation?.resume(throwing: RPCError(code: .unavailable, message: sentMessage))
      } else {
        call.continuation?.resume(
          throwing: RPCError.notSent(.streamRefused))
      }
      call.continuation = nil
    }
    let streams = self.streams
    self.streams = [:]
    self.keepaliveTimer?.cancel()
    self.keepaliveTimer = nil
    for (_, stream) in streams { stream.end(RPCError(code: .unavailable, message: sentMessage)) }
  }

  /// Closes the connection now if no call is in flight, else when the last one finishes.
  func closeWhenIdle() {
    self.closeWhenDone = true
    if self.calls.isEmpty, self.streams.isEmpty { self.context?.close(promise: nil) }
  }

  /// Closes the connection when nothing is in flight on it and it should close (shutdown, or
  /// draining after GOAWAY).
  private func closeIfIdleAndDone() {
    if self.calls.isEmpty, self.streams.isEmpty, self.closeWhenDone || self.activity.isDraining {
      self.context?.close(promise: nil)
    }
  }

  // MARK: Streams

  /// Opens `stream`: its HEADERS (and any message sent meanwhile) go out with this turn's flush.
  func open(_ stream: Stream) {
    guard !stream.isEnded else { return }  // cancelled before it opened
    guard self.isOpen, let context = self.context else {
      stream.end(RPCError.notSent(.channelClosed))
      return
    }
    guard self.nextStreamID > 0 else {
      stream.end(RPCError.notSent(.streamRefused))
      return
    }
    let streamID = HTTP2StreamID(self.nextStreamID)
    self.nextStreamID = self.nextStreamID < Int32.max - 2 ? self.nextStreamID + 2 : -1
    if self.nextStreamID >= Self.drainingStreamID || self.nextStreamID < 0 { self.activity.markDraining() }
    stream.streamID = streamID
    self.streams[streamID] = stream
    if self.keepaliveTimer == nil {
      self.lastRead = .now()
      self.scheduleKeepalive(in: self.keepaliveInterval, context: context)
    }
    let headersWritten = context.eventLoop.makePromise(of: Void.self)
    headersWritten.futureResult.assumeIsolated().whenFailure { error in
      self.endStream(
        streamID, RPCError.notSent(.streamRefused, cause: error))
    }
    context.write(
      self.wrapOutboundOut(HTTP2Frame(streamID: streamID, payload: .headers(.init(headers: stream.headers)))),
      promise: headersWritten)
    self.flushSoon(context: context)
  }

  /// Sends one message (a whole gRPC frame) on `stream`; dropped if the stream has ended.
  func send(_ message: ByteBuffer, on stream: Stream) {
    guard let streamID = stream.streamID, self.streams[streamID] === stream, !stream.localEnded,
      let context = self.context
    else { return }
    context.write(
      self.wrapOutboundOut(HTTP2Frame(streamID: streamID, payload: .data(.init(data: .byteBuffer(message))))),
      promise: nil)
    self.flushSoon(context: context)
  }

  /// Half-closes `stream`: no more messages from us (the server ends it in turn).
  func finishSending(_ stream: Stream) {
    guard let streamID = stream.streamID, self.streams[streamID] === stream, !stream.localEnded,
      let context = self.context
    else { return }
    stream.localEnded = true
    context.write(
      self.wrapOutboundOut(
        HTTP2Frame(streamID: streamID, payload: .data(.init(data: .byteBuffer(ByteBuffer()), endStream: true)))),
      promise: nil)
    self.flushSoon(context: context)
  }

  /// Ends `stream` with `error` and resets it, so the server stops sending (or, not yet open,
  /// makes it never open).
  func reset(_ stream: Stream, _ error: any Error) {
    guard let streamID = stream.streamID else {
      stream.end(error)
      return
    }
    guard self.endStream(streamID, error) else { return }
    self.context?.writeAndFlush(self.wrapOutboundOut(HTTP2Frame(streamID: streamID, payload: .rstStream(.cancel))), promise: nil)
  }

  /// Ends and forgets the stream on `streamID`; false if it was not open.
  @discardableResult
  private func endStream(_ streamID: HTTP2StreamID, _ error: (any Error)?) -> Bool {
    guard let stream = self.streams.removeValue(forKey: streamID) else { return false }
    stream.end(error)
    if self.streams.isEmpty {
      self.keepaliveTimer?.cancel()
      self.keepaliveTimer = nil
    }
    self.closeIfIdleAndDone()
    return true
  }

  private func streamReceived(_ headers: HTTP2Frame.FramePayload.Headers, on stream: Stream, context: ChannelHandlerContext) {
    guard let streamID = stream.streamID else { return }
    self.responsesDelivered = true
    if headers.endStream { stream.remoteEnded = true }
    if !stream.receivedHeaders {
      stream.receivedHeaders = true
      if let status = headers.headers.first(name: ":status"), status != "200" {
        self.reset(stream, RPCError(code: Self.code(forHTTPStatus: status), message: "Unexpected HTTP status \(status)."))
        return
      }
      guard headers.endStream || headers.headers.first(name: "grpc-status") != nil else { return }
    }
    // Trailers (or a trailers-only response): the stream is over; its status says how.
    switch Self.result(trailers: headers.headers, body: nil) {
    case .success: self.endStream(streamID, nil)
    case .failure(let error): self.endStream(streamID, error)
    }
  }

  private func streamReceived(_ data: HTTP2Frame.FramePayload.Data, on stream: Stream, context: ChannelHandlerContext) {
    // The connection is alive: a unary call timing out meanwhile must not close it as dead.
    self.responsesDelivered = true
    if data.endStream { stream.remoteEnded = true }
    guard case .byteBuffer(var bytes) = data.data else { return }
    if stream.pending == nil {
      stream.pending = bytes
    } else {
      stream.pending!.writeBuffer(&bytes)
    }
    // Every complete message, in order; a partial one waits for the next DATA frame.
    while var pending = stream.pending, pending.readableBytes >= 5 {
      let compressed = pending.getInteger(at: pending.readerIndex, as: UInt8.self)!
      let length = Int(pending.getInteger(at: pending.readerIndex + 1, as: UInt32.self)!)
      guard pending.readableBytes >= 5 + length else { break }
      guard compressed == 0 else {
        self.reset(stream, RPCError(code: .internalError, message: "Compressed message on a stream that asked for none."))
        return
      }
      pending.moveReaderIndex(forwardBy: 5)
      let message = pending.readSlice(length: length)!
      if pending.readableBytes == 0 {
        stream.pending = nil
      } else {
        // A message continues in the next frame: drop the bytes already delivered, so a long
        // run of such frames does not keep them all.
        if pending.readerIndex >= 1 << 16 { pending.discardReadBytes() }
        stream.pending = pending
      }
      if let error = stream.onMessage(message) {
        self.reset(stream, error)
        return
      }
    }
  }

  // MARK: Keepalive

  /// How long a connection carrying streams may stay silent before it is PINGed.
  private let keepaliveInterval: TimeAmount
  /// How long the PING's ACK may take before the connection counts as dead.
  private let keepaliveTimeout: TimeAmount

  private func scheduleKeepalive(in delay: TimeAmount, context: ChannelHandlerContext) {
    self.keepaliveTimer = context.eventLoop.assumeIsolated().scheduleTask(in: delay) { self.checkAlive() }
  }

  /// While streams are open: PINGs the server after a silence of the keepalive interval, and
  /// closes the connection (ending its streams, which then resume elsewhere) when the ACK does
  /// not come within the keepalive timeout, as grpc-swift's keepalive did for them.
  private func checkAlive() {
    self.keepaliveTimer = nil
    guard !self.streams.isEmpty, let context = self.context else { return }
    let now = NIODeadline.now()
    if let sentAt = self.pingSentAt {
      if now - sentAt >= self.keepaliveTimeout {
        self.activity.markDraining()
        context.close(promise: nil)
        return
      }
      self.scheduleKeepalive(in: self.keepaliveTimeout - (now - sentAt), context: context)
      return
    }
    let silence = now - self.lastRead
    guard silence >= self.keepaliveInterval else {
      self.scheduleKeepalive(in: self.keepaliveInterval - silence, context: context)
      return
    }
    self.pingSentAt = now
    context.writeAndFlush(
      self.wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .ping(HTTP2PingData(withInteger: 0x4361_7073_7461_6e21), ack: false))),
      promise: nil)
    self.scheduleKeepalive(in: self.keepaliveTimeout, context: context)
  }

  // MARK: Inbound

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let frame = self.unwrapInboundIn(data)
    // Only frames the HTTP/2 handler delivers count as signs of life (after a connection error
    // it stops delivering them, while the socket may still be readable); noted once per read.
    self.framesDelivered = true
    switch frame.payload {
    case .headers(let headers):
      guard let call = self.calls[frame.streamID] else {
        if let stream = self.streams[frame.streamID] { self.streamReceived(headers, on: stream, context: context) }
        return
      }
      if headers.endStream { call.remoteEnded = true }
      if !call.receivedHeaders {
        self.responsesDelivered = true
        call.receivedHeaders = true
        if let status = headers.headers.first(name: ":status"), status != "200" {
          self.abandon(
            frame.streamID, RPCError(code: Self.code(forHTTPStatus: status), message: "Unexpected HTTP status \(status)."))
          return
        }
        // A trailers-only response (an error) carries grpc-status in its only HEADERS frame.
        if headers.endStream || headers.headers.first(name: "grpc-status") != nil {
          self.finish(frame.streamID, Self.result(trailers: headers.headers, body: call.body))
        }
      } else {
        self.finish(frame.streamID, Self.result(trailers: headers.headers, body: call.body))
      }
    case .data(let data):
      guard let call = self.calls[frame.streamID] else {
        if let stream = self.streams[frame.streamID] { self.streamReceived(data, on: stream, context: context) }
        return
      }
      if data.endStream { call.remoteEnded = true }
      if case .byteBuffer(var bytes) = data.data {
        if call.body == nil {
          call.body = bytes
        } else {
          call.body!.writeBuffer(&bytes)
        }
      }
    case .goAway(let lastStreamID, _, _):
      // Streams above lastStreamID were not processed and are closed next (as cancelled): fail
      // them first as "not processed", so that even writes are retried.
      self.activity.markDraining()
      for streamID in self.calls.keys where streamID > lastStreamID {
        self.finish(
          streamID,
          .failure(RPCError.notSent(.streamRefused)))
      }
      for streamID in self.streams.keys where streamID > lastStreamID {
        self.endStream(streamID, RPCError(code: .unavailable, message: "The server is going away (GOAWAY)."))
      }
    case .ping(_, ack: true):
      self.pingSentAt = nil
    default:
      ()
    }
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    // Every call brings a stream-created, one or more window-updated and a stream-closed event;
    // the first needs nothing here (nor further down the pipeline, where no handler is).
    if event is NIOHTTP2StreamCreatedEvent {
      return
    } else if let event = event as? NIOHTTP2WindowUpdatedEvent {
      self.windowUpdated(event, context: context)
    } else if let event = event as? StreamClosedEvent {
      if self.streams[event.streamID] != nil {
        let reason = event.reason.map { "Stream unexpectedly closed (\($0))." } ?? "Stream ended without trailers."
        self.endStream(event.streamID, RPCError(code: .unavailable, message: reason))
      } else if event.reason == .refusedStream {
        self.finish(
          event.streamID,
          .failure(RPCError.notSent(.streamRefused)))
      } else if let reason = event.reason {
        self.finish(
          event.streamID, .failure(RPCError(code: .unavailable, message: "Stream unexpectedly closed (\(reason)).")))
      } else if let call = self.calls[event.streamID] {
        // Closed cleanly but without trailers (they complete the call before the stream closes).
        self.finish(event.streamID, Self.result(trailers: [:], body: call.body))
      }
    } else {
      context.fireUserInboundEventTriggered(event)
    }
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    if self.framesDelivered {
      self.framesDelivered = false
      if !self.streams.isEmpty { self.lastRead = .now() }
    }
    if self.responsesDelivered {
      self.responsesDelivered = false
      self.activity.recordResponse()
    }
    if self.needsFlush {
      self.needsFlush = false
      context.flush()
    }
    context.fireChannelReadComplete()
  }

  /// Gives back inbound window the server used, once half of it is gone.
  private func windowUpdated(_ event: NIOHTTP2WindowUpdatedEvent, context: ChannelHandlerContext) {
    guard let window = event.inboundWindowSize else { return }
    let target: Int
    if event.streamID == .rootStream {
      target = Self.connectionWindowTarget
    } else {
      if let call = self.calls[event.streamID] {
        guard !call.remoteEnded else { return }
      } else {
        guard let stream = self.streams[event.streamID], !stream.remoteEnded else { return }
      }
      target = Self.streamWindowTarget
    }
    guard window <= target / 2 else { return }
    context.write(
      self.wrapOutboundOut(HTTP2Frame(streamID: event.streamID, payload: .windowUpdate(windowSizeIncrement: target - window))),
      promise: nil)
    self.needsFlush = true
  }

  func channelInactive(context: ChannelHandlerContext) {
    self.isOpen = false
    self.failAll(sentMessage: "Stream unexpectedly closed.")
    context.fireChannelInactive()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    if let streamError = error as? NIOHTTP2Errors.StreamError {
      // The HTTP/2 handler reset the stream; its StreamClosedEvent may not carry the cause.
      let error = RPCError(code: .unavailable, message: "Stream unexpectedly closed with error.", cause: streamError.baseError)
      self.finish(streamError.streamID, .failure(error))
      self.endStream(streamError.streamID, error)
      return
    }
    // Anything else is a connection error: the HTTP/2 handler failed the write that caused it, or
    // sent GOAWAY after an inbound one (and stops parsing). New calls go to a new connection; this
    // one closes once the calls in flight have finished (or timed out). I/O errors close the
    // channel themselves.
    // Streams never finish by themselves: end them now, so they resume on a new connection.
    self.activity.markDraining()
    for streamID in Array(self.streams.keys) {
      self.endStream(streamID, RPCError(code: .unavailable, message: "The connection failed.", cause: error))
    }
    if self.calls.isEmpty, self.streams.isEmpty { context.close(promise: nil) }
  }

  // MARK: Responses

  private static func result(trailers: HPACKHeaders, body: ByteBuffer?) -> Result<ByteBuffer, any Error> {
    let status = trailers.first(name: "grpc-status").flatMap(Int.init) ?? 2
    guard status == 0 else {
      let message = trailers.first(name: "grpc-message").map(Self.percentDecoded) ?? (trailers.isEmpty ? "Stream ended without trailers." : "")
      let code = Status.Code(rawValue: status).flatMap(RPCError.Code.init) ?? .unknown
      return .failure(RPCError(code: code, message: message))
    }
    guard var body, let compressed = body.readInteger(as: UInt8.self),
      let length = body.readInteger(as: UInt32.self), compressed == 0,
      let message = body.readSlice(length: Int(length))
    else {
      if body == nil || body?.readableBytes == 0 { return .success(ByteBuffer()) }  // an empty message
      return .failure(RPCError(code: .internalError, message: "Malformed or compressed response message."))
    }
    return .success(message)
  }

  private static func code(forHTTPStatus status: String) -> RPCError.Code {
    switch status {
    case "400": .internalError
    case "401": .unauthenticated
    case "403": .permissionDenied
    case "404": .unimplemented
    case "429", "502", "503", "504": .unavailable
    default: .unknown
    }
  }

  /// Decodes gRPC's percent-encoded `grpc-message`.
  static func percentDecoded(_ text: String) -> String {
    guard text.contains("%") else { return text }
    var bytes: [UInt8] = []
    var iterator = Array(text.utf8).makeIterator()
    while let byte = iterator.next() {
      if byte == UInt8(ascii: "%"), let high = iterator.next(), let low = iterator.next(),
        let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
      {
        bytes.append(value)
      } else {
        bytes.append(byte)
      }
    }
    return String(decoding: bytes, as: UTF8.self)
  }
}

/// When a connection last delivered a response, to tell a slow call from a dead connection;
/// whether it is draining (GOAWAY received or stream IDs nearly used up).
final class ConnectionActivity: Sendable {
  private let lastResponseNanoseconds = Atomic<Int64>(0)
  private let draining = Atomic<Bool>(false)
  private let origin = ContinuousClock.now

  /// True once the server sent GOAWAY (or stream IDs near their end): new calls must use a new connection.
  var isDraining: Bool { self.draining.load(ordering: .relaxed) }
  func markDraining() { self.draining.store(true, ordering: .relaxed) }

  func recordResponse() {
    let elapsed = ContinuousClock.now - self.origin
    self.lastResponseNanoseconds.store(
      elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000, ordering: .relaxed)
  }

  var lastResponse: ContinuousClock.Instant {
    self.origin + .nanoseconds(self.lastResponseNanoseconds.load(ordering: .relaxed))
  }
}

/// A gRPC message frame, the 5-byte prefix (uncompressed, length) and the message, that
/// SwiftProtobuf serializes a request straight into: one allocation and no copy, where
/// serializing to `[UInt8]` and then framing it took two and a copy.
struct GRPCMessageFrame: SwiftProtobufContiguousBytes {
  private static let prefixLength = 5

  /// The frame, whose readable bytes are the message alone (the prefix precedes the reader index).
  private var buffer: ByteBuffer

  init(repeating byte: UInt8, count: Int) {
    var buffer = ByteBufferAllocator().buffer(capacity: Self.prefixLength + count)
    buffer.writeInteger(UInt8(0))
    buffer.writeInteger(UInt32(truncatingIfNeeded: count))
    buffer.moveReaderIndex(forwardBy: Self.prefixLength)
    buffer.writeRepeatingByte(byte, count: count)
    self.buffer = buffer
  }

  init<S: Sequence>(_ sequence: S) where S.Element == UInt8 {
    let bytes = Array(sequence)
    self.init(repeating: 0, count: bytes.count)
    self.withUnsafeMutableBytes { $0.copyBytes(from: bytes) }
  }

  var count: Int { self.buffer.readableBytes }

  func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    try self.buffer.withUnsafeReadableBytes(body)
  }

  mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
    try self.buffer.withUnsafeMutableReadableBytes(body)
  }

  /// The whole frame, prefix included, as it goes out in a DATA frame.
  var framed: ByteBuffer {
    var frame = self.buffer
    frame.moveReaderIndex(to: frame.readerIndex - Self.prefixLength)
    return frame
  }
}
