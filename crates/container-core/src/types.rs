//! The data that flows through [`ContainerManager`](crate::ContainerManager): container and
//! exec configuration, results, state, volumes, pull progress, engine facts.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::retry::RetryPolicy;
use crate::signal::Signal;

/// Labels as sorted key/value pairs, so hashes and comparisons are stable.
pub type Labels = BTreeMap<String, String>;

/// The engine family behind a manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum BackendKind {
    /// Docker Engine API.
    Docker,
    /// Podman's libpod REST API.
    Podman,
    /// containerd's gRPC API.
    Containerd,
}

impl BackendKind {
    /// The lower-case name (`docker`, `podman`, `containerd`).
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Docker => "docker",
            BackendKind::Podman => "podman",
            BackendKind::Containerd => "containerd",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "docker" => Ok(BackendKind::Docker),
            "podman" => Ok(BackendKind::Podman),
            "containerd" => Ok(BackendKind::Containerd),
            other => Err(Error::invalid_input(format!(
                "unknown backend {other:?}: expected docker, podman or containerd"
            ))),
        }
    }
}

/// A numeric user and group for the container's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl User {
    /// `uid:gid`.
    pub fn new(uid: u32, gid: u32) -> Self {
        User { uid, gid }
    }
}

impl fmt::Display for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

/// A user account in the container (ADR 0013): the main process and every exec run as
/// `uid:gid`; at each start the library makes sure `/etc/passwd` and `/etc/group` have
/// entries for it and that its home exists and is its own; `HOME`, `USER` and `LOGNAME`
/// are set unless the config sets them. For any image that has `/etc/passwd` and a
/// POSIX shell; no image entrypoint is needed. [`Account::host`] is the caller's own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Account {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Login name: letters, digits, `.`, `_` and `-`, not starting with `-`, at most
    /// 32 bytes; `root` for uid 0.
    pub name: String,
    /// Absolute home folder in the container (`/home/<name>`, `/root` for uid 0).
    pub home: String,
}

impl Account {
    /// `name` as `uid:gid`, its home `/home/<name>` (`/root` for uid 0).
    pub fn new(uid: u32, gid: u32, name: impl Into<String>) -> Self {
        let name = name.into();
        let home = if uid == 0 {
            "/root".to_string()
        } else {
            format!("/home/{name}")
        };
        Account {
            uid,
            gid,
            name,
            home,
        }
    }

    /// The same account with its home at `home`.
    pub fn with_home(mut self, home: impl Into<String>) -> Self {
        self.home = home.into();
        self
    }

    /// The caller's own account: its real uid and gid, and its name in the host's user
    /// database (NSS, so LDAP users too); `$USER`, then `u<uid>`, when it has none.
    pub fn host() -> Self {
        let uid = nix::unistd::getuid();
        let gid = nix::unistd::getgid().as_raw();
        let name = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name)
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| format!("u{uid}"));
        Account::new(uid.as_raw(), gid, name)
    }

    /// The numeric user the processes run as.
    pub fn user(&self) -> User {
        User::new(self.uid, self.gid)
    }
}

/// Where [`ContainerConfig::ssh_agent`] binds the caller's ssh agent socket.
pub const SSH_AGENT_TARGET: &str = "/run/host-services/ssh-auth.sock";

/// The proxy variables [`ContainerConfig::host_proxies`] passes, lower and upper case.
pub const PROXY_VARIABLES: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "ftp_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
];

/// A filesystem made visible inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
#[non_exhaustive]
pub enum Mount {
    /// A host directory or file. The host path must exist: it is never created for you.
    Bind {
        /// Absolute host path (a symlink is fine).
        source: PathBuf,
        /// Absolute path inside the container.
        target: String,
        /// Mount read-only.
        read_only: bool,
        /// SELinux relabelling of the host path (`z`/`Z`); none when `None`. A no-op on
        /// hosts without SELinux.
        relabel: Option<Relabel>,
        /// The caller's explicit opt-in to a sensitive source (`/`, `/proc`, `/sys`,
        /// `/dev`, `/etc`, `/boot`, an engine's data root or socket, or a folder that
        /// holds one; a private relabel of a home folder): without it such a mount is
        /// `InvalidInput` ([`Mount::allow_sensitive`]).
        #[serde(default)]
        sensitive: bool,
    },
    /// A named volume managed by the engine.
    Volume {
        /// Volume name.
        name: String,
        /// Absolute path inside the container.
        target: String,
        /// Mount read-only.
        read_only: bool,
    },
    /// A fresh in-memory filesystem, empty on each start.
    Tmpfs {
        /// Absolute path inside the container.
        target: String,
        /// Size limit in bytes; engine default when `None`.
        size_bytes: Option<i64>,
    },
}

/// How an SELinux host relabels a bind-mounted host path for the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Relabel {
    /// `z`: shared between containers.
    Shared,
    /// `Z`: private to this container (other containers lose access).
    Private,
}

impl Relabel {
    /// The engines' option letter: `z` or `Z`.
    pub fn option(self) -> &'static str {
        match self {
            Relabel::Shared => "z",
            Relabel::Private => "Z",
        }
    }
}

impl Mount {
    /// A read-write bind mount of `source` at `target`.
    pub fn bind(source: impl Into<PathBuf>, target: impl Into<String>) -> Self {
        Mount::Bind {
            source: source.into(),
            target: target.into(),
            read_only: false,
            relabel: None,
            sensitive: false,
        }
    }

