//! `cargo xtask bench`: a backend against the engine's own CLI and its raw client crate
//! in the same run (exec round trip, throughput, memory while streaming, runs,
//! concurrent lifecycles, pulls, copies out), as ratios beside their targets. Results go
//! to `target/bench/<backend>.json` and `.md`, the tables of all backends of the run to
//! `target/bench/summary.md`; nothing is asserted (see docs/performance.md).

use clap::Args;
use xshell::{cmd, Shell};

use crate::engines::{self, BackendArg};

/// `cargo xtask bench`.
#[derive(Debug, Args)]
pub(crate) struct Bench {
    /// The backend to measure (`all`: each in turn).
    #[arg(long, value_enum, default_value = "docker")]
    backend: BackendArg,
    /// A few samples of each measure at small sizes, in a debug build: that every
    /// measure runs on every backend (CI), failing on errors only, never on timing.
    #[arg(long)]
    quick: bool,
    /// Arguments for the benchmark (`--mib`, `--round-trips`; `-- --help` lists them).
    #[arg(last = true)]
    args: Vec<String>,
}

impl Bench {
    /// Starts the engines if needed, then runs the release-built benchmark per backend.
    pub(crate) fn run(self, sh: &Shell) -> anyhow::Result<()> {
        run_bench(sh, self.backend.backends(), self.quick, &self.args)
    }
}

/// The benchmark on each of Debian 12's rootful engines among `backends` (the rootless
/// and sid engines run the conformance suites only); results in
/// `target/bench/<backend>.json` (`<backend>.quick.json` for a quick run).
pub(crate) fn run_bench(
    sh: &Shell,
    backends: &[engines::Backend],
    quick: bool,
    args: &[String],
) -> anyhow::Result<()> {
    let backends = engines::rooted(backends);
    engines::ensure_up(sh, &backends)?;
    let (profile, suffix) = if quick {
        (None, ".quick")
    } else {
        (Some("--release"), "")
    };
    let quick = quick.then_some("--quick");
    let mut tables = Vec::new();
    for backend in backends {
        let name = backend.name();
        let _env = sh.push_env("CONTAINER_BACKEND", name);
        let json = format!("target/bench/{name}{suffix}.json");
        cmd!(
            sh,
            "cargo run --quiet {profile...} -p container-lifecycle --features podman,containerd --example bench -- --json {json} {quick...} {args...}"
        )
        .run()?;
        tables.push(sh.read_file(format!("target/bench/{name}{suffix}.md"))?);
    }
    let summary = format!("target/bench/summary{suffix}.md");
    sh.write_file(&summary, tables.join("\n"))?;
    println!("\n{}\nthe tables: {summary}", tables.join("\n"));
    Ok(())
}
