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
