import Foundation

/// Runs blocking `body` (waiting for a process, a blocking socket) on a thread of its own and
/// returns its result to the awaiting task.
///
/// Async tests must not block: Swift concurrency has one cooperative thread per core (two on
/// CI), shared by every suite running in parallel, and a test that waits for a process for
/// seconds on one of them starves the others — their etcd clients' calls then time out.
public func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
  try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
    Thread { continuation.resume(with: Result { try body() }) }.start()
  }
}

extension TestCommand {
  /// ``run(_:_:timeout:)`` on a thread of its own, for async tests.
  public static func run(_ executable: URL, _ arguments: [String], timeout: Duration = .seconds(30)) async throws
    -> Output
  {
    try await onOwnThread { try Self.run(executable, arguments, timeout: timeout) as Output }
  }

  /// ``run(_:_:environment:timeout:)`` on a thread of its own, for async tests.
  public static func run(
    _ executable: URL, _ arguments: [String], environment: [String: String], timeout: Duration = .seconds(30)
  ) async throws -> Output {
    try await onOwnThread { try Self.run(executable, arguments, environment: environment, timeout: timeout) as Output }
  }
}

extension RunningTestCommand {
  /// ``waitForExit(timeout:)`` on a thread of its own, for async tests.
  public func waitForExit(timeout: Duration = .seconds(30)) async -> TestCommand.Output {
    // The closure cannot throw; `try!` only satisfies onOwnThread's throwing signature.
    try! await onOwnThread { self.waitForExit(timeout: timeout) as TestCommand.Output }
  }
}