    /// The same bind mount, allowed although its source is sensitive (see
    /// [`Mount::Bind::sensitive`]): the container then reaches host files or an engine
    /// that can control the host. No effect on volumes and tmpfs.
    pub fn allow_sensitive(mut self) -> Self {
        if let Mount::Bind { sensitive, .. } = &mut self {
            *sensitive = true;
        }
        self
    }

    /// The same bind mount with SELinux relabelling (no effect on volumes and tmpfs).
    pub fn relabel(mut self, how: Relabel) -> Self {
        if let Mount::Bind { relabel, .. } = &mut self {
            *relabel = Some(how);
        }
        self
    }

    /// A read-write named volume at `target`.
    pub fn volume(name: impl Into<String>, target: impl Into<String>) -> Self {
        Mount::Volume {
            name: name.into(),
            target: target.into(),
            read_only: false,
        }
    }

    /// A tmpfs at `target` with the engine's default size.
    pub fn tmpfs(target: impl Into<String>) -> Self {
        Mount::Tmpfs {
            target: target.into(),
            size_bytes: None,
        }
    }

    /// The same mount, read-only (no effect on tmpfs).
    pub fn read_only(mut self) -> Self {
        match &mut self {
            Mount::Bind { read_only, .. } | Mount::Volume { read_only, .. } => *read_only = true,
            Mount::Tmpfs { .. } => {}
        }
        self
    }

    /// The path inside the container.
    pub fn target(&self) -> &str {
        match self {
            Mount::Bind { target, .. }
            | Mount::Volume { target, .. }
            | Mount::Tmpfs { target, .. } => target,
        }
    }
}

/// A resource limit applied with `setrlimit` to the container's processes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Ulimit {
    /// Name without the `RLIMIT_` prefix, lower case (`nofile`, `nproc`, `core`, ...).
    pub name: String,
    /// Soft limit.
    pub soft: i64,
    /// Hard limit.
    pub hard: i64,
}

/// Resource limits; `None` means the engine's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Resources {
    /// Memory limit in bytes (> 0).
    pub memory_bytes: Option<i64>,
    /// CPU quota in cores, e.g. `1.5` (> 0).
    pub cpus: Option<f64>,
    /// Maximum number of processes (> 0).
    pub pids_limit: Option<i64>,
    /// Per-process limits such as `nofile`.
    pub ulimits: Vec<Ulimit>,
}

impl Ulimit {
    /// The limit `name` (`nofile`, `nproc`, ...) at `soft` / `hard`.
    pub fn new(name: impl Into<String>, soft: i64, hard: i64) -> Self {
        Ulimit {
            name: name.into(),
            soft,
            hard,
        }
    }
}

impl Resources {
    /// Sets the memory limit in bytes.
    pub fn memory(mut self, bytes: i64) -> Self {
        self.memory_bytes = Some(bytes);
        self
    }

    /// Sets the CPU quota in cores.
    pub fn cpus(mut self, cpus: f64) -> Self {
        self.cpus = Some(cpus);
        self
    }

    /// Sets the maximum number of processes.
    pub fn pids_limit(mut self, pids: i64) -> Self {
        self.pids_limit = Some(pids);
        self
    }

    /// Adds a per-process limit.
    pub fn ulimit(mut self, ulimit: Ulimit) -> Self {
        self.ulimits.push(ulimit);
        self
    }
}

/// Network of the container. There are no bridge networks on the engines this library is
/// tested with; `None` (loopback only) is the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum NetworkMode {
    /// Only a loopback interface.
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// A named network that already exists on the engine.
    Named(String),
}

/// Everything needed to create a container. Validated by
/// [`validate::container_config`](crate::validate::container_config) before any engine call.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ContainerConfig {
    /// Image reference, e.g. `127.0.0.1:5000/container-rs/busybox:1`.
    pub image: String,
    /// Container name; create is idempotent by name. A generated name when `None`.
    pub name: Option<String>,
    /// Command; the image's default when `None`. `Some(vec![])` is invalid.
    pub cmd: Option<Vec<String>>,
    /// Entrypoint override; the image's default when `None`.
    pub entrypoint: Option<Vec<String>>,
    /// Environment as `KEY=VALUE` entries. Values never appear in logs or Debug output.
    pub env: Vec<String>,
    /// Absolute working directory.
    pub working_dir: Option<String>,
    /// Numeric user and group of the main process.
    pub user: Option<User>,
    /// A user account made in the container for the processes (see [`Account`]); set by
    /// [`account`](Self::account), which sets [`user`](Self::user) to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<Account>,
    /// Bind the caller's ssh agent (`SSH_AUTH_SOCK`) into the container at
    /// [`SSH_AGENT_TARGET`] and point `SSH_AUTH_SOCK` at it, for git fetchers over ssh.
    /// Read when the container is created; no agent then is `InvalidInput`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ssh_agent: bool,
    /// Pass the caller's proxy variables (`http_proxy`, `https_proxy`, `ftp_proxy`,
    /// `no_proxy`, `all_proxy` and their upper-case forms) into the container's env,
    /// each unless the config sets it. Read when the container is created.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_proxies: bool,
    /// Mounts, each target unique.
    pub mounts: Vec<Mount>,
    /// User labels; keys under the reserved prefix `io.container-rs.` are refused.
    pub labels: Labels,
    /// Run an init process as PID 1 (reaps zombies, forwards signals).
    pub init: bool,
    /// Signal sent by stop; `SIGTERM` when `None`.
    pub stop_signal: Option<Signal>,
    /// Grace between the stop signal and SIGKILL; 10 s when `None`.
    pub stop_grace: Option<Duration>,
    /// Resource limits.
    pub resources: Resources,
    /// Network mode.
    pub network: NetworkMode,
    /// Hostname inside the container.
    pub hostname: Option<String>,
    /// Map the user running the engine to the same uid and gid inside the container
    /// (Podman's `--userns=keep-id`), so files in bind mounts keep their owner. Rootless
    /// engines only: `Unsupported` where [`Capabilities::userns_keep_id`] is off.
    pub keep_id: bool,
    /// Keep the main process's stdin open for one
    /// [`attach_stdin`](crate::ContainerManager::attach_stdin) (`docker run -i`): the
    /// process reads what the attach sends, and EOF when the attach's source ends. When
    /// off, the main process's stdin is empty (`/dev/null`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin_open: bool,
    /// Give the main process a terminal (`docker run -t`): its output is one raw stream,
    /// read as stdout by [`logs`](crate::ContainerManager::logs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
}

