//! The conformance suite against Podman: `cargo test -p container-conformance --features podman --test podman`.

use std::process::ExitCode;

use container_conformance::BackendKind;

fn main() -> ExitCode {
    container_conformance::run(BackendKind::Podman)
}
