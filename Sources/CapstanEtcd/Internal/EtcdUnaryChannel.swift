import GRPCCore
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import NIOSSL
import SwiftProtobuf
import Synchronization

/// A lean path for unary gRPC calls: one HTTP/2 connection per endpoint, and per call one HTTP/2
/// stream whose handler writes the request and completes a promise with the response, entirely on
/// the connection's event loop.
///
/// Why: grpc-swift's general client spends most of a small call's CPU in per-call machinery (task
/// groups, async sequences, a deadline task, generic metadata), about twice what etcd's Go client
/// spends per put. KV calls are the hot path of a controller, so they take this path; streams and
/// everything else stay on grpc-swift. A call here has the same semantics as there: `grpc-timeout`
/// is sent and the deadline enforced locally, errors are `RPCError`s with the same codes and
/// messages (so ``EtcdError/wrapping(_:operation:)`` and the retry rules apply unchanged), and a
/// call that could not get a connection fails as "not sent".
final class EtcdUnaryChannel: Sendable {
  private struct Connection: Sendable {
    let channel: any Channel
    let multiplexer: NIOHTTP2Handler.StreamMultiplexer
    let activity: ConnectionActivity
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
  private let group: any EventLoopGroup
  private let state = Mutex(State.idle)

  init(endpoint: EtcdEndpoint, sslContext: NIOSSLContext?, serverHostname: String?, connectTimeout: Duration) {
    self.endpoint = endpoint
    self.authority = endpoint.description
    self.scheme = sslContext == nil ? "http" : "https"
    self.sslContext = sslContext
    self.serverHostname = serverHostname ?? (endpoint.isIPv4Literal || endpoint.host.contains(":") ? nil : endpoint.host)
    self.connectTimeout = connectTimeout
    self.group = MultiThreadedEventLoopGroup.singleton
  }

  /// Stops taking calls (later ones fail with "channel is closed") and closes the connection
  /// once the calls in flight on it have finished.
  func close() {
    let previous = self.state.withLock { state -> State in
      defer { state = .closed }
      return state
    }
    switch previous {
    case .ready(let connection): connection.activity.closeWhenIdle(connection.channel)
    case .connecting(let future): future.whenSuccess { $0.activity.closeWhenIdle($0.channel) }
    case .idle, .closed: ()
    }
  }

