//! The conformance suite against Docker: `cargo test -p container-conformance --features docker --test docker`.

use std::process::ExitCode;

use container_conformance::BackendKind;

fn main() -> ExitCode {
    container_conformance::run(BackendKind::Docker)
}
