import Capstan
import PropertyBased
import Testing

@Suite struct WorkQueueRateLimiterTests {
  @Test func exponentialBackoffDoublesUpToTheCap() {
    var limiter = ExponentialBackoffRateLimiter<String>(base: .milliseconds(5), cap: .seconds(1))
    var now = Duration.zero
    var delays: [Duration] = []
    for _ in 0..<10 {
      let delay = limiter.delay(for: "a", now: now)
      delays.append(delay)
      now += delay
    }
    #expect(
      delays == [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000].map { Duration.milliseconds($0) })
    #expect(limiter.delay(for: "b", now: now) == .milliseconds(5), "keys back off independently")
    limiter.forget("a")
    #expect(limiter.delay(for: "a", now: now) == .milliseconds(5), "forget starts over")
    #expect(limiter.trackedKeys == 2)
  }

  @Test func aFailureDuringTheBackoffDoesNotGrowIt() {
    var limiter = ExponentialBackoffRateLimiter<String>(base: .seconds(1), cap: .seconds(100))
    #expect(limiter.delay(for: "a", now: .zero) == .seconds(1))
    // Fails again 300 ms later (a real change made it run early): the rest of the backoff.
    #expect(limiter.delay(for: "a", now: .milliseconds(300)) == .milliseconds(700))
    #expect(limiter.delay(for: "a", now: .milliseconds(999)) == .milliseconds(1))
    // Once the backoff has elapsed, the next failure doubles it.
    #expect(limiter.delay(for: "a", now: .seconds(1)) == .seconds(2))
    #expect(limiter.delay(for: "a", now: .milliseconds(1500)) == .milliseconds(1500))
    #expect(limiter.delay(for: "a", now: .seconds(10)) == .seconds(4))
  }

  @Test func exponentialBackoffNeverExceedsTheCapNorOverflows() {
    var limiter = ExponentialBackoffRateLimiter<Int>(base: .nanoseconds(1), cap: .seconds(1000))
    var now = Duration.zero
    for _ in 0..<200 {
      let delay = limiter.delay(for: 1, now: now)
      #expect(delay > .zero && delay <= .seconds(1000))
      now += delay
    }
    #expect(limiter.delay(for: 1, now: now) == .seconds(1000))
  }

  @Test func tokenBucketAllowsTheBurstThenTheRate() {
    var bucket = TokenBucketRateLimiter<Int>(rate: 10, burst: 3, maximumWait: .seconds(60))
    let atOnce = (0..<6).map { bucket.delay(for: $0, now: .zero) }
    #expect(atOnce == [.zero, .zero, .zero, .milliseconds(100), .milliseconds(200), .milliseconds(300)])
    // One second later the debt (3 tokens) is repaid and 7 more refilled, capped at the burst (3).
    #expect(bucket.delay(for: 0, now: .seconds(1)) == .zero)
    #expect(bucket.availableTokens == 2)
    #expect(bucket.delay(for: 0, now: .seconds(100)) == .zero)
    #expect(bucket.availableTokens == 2, "the bucket never holds more than the burst")
  }

  @Test func tokenBucketWithoutAMaximumWaitHasTheLongTail() {
    var bucket = TokenBucketRateLimiter<Int>(rate: 10, burst: 100, maximumWait: .seconds(100_000))
    let longest = (0..<10_000).map { bucket.delay(for: $0, now: .zero) }.max()!
    #expect(longest == .milliseconds(990_000), "10k keys at 10/s: 16.5 minutes")
  }

  @Test func tokenBucketSchedules10kKeysWithinTheMaximumWait() {
    var bucket = TokenBucketRateLimiter<Int>(rate: 10, burst: 100, maximumWait: .seconds(30))
    let delays = (0..<10_000).map { bucket.delay(for: $0, now: .zero) }
    #expect(delays.allSatisfy { $0 <= .seconds(30) })
    // The burst goes at once, then 10/s for 30 s; the overflow waits exactly the maximum.
    #expect(delays.prefix(100).allSatisfy { $0 == .zero })
    #expect(delays[100] == .milliseconds(100))
    #expect(delays[399] == .seconds(30))
    let shaped = delays.filter { $0 > .zero && $0 < .seconds(30) }
    #expect(shaped.count == 299)
    #expect(delays.filter { $0 == .seconds(30) }.count == 10_000 - 100 - 299)
    // The overflow did not deepen the debt: 30 s later the 300 reserved tokens are repaid and the
    // bucket is empty, not in debt, so the next key waits one token.
    #expect(bucket.delay(for: 0, now: .seconds(30)) == .milliseconds(100))
  }

  @Test func tokenBucketNeverWaitsLongerThanTheMaximum() async {
    await propertyCheck(
      count: 200, input: Gen.int(in: 0...2_000).array(of: 1...300), Gen.int(in: 1...50), Gen.int(in: 0...20)
    ) { gaps, burst, maximumWaitSeconds in
      var bucket = TokenBucketRateLimiter<Int>(
        rate: 5, burst: burst, maximumWait: .seconds(maximumWaitSeconds))
      var now = Duration.zero
      for gap in gaps {
        now += .milliseconds(gap)
        let delay = bucket.delay(for: 0, now: now)
        #expect(delay >= .zero && delay <= .seconds(maximumWaitSeconds))
      }
    }
  }

  @Test func fastSlowSwitchesAfterTheFastAttempts() {
    var limiter = FastSlowRateLimiter<String>(
      fastDelay: .milliseconds(10), slowDelay: .seconds(5), maxFastAttempts: 2)
    let delays = (0..<4).map { _ in limiter.delay(for: "a", now: .zero) }
    #expect(delays == [.milliseconds(10), .milliseconds(10), .seconds(5), .seconds(5)])
    #expect(limiter.delay(for: "b", now: .zero) == .milliseconds(10))
    limiter.forget("a")
    #expect(limiter.delay(for: "a", now: .zero) == .milliseconds(10))
  }

  @Test func maxOfTakesTheLongestWaitAndAsksEveryLimiter() {
    var limiter = MaxOfRateLimiter<String>(
      ExponentialBackoffRateLimiter(base: .milliseconds(5), cap: .seconds(1000)),
      TokenBucketRateLimiter(rate: 1, burst: 1, maximumWait: .seconds(30)))
    #expect(limiter.delay(for: "a", now: .zero) == .milliseconds(5), "backoff 5 ms, bucket has a token")
    #expect(limiter.delay(for: "b", now: .zero) == .seconds(1), "the bucket is empty: 1 s")
    #expect(limiter.delay(for: "a", now: .seconds(10)) == .milliseconds(10), "backoff grew; bucket refilled")
    limiter.forget("a")
    #expect(limiter.delay(for: "a", now: .seconds(20)) == .milliseconds(5))
  }

  @Test func theStandardLimiterIsBoundedByItsMaximumWaitForABurst() {
    var limiter = MaxOfRateLimiter<Int>.standard()
    let delays = (0..<10_000).map { limiter.delay(for: $0, now: .zero) }
    #expect(delays.max() == .seconds(30))
    #expect(delays.first == .milliseconds(5))
  }
}
