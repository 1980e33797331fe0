//! `cargo xtask demo`: the main job end to end on the default backend — what a Yocto
//! build tool does with this library. The flow itself is the facade's example
//! `crates/container/examples/yocto_build.rs`; this starts the engine and runs it.

use clap::Args;
use xshell::{cmd, Shell};

use crate::engines::{self, Backend};

/// `cargo xtask demo`.
#[derive(Debug, Args)]
pub(crate) struct Demo {
    /// The engine to run the build on.
    #[arg(long, value_enum, default_value = "docker")]
    backend: DemoBackend,
    /// Arguments for the example (`--help` lists them: work folder, lines, uid/gid).
    #[arg(last = true)]
    args: Vec<String>,
}

/// The backends the demo runs on.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DemoBackend {
    Docker,
    Podman,
    Containerd,
}

impl Demo {
    /// Brings the engine and the registry up, then runs the build example.
    pub(crate) fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let backend = match self.backend {
            DemoBackend::Docker => Backend::Docker,
            DemoBackend::Podman => Backend::Podman,
            DemoBackend::Containerd => Backend::Containerd,
        };
        run_demo(sh, backend, &self.args)
    }
}

/// Runs the example against `backend`, starting the engine first when needed.
pub(crate) fn run_demo(sh: &Shell, backend: Backend, args: &[String]) -> anyhow::Result<()> {
    engines::ensure_up(sh, &[backend])?;
    let name = backend.name();
    let _backend = sh.push_env("CONTAINER_BACKEND", name);
    cmd!(
        sh,
        "cargo run --quiet -p container-lifecycle --features {name} --example yocto_build -- {args...}"
    )
    .run()?;
    Ok(())
}
