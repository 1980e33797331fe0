//! What every case gets: the manager under test, the images, unique names, trackers that
//! remove what a case made, and the engine's own command-line tool.

use std::fmt;
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use container::{
    BackendKind, Capabilities, ConnectOptions, ContainerManager, EngineInfo, Ownership,
};
use futures::future::BoxFuture;
use tokio::task::JoinHandle;

use crate::failure::{describe, Failure};

/// Owner label value of every object the suite makes.
pub const OWNER: &str = "container-rs-conformance";

/// The one slack added to every timing assertion, for a loaded 2-core machine.
pub const SLACK: Duration = Duration::from_secs(3);

/// The image almost every case runs (busybox with all applets, `/sbin/tini`, runs as root,
/// user `builder` 1000:1000 in `/etc/passwd`). Override with `CONFORMANCE_IMAGE`.
pub const DEFAULT_IMAGE: &str = "127.0.0.1:5000/container-rs/busybox:1";

/// The image whose default user is 1000:1000. The image cases (1-7) remove and pull it
/// under [`Ctx::image_lock`]; no other case uses it. Override with `CONFORMANCE_USER_IMAGE`.
pub const DEFAULT_USER_IMAGE: &str = "127.0.0.1:5000/container-rs/busybox-user:2";

/// The Debian 12 build image of `cargo xtask engines up` (python3, git, openssh-client,
/// gcc, make, procps, tar, locales with en_US.UTF-8; `PATH` and `LANG` set).
pub const DEBIAN_IMAGE: &str = "127.0.0.1:5000/container-rs/debian:12";

/// The same root filesystem as [`DEBIAN_IMAGE`] with no `Env` and no `Cmd` in its
/// config, as `docker import` makes an image.
pub const DEBIAN_BARE_IMAGE: &str = "127.0.0.1:5000/container-rs/debian-bare:12";

/// The containerd namespace the engine CLI looks in (`CONTAINERD_NAMESPACE`, else this).
pub const DEFAULT_CONTAINERD_NAMESPACE: &str = "container-rs";

/// Builds the manager under test from connect options (the suite sets ownership and
/// timeouts; a case may set the endpoint, to reach a proxy or a socket that does not
/// exist). See [`factory`].
pub type Factory = Arc<
    dyn Fn(ConnectOptions) -> BoxFuture<'static, container::Result<Arc<dyn ContainerManager>>>
        + Send
        + Sync,
>;

/// A [`Factory`] from an async function or closure, for example
/// `factory(|options| container::connect_with(BackendKind::Docker, options))`.
pub fn factory<F, Fut>(f: F) -> Factory
where
    F: Fn(ConnectOptions) -> Fut + Send + Sync + 'static,
    Fut:
        std::future::Future<Output = container::Result<Arc<dyn ContainerManager>>> + Send + 'static,
{
    Arc::new(move |options| Box::pin(f(options)))
}

/// Shared state of one run. Cheap to clone.
#[derive(Clone)]
pub struct Ctx {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    kind: BackendKind,
    factory: Factory,
    manager: Arc<dyn ContainerManager>,
    engine: EngineInfo,
    image: String,
    user_image: String,
    short: String,
    counter: AtomicU32,
    image_lock: tokio::sync::Mutex<()>,
    pending: Mutex<Vec<JoinHandle<()>>>,
    extra: Mutex<Vec<Arc<dyn ContainerManager>>>,
}

