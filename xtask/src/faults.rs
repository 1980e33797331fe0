//! `cargo xtask faults --backend docker`: the fault harness (`tests/src/faults`) against
//! one real engine, which is started first if it is not running: a cancellation soak
//! (operations dropped at random points, seeded) and concurrent workers, each followed by
//! leak checks. Results: `target/faults/<backend>.json`.

use anyhow::Context;
use clap::{Args, ValueEnum};
use xshell::{cmd, Shell};

use crate::engines::{self, Backend, BackendArg};

/// `cargo xtask faults`.
#[derive(Debug, Args)]
pub(crate) struct Faults {
    /// The backend to test (`all`: every backend, one after another).
    #[arg(long, value_enum, default_value = "docker")]
    backend: BackendArg,
    /// Which part to run.
    #[arg(long, value_enum, default_value = "all")]
    part: Part,
    /// Soak: operations to start (default 300; the soak stops earlier at its time budget).
    #[arg(long)]
    iterations: Option<u64>,
    /// Soak: the time budget of its loop, in seconds (default 75).
    #[arg(long)]
    soak_secs: Option<u64>,
    /// Soak: the RNG seed (default: from the clock; printed, to replay a failure).
    #[arg(long)]
    seed: Option<u64>,
    /// Soak: only these operations, comma-separated (create, start, exec, exec_stream,
    /// stop, remove, pull, copy_from, copy_to, volume_create, volume_remove).
    #[arg(long)]
    ops: Option<String>,
    /// Workers: how many run at once (default 32).
    #[arg(long)]
    workers: Option<u64>,
    /// Workers: how long they start new lifecycles, in seconds (default 45).
    #[arg(long)]
    worker_secs: Option<u64>,
}

/// The parts of the harness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Part {
    /// The soak, the workers, then the engine restart.
    All,
    /// The cancellation soak.
    Soak,
    /// The concurrent workers.
    Workers,
    /// The engine crashed and started again during a streaming exec and a pull.
    Restart,
}

impl Faults {
    /// Starts the engines, runs the harness per backend.
    pub(crate) fn run(self, sh: &Shell) -> anyhow::Result<()> {
        // Root's engines: the rootless service runs the conformance suite only.
        let backends = engines::rooted(self.backend.backends());
        engines::ensure_up(sh, &backends)?;
        let mut args = Vec::new();
        if self.part != Part::All {
            let part = match self.part {
                Part::Soak => "soak",
                Part::Restart => "restart",
                _ => "workers",
            };
            args.extend(["--part".to_string(), part.to_string()]);
        }
        let numbers = [
            ("--iterations", self.iterations),
            ("--soak-secs", self.soak_secs),
            ("--seed", self.seed),
            ("--workers", self.workers),
            ("--worker-secs", self.worker_secs),
        ];
        for (flag, value) in numbers {
            if let Some(v) = value {
                args.extend([flag.to_string(), v.to_string()]);
            }
        }
        if let Some(ops) = self.ops {
            args.extend(["--ops".to_string(), ops]);
        }
        for backend in backends {
            run_faults(sh, backend, &args)?;
        }
        Ok(())
    }
}

/// The variable that gives the fault binary the command that restarts its engine.
const RESTART_ENV: &str = "CONTAINER_RS_FAULTS_RESTART";

/// Runs the fault binary of `backend` (`tests/tests/faults_<backend>.rs`); fails when it
/// finds an unexpected error, a leak or a panic.
pub(crate) fn run_faults(sh: &Shell, backend: Backend, args: &[String]) -> anyhow::Result<()> {
    let name = backend.name();
    println!("faults: {name}");
    let test = format!("faults-{name}");
    // How the restart part crashes and starts the engine again: this program's own
    // `engines restart`.
    let xtask = std::env::current_exe().context("the path of xtask")?;
    let restart = format!("{} engines restart --backend {name}", xtask.display());
    let _restart = sh.push_env(RESTART_ENV, restart);
    cmd!(
        sh,
        "cargo test -p container-conformance --features {name} --test {test} -- {args...}"
    )
    .run()
    .with_context(|| format!("the {name} fault harness failed"))?;
    Ok(())
}
