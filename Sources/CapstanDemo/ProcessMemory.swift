import Foundation

/// The process's resident memory, from Linux's `/proc/self/status`.
struct ProcessMemory: Sendable, Hashable {
  /// Resident now (`VmRSS`), in bytes.
  var resident: Int
  /// The peak resident so far (`VmHWM`), in bytes.
  var peakResident: Int

  /// The current figures; nil where `/proc/self/status` is not readable.
  static func current() -> ProcessMemory? {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
    func kilobytes(_ field: String) -> Int? {
      guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }) else { return nil }
      return line.split(separator: " ").compactMap { Int($0) }.first
    }
    guard let resident = kilobytes("VmRSS"), let peak = kilobytes("VmHWM") else { return nil }
    return ProcessMemory(resident: resident * 1024, peakResident: peak * 1024)
  }
}
