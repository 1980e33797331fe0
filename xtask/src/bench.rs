//! `cargo xtask bench`: the default backend against the engine's own CLI in the same run
//! (exec round trip, stdout throughput, memory while streaming), as ratios. Results go to
//! `target/bench/docker.json`; nothing is asserted (see docs/performance.md).

use clap::Args;
use xshell::{cmd, Shell};

use crate::engines::{self, Backend};

/// `cargo xtask bench`.
#[derive(Debug, Args)]
pub(crate) struct Bench {
    /// Arguments for the benchmark (`--mib`, `--round-trips`; `-- --help` lists them).
    #[arg(last = true)]
    args: Vec<String>,
}

impl Bench {
    /// Starts Docker if needed, then runs the release-built benchmark.
    pub(crate) fn run(self, sh: &Shell) -> anyhow::Result<()> {
        engines::ensure_up(sh, &[Backend::Docker])?;
        let args = &self.args;
        cmd!(
            sh,
            "cargo run --quiet --release -p container --example bench -- --json target/bench/docker.json {args...}"
        )
        .run()?;
        Ok(())
    }
}
