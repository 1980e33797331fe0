//! `cargo xtask engines up|down|status`: the real engines the tests run against.
//!
//! On this machine (Debian 12, root, no systemd) `up` installs the Debian packages it
//! needs, starts containerd, dockerd, the Podman API service and a local registry by
//! hand (detached, logs to files), then builds the test images from busybox-static
//! and pushes them to the registry. Every step checks before it acts, so a second
//! `up` changes nothing and takes well under a second.
//!
//! Logs, pid files, rendered configuration and engine data live in one state folder
//! (`/var/lib/container-rs-engines`, or `$CONTAINER_RS_ENGINES_DIR`); runtime state
//! stays under `/run`. Configuration comes from `xtask/fixtures` (see its README).

mod config;
mod daemon;
mod debian;
mod http;
mod images;
mod packages;
pub(crate) mod rootless;
mod service;
pub(crate) mod sid;
pub(crate) mod sshd;
mod tls;

use std::{
    ffi::OsString,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use xshell::Shell;

use self::service::Service;
pub(crate) use self::tls::TLS_DIR;

/// Socket of the shared containerd: the containerd backend and dockerd both use it.
pub(crate) const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
/// Socket of dockerd: Docker's default, so the plain `docker` CLI works.
pub(crate) const DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// dockerd's TLS listener (mutual TLS, certificates under `<state>/docker/tls`).
pub(crate) const DOCKER_TLS_ADDR: &str = "127.0.0.1:2376";
/// Socket of the Podman API service (libpod and Docker-compatible REST API).
pub(crate) const PODMAN_SOCKET: &str = "/run/podman/podman.sock";
/// Host and port of the local registry; plain HTTP, loopback only.
pub(crate) const REGISTRY_ADDR: &str = "127.0.0.1:5000";
/// Test image: busybox with every applet linked into `/bin`, `/sbin/tini`, users
/// `root` and `builder` (1000:1000); runs `/bin/sh` as root.
pub(crate) const BUSYBOX_IMAGE: &str = "127.0.0.1:5000/container-rs/busybox:1";
/// The same root filesystem as [`BUSYBOX_IMAGE`], default user `1000:1000`.
pub(crate) const BUSYBOX_USER_IMAGE: &str = "127.0.0.1:5000/container-rs/busybox-user:2";
/// Busybox with 8 layers of 4 MiB of its own: what the benchmark pulls.
pub(crate) const LAYERS_IMAGE: &str = "127.0.0.1:5000/container-rs/layers:1";
/// Debian 12 build image (`engines/debian.rs`): python3, git, openssh-client, gcc,
/// make, procps, tar, locales with en_US.UTF-8; `PATH` and `LANG` set; runs as root.
pub(crate) const DEBIAN_IMAGE: &str = "127.0.0.1:5000/container-rs/debian:12";
/// The same root filesystem as [`DEBIAN_IMAGE`] with no `Env` and no `Cmd` in its
/// config, as `docker import` makes an image.
pub(crate) const DEBIAN_BARE_IMAGE: &str = "127.0.0.1:5000/container-rs/debian-bare:12";
/// Environment variable that moves the state folder.
pub(crate) const STATE_DIR_ENV: &str = "CONTAINER_RS_ENGINES_DIR";
/// The state folder unless [`STATE_DIR_ENV`] is set.
const DEFAULT_STATE_DIR: &str = "/var/lib/container-rs-engines";
/// Runtime state of the daemons that do not default to a `/run` path of their own.
const RUN_DIR: &str = "/run/container-rs-engines";

/// `cargo xtask engines`: the container engines and registry the tests run against.
#[derive(Debug, Args)]
pub(crate) struct Engines {
    /// What to do with the engines.
    #[command(subcommand)]
    action: Action,
}

/// The actions of `cargo xtask engines`.
#[derive(Debug, Subcommand)]
enum Action {
    /// Install what is missing, start the engines and the registry, push the test images.
    Up(Up),
    /// Stop the daemons that `up` started.
    Down(Down),
    /// Print whether each engine runs, its version and its socket.
    Status(Status),
    /// Crash an engine (SIGKILL to its daemon) and start it again: the fault harness's
    /// engine restart.
    Restart(Restart),
}

impl Engines {
    /// Runs the chosen action.
    pub(crate) fn run(self, sh: &Shell) -> anyhow::Result<()> {
        match self.action {
            Action::Up(cmd) => cmd.run(sh),
            Action::Down(cmd) => cmd.run(sh),
            Action::Status(cmd) => cmd.run(sh),
            Action::Restart(cmd) => cmd.run(sh),
        }
    }
}

/// `cargo xtask engines up`.
#[derive(Debug, Args)]
struct Up {
    /// Which engine to bring up (the registry and test images come with any).
    #[arg(long, value_enum, default_value_t = BackendArg::All)]
    backend: BackendArg,
    /// Build and push the test images even if the registry already serves them.
    #[arg(long)]
    rebuild_images: bool,
}

impl Up {
    /// Brings up the chosen engines.
    fn run(self, sh: &Shell) -> anyhow::Result<()> {
        up(sh, self.backend.backends(), self.rebuild_images)
    }
}

/// `cargo xtask engines down`.
#[derive(Debug, Args)]
struct Down {
    /// Which engine to stop; `all` stops the registry too. Stopping containerd stops
    /// dockerd first, which runs its containers through it.
    #[arg(long, value_enum, default_value_t = BackendArg::All)]
    backend: BackendArg,
}

impl Down {
    /// Stops the chosen engines, dependents first.
    fn run(self, sh: &Shell) -> anyhow::Result<()> {
        require_root()?;
        let state = StateDir::from_env();
        println!("engines state folder: {}", state.path().display());
        let backends = self.backend.backends();
        let mut services = Vec::new();
        if backends.contains(&Backend::Docker) || backends.contains(&Backend::Containerd) {
            services.push(Service::Docker);
        }
        if backends.contains(&Backend::Podman) {
            services.push(Service::Podman);
        }
        if backends.contains(&Backend::PodmanRootless) {
            services.push(Service::PodmanRootless);
        }
        if backends.contains(&Backend::DockerRootless) {
            services.push(Service::DockerRootless);
        }
        for (backend, service) in SID_SERVICES {
            if backends.contains(&backend) {
                services.push(service);
            }
        }
        if Backend::ALL.iter().all(|b| backends.contains(b)) {
            services.push(Service::Registry);
        }
        if backends.contains(&Backend::Containerd) {
            services.push(Service::Containerd);
        }
        for service in services {
            daemon::stop(sh, &state, service)?;
        }
        Ok(())
    }
}

/// `cargo xtask engines restart`.
#[derive(Debug, Args)]
struct Restart {
    /// The engine to crash and start again (its daemon only: containerd's restart leaves
    /// dockerd running, which reconnects to it).
    #[arg(long, value_enum)]
    backend: BackendArg,
}

impl Restart {
    /// SIGKILL to the engine's daemon, then the same start as `up`.
    fn run(self, sh: &Shell) -> anyhow::Result<()> {
        require_root()?;
        let state = StateDir::from_env();
        for backend in self.backend.backends() {
            let service = match backend {
                Backend::Docker => Service::Docker,
                Backend::Podman => Service::Podman,
                Backend::PodmanRootless => Service::PodmanRootless,
                Backend::DockerRootless => Service::DockerRootless,
                Backend::Containerd => Service::Containerd,
                Backend::DockerSid => Service::DockerSid,
                Backend::PodmanSid => Service::PodmanSid,
                Backend::ContainerdSid => Service::ContainerdSid,
            };
            daemon::crash(sh, &state, service)?;
            daemon::ensure_running(sh, &state, service)?;
        }
        Ok(())
    }
}

/// `cargo xtask engines status`.
#[derive(Debug, Args)]
struct Status {
    /// Which engine to report on (the registry is always included).
    #[arg(long, value_enum, default_value_t = BackendArg::All)]
    backend: BackendArg,
}

impl Status {
    /// Prints one line per daemon, then the test images the registry serves.
    fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let state = StateDir::from_env();
        println!("engines state folder: {}", state.path().display());
        for service in services_for(self.backend.backends()) {
            daemon::print_status(sh, &state, service);
        }
        images::print_status();
        Ok(())
    }
}

