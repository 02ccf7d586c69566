/// Decides how long a failed key waits before a ``WorkQueue`` retries it.
///
/// Rate limiters are values: the queue owns one and mutates it under its lock, so an implementation
/// needs no synchronisation of its own. Compose them with ``MaxOfRateLimiter``.
///
/// Time is given as `now`: the time since the queue started, on the queue's clock. Limiters never
/// read a clock themselves, so their arithmetic is exact and testable.
public protocol WorkQueueRateLimiter<Key>: Sendable {
  /// The queue's key type.
  associatedtype Key: Hashable & Sendable

  /// Records a failure of `key` at `now` and returns how long the key waits before its retry
  /// (`.zero` or less: retry at once).
  mutating func delay(for key: Key, now: Duration) -> Duration

  /// Forgets the failure history of `key` (it succeeded, or the queue gave up on it).
  mutating func forget(_ key: Key)
}

/// Per-key exponential backoff: the first failure of a key waits `base`, each further failure
/// doubles the wait, up to `cap`.
///
/// A failure only grows the backoff once the previous backoff has elapsed: a key that fails again
/// while its backoff is still running (say a real change made it run early) does not double its
/// wait; it is given the rest of the current backoff, so it is retried when the retry already
/// scheduled would have run.
public struct ExponentialBackoffRateLimiter<Key: Hashable & Sendable>: WorkQueueRateLimiter {
  struct KeyBackoff: Sendable {
    /// The current backoff.
    var delay: Duration
    /// When the current backoff ends (time since the queue started).
    var ends: Duration
  }

  /// The wait after a key's first failure.
  public let base: Duration
  /// The longest wait.
  public let cap: Duration
  private(set) var backoffs: [Key: KeyBackoff] = [:]

  /// A backoff from `base` doubling up to `cap` (`base` must be positive and not above `cap`).
  public init(base: Duration, cap: Duration) {
    precondition(base > .zero && base <= cap, "exponential backoff needs 0 < base <= cap")
    self.base = base
    self.cap = cap
  }

  /// The number of keys with a failure history.
  public var trackedKeys: Int { self.backoffs.count }

  /// Records a failure of `key` at `now`; returns how long it waits before its retry.
  public mutating func delay(for key: Key, now: Duration) -> Duration {
    guard var backoff = self.backoffs[key] else {
      self.backoffs[key] = KeyBackoff(delay: self.base, ends: now + self.base)
      return self.base
    }
    if now < backoff.ends { return backoff.ends - now }
    backoff.delay = backoff.delay > self.cap / 2 ? self.cap : min(self.cap, backoff.delay * 2)
    backoff.ends = now + backoff.delay
    self.backoffs[key] = backoff
    return backoff.delay
  }

  /// Forgets `key`'s failure history.
  public mutating func forget(_ key: Key) {
    self.backoffs[key] = nil
  }
}

/// A global token bucket shared by all keys: `burst` retries at once, then `rate` per second,
/// with a **maximum wait**.
///
/// Each retry reserves a token; when none is left the retry waits until its reserved token has
/// been refilled (tokens go into debt, as with Go's `rate.Limiter.Reserve`). Without a bound that
/// wait grows with the backlog: 10 000 keys failing at once at 10/s would wait up to 16 minutes.
///
/// With `maximumWait`: a retry whose token would arrive later than `maximumWait` from now does not
/// reserve a token; it waits exactly `maximumWait`. So no retry is ever delayed by this bucket
/// longer than `maximumWait`; the bucket shapes the first `burst + rate × maximumWait` retries of a
/// burst, and the overflow is retried together at the end of the window (where the per-key backoff,
/// which keeps growing on each failure, and the number of workers spread it). Overflow does not
/// deepen the debt, so retries after the burst are still bounded by `maximumWait`.
public struct TokenBucketRateLimiter<Key: Hashable & Sendable>: WorkQueueRateLimiter {
  /// Tokens added per second.
  public let rate: Double
  /// The bucket's size: retries that may go at once.
  public let burst: Int
  /// The longest wait this bucket imposes.
  public let maximumWait: Duration
  private var tokens: Double
  private var refilled: Duration?

  /// A bucket refilled at `rate` tokens per second holding up to `burst` (starts full).
  public init(rate: Double, burst: Int, maximumWait: Duration) {
    precondition(rate > 0 && rate.isFinite, "token bucket rate must be positive")
    precondition(burst >= 1, "token bucket burst must be at least 1")
    precondition(maximumWait >= .zero, "token bucket maximum wait must not be negative")
    self.rate = rate
    self.burst = burst
    self.maximumWait = maximumWait
    self.tokens = Double(burst)
  }

