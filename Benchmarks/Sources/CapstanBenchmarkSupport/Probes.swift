import CHeapStats
import Foundation

/// Seconds `body` takes on the monotonic clock.
@inline(never)
public func seconds(_ body: () throws -> Void) rethrows -> Double {
  let start = ContinuousClock.now
  try body()
  return (ContinuousClock.now - start).seconds
}

extension Duration {
  /// The duration in seconds.
  public var seconds: Double {
    let (whole, attoseconds) = self.components
    return Double(whole) + Double(attoseconds) / 1e18
  }
}

/// What a region of code left allocated on the heap.
public struct HeapDelta: Sendable {
  /// Heap footprint: bytes glibc's malloc holds for the region's surviving allocations, its chunk
  /// headers and rounding included (mallinfo2 in-use before/after), minus the 16-byte header the
  /// benchmark's malloc interposer adds to each allocation (so the figure is what the process
  /// would use without the harness).
  public var footprint: Int
  /// Bytes requested from malloc and not freed (the interposer's counts; 0 without it).
  public var requested: Int
  /// Allocations not freed (the interposer's counts; 0 without it).
  public var allocations: Int
}

/// Heap and resident-memory probes (glibc and Linux `/proc`).
public enum Memory {
  /// The header ordo-one's malloc interposer puts before every allocation it hands out.
  public static let interposerHeaderBytes = 16

  /// Whether heap figures are available (glibc's `mallinfo2`).
  public static var heapStatisticsAvailable: Bool { capstan_heap_in_use() > 0 }

  /// Whether the benchmark's malloc interposer counts allocations in this process.
  public static var interposerPresent: Bool { capstan_interposer_present() != 0 }

  /// Returns free heap pages to the system (`malloc_trim(0)`), so that resident memory follows
  /// live data.
  public static func trim() { capstan_heap_trim() }

  /// Runs `body` and returns its result with what it left on the heap. Run it on a quiet process:
  /// allocations other threads make meanwhile are counted too.
  public static func measureHeap<T>(_ body: () throws -> T) rethrows -> (value: T, delta: HeapDelta) {
    capstan_heap_trim()
    let before = capstan_heap_in_use()
    capstan_interposer_start()
    let value = try body()
    var netCount: Int64 = 0
    var netBytes: Int64 = 0
    capstan_interposer_stop(&netCount, &netBytes)
    let after = capstan_heap_in_use()
    let footprint = Int(after - before) - Self.interposerHeaderBytes * Int(netCount)
    return (value, HeapDelta(footprint: footprint, requested: Int(netBytes), allocations: Int(netCount)))
  }

  /// The process's resident memory now (`/proc/self/statm`), in bytes.
  public static func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
  }

  /// The process's peak resident memory (`VmHWM` in `/proc/self/status`), in bytes.
  public static func peakResidentBytes() -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("VmHWM:") {
      let number = line.dropFirst("VmHWM:".count).split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) }
      return number.map { $0 * 1024 }
    }
    return nil
  }

  /// Resets the peak resident memory to the current resident memory (writes `5` to
  /// `/proc/self/clear_refs`); `false` if the kernel refused.
  public static func resetPeakResident() -> Bool {
    let descriptor = open("/proc/self/clear_refs", O_WRONLY)
    guard descriptor >= 0 else { return false }
    defer { close(descriptor) }
    return write(descriptor, "5", 1) == 1
  }
}

/// Runs `baseline` and `candidate` alternately (ABBA: B C C B B C C B …) `rounds` times each on
/// round numbers 0..<rounds; returns their total seconds.
public func interleaved(
  rounds: Int, baseline: (Int) -> Void, candidate: (Int) -> Void
) -> (baseline: Double, candidate: Double) {
  var baselineSeconds = 0.0
  var candidateSeconds = 0.0
  for round in 0..<rounds {
    if round % 2 == 0 {
      baselineSeconds += seconds { baseline(round) }
      candidateSeconds += seconds { candidate(round) }
    } else {
      candidateSeconds += seconds { candidate(round) }
      baselineSeconds += seconds { baseline(round) }
    }
  }
  return (baselineSeconds, candidateSeconds)
}
