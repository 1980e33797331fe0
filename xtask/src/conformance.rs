//! `cargo xtask conformance --backend docker`: the shared conformance suite against one
//! real engine, which is started first if it is not running.

use anyhow::{bail, Context};
use clap::Args;
use xshell::{cmd, Shell};

use crate::engines::{self, rootless, sid, Backend, BackendArg};

/// Backends whose conformance binary exists (`tests/tests/<library>.rs`; the rootless
/// engines run the docker and podman ones as their user, the sid engines the one of
/// their library against their own sockets).
const SUITES: &[Backend] = &[
    Backend::Docker,
    Backend::DockerRootless,
    Backend::Podman,
    Backend::PodmanRootless,
    Backend::Containerd,
    Backend::DockerSid,
    Backend::PodmanSid,
    Backend::ContainerdSid,
];

/// Backends whose suite CI runs and the backends matrix shows: those that pass it.
/// Rootless Docker does not: Debian 12's dockerd (20.10) leaves goroutine threads in
/// containers' network namespaces, so a pull after the first container may dial the
/// registry from inside one and be refused (docs/conformance.md, "Known gaps").
pub(crate) const CI_SUITES: &[Backend] = &[
    Backend::Docker,
    Backend::Podman,
    Backend::PodmanRootless,
    Backend::Containerd,
    Backend::DockerSid,
    Backend::PodmanSid,
    Backend::ContainerdSid,
];

/// `cargo xtask conformance`.
#[derive(Debug, Args)]
pub(crate) struct Conformance {
    /// The backend to test (`all`: every backend that has a suite).
    #[arg(long, value_enum, default_value = "docker")]
    backend: BackendArg,
    /// Arguments for the test binary (libtest filters, `--test-threads`, `--list`).
    #[arg(last = true)]
    args: Vec<String>,
}

impl Conformance {
    /// Starts the engines, runs the suite per backend, prints where the results are.
    pub(crate) fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let backends = self.backend.backends();
        for backend in backends {
            if !SUITES.contains(backend) && backends.len() == 1 {
                bail!(
                    "there is no conformance suite for the {} backend yet",
                    backend.name()
                );
            }
        }
        engines::ensure_up(sh, backends)?;
        for backend in backends.iter().filter(|b| SUITES.contains(b)) {
            run_suite(sh, *backend, &self.args)?;
        }
        Ok(())
    }
}

/// Runs the conformance binary of `backend`; fails when the suite fails.
pub(crate) fn run_suite(sh: &Shell, backend: Backend, args: &[String]) -> anyhow::Result<()> {
    match backend {
        Backend::PodmanRootless | Backend::DockerRootless => {
            let env = [
                ("CONTAINER_HOST", format!("unix://{}", rootless::SOCKET)),
                ("DOCKER_HOST", format!("unix://{}", rootless::DOCKER_SOCKET)),
            ];
            return suite_elsewhere(sh, backend, args, &env, true);
        }
        Backend::DockerSid => {
            let env = [("DOCKER_HOST", format!("unix://{}", sid::DOCKER_SOCKET))];
            return suite_elsewhere(sh, backend, args, &env, false);
        }
        Backend::PodmanSid => {
            let env = [("CONTAINER_HOST", format!("unix://{}", sid::PODMAN_SOCKET))];
            return suite_elsewhere(sh, backend, args, &env, false);
        }
        Backend::ContainerdSid => {
            let env = [
                ("CONTAINERD_ADDRESS", sid::CONTAINERD_SOCKET.to_owned()),
                ("CONTAINERD_NAMESPACE", sid::CONTAINERD_NAMESPACE.to_owned()),
            ];
            return suite_elsewhere(sh, backend, args, &env, false);
        }
        Backend::Docker | Backend::Podman | Backend::Containerd => {}
    }
    let name = backend.name();
    println!("conformance: {name}");
    cmd!(
        sh,
        "cargo test -p container-conformance --features {name} --test {name} -- {args...}"
    )
    .run()
    .with_context(|| format!("the {name} conformance run failed"))?;
    println!("conformance results: target/conformance/{name}.json");
    if backend == Backend::Docker {
        docker_tls_check(sh)?;
        outside_backend(sh)?;
    }
    if backend == Backend::Containerd {
        containerd_with_logger(sh, args)?;
    }
    Ok(())
}

/// The containerd suite again, with the main processes' logs written by the shim-run
/// logging binary (`containerctl`, ADR 0009) instead of the in-process pumps.
fn containerd_with_logger(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    cmd!(
        sh,
        "cargo build --quiet -p containerctl --features containerd"
    )
    .run()?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "target".into());
    let logger = sh.current_dir().join(target).join("debug/containerctl");
    println!(
        "conformance: containerd, logs by the logging binary {}",
        logger.display()
    );
    let _env = sh.push_env("CONTAINER_RS_CONTAINERD_LOGGER", &logger);
    cmd!(
        sh,
        "cargo test -p container-conformance --features containerd --test containerd -- {args...}"
    )
    .run()
    .context("the containerd conformance run with the logging binary failed")?;
    Ok(())
}

/// A backend written outside the library's crates (`tests/tests/external.rs`), run on a
/// part of the suite through the factory API, as any implementor would run it.
fn outside_backend(sh: &Shell) -> anyhow::Result<()> {
    cmd!(
        sh,
        "cargo test -p container-conformance --features docker --test external"
    )
    .run()
    .context("the outside-backend conformance run failed")?;
    Ok(())
}

