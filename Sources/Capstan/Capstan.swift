/// The controller runtime: filled in by the object-cache and controller issues.
public enum Capstan {
  /// The version of the Capstan runtime.
  public static let version = "0.1.0"
}
