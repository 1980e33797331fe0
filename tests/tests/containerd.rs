//! The conformance suite against containerd: `cargo test -p container-conformance --features containerd --test containerd`.

use std::process::ExitCode;

use container_conformance::{factory, BackendKind};

fn main() -> ExitCode {
    container_conformance::run(
        "containerd",
        factory(|options| container::connect_with(BackendKind::Containerd, options)),
    )
}
