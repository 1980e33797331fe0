//! The backend-facing layer: what a backend implements, and the one type that turns it
//! into a [`ContainerManager`](crate::ContainerManager).
//!
//! A backend implements [`Engine`]: engine calls, conversion between core types and the
//! engine's, and one error-mapping function. Nothing else. [`EngineManager`] wraps any
//! [`Engine`] and does the contract once for every backend (see
//! `docs/adr/0008-contract-layer.md`):
//!
//! - validation of every input before any engine call;
//! - ownership labels, create-by-name idempotency and the config-hash conflict rule;
//! - error context (backend, operation, resource) and one tracing span per operation;
//! - the connect timeout, per-call timeouts, and retries of idempotent calls;
//! - capabilities: an operation the engine lacks is `Unsupported` here, before the engine;
//! - "already in the target state" is `Ok`, "removal in progress" waits for the removal;
//! - the exec: its end read from the engine's exec state (the process's exit, not the end
//!   of its output), the timeout / drop / kill sequence
//!   (TERM, grace, KILL) with the engine supplying only "this exec's processes" or a
//!   native kill;
//! - the buffered exec, cleanup, the tar packing and safe unpacking of copies.
//!
//! The shape follows OpenDAL's `raw::Access` and its layers, folded into one type: the
//! layers of a container manager are not independent (the exec kill needs the timeouts,
//! create needs validation and ownership), so one type keeps their order readable.

mod account;
mod exec;
mod manager;
mod pull;
mod tar_exec;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::error::Result;
use crate::exec::{ExecSpec, OutputChunk};
use crate::reference::ImageRef;
use crate::signal::Signal;
use crate::types::{
    Capabilities, ContainerConfig, ContainerInfo, EngineInfo, Labels, LogOptions, RegistryAuth,
    VolumeInfo,
};

pub(crate) use account::label_value as account_label;
pub use exec::{OwnExec, EXEC_MARK};
pub use manager::EngineManager;
pub use pull::Progress;
pub use tar_exec::tar_out;

/// Output of an exec or of the main process, read from the engine only when polled.
pub type OutputStream = BoxStream<'static, Result<OutputChunk>>;

/// Raw bytes from the engine (the tar archive of a copy out).
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// One pull attempt, as [`Engine::pull`] receives it.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct PullRequest<'a> {
    /// The image, parsed and normalised.
    pub image: &'a ImageRef,
    /// Explicit credentials; backends may also read the user's engine config.
    pub auth: Option<&'a RegistryAuth>,
    /// Where layer events go, and how long the attempt may receive nothing (the stall
    /// deadline, applied by the backend where it sees data arrive).
    pub progress: Progress<'a>,
}

impl std::fmt::Debug for PullRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullRequest")
            .field("image", &self.image)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// Every backend's refusal of a stdin attach to a container made without `stdin_open`.
pub fn no_open_stdin(id: &str) -> crate::Error {
    crate::Error::new(
        crate::ErrorKind::InvalidInput,
        format!(
            "container {id} was created without stdin_open: its main process has no stdin \
             to attach to"
        ),
    )
}

/// Every backend's refusal of a terminal resize of a container made without `tty`.
pub fn no_tty(id: &str) -> crate::Error {
    crate::Error::new(
        crate::ErrorKind::InvalidInput,
        format!("container {id} was created without tty: it has no terminal to resize"),
    )
}

/// Every backend's refusal of a stdin attach to a container whose main process does not
/// run.
pub fn not_running_for_stdin(id: &str) -> crate::Error {
    crate::Error::new(
        crate::ErrorKind::Conflict,
        format!("container {id} is not running: start it before attaching its stdin"),
    )
}

/// `d` in whole seconds, rounded up: engines count grace periods in seconds, and a
/// grace must never shrink.
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

/// How a container removal ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The container is gone (or was never there).
    Removed,
    /// Another caller is removing it; [`EngineManager`] waits until it is gone.
    InProgress,
}

/// What exec inspect says about one exec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecState {
    /// The engine has started the exec's process (it may have exited since).
    pub started: bool,
    /// The exec's process is still running, as far as the engine knows.
    pub running: bool,
    /// The exit code, once it exited.
    pub exit_code: Option<i64>,
    /// The host PID of the exec's first process, while it runs.
    pub pid: Option<i32>,
    /// The full id of the container the exec runs in.
    pub container_id: String,
}