  private func connection() -> EventLoopFuture<Connection> {
    enum Action {
      case use(EventLoopFuture<Connection>)
      case connect(EventLoopPromise<Connection>)
    }
    let action = self.state.withLock { state -> Action in
      switch state {
      case .ready(let connection) where !connection.activity.isDraining:
        return .use(connection.channel.eventLoop.makeSucceededFuture(connection))
      case .ready:
        // The server sent GOAWAY: calls in flight finish there, new ones get a new connection.
        let promise = self.group.next().makePromise(of: Connection.self)
        state = .connecting(promise.futureResult)
        return .connect(promise)
      case .connecting(let future):
        return .use(future)
      case .closed:
        return .use(self.group.next().makeFailedFuture(RPCError(code: .unavailable, message: "channel is closed")))
      case .idle:
        let promise = self.group.next().makePromise(of: Connection.self)
        state = .connecting(promise.futureResult)
        return .connect(promise)
      }
    }
    switch action {
    case .use(let future):
      return future
    case .connect(let promise):
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
            RPCError(code: .unavailable, message: "Could not establish a connection to \(self.endpoint).", cause: error))
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
    return ClientBootstrap(group: self.group)
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
            HTTP2Setting(parameter: .initialWindowSize, value: 1 << 20),
            HTTP2Setting(parameter: .maxHeaderListSize, value: 1 << 16),
          ]
          connectionConfiguration.targetWindowSize = 8 << 20
          var streamConfiguration = NIOHTTP2Handler.StreamConfiguration()
          streamConfiguration.targetWindowSize = 1 << 20
          _ = try operations.configureHTTP2Pipeline(
            mode: .client,
            connectionConfiguration: connectionConfiguration,
            streamConfiguration: streamConfiguration,
            inboundStreamInitializer: { stream in stream.close() }
          )
          try operations.addHandler(GoAwayObserver(activity: activity))
        }
      }
      .connect(host: self.endpoint.host, port: self.endpoint.port)
      .flatMapThrowing { channel in
        let handler = try channel.pipeline.syncOperations.handler(type: NIOHTTP2Handler.self)
        return Connection(channel: channel, multiplexer: try handler.syncMultiplexer(), activity: activity)
      }
  }

  /// Runs one unary call at `path` (e.g. `/etcdserverpb.KV/Put`).
  func call<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
    path: String,
    request: Request,
    metadata: [(String, String)],
    deadline: ContinuousClock.Instant
  ) async throws -> Response {
    guard deadline > .now else {
      throw RPCError(code: .deadlineExceeded, message: "Timed out before the call started.")
    }
    let payload: [UInt8] = try request.serializedBytes()
    let connection = try await self.connection().get()
    // Connecting may have taken a while: what is left of the deadline is what counts.
    let remaining = deadline - .now
    guard remaining > .zero else {
      throw RPCError(code: .deadlineExceeded, message: "Timed out while connecting to \(self.endpoint).")
    }
    var headers = HPACKHeaders()
    headers.reserveCapacity(8 + metadata.count)
    headers.add(name: ":method", value: "POST")
    headers.add(name: ":scheme", value: self.scheme)
    headers.add(name: ":path", value: path)
    headers.add(name: ":authority", value: self.authority)
    headers.add(name: "content-type", value: "application/grpc")
    headers.add(name: "te", value: "trailers")
    headers.add(name: "grpc-timeout", value: Self.grpcTimeout(remaining))
    for (name, value) in metadata { headers.add(name: name, value: value) }

    var message = connection.channel.allocator.buffer(capacity: payload.count + 5)
    message.writeInteger(UInt8(0))
    message.writeInteger(UInt32(payload.count))
    message.writeBytes(payload)

    let requestMessage = message
    let eventLoop = connection.channel.eventLoop
    let promise = eventLoop.makePromise(of: ByteBuffer.self)
    let streamPromise = eventLoop.makePromise(of: (any Channel).self)
    let timeout = eventLoop.scheduleTask(in: .nanoseconds(Int64(remaining.seconds * 1e9))) {
      promise.fail(RPCError(code: .deadlineExceeded, message: "Timed out waiting for the response."))
    }
    connection.activity.callStarted()
    promise.futureResult.whenComplete { _ in
      timeout.cancel()
      streamPromise.futureResult.whenSuccess { $0.close(promise: nil) }
      connection.activity.callFinished(connection.channel)
    }
    streamPromise.futureResult.whenFailure { error in
      promise.fail(RPCError(code: .unavailable, message: "Stream unexpectedly closed with error.", cause: error))
    }
    let requestHeaders = headers
    connection.multiplexer.createStreamChannel(promise: streamPromise) { stream in
      stream.eventLoop.makeCompletedFuture {
        try stream.pipeline.syncOperations.addHandler(
          UnaryCallHandler(
            headers: requestHeaders, message: requestMessage, promise: promise, activity: connection.activity))
      }
    }
    let started = ContinuousClock.now
    let response: ByteBuffer
    do {
      response = try await withTaskCancellationHandler {
        try await promise.futureResult.get()
      } onCancel: {
        promise.fail(RPCError(code: .cancelled, message: "The call was cancelled."))
      }
    } catch {
      // Nothing at all came back on this connection while the call waited: the peer is frozen or
      // the network dropped it without a reset. Close the connection (the next call reconnects)
      // and report the endpoint unavailable, so that calls fail over to another member.
      // (Only after a wait of a second or more: a short deadline says nothing about the peer.)
      if let rpcError = error as? RPCError, rpcError.code == .deadlineExceeded,
        remaining >= .seconds(1), connection.activity.lastResponse < started
      {
        connection.channel.close(promise: nil)
        throw RPCError(
          code: .unavailable,
          message: "No response from \(self.endpoint) within the deadline; closed the connection as dead.")
      }
      throw error
    }
    return try Response(serializedBytes: Array(response.readableBytesView))
  }

  /// `grpc-timeout` in the largest unit that keeps it within 8 digits.
  static func grpcTimeout(_ duration: Duration) -> String {
    let microseconds = max(1, Int64(duration.seconds * 1e6))
    if microseconds < 100_000_000 { return "\(microseconds)u" }
    let milliseconds = microseconds / 1000
    if milliseconds < 100_000_000 { return "\(milliseconds)m" }
    return "\(min(milliseconds / 1000, 99_999_999))S"
  }
}

