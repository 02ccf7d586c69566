import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The outcome of a finished command.
struct CommandResult: Sendable {
  /// The exit status (or the terminating signal number when `uncaughtSignal` is true).
  var exitStatus: Int32
  /// Whether the process was ended by a signal rather than by exiting.
  var uncaughtSignal: Bool
  /// Everything the process wrote to its standard output.
  var standardOutput: String
  /// Everything the process wrote to its standard error.
  var standardError: String
  /// Whether the process was killed because it ran past its timeout.
  var timedOut: Bool

  /// Whether the process exited normally with status 0.
  var succeeded: Bool { !uncaughtSignal && !timedOut && exitStatus == 0 }
}

/// Internal helper that every launcher in this module uses to find executables, spawn
/// processes, wait for them and capture their output.
enum ProcessRunner {
  /// Finds an executable: first the path in `environmentVariable` (if set and non-empty),
  /// then every directory of `PATH`, then `fallbacks`. Returns `nil` if none is executable.
  static func findExecutable(
    named name: String,
    environmentVariable: String?,
    fallbacks: [String]
  ) -> URL? {
    let environment = ProcessInfo.processInfo.environment
    var candidates: [String] = []
    if let environmentVariable, let value = environment[environmentVariable], !value.isEmpty {
      candidates.append(value)
    }
    for directory in (environment["PATH"] ?? "").split(separator: ":") where !directory.isEmpty {
      candidates.append(String(directory) + "/" + name)
    }
    candidates.append(contentsOf: fallbacks)
    for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate) {
      return URL(fileURLWithPath: candidate)
    }
    return nil
  }

  /// The environment of this process without variables whose names start with one of
  /// `removingPrefixes`, plus `adding`.
  static func environment(removingPrefixes: [String], adding: [String: String] = [:]) -> [String: String] {
    var result = ProcessInfo.processInfo.environment.filter { key, _ in
      !removingPrefixes.contains { key.hasPrefix($0) }
    }
    result.merge(adding) { _, new in new }
    return result
  }

  /// Starts `executable` with `arguments`, sending its standard output and standard error
  /// to the given files (created if needed, appended to). Standard input is `/dev/null`.
  static func spawn(
    _ executable: URL,
    arguments: [String],
    environment: [String: String]? = nil,
    workingDirectory: URL? = nil,
    standardOutput: URL,
    standardError: URL
  ) throws -> Process {
    let output = try openForWriting(standardOutput)
    let error = standardError == standardOutput ? output : try openForWriting(standardError)
    defer {
      try? output.close()
      if error !== output { try? error.close() }
    }
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    if let environment { process.environment = environment }
    if let workingDirectory { process.currentDirectoryURL = workingDirectory }
    process.standardInput = FileHandle.nullDevice
    process.standardOutput = output
    process.standardError = error
    do {
      try process.run()
    } catch {
      throw EtcdTestServerError(
        .launchFailed,
        "could not launch \(executable.path) \(arguments.joined(separator: " ")): \(error)"
      )
    }
    return process
  }

  /// Blocks until `process` has exited (and has been reaped) or `timeout` elapsed.
  /// Returns whether the process has exited.
  @discardableResult
  static func waitForExit(_ process: Process, timeout: Duration) -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while process.isRunning {
      if clock.now >= deadline { return false }
      usleep(10_000)
    }
    return true
  }

  /// Sends `signal` to `pid` and waits up to `timeout` for `process` to exit.
  /// Returns whether it has exited.
  @discardableResult
  static func signal(_ process: Process, _ signal: Int32, timeout: Duration) -> Bool {
    if !process.isRunning { return true }
    _ = kill(process.processIdentifier, signal)
    return waitForExit(process, timeout: timeout)
  }

  /// Stops `process`: SIGTERM, then SIGKILL if it is still alive after `gracePeriod`.
  static func terminate(_ process: Process, gracePeriod: Duration) {
    if signal(process, SIGTERM, timeout: gracePeriod) { return }
    signal(process, SIGKILL, timeout: .seconds(10))
  }

  /// Runs a command to completion and captures its output. The process is killed if it
  /// runs longer than `timeout`.
  static func run(
    _ executable: URL,
    arguments: [String],
    environment: [String: String]? = nil,
    workingDirectory: URL? = nil,
    timeout: Duration = .seconds(30)
  ) throws -> CommandResult {
    let scratch = FileManager.default.temporaryDirectory
      .appendingPathComponent("capstan-cmd-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: scratch) }
    let outputFile = scratch.appendingPathComponent("stdout")
    let errorFile = scratch.appendingPathComponent("stderr")
    let process = try spawn(
      executable,
      arguments: arguments,
      environment: environment,
      workingDirectory: workingDirectory,
      standardOutput: outputFile,
      standardError: errorFile
    )
    let finished = waitForExit(process, timeout: timeout)
    if !finished { terminate(process, gracePeriod: .seconds(1)) }
    return CommandResult(
      exitStatus: process.terminationStatus,
      uncaughtSignal: process.terminationReason == .uncaughtSignal,
      standardOutput: readText(outputFile),
      standardError: readText(errorFile),
      timedOut: !finished
    )
  }

  /// Runs a command and returns its standard output, throwing `.commandFailed` (with the
  /// command line and its standard error) if it does not exit with status 0.
  static func runChecked(
    _ executable: URL,
    arguments: [String],
    environment: [String: String]? = nil,
    workingDirectory: URL? = nil,
    timeout: Duration = .seconds(30)
  ) throws -> String {
    let result = try run(
      executable,
      arguments: arguments,
      environment: environment,
      workingDirectory: workingDirectory,
      timeout: timeout
    )
    guard result.succeeded else {
      let how: String
      if result.timedOut {
        how = "timed out after \(timeout)"
      } else if result.uncaughtSignal {
        how = "was killed by signal \(result.exitStatus)"
      } else {
        how = "exited with status \(result.exitStatus)"
      }
      var message = "`\(([executable.path] + arguments).joined(separator: " "))` \(how)"
      let detail = result.standardError.trimmingCharacters(in: .whitespacesAndNewlines)
      if !detail.isEmpty { message += ":\n" + detail }
      throw EtcdTestServerError(.commandFailed, message)
    }
    return result.standardOutput
  }

  /// The contents of a text file, or the empty string if it cannot be read.
  static func readText(_ file: URL) -> String {
    guard let data = FileManager.default.contents(atPath: file.path) else { return "" }
    return String(decoding: data, as: UTF8.self)
  }

  /// The last `lines` lines of a text file, or the empty string if it cannot be read.
  static func tail(of file: URL, lines: Int) -> String {
    readText(file).split(separator: "\n", omittingEmptySubsequences: false)
      .suffix(lines + 1)
      .joined(separator: "\n")
      .trimmingCharacters(in: .whitespacesAndNewlines)
  }

  /// Opens `file` for appending, creating it if needed.
  private static func openForWriting(_ file: URL) throws -> FileHandle {
    if !FileManager.default.fileExists(atPath: file.path),
      !FileManager.default.createFile(atPath: file.path, contents: nil)
    {
      throw EtcdTestServerError(.launchFailed, "could not create file \(file.path)")
    }
    let handle = try FileHandle(forWritingTo: file)
    try handle.seekToEnd()
    return handle
  }
}
