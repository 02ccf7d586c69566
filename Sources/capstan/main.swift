import ArgumentParser
import Capstan
import CapstanApp
import CapstanDemo
import CapstanEtcd
import CapstanHTTP
import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix
import Prometheus

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
    if let application = command as? any ApplicationCommand {
      await runApplication(application)
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
    } catch {
      report(error)
    }
  }

  /// `run` and `demo`: every setting is validated before anything starts (a bad one is one line
  /// and exit 1), then logging (JSON lines with the service name) and metrics (Prometheus, the
  /// registry `/metrics` serves) are bootstrapped, and the command runs.
  static func runApplication(_ command: some ApplicationCommand) async -> Never {
    let configuration: RunConfiguration
    do {
      configuration = try command.runConfiguration(environment: ProcessInfo.processInfo.environment)
    } catch {
      fail(code: "invalidConfiguration", message: error.description)
    }
    LoggingSystem.bootstrap { label in
      JSONLinesLogHandler(label: label, serviceName: configuration.serviceName, logLevel: configuration.logLevel)
    }
    let registry = PrometheusCollectorRegistry()
    MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
    do {
      exit(try await command.run(configuration: configuration, registry: registry))
    } catch {
      report(error)
    }
  }

  /// Ends the process with one line for `error` (argument-parser's own errors keep its text).
  static func report(_ error: any Error) -> Never {
    switch error {
    case let error as EtcdError: fail(code: "\(error.code)", message: error.message)
    case let error as BackendError: fail(code: "\(error.code)", message: error.message)
    case let error as InformerError: fail(code: "\(error.code)", message: error.message)
    case let error as ManagerError: fail(code: "\(error.code)", message: error.message)
    case let error as CapstanHTTPServerError: fail(code: error.code.rawValue, message: error.message)
    case let error as DemoConfigurationError: fail(code: "invalidConfiguration", message: error.description)
    case let error as TxnScriptError: fail(code: "invalidArgument", message: error.description)
    default:
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
