//! The conformance suite against Podman: `cargo test -p container-conformance --features podman --test podman`.

use std::process::ExitCode;

use container_conformance::{factory, BackendKind};

fn main() -> ExitCode {
    container_conformance::run(
        "podman",
        factory(|options| container::connect_with(BackendKind::Podman, options)),
    )
}
