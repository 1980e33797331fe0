//! The fault harness (cancellation soak, concurrent workers) against Podman:
//! `cargo xtask faults --backend podman`, or
//! `cargo test -p container-conformance --features podman --test faults-podman -- [--part soak|workers] [--seed N]`.

use std::process::ExitCode;

use container_conformance::{factory, BackendKind};

fn main() -> ExitCode {
    container_conformance::faults::run(
        "podman",
        factory(|options| container::connect_with(BackendKind::Podman, options)),
    )
}
