import Foundation

/// A throw-away certificate authority plus a server and a client certificate, generated
/// with the `openssl` command, for running a test etcd with TLS on its client URL.
///
/// The server certificate is valid for `127.0.0.1` and `localhost`; the client certificate
/// has `CN=root`. All files are PEM.
public struct EtcdTestTLS: Sendable {
  /// The directory holding all generated files.
  public let directory: URL
  /// The CA certificate (trust anchor for both sides).
  public let caFile: URL
  /// The server certificate, signed by the CA.
  public let serverCertFile: URL
  /// The server private key.
  public let serverKeyFile: URL
  /// The client certificate (`CN=root`), signed by the CA.
  public let clientCertFile: URL
  /// The client private key.
  public let clientKeyFile: URL
  /// Whether etcd is started with `--client-cert-auth`, i.e. rejects clients without a
  /// certificate signed by the CA. Defaults to `true`.
  public var requireClientCertificates: Bool

  /// Generates a CA, a server certificate (subjectAltName `IP:127.0.0.1,DNS:localhost`) and
  /// a client certificate (`CN=root`).
  ///
  /// - Parameters:
  ///   - directory: Where to write the files; a new temporary directory when `nil`.
  ///   - requireClientCertificates: Initial value of ``requireClientCertificates``.
  /// - Throws: ``EtcdTestServerError`` if `openssl` is missing or fails.
  public static func generate(
    in directory: URL? = nil,
    requireClientCertificates: Bool = true
  ) throws -> EtcdTestTLS {
    guard
      let openssl = ProcessRunner.findExecutable(
        named: "openssl",
        environmentVariable: "OPENSSL_BINARY",
        fallbacks: ["/usr/bin/openssl"]
      )
    else {
      throw EtcdTestServerError(
        .executableNotFound,
        "the openssl command was not found (looked in $OPENSSL_BINARY, PATH, /usr/bin/openssl); install it with apt-get install -y openssl"
      )
    }
    let directory =
      directory
      ?? FileManager.default.temporaryDirectory
      .appendingPathComponent("capstan-tls-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)

    let tls = EtcdTestTLS(
      directory: directory,
      caFile: directory.appendingPathComponent("ca.crt"),
      serverCertFile: directory.appendingPathComponent("server.crt"),
      serverKeyFile: directory.appendingPathComponent("server.key"),
      clientCertFile: directory.appendingPathComponent("client.crt"),
      clientKeyFile: directory.appendingPathComponent("client.key"),
      requireClientCertificates: requireClientCertificates
    )
    let caKey = directory.appendingPathComponent("ca.key")
    func openssl_(_ arguments: [String]) throws {
      _ = try ProcessRunner.runChecked(openssl, arguments: arguments, workingDirectory: directory)
    }

    try openssl_([
      "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "3650",
      "-keyout", caKey.path, "-out", tls.caFile.path,
      "-subj", "/CN=capstan-test-ca",
      "-addext", "basicConstraints=critical,CA:TRUE",
      "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    ])
    try tls.issue(
      openssl: openssl_, caKey: caKey, subject: "/CN=localhost",
      certificate: tls.serverCertFile, key: tls.serverKeyFile,
      extensions: """
        basicConstraints=CA:FALSE
        keyUsage=critical,digitalSignature,keyEncipherment
        extendedKeyUsage=serverAuth,clientAuth
        subjectAltName=IP:127.0.0.1,DNS:localhost
        """
    )
    try tls.issue(
      openssl: openssl_, caKey: caKey, subject: "/CN=root",
      certificate: tls.clientCertFile, key: tls.clientKeyFile,
      extensions: """
        basicConstraints=CA:FALSE
        keyUsage=critical,digitalSignature,keyEncipherment
        extendedKeyUsage=clientAuth
        """
    )
    return tls
  }

  /// Deletes ``directory`` and everything in it.
  public func remove() throws {
    try FileManager.default.removeItem(at: directory)
  }

  /// Creates a key and a certificate signed by the CA.
  private func issue(
    openssl: ([String]) throws -> Void,
    caKey: URL,
    subject: String,
    certificate: URL,
    key: URL,
    extensions: String
  ) throws {
    let base = certificate.deletingPathExtension().lastPathComponent
    let request = directory.appendingPathComponent("\(base).csr")
    let extensionsFile = directory.appendingPathComponent("\(base).ext")
    try Data(extensions.utf8).write(to: extensionsFile)
    try openssl([
      "req", "-new", "-newkey", "rsa:2048", "-nodes", "-sha256",
      "-keyout", key.path, "-out", request.path, "-subj", subject,
    ])
    try openssl([
      "x509", "-req", "-sha256", "-days", "3650", "-in", request.path,
      "-CA", caFile.path, "-CAkey", caKey.path,
      "-CAcreateserial", "-CAserial", directory.appendingPathComponent("ca.srl").path,
      "-extfile", extensionsFile.path, "-out", certificate.path,
    ])
  }
}
