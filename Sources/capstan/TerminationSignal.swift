import Dispatch
import Foundation

/// SIGINT / SIGTERM handling for the long-running commands.
enum TerminationSignal {
  /// Suspends until SIGINT or SIGTERM arrives, or until the task is cancelled. While it waits
  /// the signals do not kill the process; afterwards their default action is restored.
  static func wait() async {
    let (signals, continuation) = AsyncStream.makeStream(of: Int32.self, bufferingPolicy: .bufferingNewest(1))
    let handledSignals: [Int32] = [SIGINT, SIGTERM]
    var sources: [any DispatchSourceSignal] = []
    for handled in handledSignals {
      signal(handled, SIG_IGN)
      let source = DispatchSource.makeSignalSource(signal: handled, queue: .global())
      source.setEventHandler { continuation.yield(handled) }
      source.resume()
      sources.append(source)
    }
    for await _ in signals { break }
    continuation.finish()
    for source in sources { source.cancel() }
    for handled in handledSignals { signal(handled, SIG_DFL) }
  }

  /// Runs `body` until it returns or SIGINT/SIGTERM arrives (then `body` is cancelled).
  ///
  /// - Returns: `true` when a signal ended the wait, `false` when `body` finished by itself.
  static func runUntilSignalled(_ body: @escaping @Sendable () async throws -> Void) async throws -> Bool {
    try await withThrowingTaskGroup(of: Bool.self) { group in
      group.addTask {
        try await body()
        return false
      }
      group.addTask {
        await Self.wait()
        return true
      }
      defer { group.cancelAll() }
      return try await group.next() ?? false
    }
  }
}