impl ContainerConfig {
    /// A config for `image` with every other field at its default.
    pub fn new(image: impl Into<String>) -> Self {
        ContainerConfig {
            image: image.into(),
            ..ContainerConfig::default()
        }
    }

    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the command.
    pub fn cmd<I, S>(mut self, cmd: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cmd = Some(cmd.into_iter().map(Into::into).collect());
        self
    }

    /// Adds an environment entry `key=value`.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push(format!("{key}={value}"));
        self
    }

    /// Adds a mount.
    pub fn mount(mut self, mount: Mount) -> Self {
        self.mounts.push(mount);
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets the user.
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some(User::new(uid, gid));
        self
    }

    /// Sets the working directory.
    pub fn working_dir(mut self, dir: impl Into<String>) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    /// Turns the init process on or off.
    pub fn init(mut self, init: bool) -> Self {
        self.init = init;
        self
    }

    /// Sets the stop signal (parse a name such as `"SIGINT"` with [`str::parse`]).
    pub fn stop_signal(mut self, signal: Signal) -> Self {
        self.stop_signal = Some(signal);
        self
    }

    /// Sets the entrypoint.
    pub fn entrypoint<I, S>(mut self, entrypoint: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.entrypoint = Some(entrypoint.into_iter().map(Into::into).collect());
        self
    }

    /// Runs the main process and execs as `account`, with passwd and group entries and a
    /// home made for it (see [`Account`]); `.account(Account::host())` is the caller's
    /// own user, so files written into bind mounts are the caller's on the host.
    pub fn account(mut self, account: Account) -> Self {
        self.user = Some(account.user());
        self.account = Some(account);
        self
    }

    /// Forwards the caller's ssh agent (see [`ssh_agent`](Self::ssh_agent)).
    pub fn ssh_agent(mut self, on: bool) -> Self {
        self.ssh_agent = on;
        self
    }

    /// Passes the caller's proxy variables (see [`host_proxies`](Self::host_proxies)).
    pub fn host_proxies(mut self, on: bool) -> Self {
        self.host_proxies = on;
        self
    }

    /// Asks for a keep-id user namespace (see [`keep_id`](Self::keep_id)).
    pub fn keep_id(mut self, on: bool) -> Self {
        self.keep_id = on;
        self
    }

    /// Keeps the main process's stdin open (see [`stdin_open`](Self::stdin_open)).
    pub fn stdin_open(mut self, on: bool) -> Self {
        self.stdin_open = on;
        self
    }

    /// Gives the main process a terminal (see [`tty`](Self::tty)).
    pub fn tty(mut self, on: bool) -> Self {
        self.tty = on;
        self
    }

    /// Sets the hostname.
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// Sets all resource limits at once.
    pub fn resources(mut self, resources: Resources) -> Self {
        self.resources = resources;
        self
    }

    /// Sets the memory limit in bytes.
    pub fn memory(mut self, bytes: i64) -> Self {
        self.resources.memory_bytes = Some(bytes);
        self
    }

    /// Sets the CPU quota in cores.
    pub fn cpus(mut self, cpus: f64) -> Self {
        self.resources.cpus = Some(cpus);
        self
    }

    /// Sets the maximum number of processes.
    pub fn pids_limit(mut self, pids: i64) -> Self {
        self.resources.pids_limit = Some(pids);
        self
    }

    /// Adds a per-process limit such as `Ulimit::new("nofile", 1024, 4096)`.
    pub fn ulimit(mut self, ulimit: Ulimit) -> Self {
        self.resources.ulimits.push(ulimit);
        self
    }

    /// Sets the stop grace period.
    pub fn stop_grace(mut self, grace: Duration) -> Self {
        self.stop_grace = Some(grace);
        self
    }

    /// Sets the network mode.
    pub fn network(mut self, network: NetworkMode) -> Self {
        self.network = network;
        self
    }
}

/// Writes `KEY=VALUE` entries as `KEY=<redacted>` so secrets never reach logs.
pub(crate) struct RedactedEnv<'a>(pub(crate) &'a [String]);

impl fmt::Debug for RedactedEnv<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|e| match e.split_once('=') {
                Some((k, _)) => format!("{k}=<redacted>"),
                None => "<malformed>".to_string(),
            }))
            .finish()
    }
}

