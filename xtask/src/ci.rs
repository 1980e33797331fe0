//! `cargo xtask ci`: every check CI runs, in order, each step timed.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use xshell::{cmd, Shell};

use crate::engines::{self, Backend};

/// `cargo xtask ci`.
#[derive(Debug, Args)]
pub(crate) struct Ci {}

impl Ci {
    /// Runs every step; stops at the first failure.
    pub(crate) fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let steps = steps();
        let total = steps.len();
        let mut timings: Vec<(String, Duration)> = Vec::new();
        for (index, step) in steps.into_iter().enumerate() {
            println!("==> [{}/{total}] {}", index + 1, step.name);
            let started = Instant::now();
            let outcome = (step.action)(sh);
            let elapsed = started.elapsed();
            match outcome {
                Ok(()) => println!(
                    "<== [{}/{total}] {}: ok in {:.1} s",
                    index + 1,
                    step.name,
                    elapsed.as_secs_f64()
                ),
                Err(err) => {
                    println!(
                        "<== [{}/{total}] {}: FAILED after {:.1} s",
                        index + 1,
                        step.name,
                        elapsed.as_secs_f64()
                    );
                    return Err(err).with_context(|| format!("CI step `{}` failed", step.name));
                }
            }
            timings.push((step.name, elapsed));
        }
        println!("CI passed:");
        for (name, elapsed) in timings {
            println!("  {:>7.1} s  {name}", elapsed.as_secs_f64());
        }
        Ok(())
    }
}

/// The work of a CI step.
type Action = Box<dyn Fn(&Shell) -> anyhow::Result<()>>;

/// One CI step: what to print, and the work.
struct Step {
    /// Printed before and after the step.
    name: String,
    /// The work; an error stops CI.
    action: Action,
}

impl Step {
    /// A step named `name` that runs `action`.
    fn new(name: &str, action: impl Fn(&Shell) -> anyhow::Result<()> + 'static) -> Step {
        Step {
            name: name.to_owned(),
            action: Box::new(action),
        }
    }
}

/// The CI steps, in order: engines, formatting, lints, tests, conformance.
fn steps() -> Vec<Step> {
    let mut steps = vec![
        // First: it installs protoc, which the containerd backend's build needs.
        Step::new("engines up --backend all", |sh| {
            engines::ensure_up(sh, Backend::ALL)
        }),
        Step::new("cargo fmt --check", |sh| {
            cmd!(sh, "cargo fmt --all -- --check").run()?;
            Ok(())
        }),
        Step::new("cargo clippy", |sh| {
            cmd!(
                sh,
                "cargo clippy --workspace --all-targets --all-features -- -D warnings"
            )
            .run()?;
            Ok(())
        }),
        Step::new("cargo doc (no warnings)", |sh| {
            let _flags = sh.push_env("RUSTDOCFLAGS", "-D warnings");
            cmd!(sh, "cargo doc --workspace --all-features --no-deps --quiet").run()?;
            Ok(())
        }),
        Step::new("cargo deny check licenses bans sources", |sh| {
            // Advisories need a database download this machine cannot reach.
            if cmd!(sh, "cargo deny --version")
                .quiet()
                .ignore_stderr()
                .read()
                .is_err()
            {
                cmd!(sh, "cargo install cargo-deny --locked").run()?;
            }
            cmd!(sh, "cargo deny check licenses bans sources").run()?;
            Ok(())
        }),
        Step::new("cargo package (every published crate)", |sh| {
            // Packaged and built from the packages, as crates.io would take them; the
            // workspace's unpublished crates are left out.
            forget_packaged_crates()?;
            cmd!(
                sh,
                "cargo package --workspace --allow-dirty --exclude xtask --exclude container-conformance --exclude container-test-registry"
            )
            .run()?;
            Ok(())
        }),
        Step::new("cargo test", |sh| {
            // The conformance binaries run in their own steps below.
            // containerctl's CLI tests too: once per backend, below.
            cmd!(
                sh,
                "cargo test --workspace --all-features --exclude container-conformance --exclude containerctl"
            )
            .run()?;
            cmd!(sh, "cargo test -p containerctl --all-features --bins").run()?;
            // The suite's own unit tests (the case table is complete), without an engine.
            cmd!(sh, "cargo test -p container-conformance --lib").run()?;
            Ok(())
        }),
    ];
    steps.extend(conformance_steps());
    steps
}

