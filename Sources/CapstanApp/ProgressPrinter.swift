import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Shows a long-running command's progress: on a terminal one line rewritten in place
/// (`\r`, the line, erase to its end); elsewhere (a pipe, a file, CI logs) plain lines, each
/// written only when it differs from the previous one.
public final class ProgressPrinter: Sendable {
  /// Where text goes, exactly as given.
  public typealias Output = @Sendable (String) -> Void

  /// Whether the output is a terminal (progress rewrites one line).
  public let isTerminal: Bool
  private let output: Output
  private let state = Mutex<(lastLine: String?, lineIsOpen: Bool)>((nil, false))

  /// - Parameters:
  ///   - isTerminal: rewrite one line in place (`true`) or print plain lines (`false`).
  ///   - output: where text goes.
  public init(isTerminal: Bool, output: @escaping Output) {
    self.isTerminal = isTerminal
    self.output = output
  }

  /// A printer on standard output, in place when standard output is a terminal (`isatty(1)`).
  public static func standardOutput() -> ProgressPrinter {
    ProgressPrinter(isTerminal: isatty(STDOUT_FILENO) == 1) { text in FileHandle.standardOutput.write(Data(text.utf8)) }
  }

  /// Shows `line` as the current progress (a newline in it is replaced by a blank).
  public func update(_ line: String) {
    let oneLine = line.replacing("\n", with: " ")
    // Written under the lock, so concurrent updates reach the output in the order they took it.
    self.state.withLock { state in
      guard state.lastLine != oneLine else { return }
      state.lastLine = oneLine
      if self.isTerminal {
        state.lineIsOpen = true
        self.output("\r" + oneLine + "\u{1B}[K")
      } else {
        self.output(oneLine + "\n")
      }
    }
  }

  /// Ends the progress line (on a terminal the last state stays visible) and prints `lines`
  /// below it, each on its own line.
  public func finish(with lines: [String] = []) {
    self.state.withLock { state in
      let text = (state.lineIsOpen ? "\n" : "") + lines.map { $0 + "\n" }.joined()
      state.lineIsOpen = false
      if !text.isEmpty { self.output(text) }
    }
  }
}
