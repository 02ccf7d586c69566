import GRPCCore

/// The typed fact that retry safety is decided from: this request certainly never reached a
/// server, so even a non-idempotent write may be sent again, to any endpoint.
///
/// Both call paths attach it as the `cause` of the `unavailable` `RPCError` they throw: the lean
/// path where it knows the HEADERS never left (connection closed or never established, stream IDs
/// used up, the stream refused or above a GOAWAY's last stream), the grpc-swift path through
/// ``DeliveryTrackingTransport`` when the transport failed before it opened the call's stream.
/// ``EtcdError`` reads it by type, never by the error's message.
struct RequestNotSent: Error, Sendable, CustomStringConvertible {
  /// Why the request did not leave.
  enum Reason: Sendable, Hashable, CustomStringConvertible {
    /// The channel was shut down.
    case channelClosed
    /// No connection to the endpoint could be established.
    case connectionFailed
    /// The server refused the stream (REFUSED_STREAM, a GOAWAY below it, or no stream IDs left),
    /// or its HEADERS never reached the socket.
    case streamRefused
    /// The grpc-swift transport failed before it opened the call's stream.
    case transportNotReady

    var description: String {
      switch self {
      case .channelClosed: "channel is closed"
      case .connectionFailed: "could not establish a connection"
      case .streamRefused: "The stream was refused: the request was not processed."
      case .transportNotReady: "the transport failed before the request was sent"
      }
    }
  }

  /// Why the request did not leave.
  var reason: Reason
  /// The failure underneath, if any.
  var underlying: (any Error)?

  var description: String { self.underlying.map { "\($0)" } ?? self.reason.description }
}

extension RPCError {
  /// An `unavailable` error for a request that the server cannot have processed, carrying
  /// ``RequestNotSent`` as its cause. `message` defaults to the reason's own text.
  static func notSent(_ reason: RequestNotSent.Reason, message: String? = nil, cause: (any Error)? = nil) -> RPCError {
    RPCError(
      code: .unavailable, message: message ?? reason.description,
      cause: RequestNotSent(reason: reason, underlying: cause))
  }

  /// True when this error says, by its cause's type, that the request was never sent.
  var requestCertainlyNotSent: Bool { self.cause is RequestNotSent }
}