/// One engine, as a backend drives it: engine calls and conversion only.
///
/// Every method returns errors already mapped to the core taxonomy by the backend's one
/// error-mapping function, without context: [`EngineManager`] adds backend, operation and
/// resource, applies the timeouts, and validates every argument before calling here (ids
/// and names are well-formed, paths absolute, configs valid).
#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// The engine's handle of one exec.
    type Exec: Send + Sync + 'static;

    /// What this engine supports; [`EngineManager`] refuses the rest as `Unsupported`.
    fn capabilities(&self) -> Capabilities;

    /// The cheapest call that proves the engine answers; [`info`](Self::info) unless the
    /// engine has something cheaper.
    async fn ping(&self) -> Result<()> {
        self.info().await.map(drop)
    }

    /// Engine identity and version.
    async fn info(&self) -> Result<EngineInfo>;

    /// One pull attempt (never retried here), sending layer events to the request's
    /// progress; returns the manifest digest when the engine tells it. Errors inside the
    /// engine's progress stream are errors. Every wait for data from the engine or the
    /// registry goes through [`Progress::next`] or [`Progress::within`] where the engine
    /// shows data arriving (the stall deadline); the manager bounds the attempt as a
    /// whole (`PullOptions::attempt_timeout`).
    async fn pull(&self, request: PullRequest<'_>) -> Result<Option<String>>;

    /// Whether `image` is present locally.
    async fn image_exists(&self, image: &ImageRef) -> Result<bool>;

    /// Removes `image`; missing is `NotFound`, used by a container is `Conflict` unless
    /// `force`.
    async fn remove_image(&self, image: &ImageRef, force: bool) -> Result<()>;

    /// Creates a container named `name` from a validated `config` with exactly `labels`
    /// (the user's plus ownership); a name in use is `Conflict`. Returns the id.
    async fn create(&self, name: &str, config: &ContainerConfig, labels: &Labels)
        -> Result<String>;

    /// Starts a container; already running is `Ok`.
    async fn start(&self, id: &str) -> Result<()>;

    /// Stop signal, `grace` (the container's own when `None`), SIGKILL; already stopped
    /// is `Ok`.
    async fn stop(&self, id: &str, grace: Option<Duration>) -> Result<()>;

    /// Sends `signal` to the main process; not running is `Conflict`.
    async fn kill(&self, id: &str, signal: Signal) -> Result<()>;

    /// Removes a container; missing is `NotFound`, running without `force` `Conflict`.
    async fn remove(&self, id: &str, force: bool) -> Result<Removal>;

    /// State, labels and exit code of a container.
    async fn inspect(&self, id: &str) -> Result<ContainerInfo>;

    /// Waits until the main process is not running; its exit code when the engine says
    /// it (else [`EngineManager`] reads it from inspect).
    async fn wait(&self, id: &str) -> Result<Option<i64>>;

    /// Containers whose labels include all of `labels` (filtered by the engine; the
    /// manager filters again).
    async fn list(&self, labels: &Labels) -> Result<Vec<ContainerInfo>>;

    /// The main process's output.
    async fn logs(&self, id: &str, options: &LogOptions) -> Result<OutputStream>;

    /// Starts copying `source` into the main process's stdin of the running container
    /// `id` (made with `stdin_open`), then closes that stdin, in a task of its own (see
    /// [`feed_stdin`](crate::exec::feed_stdin)); the handle stops it. `InvalidInput` for a
    /// container made without `stdin_open`, `Conflict` for one that does not run.
    async fn attach_stdin(
        &self,
        id: &str,
        source: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    ) -> Result<tokio::task::AbortHandle>;

    /// Sets the terminal size of the main process of the running container `id` (made
    /// with `tty`); the size is validated (not zero).
    async fn resize_tty(&self, id: &str, rows: u16, cols: u16) -> Result<()>;

    /// Creates (does not start) an exec of a validated `spec` in a running container.
    async fn exec_create(&self, container: &str, spec: &ExecSpec) -> Result<Self::Exec>;

    /// Starts `exec` attached, feeds `spec.stdin` then EOF, and returns its output.
    async fn exec_start(&self, exec: &Self::Exec, spec: &ExecSpec) -> Result<OutputStream>;

    /// What the engine says about `exec`.
    async fn exec_state(&self, exec: &Self::Exec) -> Result<ExecState>;

    /// Signals `exec` natively; only called when [`Capabilities::native_exec_kill`].
    async fn exec_kill(&self, exec: &Self::Exec, signal: Signal) -> Result<()> {
        let _ = (exec, signal);
        Err(crate::error::Error::unsupported("native-exec-kill"))
    }

    /// A tar archive of `path` (file or directory) in the container; missing is
    /// `NotFound`.
    async fn copy_from(&self, id: &str, path: &str) -> Result<ByteStream>;

    /// Unpacks the tar `archive` into the container directory `dir`.
    async fn copy_to(&self, id: &str, dir: &str, archive: File) -> Result<()>;

    /// Creates a volume with exactly `labels`; returns the existing volume, or
    /// `Conflict`, when the name is taken.
    async fn create_volume(&self, name: &str, labels: &Labels) -> Result<VolumeInfo>;

    /// A volume's labels and mount point.
    async fn inspect_volume(&self, name: &str) -> Result<VolumeInfo>;

    /// Volumes whose labels include all of `labels`.
    async fn list_volumes(&self, labels: &Labels) -> Result<Vec<VolumeInfo>>;

    /// Removes a volume; missing is `NotFound`, in use `Conflict` unless `force`.
    async fn remove_volume(&self, name: &str, force: bool) -> Result<()>;
}
