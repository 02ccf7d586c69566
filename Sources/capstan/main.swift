import ArgumentParser
import Capstan
import CapstanApp
import CapstanEtcd
import Foundation
import Logging
import NIOCore
import NIOPosix

/// Parses the command line, bootstraps logging once, runs the command, and turns every failure
/// into one readable line on stderr with exit code 1 (usage errors keep argument-parser's text).
enum CapstanEntryPoint {
  /// The environment variable that sets the log level when `--log-level` is absent.
  static let logLevelEnvironmentVariable = "LOG_LEVEL"
  /// The log level of CLI commands when nothing else is asked for.
  static let defaultLogLevel = Logger.Level.warning

  static func run() async -> Never {
    let command: any ParsableCommand
    do {
      command = try CapstanCommand.parseAsRoot()
    } catch {
      CapstanCommand.exit(withError: error)
    }
    let level = (command as? any EtcdCommand)?.etcd.logLevel
      ?? ProcessInfo.processInfo.environment[logLevelEnvironmentVariable].flatMap { Logger.Level(rawValue: $0.lowercased()) }
      ?? defaultLogLevel
    LoggingSystem.bootstrap { label in JSONLinesLogHandler(label: label, logLevel: level) }

    do {
      if var asyncCommand = command as? any AsyncParsableCommand {
        try await asyncCommand.run()
      } else {
        var syncCommand = command
        try syncCommand.run()
      }
      exit(0)
    } catch let error as EtcdError {
      fail(code: "\(error.code)", message: error.message)
    } catch let error as BackendError {
      fail(code: "\(error.code)", message: error.message)
    } catch let error as InformerError {
      fail(code: "\(error.code)", message: error.message)
    } catch let error as TxnScriptError {
      fail(code: "invalidArgument", message: error.description)
    } catch {
      if isArgumentParserError(error) { CapstanCommand.exit(withError: error) }
      fail(code: "internalError", message: "\(error)")
    }
  }

  /// True for argument-parser's own errors (usage errors, help requests, exit codes), which it
  /// prints and maps to exit codes itself.
  static func isArgumentParserError(_ error: any Error) -> Bool {
    String(reflecting: type(of: error)).hasPrefix("ArgumentParser.")
  }

  /// Prints `capstan: error: <code>: <message>` on one line and exits with status 1.
  static func fail(code: String, message: String) -> Never {
    let oneLine = message.split(whereSeparator: \.isNewline).joined(separator: " ")
    StandardStreams.writeError("capstan: error: \(code): \(oneLine)\n")
    exit(1)
  }
}

// Run Swift concurrency on NIO's event loop threads, so the client's work does not hop between
// NIO's threads and the global executor's (set CAPSTAN_NIO_EXECUTOR=0 to compare).
if ProcessInfo.processInfo.environment["CAPSTAN_NIO_EXECUTOR"] != "0" {
  _ = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
}
await CapstanEntryPoint.run()