/// A container engine the tests can run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    /// dockerd, through [`DOCKER_SOCKET`].
    Docker,
    /// The Podman API service, through [`PODMAN_SOCKET`].
    Podman,
    /// A rootless Podman API service, run and used by an unprivileged user
    /// ([`rootless`]): the podman backend, in another setting.
    PodmanRootless,
    /// A rootless dockerd, run and used by the same user: the docker backend.
    DockerRootless,
    /// containerd, through [`CONTAINERD_SOCKET`].
    Containerd,
    /// sid's dockerd (Docker 28), from its own root ([`sid`]): the docker backend.
    DockerSid,
    /// sid's Podman service (Podman 5): the podman backend.
    PodmanSid,
    /// sid's containerd (containerd 2): the containerd backend.
    ContainerdSid,
}

impl Backend {
    /// The lower-case name, as the library and the conformance features spell it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Docker => "docker",
            Backend::Podman => "podman",
            Backend::PodmanRootless => "podman-rootless",
            Backend::DockerRootless => "docker-rootless",
            Backend::Containerd => "containerd",
            Backend::DockerSid => "docker-sid",
            Backend::PodmanSid => "podman-sid",
            Backend::ContainerdSid => "containerd-sid",
        }
    }

    /// The library backend that serves this engine (and the conformance suite that
    /// tests it).
    pub(crate) fn library(self) -> &'static str {
        match self {
            Backend::Docker | Backend::DockerRootless | Backend::DockerSid => "docker",
            Backend::Podman | Backend::PodmanRootless | Backend::PodmanSid => "podman",
            Backend::Containerd | Backend::ContainerdSid => "containerd",
        }
    }

    /// Every backend CI runs (`all`). Rootless Docker comes up only when named: its
    /// suite is not in CI (see `conformance::CI_SUITES`).
    pub(crate) const ALL: &'static [Backend] = &[
        Backend::Containerd,
        Backend::Docker,
        Backend::Podman,
        Backend::PodmanRootless,
        Backend::ContainerdSid,
        Backend::DockerSid,
        Backend::PodmanSid,
    ];
}

