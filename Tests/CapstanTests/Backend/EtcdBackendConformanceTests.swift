import Capstan
import CapstanTesting
import CapstanTestSupport
import Testing

/// The conformance suite on a real etcd through ``EtcdBackend``: one server shared by every check
/// that is not store-wide (each under its own prefix).
@Suite("EtcdBackend conformance", .etcdServer("capstan-conformance"))
struct EtcdBackendConformanceTests {
  @Test(arguments: BackendConformanceCheck.allCases.filter { !$0.isStoreWide })
  func conformance(_ check: BackendConformanceCheck) async throws {
    try await withBackend(.etcd) { backend in
      try await check.run(on: backend, prefix: uniquePrefix(check.rawValue))
    }
  }
}

/// The store-wide (compaction) checks on a server of their own, one after the other.
@Suite("EtcdBackend conformance, store-wide", .etcdServer("capstan-conformance-compaction"), .serialized)
struct EtcdBackendStoreWideConformanceTests {
  @Test(arguments: BackendConformanceCheck.allCases.filter { $0.isStoreWide })
  func conformance(_ check: BackendConformanceCheck) async throws {
    try await withBackend(.etcd) { backend in
      try await check.run(on: backend, prefix: uniquePrefix(check.rawValue))
    }
  }
}