/// Removes cargo's extracted copies of this workspace's own packages from an earlier
/// `cargo package --workspace`. Cargo resolves the packages' dependencies on each other
/// through a local registry keyed by the target folder's path and extracts each
/// package into `$CARGO_HOME/registry/src/-<hash>/<name>-<version>`; an extraction
/// already there is taken as it is, so a second run from the same path (a CI clone at
/// the same place) verified against the previous run's sources of the same version
/// (seen: `unresolved import container_core::IdRange`). Only those local registries
/// (named `-<hash>`) and only the workspace's crates are touched.
fn forget_packaged_crates() -> anyhow::Result<()> {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry/src")) else {
        return Ok(());
    };
    let Ok(registries) = std::fs::read_dir(&src) else {
        return Ok(());
    };
    for registry in registries.flatten() {
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        for entry in std::fs::read_dir(registry.path())?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("container-") || name.starts_with("containerctl-") {
                std::fs::remove_dir_all(entry.path())?;
            }
        }
    }
    Ok(())
}

/// Conformance suites against the real engines started by the first step, one step
/// per backend, then the main job end to end.
fn conformance_steps() -> Vec<Step> {
    let mut steps = vec![
        Step::new("conformance --backend docker", |sh| {
            crate::conformance::run_suite(sh, Backend::Docker, &[])
        }),
        Step::new("containerctl tests (docker)", |sh| {
            cli_tests(sh, Backend::Docker)
        }),
        Step::new("demo (main job on docker)", |sh| {
            crate::demo::run_demo(sh, Backend::Docker, &[])
        }),
        // Last for its engine: its restart part crashes the engine.
        Step::new("faults --backend docker (soak, workers, restart)", |sh| {
            crate::faults::run_faults(sh, Backend::Docker, &[])
        }),
        Step::new("conformance --backend podman", |sh| {
            crate::conformance::run_suite(sh, Backend::Podman, &[])
        }),
        Step::new("containerctl tests (podman)", |sh| {
            cli_tests(sh, Backend::Podman)
        }),
        Step::new("demo (main job on podman)", |sh| {
            crate::demo::run_demo(sh, Backend::Podman, &[])
        }),
        // Last for its engine: its restart part crashes the engine.
        Step::new("faults --backend podman (soak, workers, restart)", |sh| {
            crate::faults::run_faults(sh, Backend::Podman, &[])
        }),
        Step::new(
            "conformance --backend podman-rootless (as crs-rootless)",
            |sh| crate::conformance::run_suite(sh, Backend::PodmanRootless, &[]),
        ),
        Step::new("conformance --backend containerd", |sh| {
            crate::conformance::run_suite(sh, Backend::Containerd, &[])
        }),
        Step::new("containerctl tests (containerd)", |sh| {
            cli_tests(sh, Backend::Containerd)
        }),
        Step::new("demo (main job on containerd)", |sh| {
            crate::demo::run_demo(sh, Backend::Containerd, &[])
        }),
        Step::new("conformance over ssh (docker, podman, containerd)", |sh| {
            crate::conformance::over_ssh(sh)
        }),
        // Last for its engine: its restart part crashes the engine.
        Step::new(
            "faults --backend containerd (soak, workers, restart)",
            |sh| crate::faults::run_faults(sh, Backend::Containerd, &[]),
        ),
    ];
    // Today's engines (sid): the whole suite on each, after Debian 12's.
    for backend in [
        Backend::DockerSid,
        Backend::PodmanSid,
        Backend::ContainerdSid,
    ] {
        steps.push(Step::new(
            &format!("conformance --backend {}", backend.name()),
            move |sh| crate::conformance::run_suite(sh, backend, &[]),
        ));
    }
    steps.extend([
        // Every measure of the benchmark runs on every engine (timings are not judged).
        Step::new("bench --quick --backend all", |sh| {
            crate::bench::run_bench(sh, Backend::ALL, true, &[])
        }),
        // After every suite: the matrix is made from their results.
        Step::new("docs --check (backends matrix)", |sh| {
            crate::docs::generate(sh, true)
        }),
    ]);
    steps
}

/// `containerctl` as a user runs it (`crates/containerctl/tests/cli.rs`) against
/// `backend`'s engine.
fn cli_tests(sh: &Shell, backend: Backend) -> anyhow::Result<()> {
    let _env = sh.push_env("CONTAINER_BACKEND", backend.name());
    cmd!(sh, "cargo test -p containerctl --all-features --test cli").run()?;
    Ok(())
}
