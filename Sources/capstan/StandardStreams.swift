import Foundation

/// Unbuffered writes to standard output and standard error, so that long-running commands
/// (`watch`, `lease keepalive`) show each line at once even when the output is a pipe.
enum StandardStreams {
  /// Writes `text` to standard output as is.
  static func write(_ text: String) {
    guard !text.isEmpty else { return }
    FileHandle.standardOutput.write(Data(text.utf8))
  }

  /// Writes `lines`, each followed by a newline, to standard output in one write.
  static func writeLines(_ lines: [String]) {
    guard !lines.isEmpty else { return }
    self.write(lines.joined(separator: "\n") + "\n")
  }

  /// Writes `text` to standard error as is.
  static func writeError(_ text: String) {
    FileHandle.standardError.write(Data(text.utf8))
  }
}
