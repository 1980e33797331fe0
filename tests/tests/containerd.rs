//! The conformance suite against containerd: `cargo test -p container-conformance --features containerd --test containerd`.
//!
//! Beside the contract's own leak check, a census of what containerd itself holds in the
//! namespace (asked with `ctr`, not through this library): tasks, containers, snapshots,
//! leases and content must not grow over the run.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use container_conformance::{factory, BackendKind, Census};

/// `ctr -n <namespace> <kind> ls -q`: one object per line (`snapshots ls` has no `-q`:
/// its table's header line is skipped).
async fn count(kind: &str) -> Result<u64, String> {
    let namespace = std::env::var("CONTAINERD_NAMESPACE")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| container::containerd::DEFAULT_NAMESPACE.to_string());
    let quiet = kind != "snapshots";
    let mut ctr = tokio::process::Command::new("ctr");
    // The engine's socket on this host when the suite reaches it another way (`ssh://`
    // in CONTAINERD_ADDRESS, which ctr would read too).
    if let Some(local) = std::env::var("CONTAINER_RS_CLI_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
    {
        ctr.env("CONTAINERD_ADDRESS", local.trim_start_matches("unix://"));
    }
    let out = ctr
        .args(["-n", &namespace, kind, "ls"])
        .args(quiet.then_some("-q"))
        .output()
        .await
        .map_err(|e| format!("cannot run ctr: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ctr {kind} ls: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(usize::from(!quiet))
        .filter(|l| !l.trim().is_empty())
        .count() as u64)
}

fn census() -> Census {
    Arc::new(|| {
        Box::pin(async {
            let mut counts = BTreeMap::new();
            for kind in ["tasks", "containers", "snapshots", "leases", "content"] {
                counts.insert(kind.to_string(), count(kind).await?);
            }
            Ok(counts)
        })
    })
}

fn main() -> ExitCode {
    container_conformance::run_with_census(
        "containerd",
        factory(|options| container::connect_with(BackendKind::Containerd, options)),
        census(),
    )
}
