import GRPCCore

/// Wraps grpc-swift's client transport to learn, as a typed fact, whether a failed call's
/// request could have reached a server.
///
/// grpc-swift reports "no connection yet", "subchannel unavailable" and "transport shut down"
/// as `unavailable` errors that differ only in their message. This decorator needs no message:
/// if the inner transport's `withStream` fails before it handed the call a stream, nothing of the
/// request was written, and the error is rethrown with ``RequestNotSent`` as its cause. Once the
/// stream is open the request may have been sent, and errors pass through unchanged.
struct DeliveryTrackingTransport<Inner: ClientTransport>: ClientTransport {
  typealias Bytes = Inner.Bytes

  let inner: Inner

  init(_ inner: Inner) { self.inner = inner }

  var retryThrottle: RetryThrottle? { self.inner.retryThrottle }

  func connect() async throws { try await self.inner.connect() }

  func beginGracefulShutdown() { self.inner.beginGracefulShutdown() }

  func config(forMethod descriptor: MethodDescriptor) -> MethodConfig? {
    self.inner.config(forMethod: descriptor)
  }

  func withStream<T: Sendable>(
    descriptor: MethodDescriptor,
    options: CallOptions,
    _ closure: (_ stream: RPCStream<Inbound, Outbound>, _ context: ClientContext) async throws -> T
  ) async throws -> T {
    var opened = false
    do {
      return try await self.inner.withStream(descriptor: descriptor, options: options) { stream, context in
        opened = true
        return try await closure(stream, context)
      }
    } catch let error as RPCError where !opened && !error.requestCertainlyNotSent {
      guard error.code == .unavailable else { throw error }
      throw RPCError.notSent(.transportNotReady, message: error.message, cause: error)
    } catch where !opened && !(error is RPCError) && !(error is CancellationError) {
      throw RPCError.notSent(.transportNotReady, message: "\(error)", cause: error)
    }
  }
}
