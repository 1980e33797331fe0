//! `cargo xtask bench`: a backend against the engine's own CLI in the same run (exec
//! round trip, stdout throughput, memory while streaming), as ratios. Results go to
//! `target/bench/<backend>.json`; nothing is asserted (see docs/performance.md).

use clap::Args;
use xshell::{cmd, Shell};

use crate::engines::{self, BackendArg};

/// `cargo xtask bench`.
#[derive(Debug, Args)]
pub(crate) struct Bench {
    /// The backend to measure (`all`: each in turn).
    #[arg(long, value_enum, default_value = "docker")]
    backend: BackendArg,
    /// Arguments for the benchmark (`--mib`, `--round-trips`; `-- --help` lists them).
    #[arg(last = true)]
    args: Vec<String>,
}

impl Bench {
    /// Starts the engines if needed, then runs the release-built benchmark per backend.
    pub(crate) fn run(self, sh: &Shell) -> anyhow::Result<()> {
        // Root's engines: the rootless service runs the conformance suite only.
        let backends = engines::rooted(self.backend.backends());
        engines::ensure_up(sh, &backends)?;
        let args = &self.args;
        for backend in backends {
            let name = backend.name();
            let _env = sh.push_env("CONTAINER_BACKEND", name);
            let json = format!("target/bench/{name}.json");
            cmd!(
                sh,
                "cargo run --quiet --release -p container-lifecycle --features podman,containerd --example bench -- --json {json} {args...}"
            )
            .run()?;
        }
        Ok(())
    }
}