/// Handles one unary call on one HTTP/2 stream: sends headers and the length-prefixed message,
/// collects the response message and completes the promise from the trailers' `grpc-status`.
private final class UnaryCallHandler: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = HTTP2Frame.FramePayload
  typealias OutboundOut = HTTP2Frame.FramePayload

  private let headers: HPACKHeaders
  private let message: ByteBuffer
  private let promise: EventLoopPromise<ByteBuffer>
  private let activity: ConnectionActivity
  private var sent = false
  private var receivedHeaders = false
  private var body: ByteBuffer?
  private var finished = false

  init(headers: HPACKHeaders, message: ByteBuffer, promise: EventLoopPromise<ByteBuffer>, activity: ConnectionActivity) {
    self.headers = headers
    self.message = message
    self.promise = promise
    self.activity = activity
  }

  func handlerAdded(context: ChannelHandlerContext) {
    if context.channel.isActive { self.send(context: context) }
  }

  func channelActive(context: ChannelHandlerContext) {
    self.send(context: context)
    context.fireChannelActive()
  }

  private func send(context: ChannelHandlerContext) {
    guard !self.sent else { return }
    self.sent = true
    // If the HEADERS cannot be written (the connection got GOAWAY or closed), nothing was sent.
    let headersWritten = context.eventLoop.makePromise(of: Void.self)
    let promise = self.promise
    headersWritten.futureResult.whenFailure { error in
      promise.fail(RPCError(code: .unavailable, message: "The stream was refused: the request was not processed.", cause: error))
    }
    context.write(self.wrapOutboundOut(.headers(.init(headers: self.headers))), promise: headersWritten)
    context.writeAndFlush(
      self.wrapOutboundOut(.data(.init(data: .byteBuffer(self.message), endStream: true))), promise: nil)
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch self.unwrapInboundIn(data) {
    case .headers(let frame):
      if !self.receivedHeaders {
        self.activity.recordResponse()
        self.receivedHeaders = true
        if let status = frame.headers.first(name: ":status"), status != "200" {
          self.finish(.failure(RPCError(code: Self.code(forHTTPStatus: status), message: "Unexpected HTTP status \(status).")))
          return
        }
        // A trailers-only response (an error) carries grpc-status in its only HEADERS frame.
        if frame.endStream || frame.headers.first(name: "grpc-status") != nil { self.trailers(frame.headers) }
      } else {
        self.trailers(frame.headers)
      }
    case .data(let frame):
      if case .byteBuffer(var bytes) = frame.data {
        if self.body == nil {
          self.body = bytes
        } else {
          self.body!.writeBuffer(&bytes)
        }
      }
    default:
      ()
    }
  }

  private func trailers(_ headers: HPACKHeaders) {
    let status = headers.first(name: "grpc-status").flatMap(Int.init) ?? 2
    guard status == 0 else {
      let message = headers.first(name: "grpc-message").map(Self.percentDecoded) ?? ""
      let code = Status.Code(rawValue: status).flatMap(RPCError.Code.init) ?? .unknown
      self.finish(.failure(RPCError(code: code, message: message)))
      return
    }
    guard var body = self.body, let compressed = body.readInteger(as: UInt8.self),
      let length = body.readInteger(as: UInt32.self), compressed == 0,
      let message = body.readSlice(length: Int(length))
    else {
      if self.body == nil || self.body?.readableBytes == 0 {
        self.finish(.success(ByteBuffer()))  // an empty message
      } else {
        self.finish(.failure(RPCError(code: .internalError, message: "Malformed or compressed response message.")))
      }
      return
    }
    self.finish(.success(message))
  }

  private func finish(_ result: Result<ByteBuffer, any Error>) {
    guard !self.finished else { return }
    self.finished = true
    self.promise.completeWith(result)
  }

  func channelInactive(context: ChannelHandlerContext) {
    self.finish(.failure(RPCError(code: .unavailable, message: "Stream unexpectedly closed.")))
    context.fireChannelInactive()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    self.finish(.failure(RPCError(code: .unavailable, message: "Stream unexpectedly closed with error.", cause: error)))
    context.close(promise: nil)
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

/// When a connection last delivered a response, to tell a slow call from a dead connection.
/// Marks the connection as draining when the server sends GOAWAY.
private final class GoAwayObserver: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = HTTP2Frame
  typealias InboundOut = HTTP2Frame
  private let activity: ConnectionActivity

  init(activity: ConnectionActivity) { self.activity = activity }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    if case .goAway = self.unwrapInboundIn(data).payload { self.activity.markDraining() }
    context.fireChannelRead(data)
  }
}

private final class ConnectionActivity: Sendable {
  private let lastResponseNanoseconds = Atomic<Int64>(0)
  private let draining = Atomic<Bool>(false)
  private let inFlight = Atomic<Int>(0)
  private let closing = Atomic<Bool>(false)

  /// True once the server sent GOAWAY: new calls must use a new connection.
  var isDraining: Bool { self.draining.load(ordering: .relaxed) }
  func markDraining() { self.draining.store(true, ordering: .relaxed) }

  func callStarted() { self.inFlight.add(1, ordering: .relaxed) }

  func callFinished(_ channel: any Channel) {
    let left = self.inFlight.subtract(1, ordering: .relaxed).newValue
    if left == 0, self.closing.load(ordering: .relaxed) { channel.close(promise: nil) }
  }

  /// Closes `channel` now if no call is in flight, else when the last one finishes.
  func closeWhenIdle(_ channel: any Channel) {
    self.closing.store(true, ordering: .relaxed)
    if self.inFlight.load(ordering: .relaxed) == 0 { channel.close(promise: nil) }
  }
  private let origin = ContinuousClock.now

  func recordResponse() {
    let elapsed = ContinuousClock.now - self.origin
    self.lastResponseNanoseconds.store(
      elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000, ordering: .relaxed)
  }

  var lastResponse: ContinuousClock.Instant {
    self.origin + .nanoseconds(self.lastResponseNanoseconds.load(ordering: .relaxed))
  }
}
