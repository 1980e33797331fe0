//! containerd as a [`raw::Engine`](container_core::raw::Engine): containers, tasks,
//! execs, logs, volumes and copies over gRPC; the contract is core's `EngineManager`.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use container_core::raw::{
    ByteStream, Engine, EngineManager, ExecState, OutputStream, PullRequest, Removal,
};
use container_core::{
    BackendKind, Capabilities, ConnectOptions, ContainerConfig, ContainerInfo, ContainerState,
    EngineInfo, Error, ErrorKind, ExecSpec, ImageRef, Labels, LogOptions, MountInfo, OutputChunk,
    Result, Signal, StreamKind, VolumeInfo,
};
use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    MountsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest,
};
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    CloseIoRequest, Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest,
    DeleteProcessRequest, DeleteTaskRequest, ExecProcessRequest, GetContainerRequest,
    GetImageRequest, GetRequest, KillRequest, ListContainersRequest, ListTasksRequest,
    ReadContentRequest, ResizePtyRequest, StartRequest, WaitRequest,
};
use containerd_client::tonic::Code;
use futures::StreamExt;
use serde_json::Value;

use crate::client::Containerd;
use crate::error::map_status;
use crate::logs;
use crate::pull::{Lease, SNAPSHOTTER};
use crate::spec::{self, ImageDefaults};

mod containers;
mod copy;
mod exec;
mod exits;
mod tasks;
mod volumes;

use exec::mkfifo;
pub use exec::ContainerdExec;

/// The OCI runtime spec's type URL in a container record.
const SPEC_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
/// An exec process spec's type URL.
const PROCESS_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
/// The label that names a container (its id is the name plus a unique suffix, so a
/// container made again under a removed one's name is a new container).
const NAME_LABEL: &str = "io.container-rs.containerd.name";
/// The longest container id containerd takes.
const MAX_ID: usize = 76;
/// The runtime every container uses.
const RUNTIME: &str = "io.containerd.runc.v2";
/// Where FIFOs live (tmpfs) and where logs and volumes live, per namespace.
const RUN_ROOT: &str = "/run/container-rs/containerd";
const DATA_ROOT: &str = "/var/lib/container-rs/containerd";
/// Task process states (containerd.v1.types.Status).
const CREATED: i32 = 1;
const RUNNING: i32 = 2;
const STOPPED: i32 = 3;

/// A [`ContainerManager`](container_core::ContainerManager) on containerd.
pub type ContainerdManager = EngineManager<ContainerdEngine>;

/// Connects to containerd (`options.endpoint`, else `CONTAINERD_ADDRESS`, else the
/// default socket) in `CONTAINERD_NAMESPACE` or this library's own namespace.
pub async fn connect(options: ConnectOptions) -> Result<ContainerdManager> {
    let endpoint = options
        .endpoint
        .clone()
        .or_else(|| {
            std::env::var("CONTAINERD_ADDRESS")
                .ok()
                .filter(|v| !v.is_empty())
        })
        .unwrap_or_else(|| crate::DEFAULT_SOCKET.to_string());
    EngineManager::connect(
        BackendKind::Containerd,
        &endpoint,
        options,
        |endpoint, options| async move {
            let c = Containerd::connect(Some(&endpoint), None, options.connect_timeout).await?;
            let ns = c.namespace().to_string();
            let engine = ContainerdEngine {
                oom: container_core::oom::OomWatch::default(),
                exits: exits::ExitWatch::default(),
                run: PathBuf::from(RUN_ROOT).join(&ns),
                data: PathBuf::from(DATA_ROOT).join(&ns),
                c,
            };
            if let Err(e) = engine.resume_log_pumps().await {
                tracing::warn!(error = %e, "cannot resume the log pumps of running containers");
            }
            Ok(engine)
        },
    )
    .await
}

/// containerd through its gRPC API; see [`connect`].
#[derive(Debug, Clone)]
pub struct ContainerdEngine {
    c: Containerd,
    /// OOM kills, from the kernel (containerd reports none).
    oom: container_core::oom::OomWatch,
    /// Execs' exits as containerd publishes them.
    exits: exits::ExitWatch,
    run: PathBuf,
    data: PathBuf,
}

/// A conflict found from the task's state: the engine's report is the source.
fn state_conflict(message: String, status: &str) -> Error {
    Error::new(ErrorKind::Conflict, message).with_source(std::io::Error::other(format!(
        "containerd reports the task {status}"
    )))
}

/// Makes `dir` (and its parents) if missing and sets it to 0700.
fn secure_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(io_err("cannot make a folder"))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io_err("cannot set a folder's mode"))
}

fn io_err(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::new(ErrorKind::from_io(&e), what.to_string()).with_source(e)
}