impl fmt::Debug for ContainerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContainerConfig")
            .field("image", &self.image)
            .field("name", &self.name)
            .field("cmd", &self.cmd)
            .field("entrypoint", &self.entrypoint)
            .field("env", &RedactedEnv(&self.env))
            .field("working_dir", &self.working_dir)
            .field("user", &self.user)
            .field("account", &self.account)
            .field("ssh_agent", &self.ssh_agent)
            .field("host_proxies", &self.host_proxies)
            .field("mounts", &self.mounts)
            .field("labels", &self.labels)
            .field("init", &self.init)
            .field("stop_signal", &self.stop_signal)
            .field("stop_grace", &self.stop_grace)
            .field("resources", &self.resources)
            .field("network", &self.network)
            .field("hostname", &self.hostname)
            .field("keep_id", &self.keep_id)
            .field("stdin_open", &self.stdin_open)
            .field("tty", &self.tty)
            .finish()
    }
}

/// Lifecycle state of a container.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ContainerState {
    /// Created, never started.
    Created,
    /// Main process running.
    Running,
    /// Paused (frozen).
    Paused,
    /// Being restarted by the engine.
    Restarting,
    /// Main process exited with this code.
    Exited(i64),
    /// Being removed.
    Removing,
    /// Dead (failed removal or similar).
    Dead,
    /// A state string this library does not know.
    Unknown(String),
}

impl ContainerState {
    /// True for [`ContainerState::Running`].
    pub fn is_running(&self) -> bool {
        matches!(self, ContainerState::Running)
    }
}

/// What inspect and list report about a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ContainerInfo {
    /// Engine id.
    pub id: String,
    /// Name without a leading `/`.
    pub name: String,
    /// Image reference the container was created from.
    pub image: String,
    /// Current state.
    pub state: ContainerState,
    /// Whether the kernel OOM killer ended the main process.
    pub oom_killed: bool,
    /// All labels, including the ownership labels.
    pub labels: Labels,
    /// The host PID of the main process while it runs (inspect only; list leaves it out).
    pub pid: Option<u32>,
    /// When the main process last started (inspect only).
    pub started_at: Option<SystemTime>,
    /// When the main process last exited (inspect only).
    pub finished_at: Option<SystemTime>,
    /// How often the engine restarted the container.
    pub restart_count: u64,
    /// The bind and volume mounts as the engine reports them (inspect; `None` when the
    /// engine or the call, a list on Docker and Podman, does not say).
    #[serde(default)]
    pub mounts: Option<Vec<MountInfo>>,
}

/// A bind or volume mount of a container, as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MountInfo {
    /// The host path `source` at `target`.
    Bind {
        /// The host path, as the engine has it.
        source: String,
        /// The path inside the container.
        target: String,
    },
    /// The named volume `name` at `target` (an image's anonymous volumes too).
    Volume {
        /// The volume's name.
        name: String,
        /// The path inside the container.
        target: String,
    },
}

impl MountInfo {
    /// The mount reported from an engine's mount type (`bind`, `volume`), volume name,
    /// host source and container target; `None` for other types (tmpfs, the runtime's
    /// own) and bind mounts without a source.
    pub fn from_engine(
        kind: Option<&str>,
        name: Option<&str>,
        source: Option<&str>,
        target: Option<&str>,
    ) -> Option<Self> {
        let (source, target) = (source.unwrap_or_default(), target.unwrap_or_default());
        match kind.unwrap_or_default() {
            "bind" if !source.is_empty() => Some(MountInfo::Bind {
                source: source.to_string(),
                target: target.to_string(),
            }),
            "volume" => Some(MountInfo::Volume {
                name: name.unwrap_or_default().to_string(),
                target: target.to_string(),
            }),
            _ => None,
        }
    }
}

impl ContainerInfo {
    /// Info for container `id` named `name` from `image` in `state`; nothing else known.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        image: impl Into<String>,
        state: ContainerState,
    ) -> Self {
        ContainerInfo {
            id: id.into(),
            name: name.into(),
            image: image.into(),
            state,
            oom_killed: false,
            labels: Labels::new(),
            pid: None,
            started_at: None,
            finished_at: None,
            restart_count: 0,
            mounts: None,
        }
    }

    /// With the bind and volume mounts the engine reports.
    pub fn with_mounts(mut self, mounts: Vec<MountInfo>) -> Self {
        self.mounts = Some(mounts);
        self
    }

    /// With these labels.
    pub fn with_labels(mut self, labels: Labels) -> Self {
        self.labels = labels;
        self
    }

    /// With the OOM-killed flag.
    pub fn with_oom_killed(mut self, oom_killed: bool) -> Self {
        self.oom_killed = oom_killed;
        self
    }

    /// With the main process's PID (`None` or 0: not running).
    pub fn with_pid(mut self, pid: Option<u32>) -> Self {
        self.pid = pid.filter(|p| *p > 0);
        self
    }

    /// With the last start and exit times.
    pub fn with_times(mut self, started: Option<SystemTime>, finished: Option<SystemTime>) -> Self {
        self.started_at = started;
        self.finished_at = finished;
        self
    }

    /// With the restart count.
    pub fn with_restart_count(mut self, count: u64) -> Self {
        self.restart_count = count;
        self
    }
}

/// How to copy files out of a container ([`copy_from_with`](crate::ContainerManager::copy_from_with)).
///
/// What a container sends is not trusted (`docs/adr/0012-host-safe-copies.md`): the copy
/// creates a new tree under the destination and never replaces, chmods or chowns
/// anything that was there; setuid, setgid and sticky bits are never kept.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopyOptions {
    /// uid:gid for everything the copy creates on the host; the caller's when `None`
    /// (the archive's owners are never restored).
    pub owner: Option<User>,
    /// Keep group and other write permission (default: removed).
    pub shared_write: bool,
    /// Bytes of file content the copy may write, at most (default 64 GiB): past it the
    /// copy fails with `InvalidInput`.
    pub max_bytes: u64,
    /// Files, folders and links the copy may create, at most (default one million).
    pub max_entries: u64,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            owner: None,
            shared_write: false,
            max_bytes: crate::archive::DEFAULT_MAX_BYTES,
            max_entries: crate::archive::DEFAULT_MAX_ENTRIES,
        }
    }
}