/// `--backend` on the command line: one engine, or all of them.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum BackendArg {
    /// dockerd (needs containerd, which is brought up with it).
    Docker,
    /// The Podman API service.
    Podman,
    /// The rootless Podman API service (user `crs-rootless`).
    PodmanRootless,
    /// The rootless dockerd (user `crs-rootless`).
    DockerRootless,
    /// containerd.
    Containerd,
    /// sid's dockerd (Docker 28), in its own root and mount namespace.
    DockerSid,
    /// sid's Podman service (Podman 5).
    PodmanSid,
    /// sid's containerd (containerd 2).
    ContainerdSid,
    /// The three sid engines.
    Sid,
    /// Every engine CI runs (rootless Docker only by its name).
    All,
}

impl BackendArg {
    /// The backends this value names.
    pub(crate) fn backends(self) -> &'static [Backend] {
        match self {
            BackendArg::Docker => &[Backend::Docker],
            BackendArg::Podman => &[Backend::Podman],
            BackendArg::PodmanRootless => &[Backend::PodmanRootless],
            BackendArg::DockerRootless => &[Backend::DockerRootless],
            BackendArg::Containerd => &[Backend::Containerd],
            BackendArg::DockerSid => &[Backend::DockerSid],
            BackendArg::PodmanSid => &[Backend::PodmanSid],
            BackendArg::ContainerdSid => &[Backend::ContainerdSid],
            BackendArg::Sid => &[
                Backend::ContainerdSid,
                Backend::DockerSid,
                Backend::PodmanSid,
            ],
            BackendArg::All => Backend::ALL,
        }
    }
}

/// `backends` without the rootless and the sid engines: the fault harness and the
/// benchmarks run on Debian 12's rootful engines only.
pub(crate) fn rooted(backends: &[Backend]) -> Vec<Backend> {
    backends
        .iter()
        .copied()
        .filter(|b| matches!(b, Backend::Docker | Backend::Podman | Backend::Containerd))
        .collect()
}

/// The sid engines and their daemons.
const SID_SERVICES: [(Backend, Service); 3] = [
    (Backend::ContainerdSid, Service::ContainerdSid),
    (Backend::DockerSid, Service::DockerSid),
    (Backend::PodmanSid, Service::PodmanSid),
];

