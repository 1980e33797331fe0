//! The one trait build tools program against.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::error::{ErrorKind, Result};
use crate::exec::{ExecOutput, ExecSpec, ExecStream, OutputChunk, StdinFeed, StdinStream};
use crate::labels::Ownership;
use crate::signal::Signal;
use crate::types::{
    BackendKind, Capabilities, CleanupReport, CleanupScope, ContainerConfig, ContainerInfo,
    CopyOptions, EngineInfo, Labels, LogOptions, PullOptions, VolumeConfig, VolumeInfo,
};

/// A stream of log output.
pub type LogStream = BoxStream<'static, Result<OutputChunk>>;

/// Container lifecycle on one engine. Object-safe: use it as `Arc<dyn ContainerManager>`.
///
/// Rules every backend follows (checked by the conformance suite):
/// - input is validated before any engine call (`InvalidInput`);
/// - reaching the target state is success: starting a running container, stopping a
///   stopped one, removing a missing one are `Ok`;
/// - every created object carries the manager's [`Ownership`] labels;
/// - a non-zero exit code of an exec is a result, not an error.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ContainerManager: Send + Sync {
    /// The backend family.
    fn backend(&self) -> BackendKind;

    /// What this backend supports.
    fn capabilities(&self) -> Capabilities;

    /// The owner and session stamped on created objects.
    fn ownership(&self) -> &Ownership;

    /// Engine identity and version.
    async fn info(&self) -> Result<EngineInfo>;

    /// Pulls `image` (tag or digest; a bare name means `:latest`), retrying retryable
    /// failures per `options.retry`, and confirms the image exists at the end.
    async fn pull(&self, image: &str, options: &PullOptions) -> Result<()>;

    /// Whether `image` is present locally.
    async fn image_exists(&self, image: &str) -> Result<bool>;

    /// Removes `image`; missing is `Ok`, used by a container is `Conflict` unless `force`.
    async fn remove_image(&self, image: &str, force: bool) -> Result<()>;

    /// Creates a container; idempotent by name (same name and config → the existing id,
    /// different config → `Conflict` and the existing container untouched). Returns the id.
    async fn create(&self, config: &ContainerConfig) -> Result<String>;

    /// Starts a container; already running is `Ok`.
    async fn start(&self, id: &str) -> Result<()>;

    /// Sends the stop signal, waits `grace` (the container's configured grace when `None`),
    /// then SIGKILL. Already stopped, or never started, is `Ok`.
    async fn stop(&self, id: &str, grace: Option<Duration>) -> Result<()>;

    /// Sends `signal` to the main process (parse names such as `"SIGTERM"`, `"KILL"` or
    /// `"15"` with [`str::parse`]); not running is `Conflict`.
    async fn kill(&self, id: &str, signal: Signal) -> Result<()>;

    /// Removes a container; missing is `Ok`; running without `force` is `Conflict`.
    async fn remove(&self, id: &str, force: bool) -> Result<()>;

    /// State, labels and exit code of a container.
    async fn inspect(&self, id: &str) -> Result<ContainerInfo>;

    /// Waits until the main process exits and returns its exit code.
    async fn wait(&self, id: &str) -> Result<i64>;

    /// Containers (running or not) whose labels include all of `labels`.
    async fn list(&self, labels: &Labels) -> Result<Vec<ContainerInfo>>;

    /// The main process's output, optionally following it.
    async fn logs(&self, id: &str, options: &LogOptions) -> Result<LogStream>;

    /// Feeds `stdin` into the main process of a running container created with
    /// [`stdin_open`](ContainerConfig::stdin_open) (`docker attach` of stdin): the
    /// process reads it as it comes, then EOF when it ends (with a
    /// [`tty`](ContainerConfig::tty), the bytes go to the terminal, where `^D` is the end).
    /// One feed per container run: the engines close the stdin after it. Its output is
    /// read with [`logs`](Self::logs). `InvalidInput` for a container made without
    /// `stdin_open`, `Conflict` for one that does not run.
    async fn attach_stdin(&self, id: &str, stdin: StdinStream) -> Result<StdinFeed>;

    /// Sets the size of the terminal of a running container made with
    /// [`tty`](ContainerConfig::tty), in rows and columns (the process gets `SIGWINCH`).
    /// `InvalidInput` for a zero size or a container without a terminal, `Conflict` for
    /// one that does not run.
    async fn resize_tty(&self, id: &str, rows: u16, cols: u16) -> Result<()>;

    /// Runs a command in a running container and streams its output; see [`ExecStream`]
    /// for the timeout, backpressure and drop rules.
    async fn exec_stream(&self, id: &str, spec: &ExecSpec) -> Result<ExecStream>;

    /// Runs a command and collects its output up to `spec.output_limit` bytes per stream.
    /// Built on [`exec_stream`](Self::exec_stream); backends do not override it.
    async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecOutput> {
        let limit = spec.output_limit;
        self.exec_stream(id, spec)
            .await?
            .collect_output(limit)
            .await
    }

    /// Copies `container_path` (file or directory) out of the container into the existing
    /// host directory `host_dir`, keeping modes, mtimes and symlinks. What it writes
    /// belongs to the caller; see [`copy_from_with`](Self::copy_from_with) to pick the
    /// owner. Archive entries that would land outside `host_dir` are refused.
    async fn copy_from(&self, id: &str, container_path: &str, host_dir: &Path) -> Result<()> {
        self.copy_from_with(id, container_path, host_dir, &CopyOptions::default())
            .await
    }

    /// [`copy_from`](Self::copy_from) with options: `options.owner` gives every file,
    /// directory and link the copy creates to that uid:gid (as Docker's `CopyUIDGID`
    /// does), for a build tool that runs as root but hands artifacts to a user. What
    /// existed in `host_dir` before keeps its owner, `host_dir` included. Giving files
    /// away needs root (else `PermissionDenied`).
    async fn copy_from_with(
        &self,
        id: &str,
        container_path: &str,
        host_dir: &Path,
        options: &CopyOptions,
    ) -> Result<()>;

    /// Copies the host file or directory `host_path` into the container directory
    /// `container_dir`.
    async fn copy_to(&self, id: &str, host_path: &Path, container_dir: &str) -> Result<()>;

    /// Creates a named volume; an existing volume of that name is `Ok` (idempotent).
    async fn create_volume(&self, config: &VolumeConfig) -> Result<VolumeInfo>;

    /// A volume's labels and mount point.
    async fn inspect_volume(&self, name: &str) -> Result<VolumeInfo>;

    /// Volumes whose labels include all of `labels`.
    async fn list_volumes(&self, labels: &Labels) -> Result<Vec<VolumeInfo>>;

    /// Removes a volume; missing is `Ok`. A volume in use by any container, ours or not,
    /// is `Conflict`: its users are never removed with it (`force` only lets the engine
    /// drop a volume its driver cannot clean up; Podman's force, which removes the
    /// users, is never sent).
    async fn remove_volume(&self, name: &str, force: bool) -> Result<()>;

    /// Force-removes every container, then every volume, that carries this manager's owner
    /// label (and session label, for [`CleanupScope::Session`]). Objects without the owner
    /// label are never touched. A second call is a no-op.
    async fn cleanup(&self, scope: CleanupScope) -> Result<CleanupReport> {
        let ownership = self.ownership().clone();
        let selector = ownership.selector(scope);
        let mut report = CleanupReport::default();
        // Best effort: one object that cannot go (say, a volume a foreign container still
        // uses) must not keep the others; the first error is returned after trying all.
        let mut first_error = None;
        for c in self.list(&selector).await? {
            // Double-check: an engine that ignored the filter must not cost a foreign object.
            if !ownership.owns(&c.labels) {
                continue;
            }
            match self.remove(&c.id, true).await {
                Ok(()) => report.containers.push(c.id),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cleanup could not remove a container");
                    first_error.get_or_insert(e);
                }
            }
        }
        for v in self.list_volumes(&selector).await? {
            if !ownership.owns(&v.labels) {
                continue;
            }
            match self.remove_volume(&v.name, true).await {
                Ok(()) => report.volumes.push(v.name),
                Err(e) => {
                    tracing::warn!(error = %e, "cleanup could not remove a volume");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}