impl CopyOptions {
    /// Copies whose files belong to `uid:gid`.
    pub fn owned_by(uid: u32, gid: u32) -> Self {
        CopyOptions {
            owner: Some(User::new(uid, gid)),
            ..CopyOptions::default()
        }
    }

    /// Keeps group and other write permission where the container's files have it.
    pub fn with_shared_write(mut self, keep: bool) -> Self {
        self.shared_write = keep;
        self
    }

    /// The cap on the bytes of file content written.
    pub fn with_max_bytes(mut self, max: u64) -> Self {
        self.max_bytes = max;
        self
    }

    /// The cap on the entries created.
    pub fn with_max_entries(mut self, max: u64) -> Self {
        self.max_entries = max;
        self
    }
}

/// Which processes a cleanup may remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CleanupScope {
    /// Objects of this manager's session only.
    Session,
    /// Every object carrying this manager's owner label, from any session.
    Owner,
}

/// What a cleanup removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CleanupReport {
    /// Ids of the removed containers.
    pub containers: Vec<String>,
    /// Names of the removed volumes.
    pub volumes: Vec<String>,
}

/// A named volume to create.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct VolumeConfig {
    /// Volume name (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`).
    pub name: String,
    /// User labels; the reserved prefix is refused.
    pub labels: Labels,
}

impl VolumeConfig {
    /// A volume named `name` with no labels.
    pub fn new(name: impl Into<String>) -> Self {
        VolumeConfig {
            name: name.into(),
            labels: Labels::new(),
        }
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
}

/// What the engine reports about a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct VolumeInfo {
    /// Volume name.
    pub name: String,
    /// All labels, including the ownership labels.
    pub labels: Labels,
    /// Where the data lives on the engine's host, when reported.
    pub mountpoint: Option<String>,
}

impl VolumeInfo {
    /// Info for volume `name` with `labels`.
    pub fn new(name: impl Into<String>, labels: Labels) -> Self {
        VolumeInfo {
            name: name.into(),
            labels,
            mountpoint: None,
        }
    }

    /// With the host path of its data (empty: not reported).
    pub fn with_mountpoint(mut self, mountpoint: impl Into<String>) -> Self {
        let m = mountpoint.into();
        self.mountpoint = (!m.is_empty()).then_some(m);
        self
    }
}

/// Credentials for a registry. The password never appears in Debug output or logs.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryAuth {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
    /// Registry host; taken from the image reference when `None`.
    pub server: Option<String>,
}

impl RegistryAuth {
    /// Credentials for the registry of the image reference.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        RegistryAuth {
            username: username.into(),
            password: password.into(),
            server: None,
        }
    }

    /// For this registry host instead.
    pub fn with_server(mut self, server: impl Into<String>) -> Self {
        self.server = Some(server.into());
        self
    }

    /// Whether these credentials may be sent to `registry` (an image reference's
    /// registry host, `docker.io` for Docker Hub): always when no server is named,
    /// otherwise only when the named server is that registry (a scheme, a trailing path
    /// and Docker Hub's other names are looked past).
    pub fn is_for(&self, registry: &str) -> bool {
        let Some(server) = &self.server else {
            return true;
        };
        fn host(s: &str) -> String {
            let s = s.trim();
            let s = s
                .strip_prefix("https://")
                .or_else(|| s.strip_prefix("http://"))
                .unwrap_or(s);
            let s = s.split('/').next().unwrap_or(s).to_ascii_lowercase();
            match s.as_str() {
                "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
                    "docker.io".to_string()
                }
                _ => s,
            }
        }
        host(server) == host(registry)
    }
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("server", &self.server)
            .finish()
    }
}

/// One pull progress event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PullProgress {
    /// The manifest is being resolved.
    Resolving {
        /// The reference being pulled.
        reference: String,
    },
    /// Progress of one layer.
    Layer {
        /// Layer id or digest, as the engine names it.
        id: String,
        /// Phase of the layer.
        phase: LayerPhase,
        /// Bytes done in this phase, when known.
        current: Option<u64>,
        /// Bytes in total, when known.
        total: Option<u64>,
    },
    /// The image was present before the pull and nothing was downloaded: the local copy
    /// is current. Sent just before [`Completed`](PullProgress::Completed).
    AlreadyPresent {
        /// The reference pulled.
        reference: String,
    },
    /// The image is present locally.
    Completed {
        /// The reference pulled.
        reference: String,
        /// The manifest digest, when the engine tells it.
        digest: Option<String>,
    },
}

/// Phase of a layer during a pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum LayerPhase {
    /// Waiting to download.
    Waiting,
    /// Downloading.
    Downloading,
    /// Verifying the checksum.
    Verifying,
    /// Extracting.
    Extracting,
    /// Done.
    Complete,
    /// Already present locally; nothing downloaded.
    AlreadyExists,
}

/// Receives pull progress events. Called inline: keep it quick.
pub type ProgressFn = Arc<dyn Fn(&PullProgress) + Send + Sync>;

