//! The fault harness (cancellation soak, concurrent workers) against Docker:
//! `cargo xtask faults --backend docker`, or
//! `cargo test -p container-conformance --features docker --test faults-docker -- [--part soak|workers] [--seed N]`.

use std::process::ExitCode;

use container_conformance::{factory, BackendKind};

fn main() -> ExitCode {
    container_conformance::faults::run(
        "docker",
        factory(|options| container::connect_with(BackendKind::Docker, options)),
    )
}
