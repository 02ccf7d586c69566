import CapstanEtcdAPI
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Synchronization

/// Holds etcd's auth token: fetched with the credentials on first use, attached to every call by
/// ``EtcdAuthInterceptor``, and dropped (so the next call fetches a new one) when etcd says it is
/// invalid or expired.
final class EtcdAuthenticator: Sendable {
  private let credentials: EtcdCredentials?
  private let token = Mutex<String?>(nil)

  init(credentials: EtcdCredentials?) {
    self.credentials = credentials
  }

  /// True when credentials were configured.
  var isEnabled: Bool { self.credentials != nil }

  /// True when auth is on and no token is held.
  var needsToken: Bool { self.credentials != nil && self.token.withLock { $0 == nil } }

  /// The token to attach to calls, if any.
  var currentToken: String? {
    guard self.credentials != nil else { return nil }  // no lock on every call when auth is off
    return self.token.withLock { $0 }
  }

  /// Forgets the token so the next call authenticates again.
  func invalidate() { self.token.withLock { $0 = nil } }

  /// Exchanges the credentials for a token.
  func authenticate(
    using client: EtcdConnectionPool.Client,
    until deadline: ContinuousClock.Instant
  ) async throws {
    guard let credentials else { return }
    var request = Etcdserverpb_AuthenticateRequest()
    request.name = credentials.user
    request.password = credentials.password
    let response = try await Etcdserverpb_Auth.Client(wrapping: client).authenticate(
      request,
      options: EtcdConnectionPool.options(until: deadline)
    )
    self.token.withLock { $0 = response.token }
  }
}

/// Adds the auth token (metadata `token`, as etcd expects) to every call except `Authenticate`.
struct EtcdAuthInterceptor: ClientInterceptor {
  let authenticator: EtcdAuthenticator

  func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingClientRequest<Input>,
    context: ClientContext,
    next: (StreamingClientRequest<Input>, ClientContext) async throws -> StreamingClientResponse<Output>
  ) async throws -> StreamingClientResponse<Output> {
    var request = request
    if context.descriptor != Etcdserverpb_Auth.Method.Authenticate.descriptor,
      let token = self.authenticator.currentToken
    {
      request.metadata.replaceOrAddString(token, forKey: "token")
    }
    return try await next(request, context)
  }
}