/// How to pull an image.
///
/// Three deadlines bound a pull, so that a registry that stops sending never hangs the
/// caller (`docs/adr/0011-pull-deadlines.md`):
///
/// - [`stall_timeout`](Self::stall_timeout) (default 60 s): an attempt that receives
///   nothing for this long is stalled and ends with a `Timeout`;
/// - [`attempt_timeout`](Self::attempt_timeout) (default 30 min): one attempt, however
///   busy, ends with a `Timeout` after this long;
/// - [`timeout`](Self::timeout) (default none): the whole pull, retries included.
///
/// A pull is idempotent, so the first two are retryable: the [`retry`](Self::retry)
/// policy tries again. The third ends the pull (the policy is cut off with it).
#[derive(Clone)]
#[non_exhaustive]
pub struct PullOptions {
    /// Registry credentials; backends may also read the user's engine config.
    pub auth: Option<RegistryAuth>,
    /// Retries for retryable failures.
    pub retry: RetryPolicy,
    /// Deadline for the whole pull, retries included; `None` (the default) for none.
    pub timeout: Option<Duration>,
    /// Deadline of one pull attempt; on expiry the attempt ends with a retryable
    /// `Timeout` and the [`retry`](Self::retry) policy decides whether another starts.
    /// Default [`DEFAULT_ATTEMPT_TIMEOUT`](Self::DEFAULT_ATTEMPT_TIMEOUT) (30 min): set
    /// it above what your largest image needs on your slowest link. `None` for no
    /// deadline. Applied by the manager around every backend's attempt; on Podman it is
    /// the only bound of a stalled download (see [`stall_timeout`](Self::stall_timeout)).
    pub attempt_timeout: Option<Duration>,
    /// How long an attempt may receive nothing before it is abandoned as stalled, with
    /// a retryable `Timeout`. Default [`DEFAULT_STALL_TIMEOUT`](Self::DEFAULT_STALL_TIMEOUT)
    /// (60 s); `None` for no stall rule. What counts as receiving something:
    ///
    /// - Docker: any message of the engine's progress stream (the engine reports bytes
    ///   while it downloads and extracts, so a slow but moving pull never stalls);
    /// - containerd (this library's own puller): any bytes of a registry response; the
    ///   manifest and the image config are each fetched within it, and the credential
    ///   helper of Docker's `config.json` must answer within it;
    /// - Podman: not applied. libpod's pull stream reports only the start of each blob,
    ///   never bytes, so a silence there cannot tell a stalled registry from a large
    ///   blob on a slow link; a stalled Podman pull ends at
    ///   [`attempt_timeout`](Self::attempt_timeout).
    pub stall_timeout: Option<Duration>,
    /// Progress callback.
    pub progress: Option<ProgressFn>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            auth: None,
            retry: RetryPolicy::default(),
            timeout: None,
            attempt_timeout: Some(Self::DEFAULT_ATTEMPT_TIMEOUT),
            stall_timeout: Some(Self::DEFAULT_STALL_TIMEOUT),
            progress: None,
        }
    }
}

impl fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullOptions")
            .field("auth", &self.auth)
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("stall_timeout", &self.stall_timeout)
            .field("progress", &self.progress.as_ref().map(|_| "Fn"))
            .finish()
    }
}

impl PullOptions {
    /// The default [`stall_timeout`](Self::stall_timeout): 60 s.
    pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);
    /// The default [`attempt_timeout`](Self::attempt_timeout): 30 min.
    pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

    /// With this [`stall_timeout`](Self::stall_timeout); `None` for no stall rule.
    pub fn with_stall_timeout(mut self, stall: Option<Duration>) -> Self {
        self.stall_timeout = stall;
        self
    }

    /// With this [`attempt_timeout`](Self::attempt_timeout); `None` for no deadline.
    pub fn with_attempt_timeout(mut self, limit: Option<Duration>) -> Self {
        self.attempt_timeout = limit;
        self
    }

    /// With registry credentials.
    pub fn with_auth(mut self, auth: RegistryAuth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// With this retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// With a deadline for the whole pull, retries included.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// With a progress callback.
    pub fn with_progress(
        mut self,
        progress: impl Fn(&PullProgress) + Send + Sync + 'static,
    ) -> Self {
        self.progress = Some(Arc::new(progress));
        self
    }

    /// Sends `event` to the progress callback, if any.
    pub fn report(&self, event: &PullProgress) {
        if let Some(progress) = &self.progress {
            progress(event);
        }
    }
}

/// Which log streams to read and how.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogOptions {
    /// Keep the stream open and deliver new output as it arrives.
    pub follow: bool,
    /// Include stdout.
    pub stdout: bool,
    /// Include stderr.
    pub stderr: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            follow: false,
            stdout: true,
            stderr: true,
        }
    }
}

impl LogOptions {
    /// Both streams, following new output as it arrives.
    pub fn follow() -> Self {
        LogOptions {
            follow: true,
            ..LogOptions::default()
        }
    }

    /// With or without stdout.
    pub fn stdout(mut self, on: bool) -> Self {
        self.stdout = on;
        self
    }

    /// With or without stderr.
    pub fn stderr(mut self, on: bool) -> Self {
        self.stderr = on;
        self
    }
}

/// Facts about the engine a manager talks to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EngineInfo {
    /// The backend in use.
    pub backend: BackendKind,
    /// What the engine says it is (`docker`, `podman`, `containerd`): a Podman socket
    /// behind a Docker endpoint reports `podman` here.
    pub engine: BackendKind,
    /// Engine version string.
    pub version: String,
    /// API version, when the engine has one.
    pub api_version: Option<String>,
    /// Operating system of the engine host.
    pub os: String,
    /// CPU architecture of the engine host.
    pub arch: String,
    /// Endpoint the manager is connected to.
    pub endpoint: String,
    /// CPUs of the engine host (a runner caps `--cpus` at it), when the engine says.
    pub cpus: Option<u32>,
    /// Memory of the engine host in bytes, when the engine says.
    pub memory_bytes: Option<u64>,
    /// How the engine's containers' user ids map to the engine host's (a rootless
    /// engine's user namespace: container root is the engine's user, the others its
    /// subordinate ids); empty when they are the host's own.
    pub uid_map: Vec<IdRange>,
    /// The same for group ids.
    pub gid_map: Vec<IdRange>,
}

