import Foundation

/// Runs a command line tool (e.g. the `capstan` executable) in tests and captures its output.
public enum TestCommand {
  /// The outcome of a finished command.
  public struct Output: Sendable {
    /// The exit status (the signal number if the process was killed by one).
    public var exitStatus: Int32
    /// Everything written to standard output.
    public var standardOutput: String
    /// Everything written to standard error.
    public var standardError: String
    /// True if the command ran past its timeout and was killed.
    public var timedOut: Bool
  }

  /// Runs `executable` with `arguments` to completion (killing it after `timeout`).
  public static func run(_ executable: URL, _ arguments: [String], timeout: Duration = .seconds(30)) throws -> Output {
    let result = try ProcessRunner.run(executable, arguments: arguments, timeout: timeout)
    return Output(
      exitStatus: result.exitStatus, standardOutput: result.standardOutput,
      standardError: result.standardError, timedOut: result.timedOut)
  }

  /// The product `name` built next to the running test bundle (`swift build --build-tests`
  /// builds the package's executables there too).
  public static func builtProduct(_ name: String) throws -> URL {
    var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    // On Darwin the test binary sits inside a .xctest bundle.
    while directory.pathExtension == "xctest" || directory.lastPathComponent == "MacOS" || directory.lastPathComponent == "Contents" {
      directory.deleteLastPathComponent()
    }
    let product = directory.appendingPathComponent(name)
    guard FileManager.default.isExecutableFile(atPath: product.path) else {
      throw EtcdTestServerError(.executableNotFound, "\(name) is not built at \(product.path): run `swift build --build-tests` first")
    }
    return product
  }
}

/// A command started in the background by ``TestCommand/start(_:_:environment:)``: signal it,
/// read what it wrote so far, wait for its exit. Killed when released while still running.
///
/// `@unchecked Sendable`: its stored properties are constants, and what it calls on its `Process`
/// (`isRunning`, `terminationStatus`, `processIdentifier`) may be called from any thread.
public final class RunningTestCommand: @unchecked Sendable {
  private let process: Process
  private let scratch: URL
  private let outputFile: URL
  private let errorFile: URL

  init(process: Process, scratch: URL, outputFile: URL, errorFile: URL) {
    self.process = process
    self.scratch = scratch
    self.outputFile = outputFile
    self.errorFile = errorFile
  }

  deinit {
    if self.process.isRunning { ProcessRunner.terminate(self.process, gracePeriod: .seconds(1)) }
    try? FileManager.default.removeItem(at: self.scratch)
  }

  /// The process ID.
  public var processIdentifier: Int32 { self.process.processIdentifier }

  /// Whether the process is still running.
  public var isRunning: Bool { self.process.isRunning }

  /// Everything written to standard output so far.
  public var standardOutput: String { ProcessRunner.readText(self.outputFile) }

  /// Everything written to standard error so far.
  public var standardError: String { ProcessRunner.readText(self.errorFile) }

  /// Sends `signal` (e.g. `SIGTERM`) to the process.
  public func send(_ signal: Int32) {
    if self.process.isRunning { _ = kill(self.process.processIdentifier, signal) }
  }

  /// Waits up to `timeout` for the process to exit (killing it after that) and returns its output.
  public func waitForExit(timeout: Duration = .seconds(30)) -> TestCommand.Output {
    let finished = ProcessRunner.waitForExit(self.process, timeout: timeout)
    if !finished { ProcessRunner.terminate(self.process, gracePeriod: .seconds(1)) }
    return TestCommand.Output(
      exitStatus: self.process.terminationStatus, standardOutput: self.standardOutput,
      standardError: self.standardError, timedOut: !finished)
  }
}

extension TestCommand {
  /// Starts `executable` in the background, its output going to temporary files.
  ///
  /// - Parameter environment: the whole environment of the command (default: this process's).
  public static func start(_ executable: URL, _ arguments: [String], environment: [String: String]? = nil) throws
    -> RunningTestCommand
  {
    let scratch = FileManager.default.temporaryDirectory
      .appendingPathComponent("capstan-cmd-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    let outputFile = scratch.appendingPathComponent("stdout")
    let errorFile = scratch.appendingPathComponent("stderr")
    let process = try ProcessRunner.spawn(
      executable, arguments: arguments, environment: environment, standardOutput: outputFile, standardError: errorFile)
    return RunningTestCommand(process: process, scratch: scratch, outputFile: outputFile, errorFile: errorFile)
  }

  /// Runs `executable` to completion with `environment` as its whole environment.
  public static func run(
    _ executable: URL, _ arguments: [String], environment: [String: String], timeout: Duration = .seconds(30)
  ) throws -> Output {
    let result = try ProcessRunner.run(executable, arguments: arguments, environment: environment, timeout: timeout)
    return Output(
      exitStatus: result.exitStatus, standardOutput: result.standardOutput,
      standardError: result.standardError, timedOut: result.timedOut)
  }
}
