//! `cargo xtask demo`: the main job end to end on the default backend — what a Yocto
//! build tool does with this library. The flow itself is the facade's example
//! `crates/container/examples/yocto_build.rs`; this starts the engine and runs it.

use clap::Args;
use xshell::{cmd, Shell};

use crate::engines::{self, Backend};

/// `cargo xtask demo`.
#[derive(Debug, Args)]
pub(crate) struct Demo {
    /// Arguments for the example (`--help` lists them: work folder, lines, uid/gid).
    #[arg(last = true)]
    args: Vec<String>,
}

impl Demo {
    /// Brings Docker and the registry up, then runs the build example.
    pub(crate) fn run(self, sh: &Shell) -> anyhow::Result<()> {
        run_demo(sh, &self.args)
    }
}

/// Runs the example against Docker, starting the engine first when needed.
pub(crate) fn run_demo(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    engines::ensure_up(sh, &[Backend::Docker])?;
    cmd!(
        sh,
        "cargo run --quiet -p container --example yocto_build -- {args...}"
    )
    .run()?;
    Ok(())
}