/// A range of ids in an engine's user namespace: `size` ids from `container_id` inside
/// are `host_id` onwards on the engine host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    /// The first id inside the containers.
    pub container_id: u32,
    /// The id it is on the engine host.
    pub host_id: u32,
    /// How many ids the range holds.
    pub size: u32,
}

/// The host id of container id `id` under `map` (the id itself for an empty map;
/// `None` for an id the map leaves out: it cannot own anything on the host).
fn host_id(map: &[IdRange], id: u32) -> Option<u32> {
    if map.is_empty() {
        return Some(id);
    }
    map.iter().find_map(|r| {
        let offset = id.checked_sub(r.container_id)?;
        (offset < r.size)
            .then(|| r.host_id.checked_add(offset))
            .flatten()
    })
}

impl EngineInfo {
    /// Facts of an engine of family `engine` at `version`, reached through `backend` at
    /// `endpoint`; API version, OS and architecture unknown.
    pub fn new(
        backend: BackendKind,
        engine: BackendKind,
        version: impl Into<String>,
        endpoint: impl Into<String>,
    ) -> Self {
        EngineInfo {
            backend,
            engine,
            version: version.into(),
            api_version: None,
            os: String::new(),
            arch: String::new(),
            endpoint: endpoint.into(),
            cpus: None,
            memory_bytes: None,
            uid_map: Vec::new(),
            gid_map: Vec::new(),
        }
    }

    /// With the engine's id mappings (see [`uid_map`](Self::uid_map)).
    pub fn with_id_maps(mut self, uid_map: Vec<IdRange>, gid_map: Vec<IdRange>) -> Self {
        self.uid_map = uid_map;
        self.gid_map = gid_map;
        self
    }

    /// The engine host's uid of container uid `uid`: who owns on the host what a
    /// container's `uid` writes into a bind mount.
    pub fn host_uid(&self, uid: u32) -> Option<u32> {
        host_id(&self.uid_map, uid)
    }

    /// The engine host's gid of container gid `gid`.
    pub fn host_gid(&self, gid: u32) -> Option<u32> {
        host_id(&self.gid_map, gid)
    }

    /// With the engine host's CPU count and memory; zero or negative values (an engine
    /// that does not know) are `None`.
    pub fn with_resources(mut self, cpus: Option<i64>, memory_bytes: Option<i64>) -> Self {
        self.cpus = cpus.and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0);
        self.memory_bytes = memory_bytes
            .and_then(|n| u64::try_from(n).ok())
            .filter(|n| *n > 0);
        self
    }

    /// With this machine's CPU count (the CPUs this process may run on, as Docker's
    /// `NCPU`) and memory (`MemTotal` of `/proc/meminfo`): for an engine on this host.
    pub fn with_local_resources(mut self) -> Self {
        use procfs::Current as _;
        self.cpus = std::thread::available_parallelism()
            .ok()
            .and_then(|n| u32::try_from(n.get()).ok());
        self.memory_bytes = procfs::Meminfo::current().ok().map(|m| m.mem_total);
        self
    }

    /// With the API version.
    pub fn with_api_version(mut self, api_version: Option<String>) -> Self {
        self.api_version = api_version;
        self
    }

    /// With the engine host's operating system and CPU architecture.
    pub fn with_platform(mut self, os: impl Into<String>, arch: impl Into<String>) -> Self {
        self.os = os.into();
        self.arch = arch.into();
        self
    }
}

/// What a backend can do, as data: tests and callers select on it. Build one with
/// [`Capabilities::none`] and the `with_*` setters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// An init process as PID 1.
    pub init: bool,
    /// Memory, CPU and pids limits.
    pub resource_limits: bool,
    /// User-namespace keep-id mapping.
    pub userns_keep_id: bool,
    /// Exec with a TTY.
    pub tty_exec: bool,
    /// The engine can kill an exec natively (otherwise the backend does it by pid).
    pub native_exec_kill: bool,
    /// Copy files into and out of containers.
    pub copy_files: bool,
    /// The engine keeps an exec's output attached until its process exits (Docker,
    /// Podman): an earlier end of the output means the connection to the engine was
    /// lost, and the exec then ends with `Unavailable`, never with a code the engine
    /// makes up for it. Off where a process's own closed output ends it (containerd's
    /// FIFOs).
    pub attach_until_exit: bool,
    /// The main process's stdin can be kept open and fed by
    /// [`attach_stdin`](crate::ContainerManager::attach_stdin), and it can have a
    /// terminal ([`ContainerConfig::stdin_open`], [`ContainerConfig::tty`]).
    pub attach_stdin: bool,
}

impl Capabilities {
    /// Nothing optional.
    pub fn none() -> Self {
        Capabilities::default()
    }

    /// What a local OCI engine with the usual features offers: init, resource limits,
    /// TTY exec and file copies (no keep-id mapping, no native exec kill).
    pub fn oci_engine() -> Self {
        Capabilities {
            init: true,
            resource_limits: true,
            tty_exec: true,
            copy_files: true,
            ..Capabilities::none()
        }
    }

