//! Project automation for container-rs, run as `cargo xtask <command>`.
//!
//! - `cargo xtask engines up|down|status [--backend docker|podman|containerd|all]`:
//!   the container engines and the local registry the tests run against.
//! - `cargo xtask ci`: every check CI runs, in order.
//! - `cargo xtask conformance --backend docker`: the conformance suite on a real engine.
//! - `cargo xtask faults --backend docker`: the fault harness (cancellation soak,
//!   concurrent workers, leak checks) on a real engine.
//! - `cargo xtask demo`: the main job, a build in a container, end to end.
//! - `cargo xtask docs [--check]`: the backends matrix from the conformance results.
//! - `cargo xtask bench`: the default backend against the engine's CLI, as ratios.
//!
//! Each subcommand is one module with a clap `Args` struct and
//! `fn run(self, sh: &Shell) -> anyhow::Result<()>`.

mod bench;
mod ci;
mod conformance;
mod demo;
mod docs;
mod engines;
mod faults;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use xshell::Shell;

/// Command line of `cargo xtask`.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Project automation for container-rs"
)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands of `cargo xtask`.
#[derive(Debug, Subcommand)]
enum Command {
    /// Start, stop or inspect the local container engines and test registry.
    Engines(engines::Engines),
    /// Run every CI step in order: engines up, fmt, clippy, tests, conformance.
    Ci(ci::Ci),
    /// Run the conformance suite against a real engine (started if needed).
    Conformance(conformance::Conformance),
    /// Run the fault harness (cancellation soak, concurrent workers) against a real engine.
    Faults(faults::Faults),
    /// The main job: a Yocto-style build in a container on the default backend.
    Demo(demo::Demo),
    /// Benchmark the default backend against the engine's CLI (ratios, nothing asserted).
    Bench(bench::Bench),
    /// Generate docs/backends.md from the conformance results (`--check`: verify it).
    Docs(docs::Docs),
    /// Part of the conformance suite on Docker, Podman and containerd through `ssh://`
    /// endpoints (the harness's sshd on 127.0.0.1:2222).
    Ssh,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    match cli.command {
        Command::Engines(cmd) => cmd.run(&sh),
        Command::Ci(cmd) => cmd.run(&sh),
        Command::Conformance(cmd) => cmd.run(&sh),
        Command::Faults(cmd) => cmd.run(&sh),
        Command::Demo(cmd) => cmd.run(&sh),
        Command::Docs(cmd) => cmd.run(&sh),
        Command::Bench(cmd) => cmd.run(&sh),
        Command::Ssh => conformance::over_ssh(&sh),
    }
}

/// The workspace root: the parent of this crate's directory.
fn project_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}