/// The sections of the suite run through `ssh://` endpoints (issue 17): image,
/// lifecycle, exec, streaming, timeouts, copies and cleanup; the others are skipped.
const SKIPPED_OVER_SSH: &[&str] = &[
    "idempotency::",
    "mounts::",
    "volumes::",
    "errors::",
    "concurrency::",
    "features::",
    "kill::",
    "steps::",
    "connection::",
    "host_safety::",
    "real_images::",
];

/// Part of the suite on Docker, Podman and containerd through the harness's sshd
/// (ADR 0016): each backend's endpoint variable set to `ssh://root@127.0.0.1:2222…`,
/// the key and `known_hosts` the harness made. (The ssh error kinds are tests of the
/// facade, `crates/container/tests/ssh.rs`, in the workspace's `cargo test`.)
pub(crate) fn over_ssh(sh: &Shell) -> anyhow::Result<()> {
    engines::ensure_up(sh, &[Backend::Docker, Backend::Podman, Backend::Containerd])?;
    let dir = engines::StateDir::from_env().join(engines::sshd::SSHD_DIR);
    let _key = sh.push_env("CONTAINER_SSHKEY", dir.join("client_key"));
    let _known = sh.push_env("CONTAINER_SSH_KNOWN_HOSTS", dir.join("known_hosts"));
    let base = format!("ssh://root@{}", engines::sshd::SSHD_ADDR);
    let skips: Vec<&str> = SKIPPED_OVER_SSH
        .iter()
        .flat_map(|section| ["--skip", section])
        .collect();
    for (name, variable, socket, local) in [
        ("docker", "DOCKER_HOST", "", "unix:///var/run/docker.sock"),
        (
            "podman",
            "CONTAINER_HOST",
            engines::PODMAN_SOCKET,
            "unix:///run/podman/podman.sock",
        ),
        (
            "containerd",
            "CONTAINERD_ADDRESS",
            "",
            "unix:///run/containerd/containerd.sock",
        ),
    ] {
        let _endpoint = sh.push_env(variable, format!("{base}{socket}"));
        // The suite's CLI (case 53's foreign objects) reaches the same engine locally.
        let _cli = sh.push_env("CONTAINER_RS_CLI_ENDPOINT", local);
        let skips = &skips;
        println!("conformance over ssh: {name} at {base}{socket}");
        cmd!(
            sh,
            "cargo test -p container-conformance --features {name} --test {name} -- {skips...}"
        )
        .run()
        .with_context(|| format!("the {name} conformance run over ssh failed"))?;
    }
    Ok(())
}

/// The Docker transport over mutual TLS (`DOCKER_HOST=tcp://…`, `DOCKER_TLS_VERIFY`,
/// `DOCKER_CERT_PATH`), against the TLS listener `engines up` gives dockerd.
fn docker_tls_check(sh: &Shell) -> anyhow::Result<()> {
    let certs = engines::StateDir::from_env().join(engines::TLS_DIR);
    let _host = sh.push_env("DOCKER_HOST", format!("tcp://{}", engines::DOCKER_TLS_ADDR));
    let _verify = sh.push_env("DOCKER_TLS_VERIFY", "1");
    let _certs = sh.push_env("DOCKER_CERT_PATH", certs);
    cmd!(
        sh,
        "cargo run --quiet -p container-docker --example tls_check"
    )
    .run()
    .context("the Docker TLS check failed")?;
    Ok(())
}

/// The suite of `backend`'s library against another engine than its default one: the
/// rootless engines (run as their user through `setpriv`, with the user's `HOME`,
/// `USER` and `XDG_RUNTIME_DIR`) or the sid engines, reached through `env`. The binary
/// is built once by root and run with a target folder of its own, so that its results
/// are copied to `target/conformance/<backend>.json` and the default engine's stay.
fn suite_elsewhere(
    sh: &Shell,
    backend: Backend,
    args: &[String],
    env: &[(&str, String)],
    as_user: bool,
) -> anyhow::Result<()> {
    let (name, library) = (backend.name(), backend.library());
    if as_user {
        println!("conformance: {name} (as {})", rootless::USER);
    } else {
        println!("conformance: {name}");
    }
    let built = cmd!(
        sh,
        "cargo test -p container-conformance --features {library} --test {library} --no-run --message-format=json"
    )
    .read()
    .with_context(|| format!("building the {library} conformance suite for {name}"))?;
    let exe = built
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == library)
        .find_map(|m| m["executable"].as_str().map(str::to_owned))
        .with_context(|| format!("cargo named no {library} conformance binary"))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "target".into());
    let target = sh.current_dir().join(target);
    // The run's own target folder: the harness writes `conformance/<library>.json` there.
    let own = target.join(name);
    let mut run = if as_user {
        rootless::writable_dir(sh, &own)?;
        rootless::as_user(sh, &exe, args)
    } else {
        std::fs::create_dir_all(&own)?;
        cmd!(sh, "{exe} {args...}")
    };
    for (key, value) in env {
        run = run.env(key, value);
    }
    let run = run.env("CARGO_TARGET_DIR", &own).run();
    for suffix in ["", ".partial"] {
        let from = own
            .join("conformance")
            .join(format!("{library}{suffix}.json"));
        if from.exists() {
            let to = target
                .join("conformance")
                .join(format!("{name}{suffix}.json"));
            std::fs::create_dir_all(target.join("conformance"))?;
            std::fs::copy(&from, &to)
                .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
            println!("conformance results: {}", to.display());
        }
    }
    run.with_context(|| format!("the {name} conformance run failed"))
}