    /// With or without an init process as PID 1.
    pub fn with_init(mut self, on: bool) -> Self {
        self.init = on;
        self
    }

    /// With or without an attach that lasts until the exec's process exits.
    pub fn with_attach_until_exit(mut self, on: bool) -> Self {
        self.attach_until_exit = on;
        self
    }

    /// With or without memory, CPU and pids limits.
    pub fn with_resource_limits(mut self, on: bool) -> Self {
        self.resource_limits = on;
        self
    }

    /// With or without keep-id user-namespace mapping.
    pub fn with_userns_keep_id(mut self, on: bool) -> Self {
        self.userns_keep_id = on;
        self
    }

    /// With or without an attachable stdin and a terminal for the main process.
    pub fn with_attach_stdin(mut self, on: bool) -> Self {
        self.attach_stdin = on;
        self
    }

    /// With or without TTY exec.
    pub fn with_tty_exec(mut self, on: bool) -> Self {
        self.tty_exec = on;
        self
    }

    /// With or without a native exec kill.
    pub fn with_native_exec_kill(mut self, on: bool) -> Self {
        self.native_exec_kill = on;
        self
    }

    /// With or without file copies.
    pub fn with_copy_files(mut self, on: bool) -> Self {
        self.copy_files = on;
        self
    }
}

/// Where and how a backend connects. Every backend takes the same options.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Engine endpoint (`unix:///var/run/docker.sock`, `tcp://127.0.0.1:2376`, a socket
    /// path for containerd); the backend's environment variable or default when `None`.
    pub endpoint: Option<String>,
    /// Owner and session stamped on created objects.
    pub ownership: crate::labels::Ownership,
    /// Deadline for reaching the engine; past it, connect fails with `Unavailable`.
    pub connect_timeout: Duration,
    /// Deadline of every unary engine call (streams are bounded by their own timeouts).
    pub call_timeout: Duration,
    /// Retries of idempotent engine calls (inspect, list, info, ...) that fail with a
    /// retryable error. Pulls have their own policy in [`PullOptions`].
    pub retry: RetryPolicy,
    /// How to end an exec (timeout, drop, cancel) whose processes this host cannot see,
    /// on a remote engine without an exec-kill API: `true` signals the container's main
    /// process, which ends the whole container; `false` (the default) leaves the
    /// container alone and the exec's `Timeout` says its processes could not be ended.
    /// On a local engine only the exec's own processes are ever signalled.
    pub remote_exec_kill: bool,
}

impl Default for ConnectOptions {
    /// The backend's default endpoint, a fresh session, 5 s to connect, 120 s per call,
    /// [`RetryPolicy::calls`] for idempotent calls.
    fn default() -> Self {
        ConnectOptions {
            endpoint: None,
            ownership: crate::labels::Ownership::default(),
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(120),
            retry: RetryPolicy::calls(),
            remote_exec_kill: false,
        }
    }
}

impl ConnectOptions {
    /// Options for `endpoint` with defaults for the rest.
    pub fn endpoint(endpoint: impl Into<String>) -> Self {
        ConnectOptions {
            endpoint: Some(endpoint.into()),
            ..ConnectOptions::default()
        }
    }

    /// Default options whose objects are owned by `owner` (your tool's name), in a fresh
    /// session; `InvalidInput` for an owner that cannot be a label value.
    pub fn owned_by(owner: &str) -> Result<Self> {
        Ok(ConnectOptions::default().with_ownership(crate::labels::Ownership::new(owner)?))
    }

    /// Default options whose objects are owned by `owner` in the session `session` (a
    /// build id, say, so a later run can clean up exactly that build's objects).
    pub fn owned_by_session(owner: &str, session: &str) -> Result<Self> {
        let ownership = crate::labels::Ownership::with_session(owner, session)?;
        Ok(ConnectOptions::default().with_ownership(ownership))
    }

    /// The same options with `ownership` (owner and session) stamped on created objects.
    pub fn with_ownership(mut self, ownership: crate::labels::Ownership) -> Self {
        self.ownership = ownership;
        self
    }

    /// The same options with this endpoint.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The same options with this connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The same options with this per-call timeout.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The same options with [`remote_exec_kill`](Self::remote_exec_kill) on or off.
    pub fn with_remote_exec_kill(mut self, on: bool) -> Self {
        self.remote_exec_kill = on;
        self
    }

    /// The same options with this retry policy for idempotent calls.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_through_the_engines_ranges() {
        let info = EngineInfo::new(BackendKind::Podman, BackendKind::Podman, "4.3", "unix:///s");
        assert_eq!(
            info.host_uid(1000),
            Some(1000),
            "no map: the host's own ids"
        );
        let range = |container_id, host_id, size| IdRange {
            container_id,
            host_id,
            size,
        };
        let rootless = info.with_id_maps(
            vec![range(0, 1500, 1), range(1, 100_000, 65536)],
            vec![range(0, 1500, 1)],
        );
        assert_eq!(rootless.host_uid(0), Some(1500));
        assert_eq!(rootless.host_uid(1), Some(100_000));
        assert_eq!(rootless.host_uid(1000), Some(100_999));
        assert_eq!(rootless.host_uid(65536), Some(165_535));
        assert_eq!(rootless.host_uid(65537), None, "outside every range");
        assert_eq!(rootless.host_gid(1), None);
        assert_eq!(
            EngineInfo::new(BackendKind::Podman, BackendKind::Podman, "", "")
                .with_id_maps(vec![range(u32::MAX - 1, u32::MAX, 2)], Vec::new())
                .host_uid(u32::MAX),
            None,
            "no overflow"
        );
    }
}