  /// Tokens in the bucket after the last retry (negative: reserved ahead, in debt).
  public var availableTokens: Double { self.tokens }

  /// Records a failure of `key` at `now`; returns how long it waits before its retry.
  public mutating func delay(for key: Key, now: Duration) -> Duration {
    if let refilled, now > refilled {
      self.tokens = min(Double(self.burst), self.tokens + (now - refilled).workQueueSeconds * self.rate)
    }
    self.refilled = max(self.refilled ?? now, now)
    if self.tokens >= 1 {
      self.tokens -= 1
      return .zero
    }
    let nanoseconds = ((1 - self.tokens) * 1e9 / self.rate).rounded(.up)
    guard nanoseconds <= self.maximumWait.workQueueSeconds * 1e9 else { return self.maximumWait }
    let wait = Duration.nanoseconds(Int64(nanoseconds))
    self.tokens -= 1
    return wait
  }

  /// Forgets `key`'s failure history.
  public mutating func forget(_ key: Key) {}
}

/// Fast retries first, then slow ones: a key's first `maxFastAttempts` failures wait `fastDelay`,
/// later ones `slowDelay` (until the key is forgotten).
public struct FastSlowRateLimiter<Key: Hashable & Sendable>: WorkQueueRateLimiter {
  /// The wait for the first `maxFastAttempts` failures.
  public let fastDelay: Duration
  /// The wait for later failures.
  public let slowDelay: Duration
  /// How many failures wait `fastDelay`.
  public let maxFastAttempts: Int
  private var failures: [Key: Int] = [:]

  /// `maxFastAttempts` retries after `fastDelay`, then retries after `slowDelay`.
  public init(fastDelay: Duration, slowDelay: Duration, maxFastAttempts: Int) {
    precondition(maxFastAttempts >= 0, "fast-slow limiter needs maxFastAttempts >= 0")
    self.fastDelay = fastDelay
    self.slowDelay = slowDelay
    self.maxFastAttempts = maxFastAttempts
  }

  /// Records a failure of `key` at `now`; returns how long it waits before its retry.
  public mutating func delay(for key: Key, now: Duration) -> Duration {
    let failures = self.failures[key, default: 0] + 1
    self.failures[key] = failures
    return failures <= self.maxFastAttempts ? self.fastDelay : self.slowDelay
  }

  /// Forgets `key`'s failure history.
  public mutating func forget(_ key: Key) {
    self.failures[key] = nil
  }
}

/// The longest wait of several limiters (each one records every failure).
public struct MaxOfRateLimiter<Key: Hashable & Sendable>: WorkQueueRateLimiter {
  /// The limiters, each asked on every failure.
  public private(set) var limiters: [any WorkQueueRateLimiter<Key>]

  /// The maximum of `limiters`' waits.
  public init(_ limiters: [any WorkQueueRateLimiter<Key>]) {
    self.limiters = limiters
  }

  /// The maximum of `limiters`' waits.
  public init(_ limiters: any WorkQueueRateLimiter<Key>...) {
    self.init(limiters)
  }

  /// Capstan's default: per-key exponential backoff 5 ms → 1000 s, and a global token bucket of
  /// 10 retries/s, burst 100, maximum wait 30 s.
  ///
  /// The backoff and bucket are client-go's defaults; the maximum wait is Capstan's answer to the
  /// bucket's unbounded tail: with 10 000 keys failing at once the bucket delays none longer than
  /// 30 s (keys that keep failing still back off individually, up to 1000 s).
  public static func standard() -> MaxOfRateLimiter<Key> {
    MaxOfRateLimiter(
      ExponentialBackoffRateLimiter<Key>(base: .milliseconds(5), cap: .seconds(1000)),
      TokenBucketRateLimiter<Key>(rate: 10, burst: 100, maximumWait: .seconds(30)))
  }

  /// Records a failure of `key` at `now`; returns how long it waits before its retry.
  public mutating func delay(for key: Key, now: Duration) -> Duration {
    var longest = Duration.zero
    for index in self.limiters.indices {
      longest = max(longest, self.limiters[index].delay(for: key, now: now))
    }
    return longest
  }

  /// Forgets `key`'s failure history.
  public mutating func forget(_ key: Key) {
    for index in self.limiters.indices { self.limiters[index].forget(key) }
  }
}