impl fmt::Debug for Ctx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("name", &self.inner.name)
            .field("kind", &self.inner.kind)
            .field("session", &self.ownership().session())
            .field("image", &self.inner.image)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Ctx {
    /// Builds the manager under test with `factory` (a fresh session of [`OWNER`]) and
    /// checks the engine identity: the manager, its engine and `name` (when it names a
    /// backend) must agree. Any failure is a failed run.
    pub async fn connect(name: &str, factory: Factory) -> Result<Ctx, String> {
        let ownership = Ownership::new(OWNER).map_err(|e| describe(&e))?;
        let manager = factory(options(ownership))
            .await
            .map_err(|e| format!("cannot connect to the {name} engine: {}", describe(&e)))?;
        let kind = manager.backend();
        let engine = manager
            .info()
            .await
            .map_err(|e| format!("info() on the {name} engine failed: {}", describe(&e)))?;
        let named = name.parse::<BackendKind>().ok();
        if engine.engine != kind || engine.backend != kind || named.is_some_and(|n| n != kind) {
            return Err(format!(
                "engine identity mismatch: the run is {name}, the manager is {kind} and {} \
                 reports itself as {} (backend field {})",
                engine.endpoint, engine.engine, engine.backend
            ));
        }
        let session = manager.ownership().session().to_string();
        Ok(Ctx {
            inner: Arc::new(Inner {
                name: name.to_string(),
                kind,
                factory,
                manager,
                engine,
                image: env_or("CONFORMANCE_IMAGE", DEFAULT_IMAGE),
                user_image: env_or("CONFORMANCE_USER_IMAGE", DEFAULT_USER_IMAGE),
                short: session.chars().take(8).collect(),
                counter: AtomicU32::new(0),
                image_lock: tokio::sync::Mutex::new(()),
                pending: Mutex::new(Vec::new()),
                extra: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The backend under test, as its manager reports it.
    pub fn kind(&self) -> BackendKind {
        self.inner.kind
    }

    /// The name of the run (`docker`, or an outside backend's own name).
    pub fn run_name(&self) -> &str {
        &self.inner.name
    }

    /// A new manager from the run's factory with `options` (not leak-checked: prefer
    /// [`isolated_manager`](Self::isolated_manager) for managers that create objects in
    /// their own session).
    pub async fn connect_with(
        &self,
        options: ConnectOptions,
    ) -> container::Result<Arc<dyn ContainerManager>> {
        (self.inner.factory)(options).await
    }

    /// The manager under test.
    pub fn manager(&self) -> &dyn ContainerManager {
        self.inner.manager.as_ref()
    }

    /// The manager under test, for spawned tasks.
    pub fn manager_arc(&self) -> Arc<dyn ContainerManager> {
        self.inner.manager.clone()
    }

    /// What the engine said about itself at connect time.
    pub fn engine(&self) -> &EngineInfo {
        &self.inner.engine
    }

    /// The backend's capabilities.
    pub fn capabilities(&self) -> Capabilities {
        self.inner.manager.capabilities()
    }

    /// The run's ownership (owner [`OWNER`], a fresh session).
    pub fn ownership(&self) -> &Ownership {
        self.inner.manager.ownership()
    }

    /// The image most cases run.
    pub fn image(&self) -> &str {
        &self.inner.image
    }

    /// The image only the image cases touch (they remove and pull it).
    pub fn user_image(&self) -> &str {
        &self.inner.user_image
    }

    /// Held by every case that removes or pulls [`user_image`](Self::user_image).
    pub fn image_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.image_lock
    }

    /// A name no other object of any run uses: `crs-<session>-c<NN>-<n>`.
    pub fn name(&self, case: u32) -> String {
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        format!("crs-{}-c{case:02}-{n}", self.inner.short)
    }

    /// The first characters of the session id (used in names).
    pub fn short_session(&self) -> &str {
        &self.inner.short
    }

    /// A tracker that force-removes, when dropped, what the case registers with it.
    pub fn tracker(&self) -> Tracker {
        self.tracker_for(&self.inner.manager)
    }

    /// A tracker for objects made through another manager.
    pub fn tracker_for(&self, manager: &Arc<dyn ContainerManager>) -> Tracker {
        Tracker {
            manager: manager.clone(),
            containers: Vec::new(),
            volumes: Vec::new(),
            ctx: self.clone(),
        }
    }

    /// Connect options with this run's timeouts and the given ownership.
    pub fn options(&self, ownership: Ownership) -> ConnectOptions {
        options(ownership)
    }

    /// A second manager on the same engine with a session of its own (and its own owner
    /// when `owner` is given), so a case can call `cleanup` without touching the objects
    /// of cases running in parallel. Its session is leak-checked at the end of the run.
    pub async fn isolated_manager(
        &self,
        owner: Option<&str>,
    ) -> Result<Arc<dyn ContainerManager>, Failure> {
        let ownership = Ownership::new(owner.unwrap_or(OWNER))?;
        let manager = self.connect_with(options(ownership)).await?;
        lock(&self.inner.extra).push(manager.clone());
        Ok(manager)
    }

    /// Every manager whose session the final leak check looks at.
    pub(crate) fn all_managers(&self) -> Vec<Arc<dyn ContainerManager>> {
        let mut all = vec![self.inner.manager.clone()];
        all.extend(lock(&self.inner.extra).iter().cloned());
        all
    }

    /// Waits for the removals that dropped trackers started.
    pub(crate) async fn settle(&self) {
        loop {
            let handles: Vec<_> = lock(&self.inner.pending).drain(..).collect();
            if handles.is_empty() {
                return;
            }
            for h in handles {
                let _ = h.await;
            }
        }
    }

    /// The engine's own command-line tool.
    pub fn cli(&self) -> EngineCli {
        EngineCli::new(self.kind())
    }
}

pub(crate) fn env_or(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn options(ownership: Ownership) -> ConnectOptions {
    ConnectOptions::default().with_ownership(ownership)
}

/// Removes, when dropped, every container and volume a case registered with it, even when
/// the case failed halfway. Register names before creating, so that nothing escapes.
pub struct Tracker {
    manager: Arc<dyn ContainerManager>,
    containers: Vec<String>,
    volumes: Vec<String>,
    ctx: Ctx,
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("containers", &self.containers)
            .field("volumes", &self.volumes)
            .finish_non_exhaustive()
    }
}

impl Tracker {
    /// Registers a container (name or id) for removal.
    pub fn container(&mut self, id: impl Into<String>) {
        self.containers.push(id.into());
    }

    /// Registers a volume for removal.
    pub fn volume(&mut self, name: impl Into<String>) {
        self.volumes.push(name.into());
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if self.containers.is_empty() && self.volumes.is_empty() {
            return;
        }
        let manager = self.manager.clone();
        let containers = std::mem::take(&mut self.containers);
        let volumes = std::mem::take(&mut self.volumes);
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            eprintln!("conformance: tracker dropped outside the runtime; {containers:?} {volumes:?} left to the leak check");
            return;
        };
        let task = handle.spawn(async move {
            for c in containers.iter().rev() {
                if let Err(e) = manager.remove(c, true).await {
                    eprintln!(
                        "conformance: removing container {c} failed: {}",
                        describe(&e)
                    );
                }
            }
            for v in volumes.iter().rev() {
                if let Err(e) = manager.remove_volume(v, true).await {
                    eprintln!("conformance: removing volume {v} failed: {}", describe(&e));
                }
            }
        });
        lock(&self.ctx.inner.pending).push(task);
    }
}

/// The engine's own CLI (`docker`; `podman --remote`; `ctr -n <namespace>`), for objects
/// the library must not touch (case 53).
#[derive(Debug, Clone)]
pub struct EngineCli {
    kind: BackendKind,
    program: &'static str,
    base: Vec<String>,
}

impl EngineCli {
    fn new(kind: BackendKind) -> Self {
        // The engine's own endpoint on this host when the library reaches it another
        // way (`ssh://`: the CLIs would need the ssh setup of their own).
        let local = std::env::var("CONTAINER_RS_CLI_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty());
        match kind {
            BackendKind::Podman => {
                let url = local
                    .unwrap_or_else(|| env_or("CONTAINER_HOST", "unix:///run/podman/podman.sock"));
                EngineCli {
                    kind,
                    program: "podman",
                    base: vec!["--remote".into(), "--url".into(), url],
                }
            }
            BackendKind::Containerd => {
                let ns = env_or("CONTAINERD_NAMESPACE", DEFAULT_CONTAINERD_NAMESPACE);
                let mut base = vec!["-n".into(), ns];
                if let Some(address) = local {
                    let path = address.trim_start_matches("unix://").to_string();
                    base.extend(["--address".into(), path]);
                }
                EngineCli {
                    kind,
                    program: "ctr",
                    base,
                }
            }
            // Docker, and any other engine with a Docker-compatible CLI.
            _ => EngineCli {
                kind,
                program: "docker",
                base: local.map(|h| vec!["-H".into(), h]).unwrap_or_default(),
            },
        }
    }

    /// Runs the CLI with `args`; a spawn failure or a 60 s hang is a failure, a non-zero
    /// exit is returned for the caller to judge.
    pub async fn output(&self, args: &[&str]) -> Result<Output, Failure> {
        let mut cmd = tokio::process::Command::new(self.program);
        cmd.args(&self.base).args(args).kill_on_drop(true);
        match tokio::time::timeout(Duration::from_secs(60), cmd.output()).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(Failure::new(format!(
                "cannot run `{} {}`: {e}",
                self.program,
                args.join(" ")
            ))),
            Err(_) => Err(Failure::new(format!(
                "`{} {}` hung for 60 s",
                self.program,
                args.join(" ")
            ))),
        }
    }

    /// Runs the CLI and fails unless it exits 0; returns stdout.
    pub async fn run(&self, args: &[&str]) -> Result<String, Failure> {
        let out = self.output(args).await?;
        if !out.status.success() {
            return Err(Failure::new(format!(
                "`{} {}` failed ({}): {}",
                self.program,
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Makes a running container `name` from `image` behind the library's back, with
    /// `foreign`'s labels (none: unlabelled) and mounts.
    pub async fn create_foreign(
        &self,
        name: &str,
        image: &str,
        foreign: &Foreign,
    ) -> Result<(), Failure> {
        let mut args: Vec<String> = vec!["run".into(), "-d".into()];
        for (k, v) in &foreign.labels {
            args.push("--label".into());
            args.push(format!("{k}={v}"));
        }
        let containerd = self.kind == BackendKind::Containerd;
        // `ctr` knows no volumes: a volume is a bind of its mountpoint there.
        let mut mount = |source: &str, target: &str| {
            if containerd {
                args.push("--mount".into());
                args.push(format!(
                    "type=bind,src={source},dst={target},options=rbind:rw"
                ));
            } else {
                args.push("-v".into());
                args.push(format!("{source}:{target}"));
            }
        };
        for (source, target) in &foreign.binds {
            mount(source, target);
        }
        if let Some((volume, mountpoint, target)) = &foreign.volume {
            mount(if containerd { mountpoint } else { volume }, target);
        }
        if containerd {
            self.run(&["images", "pull", "--plain-http", image]).await?;
            args.extend([image, name].map(String::from));
        } else {
            args.extend(["--name", name, "--network", "none", image].map(String::from));
        }
        args.extend(["sleep", "3600"].map(String::from));
        self.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .await
            .map(drop)
    }

    /// Whether the container `name` exists, by the CLI's own account.
    pub async fn exists(&self, name: &str) -> Result<bool, Failure> {
        let out = match self.kind {
            BackendKind::Containerd => self.output(&["containers", "info", name]).await?,
            _ => self.output(&["container", "inspect", name]).await?,
        };
        Ok(out.status.success())
    }

    /// Removes the container `name` with the CLI (running or not).
    pub async fn remove(&self, name: &str) -> Result<(), Failure> {
        match self.kind {
            BackendKind::Containerd => {
                // The task may already be gone; only the final delete must succeed.
                let _ = self
                    .output(&["tasks", "kill", "-s", "SIGKILL", name])
                    .await?;
                let _ = self.output(&["tasks", "rm", "-f", name]).await?;
                self.run(&["containers", "rm", name]).await?;
            }
            _ => {
                self.run(&["rm", "-f", name]).await?;
            }
        }
        Ok(())
    }
}

/// What a container made behind the library's back carries ([`EngineCli::create_foreign`]).
#[derive(Debug, Default, Clone)]
pub struct Foreign {
    /// Labels (copied from one of ours, to play a forger).
    pub labels: Vec<(String, String)>,
    /// Host folders bound in: (host path, target).
    pub binds: Vec<(String, String)>,
    /// A volume mounted: (name, host mountpoint, target).
    pub volume: Option<(String, String, String)>,
}
