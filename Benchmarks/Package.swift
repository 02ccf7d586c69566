// swift-tools-version: 6.1
// Capstan's benchmarks (ordo-one/benchmark), kept apart from Capstan's own package so that
// building Capstan never pulls in the benchmark harness. Run them with `./run` (see that script)
// or `swift package benchmark` from this directory. Each benchmark prints one line per goal of
// issues 3, 4 and 5: a ratio against a baseline measured in the same run, and whether it is met.
import PackageDescription

let benchmarkSettings: [SwiftSetting] = [
  .swiftLanguageMode(.v6),
  .enableUpcomingFeature("ExistentialAny"),
  .enableUpcomingFeature("MemberImportVisibility"),
]

let benchmarkDependencies: [Target.Dependency] = [
  "CapstanBenchmarkSupport",
  .product(name: "Benchmark", package: "benchmark"),
  .product(name: "Capstan", package: "Capstan"),
  .product(name: "CapstanEtcd", package: "Capstan"),
  .product(name: "CapstanTesting", package: "Capstan"),
  .product(name: "Logging", package: "swift-log"),
]

let package = Package(
  name: "CapstanBenchmarks",
  platforms: [.macOS(.v15)],
  dependencies: [
    // The directory is named by whoever cloned it; the explicit name keeps the identity stable.
    .package(name: "Capstan", path: ".."),
    .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
  ],
  targets: [
    // glibc heap statistics and the benchmark malloc interposer's counters, for memory figures.
    .target(name: "CHeapStats", path: "Sources/CHeapStats"),
    // The Pod type, data sets, memory probes and the goal lines every benchmark prints.
    .target(
      name: "CapstanBenchmarkSupport",
      dependencies: [
        "CHeapStats",
        .product(name: "Benchmark", package: "benchmark"),
        .product(name: "Capstan", package: "Capstan"),
        .product(name: "CapstanTesting", package: "Capstan"),
        .product(name: "Logging", package: "swift-log"),
      ],
      path: "Sources/CapstanBenchmarkSupport",
      swiftSettings: benchmarkSettings
    ),
    // ObjectCache: get by UID and by index, upsert with 3 indexes, memory per object and index.
    .executableTarget(
      name: "CacheBenchmarks",
      dependencies: benchmarkDependencies,
      path: "Benchmarks/CacheBenchmarks",
      swiftSettings: benchmarkSettings,
      plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
    ),
    // Ingest (bytes to cached object), the informer pipeline on MemoryBackend, relist memory.
    .executableTarget(
      name: "IngestBenchmarks",
      dependencies: benchmarkDependencies,
      path: "Benchmarks/IngestBenchmarks",
      swiftSettings: benchmarkSettings,
      plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
    ),
    // WorkQueue add+get+done against a Deque behind one Mutex.
    .executableTarget(
      name: "WorkQueueBenchmarks",
      dependencies: benchmarkDependencies + [.product(name: "DequeModule", package: "swift-collections")],
      path: "Benchmarks/WorkQueueBenchmarks",
      swiftSettings: benchmarkSettings,
      plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
    ),
  ]
)