fn any(type_url: &str, value: Vec<u8>) -> prost_types::Any {
    prost_types::Any {
        type_url: type_url.to_string(),
        value,
    }
}

/// Runs `work` in a task of its own and waits for it. For the calls made of several
/// containerd requests that must not stop halfway: a start cut off during the task create
/// left the runc shim and its bundle behind (the next start then failed with "file
/// exists"), a remove cut off left the shim or the container's FIFO and log folders. A
/// caller that gives up (a dropped future, the call timeout) now only stops waiting; the
/// work finishes unseen, as the engines with a daemon of their own (dockerd, Podman) do.
async fn to_completion<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    tokio::spawn(work)
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, "a containerd task failed").with_source(e))?
}

impl ContainerdEngine {
    fn tasks(&self) -> TasksClient<containerd_client::tonic::transport::Channel> {
        TasksClient::new(self.c.channel.clone())
    }
}

#[async_trait]
impl Engine for ContainerdEngine {
    type Exec = ContainerdExec;

    fn capabilities(&self) -> Capabilities {
        // The exec kill is core's (cgroup tree under the exec's PID): a native Kill of
        // the exec id would leave the exec's children running (case 70).
        Capabilities::none()
            .with_init(spec::host_has_init())
            .with_resource_limits(true)
            .with_copy_files(true)
            .with_tty_exec(true)
            .with_attach_stdin(true)
    }

    async fn info(&self) -> Result<EngineInfo> {
        self.c.info().await
    }

    async fn pull(&self, request: PullRequest<'_>) -> Result<Option<String>> {
        self.c
            .pull(request.image, request.auth, request.progress)
            .await
    }

    async fn image_exists(&self, image: &ImageRef) -> Result<bool> {
        self.c.image_exists(image).await
    }

    async fn remove_image(&self, image: &ImageRef, force: bool) -> Result<()> {
        self.c.remove_image(image, force).await
    }

    async fn create(
        &self,
        name: &str,
        config: &ContainerConfig,
        labels: &Labels,
    ) -> Result<String> {
        containers::create(self, name, config, labels).await
    }

    async fn start(&self, id: &str) -> Result<()> {
        let (engine, id) = (self.clone(), id.to_string());
        to_completion(async move { tasks::start(&engine, &id).await }).await
    }

    async fn stop(&self, id: &str, grace: Option<Duration>) -> Result<()> {
        tasks::stop(self, id, grace).await
    }

    async fn kill(&self, id: &str, signal: Signal) -> Result<()> {
        tasks::kill(self, id, signal).await
    }

    async fn remove(&self, id: &str, force: bool) -> Result<Removal> {
        let (engine, id) = (self.clone(), id.to_string());
        to_completion(async move { containers::remove(&engine, &id, force).await }).await
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInfo> {
        containers::inspect(self, id).await
    }

    async fn wait(&self, id: &str) -> Result<Option<i64>> {
        tasks::wait(self, id).await
    }

    async fn list(&self, labels: &Labels) -> Result<Vec<ContainerInfo>> {
        containers::list(self, labels).await
    }

    async fn logs(&self, id: &str, options: &LogOptions) -> Result<OutputStream> {
        tasks::logs(self, id, options).await
    }

    async fn attach_stdin(
        &self,
        id: &str,
        source: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    ) -> Result<tokio::task::AbortHandle> {
        tasks::attach_stdin(self, id, source).await
    }

    async fn resize_tty(&self, id: &str, rows: u16, cols: u16) -> Result<()> {
        tasks::resize_tty(self, id, rows, cols).await
    }

    async fn exec_create(&self, container: &str, spec: &ExecSpec) -> Result<ContainerdExec> {
        exec::create(self, container, spec).await
    }

    async fn exec_start(&self, exec: &ContainerdExec, spec: &ExecSpec) -> Result<OutputStream> {
        exec::start(self, exec, spec).await
    }

    async fn exec_state(&self, exec: &ContainerdExec) -> Result<ExecState> {
        exec::state(self, exec).await
    }

    async fn copy_from(&self, id: &str, path: &str) -> Result<ByteStream> {
        copy::copy_from(self, id, path).await
    }

    async fn copy_to(&self, id: &str, dir: &str, archive: File) -> Result<()> {
        copy::copy_to(self, id, dir, archive).await
    }

    async fn create_volume(&self, name: &str, labels: &Labels) -> Result<VolumeInfo> {
        volumes::create_volume(self, name, labels).await
    }

    async fn inspect_volume(&self, name: &str) -> Result<VolumeInfo> {
        volumes::inspect_volume(self, name).await
    }

    async fn list_volumes(&self, labels: &Labels) -> Result<Vec<VolumeInfo>> {
        volumes::list_volumes(self, labels).await
    }

    async fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        volumes::remove_volume(self, name, force).await
    }
}
