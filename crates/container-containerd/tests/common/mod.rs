//! Helpers shared by the integration tests.

/// `ctr` in `namespace`, on containerd's default socket: what containerd itself says,
/// not what this crate says. Its standard output; a failure panics with its stderr.
pub(crate) fn ctr(namespace: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("ctr")
        .args(["-n", namespace])
        .args(args)
        .output()
        .expect("run ctr");
    assert!(
        out.status.success(),
        "ctr {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
