//! The conformance suite against Docker: `cargo test -p container-conformance --features docker --test docker`.

use std::process::ExitCode;

use container_conformance::{factory, BackendKind};

fn main() -> ExitCode {
    container_conformance::run(
        "docker",
        factory(|options| container::connect_with(BackendKind::Docker, options)),
    )
}