/// Brings up the engines for `backends`, the registry and the test images, leaving
/// alone whatever already runs; prints the state folder and a summary.
pub(crate) fn ensure_up(sh: &Shell, backends: &[Backend]) -> anyhow::Result<()> {
    up(sh, backends, false)
}

/// [`ensure_up`], optionally pushing the test images again.
fn up(sh: &Shell, backends: &[Backend], rebuild_images: bool) -> anyhow::Result<()> {
    require_root()?;
    let state = StateDir::from_env();
    println!("engines state folder: {}", state.path().display());
    packages::ensure_installed(sh)?;
    sshd::ensure_running(sh, &state)?;
    for service in services_for(backends) {
        config::write(&state, service)?;
        if service == Service::Docker {
            tls::ensure(sh, &state)?;
        }
        if matches!(service, Service::PodmanRootless | Service::DockerRootless) {
            rootless::prepare(sh, &state)?;
        }
        if matches!(
            service,
            Service::ContainerdSid | Service::DockerSid | Service::PodmanSid
        ) {
            sid::ensure_root(sh, &state)?;
        }
        daemon::ensure_running(sh, &state, service)?;
    }
    images::ensure_pushed(sh, &state, rebuild_images)?;
    Ok(())
}

/// The daemons that serve `backends`, in start order, registry last. dockerd runs
/// its containers through the shared containerd, so Docker brings containerd along.
fn services_for(backends: &[Backend]) -> Vec<Service> {
    let mut services = Vec::new();
    if backends.contains(&Backend::Containerd) || backends.contains(&Backend::Docker) {
        services.push(Service::Containerd);
    }
    if backends.contains(&Backend::Docker) {
        services.push(Service::Docker);
    }
    if backends.contains(&Backend::Podman) {
        services.push(Service::Podman);
    }
    if backends.contains(&Backend::PodmanRootless) {
        services.push(Service::PodmanRootless);
    }
    if backends.contains(&Backend::DockerRootless) {
        services.push(Service::DockerRootless);
    }
    for (backend, service) in SID_SERVICES {
        if backends.contains(&backend) {
            services.push(service);
        }
    }
    services.push(Service::Registry);
    services
}

/// Fails unless this process runs as root: the daemons need it.
fn require_root() -> anyhow::Result<()> {
    let uid = std::fs::metadata("/proc/self")
        .context("reading /proc/self (is this Linux?)")?
        .uid();
    if uid != 0 {
        bail!("`cargo xtask engines` starts system daemons and must run as root (uid is {uid})");
    }
    Ok(())
}

/// PATH for the programs xtask runs: the caller's, plus the standard directories
/// (runc and dockerd live in /usr/sbin, which a non-login PATH may lack).
fn search_path() -> OsString {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    for dir in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        if !dirs.iter().any(|d| d == Path::new(dir)) {
            dirs.push(PathBuf::from(dir));
        }
    }
    std::env::join_paths(dirs).unwrap_or_else(|_| OsString::from("/usr/sbin:/usr/bin:/sbin:/bin"))
}

/// The state folder: logs, pid files, rendered configuration and engine data.
#[derive(Clone, Debug)]
pub(crate) struct StateDir {
    /// The folder itself.
    root: PathBuf,
}

impl StateDir {
    /// [`STATE_DIR_ENV`] if set and not empty, else [`DEFAULT_STATE_DIR`].
    pub(crate) fn from_env() -> StateDir {
        let root = std::env::var_os(STATE_DIR_ENV)
            .filter(|dir| !dir.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_STATE_DIR), PathBuf::from);
        StateDir { root }
    }

    /// The folder.
    pub(crate) fn path(&self) -> &Path {
        &self.root
    }

    /// A path inside the folder.
    pub(crate) fn join(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// The log file of `service` (stdout and stderr of every start, appended).
    fn log_file(&self, service: Service) -> PathBuf {
        self.root
            .join("logs")
            .join(format!("{}.log", service.name()))
    }

    /// The pid file xtask writes for `service`.
    fn pid_file(&self, service: Service) -> PathBuf {
        self.root
            .join("pids")
            .join(format!("{}.pid", service.name()))
    }
}
