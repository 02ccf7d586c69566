// swift-tools-version:6.1
import PackageDescription

let strictSwiftSettings: [SwiftSetting] = [
  .swiftLanguageMode(.v6),
  .enableUpcomingFeature("ExistentialAny"),
  .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
  name: "Capstan",
  platforms: [.macOS(.v15)],
  products: [
    .library(name: "Capstan", targets: ["Capstan"]),
    .library(name: "CapstanEtcd", targets: ["CapstanEtcd"]),
    .library(name: "CapstanEtcdAPI", targets: ["CapstanEtcdAPI"]),
    .library(name: "CapstanTesting", targets: ["CapstanTesting"]),
    .library(name: "CapstanHTTP", targets: ["CapstanHTTP"]),
    .library(name: "CapstanApp", targets: ["CapstanApp"]),
    .library(name: "PodSetExample", targets: ["PodSetExample"]),
    .library(name: "CapstanDemo", targets: ["CapstanDemo"]),
    .executable(name: "capstan", targets: ["capstan"]),
  ],
  dependencies: [
    .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
    .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
    .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
    .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    .package(url: "https://github.com/apple/swift-nio-http2", from: "1.46.0"),
    .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
    .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
    .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
    .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
    .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
  ],
  targets: [
    // Generated protobuf messages and gRPC client stubs for etcd v3 (scripts/generate-protos).
    .target(
      name: "CapstanEtcdAPI",
      dependencies: [
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      ],
      swiftSettings: [.swiftLanguageMode(.v6)]
    ),
    // The etcd v3 client.
    .target(
      name: "CapstanEtcd",
      dependencies: [
        "CapstanEtcdAPI",
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
        .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOSSL", package: "swift-nio-ssl"),
        .product(name: "NIOHTTP2", package: "swift-nio-http2"),
        .product(name: "NIOHPACK", package: "swift-nio-http2"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Metrics", package: "swift-metrics"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ],
      swiftSettings: strictSwiftSettings
    ),
    // The controller runtime: backends, resources, the object cache, informers.
    .target(
      name: "Capstan",
      dependencies: [
        "CapstanEtcd",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Metrics", package: "swift-metrics"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "UnixSignals", package: "swift-service-lifecycle"),
        .product(name: "DequeModule", package: "swift-collections"),
        .product(name: "HeapModule", package: "swift-collections"),
      ],
      swiftSettings: strictSwiftSettings
    ),
    // Launches real etcd processes for tests and benchmarks.
    .target(
      name: "CapstanTesting",
      dependencies: [],
      swiftSettings: strictSwiftSettings
    ),
    // Swift Testing helpers shared by the test targets (the suite-scoped etcd trait).
    .target(
      name: "CapstanTestSupport",
      dependencies: ["Capstan", "CapstanTesting", .product(name: "Metrics", package: "swift-metrics")],
      swiftSettings: strictSwiftSettings
    ),
    // The operational HTTP endpoints of a running manager: /metrics, /healthz, /readyz.
    .target(
      name: "CapstanHTTP",
      dependencies: [
        .product(name: "Hummingbird", package: "hummingbird"),
        .product(name: "HummingbirdCore", package: "hummingbird"),
        .product(name: "Prometheus", package: "swift-prometheus"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ],
      swiftSettings: strictSwiftSettings
    ),
    // A Capstan process: validated start-up configuration (flags and environment), the
    // JSON-lines log format, and the manager wired with the HTTP endpoints.
    .target(
      name: "CapstanApp",
      dependencies: [
        "Capstan", "CapstanHTTP",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Metrics", package: "swift-metrics"),
        .product(name: "Prometheus", package: "swift-prometheus"),
        .product(name: "UnixSignals", package: "swift-service-lifecycle"),
      ],
      swiftSettings: strictSwiftSettings
    ),
    // The tutorial controller: PodSets that own Pods (Examples/PodSetExample/README.md).
    .target(
      name: "PodSetExample",
      dependencies: [
        "Capstan",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Metrics", package: "swift-metrics"),
      ],
      path: "Examples/PodSetExample",
      exclude: ["README.md"],
      swiftSettings: strictSwiftSettings
    ),
    // The `capstan demo` scenario as a library: PodSets created, disturbed and checked.
    .target(
      name: "CapstanDemo",
      dependencies: [
        "Capstan", "PodSetExample",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Metrics", package: "swift-metrics"),
      ],
      swiftSettings: strictSwiftSettings
    ),
    .executableTarget(
      name: "capstan",
      dependencies: [
        "Capstan",
        "CapstanEtcd",
        "CapstanHTTP",
        "CapstanApp",
        "PodSetExample",
        "CapstanDemo",
        .product(name: "Prometheus", package: "swift-prometheus"),
        .product(name: "Metrics", package: "swift-metrics"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "UnixSignals", package: "swift-service-lifecycle"),
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: strictSwiftSettings
    ),
    .testTarget(
      name: "CapstanEtcdTests",
      dependencies: [
        "CapstanEtcd", "CapstanEtcdAPI", "CapstanTesting", "CapstanTestSupport",
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOEmbedded", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Metrics", package: "swift-metrics"),
      ],
      swiftSettings: strictSwiftSettings
    ),
    .testTarget(
      name: "PodSetExampleTests",
      dependencies: [
        "Capstan", "PodSetExample", "CapstanTestSupport",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Metrics", package: "swift-metrics"),
        .product(name: "PropertyBased", package: "swift-property-based"),
      ],
      swiftSettings: strictSwiftSettings
    ),
    .testTarget(
      name: "CapstanDemoTests",
      dependencies: [
        "Capstan", "CapstanEtcd", "CapstanDemo", "PodSetExample", "CapstanTesting", "CapstanTestSupport",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Metrics", package: "swift-metrics"),
      ],
      swiftSettings: strictSwiftSettings
    ),
    .testTarget(
      name: "CapstanTests",
      dependencies: [
        "Capstan", "CapstanEtcd", "CapstanTesting", "CapstanTestSupport",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Metrics", package: "swift-metrics"),
        .product(name: "PropertyBased", package: "swift-property-based"),
      ],
      swiftSettings: strictSwiftSettings
    ),
    .testTarget(
      name: "CapstanHTTPTests",
      dependencies: [
        "CapstanHTTP", "CapstanTesting",
        .product(name: "Prometheus", package: "swift-prometheus"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ],
      swiftSettings: strictSwiftSettings
    ),
    .testTarget(
      name: "CapstanAppTests",
      dependencies: [
        "CapstanApp", "Capstan", "CapstanHTTP", "CapstanTesting", "CapstanTestSupport",
        .product(name: "Prometheus", package: "swift-prometheus"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "PropertyBased", package: "swift-property-based"),
      ],
      swiftSettings: strictSwiftSettings
    ),
  ]
)
