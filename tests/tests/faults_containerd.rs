//! The fault harness (cancellation soak, concurrent workers) against containerd:
//! `cargo xtask faults --backend containerd`, or
//! `cargo test -p container-conformance --features containerd --test faults-containerd -- [--part soak|workers] [--seed N]`.
//!
//! It works in a namespace of its own (`container-rs-faults`, unless
//! `CONTAINERD_NAMESPACE` names one), so that what `ctr` lists there before and after
//! (tasks, containers, snapshots, leases) and the FIFO folders are the harness's alone,
//! whatever else runs on the engine meanwhile.

use std::process::ExitCode;

use container_conformance::{factory, BackendKind};

/// The harness's own containerd namespace.
const NAMESPACE: &str = "container-rs-faults";

fn main() -> ExitCode {
    // Before any thread exists: the library and `ctr` both read it.
    if std::env::var_os("CONTAINERD_NAMESPACE").is_none_or(|v| v.is_empty()) {
        std::env::set_var("CONTAINERD_NAMESPACE", NAMESPACE);
    }
    container_conformance::faults::run(
        "containerd",
        factory(|options| container::connect_with(BackendKind::Containerd, options)),
    )
}
