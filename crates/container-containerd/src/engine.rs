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
    EngineInfo, Error, ErrorKind, ExecSpec, ImageRef, Labels, LogOptions, OutputChunk, Result,
    Signal, StreamKind, VolumeInfo,
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
    ReadContentRequest, StartRequest, WaitRequest,
};
use containerd_client::tonic::Code;
use futures::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::Containerd;
use crate::error::map_status;
use crate::logs;
use crate::pull::SNAPSHOTTER;
use crate::spec::{self, ImageDefaults};

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
    run: PathBuf,
    data: PathBuf,
}

/// One exec: its id, FIFOs, and the exit code once read.
#[derive(Debug)]
pub struct ContainerdExec {
    container: String,
    id: String,
    dir: PathBuf,
    stdin: bool,
    exit: OnceLock<i64>,
    /// The FIFO read ends, opened before the exec exists, until the start takes them.
    pipes: std::sync::Mutex<Option<PipePair>>,
}

type PipePair = (
    tokio::net::unix::pipe::Receiver,
    Option<tokio::net::unix::pipe::Receiver>,
);

/// A conflict found from the task's state: the engine's report is the source.
fn state_conflict(message: String, status: &str) -> Error {
    Error::new(ErrorKind::Conflict, message).with_source(std::io::Error::other(format!(
        "containerd reports the task {status}"
    )))
}

fn io_err(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::new(ErrorKind::from_io(&e), what.to_string()).with_source(e)
}

fn mkfifo(path: &Path) -> Result<()> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("cannot make the FIFO {}", path.display()),
        )
        .with_source(e)
    })
}

fn any(type_url: &str, value: Vec<u8>) -> prost_types::Any {
    prost_types::Any {
        type_url: type_url.to_string(),
        value,
    }
}

/// The output of `stdout` and `stderr` FIFO receivers (read only when polled), merged.
fn pipe_output(
    stdout: tokio::net::unix::pipe::Receiver,
    stderr: Option<tokio::net::unix::pipe::Receiver>,
) -> OutputStream {
    fn read(r: tokio::net::unix::pipe::Receiver, kind: StreamKind) -> OutputStream {
        futures::stream::unfold(r, move |mut r| async move {
            let mut buf = vec![0u8; 64 * 1024];
            match r.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(OutputChunk::new(kind, buf)), r))
                }
                Err(e) => Some((Err(io_err("reading the process output failed")(e)), r)),
            }
        })
        .boxed()
    }
    match stderr {
        Some(err) => futures::stream::select(
            read(stdout, StreamKind::Stdout),
            read(err, StreamKind::Stderr),
        )
        .boxed(),
        None => read(stdout, StreamKind::Stdout),
    }
}

fn open_receiver(path: &Path) -> Result<tokio::net::unix::pipe::Receiver> {
    tokio::net::unix::pipe::OpenOptions::new()
        .open_receiver(path)
        .map_err(io_err("cannot open a FIFO"))
}

impl ContainerdEngine {
    fn tasks(&self) -> TasksClient<containerd_client::tonic::transport::Channel> {
        TasksClient::new(self.c.channel.clone())
    }

    fn volume_root(&self, name: &str) -> PathBuf {
        self.data.join("volumes").join(name)
    }

    fn volume_dir(&self, name: &str) -> PathBuf {
        self.volume_root(name).join("_data")
    }

    /// Reads a whole blob from the content store.
    async fn read_content(&self, digest: &str) -> Result<Vec<u8>> {
        let request = ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        };
        let mut stream = ContentClient::new(self.c.channel.clone())
            .read(self.c.request(request)?)
            .await
            .map_err(map_status)?
            .into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(map_status)? {
            out.extend_from_slice(&chunk.data);
        }
        Ok(out)
    }

    /// The image's run defaults and its top chain id.
    async fn image_config(&self, name: &str) -> Result<(ImageDefaults, String)> {
        let image = ImagesClient::new(self.c.channel.clone())
            .get(self.c.request(GetImageRequest {
                name: name.to_string(),
            })?)
            .await
            .map_err(|s| {
                if s.code() == Code::NotFound {
                    Error::new(
                        ErrorKind::NotFound,
                        format!("no such image: {name} (pull it first)"),
                    )
                } else {
                    map_status(s)
                }
            })?
            .into_inner()
            .image
            .ok_or_else(|| Error::new(ErrorKind::Internal, "an image record without an image"))?;
        let target = image
            .target
            .ok_or_else(|| Error::new(ErrorKind::Internal, "an image without a target"))?;
        let manifest: Value = serde_json::from_slice(&self.read_content(&target.digest).await?)
            .map_err(|e| Error::new(ErrorKind::Internal, "unreadable manifest").with_source(e))?;
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let config: Value = serde_json::from_slice(&self.read_content(&config_digest).await?)
            .map_err(|e| {
                Error::new(ErrorKind::Internal, "unreadable image config").with_source(e)
            })?;
        let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let top = crate::pull::chain_ids(&diff_ids).pop().unwrap_or_default();
        Ok((ImageDefaults::from_config(&config), top))
    }

    /// The container record of `id_or_name`: an id, else the container of that name.
    async fn container(&self, id_or_name: &str) -> Result<Container> {
        let got = ContainersClient::new(self.c.channel.clone())
            .get(self.c.request(GetContainerRequest {
                id: id_or_name.to_string(),
            })?)
            .await;
        match got {
            Ok(r) => r.into_inner().container.ok_or_else(|| {
                Error::new(
                    ErrorKind::Internal,
                    "a container record without a container",
                )
            }),
            Err(s) if s.code() == Code::NotFound => {
                let filter = format!("labels.\"{NAME_LABEL}\"==\"{id_or_name}\"");
                let found = ContainersClient::new(self.c.channel.clone())
                    .list(self.c.request(ListContainersRequest {
                        filters: vec![filter],
                    })?)
                    .await
                    .map_err(map_status)?
                    .into_inner()
                    .containers;
                found.into_iter().next().ok_or_else(|| map_status(s))
            }
            Err(s) => Err(map_status(s)),
        }
    }

    fn spec_of(container: &Container) -> Value {
        container
            .spec
            .as_ref()
            .and_then(|a| serde_json::from_slice(&a.value).ok())
            .unwrap_or(Value::Null)
    }

    /// The main task's process; `None` when there is no task.
    async fn task(&self, id: &str) -> Result<Option<containerd_client::types::v1::Process>> {
        let request = GetRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
        };
        match self.tasks().get(self.c.request(request)?).await {
            Ok(r) => Ok(r.into_inner().process),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(map_status(s)),
        }
    }

    async fn delete_task(&self, id: &str) -> Result<()> {
        let request = DeleteTaskRequest {
            container_id: id.to_string(),
        };
        match self.tasks().delete(self.c.request(request)?).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(map_status(s)),
        }
    }

    async fn signal(&self, id: &str, exec_id: &str, signal: Signal, all: bool) -> Result<()> {
        let request = KillRequest {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            signal: u32::try_from(signal.number()).unwrap_or(15),
            all,
        };
        match self.tasks().kill(self.c.request(request)?).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()), // already finished
            Err(s) => Err(map_status(s)),
        }
    }

    /// Waits (up to `limit`) for the main task to exit; its exit code when it did.
    async fn wait_task(&self, id: &str, limit: Duration) -> Result<Option<i64>> {
        let request = WaitRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
        };
        let mut tasks = self.tasks();
        let waiting = tasks.wait(self.c.request(request)?);
        match tokio::time::timeout(limit, waiting).await {
            Ok(Ok(r)) => Ok(Some(i64::from(r.into_inner().exit_status))),
            Ok(Err(s)) if s.code() == Code::NotFound => Ok(None),
            Ok(Err(s)) => Err(map_status(s)),
            Err(_) => Ok(None),
        }
    }

    fn info_of(
        &self,
        container: &Container,
        task: Option<&containerd_client::types::v1::Process>,
    ) -> ContainerInfo {
        let (state, pid) = match task {
            None => (ContainerState::Created, None),
            Some(p) => match p.status {
                RUNNING => (ContainerState::Running, Some(p.pid)),
                STOPPED => (ContainerState::Exited(i64::from(p.exit_status)), None),
                CREATED => (ContainerState::Created, None),
                4 | 5 => (ContainerState::Paused, None),
                other => (ContainerState::Unknown(other.to_string()), None),
            },
        };
        let started = std::fs::metadata(self.run.join(&container.id).join("started"))
            .and_then(|m| m.modified())
            .ok();
        let finished = task
            .and_then(|p| p.exited_at.as_ref())
            .and_then(|t| u64::try_from(t.seconds).ok().filter(|s| *s > 0))
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        // The labels as given (containerd drops labels whose value is empty).
        let labels: Labels = Self::spec_of(container)["annotations"][spec::LABELS]
            .as_str()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_else(|| container.labels.clone().into_iter().collect());
        let name = container
            .labels
            .get(NAME_LABEL)
            .cloned()
            .unwrap_or_else(|| container.id.clone());
        ContainerInfo::new(container.id.clone(), name, container.image.clone(), state)
            .with_labels(labels)
            .with_oom_killed(self.oom.killed(&container.id))
            .with_pid(pid)
            .with_times(
                started,
                finished.filter(|_| task.is_some_and(|p| p.status == STOPPED)),
            )
    }

    /// The log file of container `id`'s `stream`.
    fn log_path(&self, id: &str, stream: StreamKind) -> PathBuf {
        logs::log_path(&self.data.join("logs").join(id), stream)
    }

    /// An exec is over with `code`: remembered, its process deleted from the task (best
    /// effort: the task's deletion takes it anyway) and its FIFO folder removed.
    async fn exec_ended(&self, exec: &ContainerdExec, code: i64) {
        let _ = exec.exit.set(code);
        let delete = DeleteProcessRequest {
            container_id: exec.container.clone(),
            exec_id: exec.id.clone(),
        };
        if let Ok(r) = self.c.request(delete) {
            let _ = self.tasks().delete_process(r).await;
        }
        let _ = std::fs::remove_dir_all(&exec.dir);
    }

    /// Every task of the namespace, by container id.
    async fn tasks_by_container(
        &self,
    ) -> Result<HashMap<String, containerd_client::types::v1::Process>> {
        let tasks = self
            .tasks()
            .list(self.c.request(ListTasksRequest::default())?)
            .await
            .map_err(map_status)?
            .into_inner()
            .tasks;
        Ok(tasks.into_iter().map(|t| (t.id.clone(), t)).collect())
    }

    /// Takes over the log pumps of this namespace's running tasks that no program pumps
    /// now (their starter has exited): their output flows again into the log files.
    async fn resume_log_pumps(&self) -> Result<()> {
        let tasks = self.tasks_by_container().await?;
        for task in tasks.values().filter(|t| t.status == RUNNING) {
            for (kind, name) in [
                (StreamKind::Stdout, "stdout"),
                (StreamKind::Stderr, "stderr"),
            ] {
                let fifo = self.run.join(&task.id).join(name);
                let log = self.log_path(&task.id, kind);
                if !fifo.exists() || !log.parent().is_some_and(Path::exists) {
                    continue;
                }
                if logs::done_marker(&log).exists() {
                    continue;
                }
                if logs::start_pump(&fifo, &log, logs::Bounds::default())? {
                    tracing::debug!(container = %task.id, stream = name, "resumed the log pump");
                }
            }
        }
        Ok(())
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
        let image_name = ImageRef::parse(&config.image)?.engine_name();
        let (defaults, top) = self.image_config(&image_name).await?;
        let mut spec = spec::build(name, self.c.namespace(), config, &defaults, &|v| {
            self.volume_dir(v)
        })?;
        let all = serde_json::to_string(labels)
            .map_err(|e| Error::new(ErrorKind::Internal, "cannot encode labels").with_source(e))?;
        spec["annotations"][spec::LABELS] = Value::String(all);
        for m in &config.mounts {
            if let container_core::Mount::Volume { name: v, .. } = m {
                if !self.volume_dir(v).is_dir() {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!("no such volume: {v}"),
                    ));
                }
            }
        }
        // Under a lease until the container record references the snapshot: a garbage
        // collection in between would take it.
        let lease = self.c.lease().await?;
        // A new id for every container, the name as a label (and as the snapshot key,
        // which makes the name unique: a second prepare of it is `Conflict`).
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let id = if name.len() + 13 <= MAX_ID {
            format!("{name}-{}", &suffix[..12])
        } else {
            suffix
        };
        let mut labels = labels.clone();
        labels.insert(NAME_LABEL.to_string(), name.to_string());
        let made = self
            .make_container(name, &id, &labels, image_name, top, spec, &lease)
            .await;
        if let Err(e) = self.c.drop_lease(&lease).await {
            tracing::debug!(error = %e, %lease, "create lease not deleted; it expires");
        }
        made?;
        Ok(id)
    }

    async fn start(&self, id: &str) -> Result<()> {
        let record = self.container(id).await?;
        let id = record.id.as_str();
        match self.task(id).await? {
            Some(p) if p.status == RUNNING => return Ok(()),
            Some(_) => self.delete_task(id).await?,
            None => {}
        }
        let mounts = SnapshotsClient::new(self.c.channel.clone())
            .mounts(self.c.request(MountsRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key: record.snapshot_key.clone(),
            })?)
            .await
            .map_err(map_status)?
            .into_inner()
            .mounts;
        if mounts.is_empty() {
            return Err(Error::new(
                ErrorKind::Internal,
                "the container's snapshot has no mounts",
            ));
        }
        let logs = self.data.join("logs").join(id);
        std::fs::create_dir_all(&logs).map_err(io_err("cannot make the log folder"))?;
        let run = self.run.join(id);
        std::fs::create_dir_all(&run).map_err(io_err("cannot make the state folder"))?;
        // The main process's output goes through FIFOs to a pump per stream that copies
        // it into bounded, rotated log files (`logs`); containerd's own `file://` logging
        // would merge the two streams into one unbounded file.
        // With a logging binary configured (`logger::LOGGER_ENV`), the shim runs it and
        // it writes the same files, independent of this program.
        let logger = logs::logger_uri(&logs, logs::Bounds::default());
        let mut fifos = Vec::new();
        for kind in [StreamKind::Stdout, StreamKind::Stderr] {
            let fifo = run.join(match kind {
                StreamKind::Stdout => "stdout",
                StreamKind::Stderr => "stderr",
            });
            let _ = std::fs::remove_file(&fifo);
            let log = self.log_path(id, kind);
            let _ = std::fs::remove_file(logs::done_marker(&log));
            if let Some(uri) = &logger {
                fifos.push(uri.clone());
                continue;
            }
            mkfifo(&fifo)?;
            logs::start_pump(&fifo, &log, logs::Bounds::default())?;
            fifos.push(fifo.display().to_string());
        }
        let request = CreateTaskRequest {
            container_id: id.to_string(),
            rootfs: mounts,
            stdin: String::new(),
            stdout: fifos[0].clone(),
            stderr: fifos[1].clone(),
            terminal: false,
            ..CreateTaskRequest::default()
        };
        self.tasks()
            .create(self.c.request(request)?)
            .await
            .map_err(map_status)?;
        // The process waits (runc create): arm the OOM watch before it runs.
        if let Some(pid) = self
            .task(id)
            .await?
            .map(|p| p.pid)
            .and_then(|p| i32::try_from(p).ok())
        {
            let (oom, id) = (self.oom.clone(), id.to_string());
            let armed = tokio::task::spawn_blocking(move || oom.arm(&id, pid))
                .await
                .unwrap_or(false);
            tracing::debug!(armed, "OOM watch");
        }
        let start = StartRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
        };
        self.tasks()
            .start(self.c.request(start)?)
            .await
            .map_err(map_status)?;
        std::fs::write(run.join("started"), b"").map_err(io_err("cannot record the start"))?;
        Ok(())
    }

    async fn stop(&self, id: &str, grace: Option<Duration>) -> Result<()> {
        let container = self.container(id).await?;
        let id = container.id.as_str();
        if !matches!(self.task(id).await?, Some(p) if p.status == RUNNING) {
            return Ok(());
        }
        let spec = Self::spec_of(&container);
        let signal = spec["annotations"][spec::STOP_SIGNAL]
            .as_str()
            .and_then(|s| s.parse::<Signal>().ok())
            .unwrap_or(Signal::TERM);
        let grace = grace.unwrap_or_else(|| {
            spec["annotations"][spec::STOP_GRACE_MS]
                .as_str()
                .and_then(|s| s.parse().ok())
                .map_or(Duration::from_secs(10), Duration::from_millis)
        });
        self.signal(id, "", signal, false).await?;
        if self.wait_task(id, grace).await?.is_none() {
            self.signal(id, "", Signal::KILL, true).await?;
            self.wait_task(id, Duration::from_secs(10)).await?;
        }
        Ok(())
    }

    async fn kill(&self, id: &str, signal: Signal) -> Result<()> {
        let record = self.container(id).await?;
        let id = record.id.as_str();
        match self.task(id).await? {
            Some(p) if p.status == RUNNING => self.signal(id, "", signal, false).await,
            _ => Err(state_conflict(
                format!("container {id} is not running"),
                "not running",
            )),
        }
    }

    async fn remove(&self, id: &str, force: bool) -> Result<Removal> {
        let record = self.container(id).await?;
        match self.remove_record(&record, force).await {
            // Another caller's removal is under way (its kill closed the task's
            // connection, or it deleted what this one was about to): wait for it.
            Err(e) if e.kind() == ErrorKind::NotFound || e.message().contains("ttrpc: closed") => {
                Ok(Removal::InProgress)
            }
            other => other,
        }
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInfo> {
        let container = self.container(id).await?;
        let id = container.id.as_str();
        let task = self.task(id).await?;
        Ok(self.info_of(&container, task.as_ref()))
    }

    async fn wait(&self, id: &str) -> Result<Option<i64>> {
        let record = self.container(id).await?;
        let id = record.id.as_str();
        match self.task(id).await? {
            None => Ok(None),
            Some(_) => self.wait_task(id, Duration::MAX).await,
        }
    }

    async fn list(&self, labels: &Labels) -> Result<Vec<ContainerInfo>> {
        let filter = labels
            .iter()
            .map(|(k, v)| format!("labels.\"{k}\"==\"{v}\""))
            .collect::<Vec<_>>()
            .join(",");
        let request = ListContainersRequest {
            filters: if filter.is_empty() {
                Vec::new()
            } else {
                vec![filter]
            },
        };
        let containers = ContainersClient::new(self.c.channel.clone())
            .list(self.c.request(request)?)
            .await
            .map_err(map_status)?
            .into_inner()
            .containers;
        // One task list for all of them, not a Get per container.
        let tasks = self.tasks_by_container().await?;
        let mut out = Vec::new();
        for c in containers {
            out.push(self.info_of(&c, tasks.get(&c.id)));
        }
        Ok(out)
    }

    async fn logs(&self, id: &str, options: &LogOptions) -> Result<OutputStream> {
        let record = self.container(id).await?;
        let id = record.id.as_str();
        let mut streams = Vec::new();
        for (on, kind) in [
            (options.stdout, StreamKind::Stdout),
            (options.stderr, StreamKind::Stderr),
        ] {
            if !on {
                continue;
            }
            let (engine, task) = (self.clone(), id.to_string());
            let running: logs::Running = Box::new(move || {
                let (engine, task) = (engine.clone(), task.clone());
                Box::pin(async move {
                    matches!(engine.task(&task).await, Ok(Some(p)) if p.status == RUNNING)
                })
            });
            let s = logs::read(
                self.log_path(id, kind),
                logs::Bounds::default(),
                kind,
                options.follow,
                running,
            );
            streams.push(s.boxed());
        }
        Ok(futures::stream::select_all(streams).boxed())
    }

    async fn exec_create(&self, container: &str, spec: &ExecSpec) -> Result<ContainerdExec> {
        let record = self.container(container).await?;
        let container = record.id.as_str();
        let base = Self::spec_of(&record);
        let mut process = base["process"].clone();
        process["args"] = serde_json::json!(spec.cmd);
        let mut env: Vec<String> = process["env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        env.extend(spec.env.iter().cloned());
        process["env"] = serde_json::json!(env);
        if let Some(dir) = &spec.working_dir {
            process["cwd"] = serde_json::json!(dir);
        }
        if let Some(user) = spec.user {
            process["user"] = serde_json::json!({"uid": user.uid, "gid": user.gid});
        }
        process["terminal"] = serde_json::json!(spec.tty);
        let id = format!("exec-{}", uuid::Uuid::new_v4().simple());
        let dir = self.run.join(container).join(&id);
        std::fs::create_dir_all(&dir).map_err(io_err("cannot make the exec folder"))?;
        let exec = ContainerdExec {
            container: container.to_string(),
            id,
            dir,
            stdin: spec.stdin.is_some(),
            exit: OnceLock::new(),
            pipes: std::sync::Mutex::new(None),
        };
        mkfifo(&exec.dir.join("stdout"))?;
        if !spec.tty {
            mkfifo(&exec.dir.join("stderr"))?;
        }
        if exec.stdin {
            mkfifo(&exec.dir.join("stdin"))?;
        }
        let value = serde_json::to_vec(&process).map_err(|e| {
            Error::new(ErrorKind::Internal, "cannot encode the process").with_source(e)
        })?;
        let path = |n: &str| exec.dir.join(n).display().to_string();
        let request = ExecProcessRequest {
            container_id: container.to_string(),
            stdin: if exec.stdin {
                path("stdin")
            } else {
                String::new()
            },
            stdout: path("stdout"),
            stderr: if spec.tty {
                String::new()
            } else {
                path("stderr")
            },
            terminal: spec.tty,
            spec: Some(any(PROCESS_TYPE, value)),
            exec_id: exec.id.clone(),
        };
        // The read ends open before the exec exists: the shim opens the write ends.
        let stdout = open_receiver(&exec.dir.join("stdout"))?;
        let stderr = if spec.tty {
            None
        } else {
            Some(open_receiver(&exec.dir.join("stderr"))?)
        };
        match self.tasks().exec(self.c.request(request)?).await {
            Ok(_) => {}
            Err(s) if s.code() == Code::NotFound || s.code() == Code::FailedPrecondition => {
                return Err(state_conflict(
                    format!("container {container} is not running"),
                    "not running",
                ))
            }
            Err(s) => return Err(map_status(s)),
        }
        *exec
            .pipes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((stdout, stderr));
        Ok(exec)
    }

    async fn exec_start(&self, exec: &ContainerdExec, spec: &ExecSpec) -> Result<OutputStream> {
        let taken = exec
            .pipes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let (stdout, stderr) = taken
            .ok_or_else(|| Error::new(ErrorKind::Internal, "the exec's output pipes are gone"))?;
        let start = StartRequest {
            container_id: exec.container.clone(),
            exec_id: exec.id.clone(),
        };
        if let Err(s) = self.tasks().start(self.c.request(start)?).await {
            // The runtime could not start the binary: what a shell says (127 not found,
            // 126 not executable), the runtime's message on stderr.
            let text = s.message().to_string();
            if s.code() == Code::Unknown && text.contains("OCI runtime exec failed") {
                let code =
                    container_core::error::shell_status_for_runtime_text(&text).unwrap_or(126);
                self.exec_ended(exec, code).await;
                let chunk = OutputChunk::new(StreamKind::Stderr, format!("{text}\n"));
                return Ok(futures::stream::iter([Ok(chunk)]).boxed());
            }
            return Err(map_status(s));
        }
        if let Some(data) = spec.stdin.clone() {
            let mut sender = tokio::net::unix::pipe::OpenOptions::new()
                .read_write(true)
                .open_sender(exec.dir.join("stdin"))
                .map_err(io_err("cannot open the exec's stdin"))?;
            let (engine, container, exec_id) =
                (self.clone(), exec.container.clone(), exec.id.clone());
            tokio::spawn(async move {
                let _ = sender.write_all(&data).await;
                drop(sender);
                // The shim keeps the stdin FIFO open: EOF reaches the process only when
                // it is told to close it.
                let close = CloseIoRequest {
                    container_id: container,
                    exec_id,
                    stdin: true,
                };
                if let Ok(request) = engine.c.request(close) {
                    if let Err(e) = engine.tasks().close_io(request).await {
                        tracing::debug!(error = %map_status(e), "closing the exec's stdin failed");
                    }
                }
            });
        }
        Ok(pipe_output(stdout, stderr))
    }

    async fn exec_state(&self, exec: &ContainerdExec) -> Result<ExecState> {
        if let Some(code) = exec.exit.get() {
            return Ok(ExecState {
                started: true,
                running: false,
                exit_code: Some(*code),
                pid: None,
                container_id: exec.container.clone(),
            });
        }
        let request = GetRequest {
            container_id: exec.container.clone(),
            exec_id: exec.id.clone(),
        };
        let process = self
            .tasks()
            .get(self.c.request(request)?)
            .await
            .map_err(map_status)?
            .into_inner()
            .process
            .ok_or_else(|| Error::new(ErrorKind::Internal, "an exec without a process"))?;
        let running = process.status == RUNNING;
        let exit_code = (process.status == STOPPED).then(|| i64::from(process.exit_status));
        if let Some(code) = exit_code {
            self.exec_ended(exec, code).await;
        }
        Ok(ExecState {
            started: process.status != CREATED,
            running,
            exit_code,
            pid: (running && process.pid > 0)
                .then(|| i32::try_from(process.pid).unwrap_or(0))
                .filter(|p| *p > 0),
            container_id: exec.container.clone(),
        })
    }

    async fn copy_from(&self, id: &str, path: &str) -> Result<ByteStream> {
        // containerd has no archive endpoint: a `tar` exec in the running container.
        self.running_or_conflict(id).await?;
        container_core::raw::tar_out(self, id, path)
            .await?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Unsupported,
                    "copying out of a containerd container needs `tar` in it; this image has none",
                )
            })
    }

    async fn copy_to(&self, id: &str, dir: &str, archive: File) -> Result<()> {
        self.running_or_conflict(id).await?;
        let mut data = Vec::new();
        tokio::fs::File::from_std(archive)
            .read_to_end(&mut data)
            .await
            .map_err(io_err("cannot read the archive"))?;
        let spec = ExecSpec::new(["tar", "-xf", "-", "-C", dir])
            .user(0, 0)
            .stdin(data);
        let exec = self.exec_create(id, &spec).await?;
        let mut output = self.exec_start(&exec, &spec).await?;
        let mut stderr = Vec::new();
        while let Some(chunk) = output.next().await {
            stderr.extend_from_slice(&chunk?.data);
        }
        match container_core::raw::exec_exit_code(self, &exec, "tar").await? {
            0 => Ok(()),
            code => Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "tar in the container exited {code}: {}",
                    String::from_utf8_lossy(&stderr).trim()
                ),
            )),
        }
    }

    async fn create_volume(&self, name: &str, labels: &Labels) -> Result<VolumeInfo> {
        let root = self.volume_root(name);
        if root.join("labels.json").is_file() {
            return self.inspect_volume(name).await;
        }
        std::fs::create_dir_all(self.volume_dir(name)).map_err(io_err("cannot make the volume"))?;
        let text = serde_json::to_vec(labels)
            .map_err(|e| Error::new(ErrorKind::Internal, "cannot encode labels").with_source(e))?;
        std::fs::write(root.join("labels.json"), text)
            .map_err(io_err("cannot write the volume labels"))?;
        self.inspect_volume(name).await
    }

    async fn inspect_volume(&self, name: &str) -> Result<VolumeInfo> {
        let text = std::fs::read(self.volume_root(name).join("labels.json"))
            .map_err(|_| Error::new(ErrorKind::NotFound, format!("no such volume: {name}")))?;
        let labels: Labels = serde_json::from_slice(&text).map_err(|e| {
            Error::new(ErrorKind::Internal, "unreadable volume labels").with_source(e)
        })?;
        Ok(VolumeInfo::new(name, labels)
            .with_mountpoint(self.volume_dir(name).display().to_string()))
    }

    async fn list_volumes(&self, labels: &Labels) -> Result<Vec<VolumeInfo>> {
        let mut out = Vec::new();
        let Ok(dir) = std::fs::read_dir(self.data.join("volumes")) else {
            return Ok(out);
        };
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Ok(v) = self.inspect_volume(&name).await {
                if labels.iter().all(|(k, val)| v.labels.get(k) == Some(val)) {
                    out.push(v);
                }
            }
        }
        Ok(out)
    }

    async fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        let root = self.volume_root(name);
        if !root.is_dir() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no such volume: {name}"),
            ));
        }
        let data = self.volume_dir(name).display().to_string();
        let containers = ContainersClient::new(self.c.channel.clone())
            .list(self.c.request(ListContainersRequest {
                filters: Vec::new(),
            })?)
            .await
            .map_err(map_status)?
            .into_inner()
            .containers;
        let user = containers.iter().find(|c| {
            Self::spec_of(c)["mounts"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["source"] == data.as_str()))
        });
        if let (Some(user), false) = (user, force) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("volume {name} is in use by {}", user.id),
            ));
        }
        if let Some(user) = user {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("volume {name} is in use by {}", user.id),
            ));
        }
        std::fs::remove_dir_all(root).map_err(io_err("cannot remove the volume"))
    }
}

impl ContainerdEngine {
    /// Removes `record`'s task, the record, and its snapshot, in that order.
    async fn remove_record(&self, record: &Container, force: bool) -> Result<Removal> {
        let id = record.id.as_str();
        if let Some(p) = self.task(id).await? {
            if p.status == RUNNING {
                if !force {
                    return Err(state_conflict(
                        format!("container {id} is running"),
                        "running",
                    ));
                }
                self.signal(id, "", Signal::KILL, true).await?;
                self.wait_task(id, Duration::from_secs(10)).await?;
            }
            // The task first: a container deleted before its task orphans the task.
            match self.delete_task(id).await {
                Ok(()) => {}
                // Another caller's removal closed the task's connection under us.
                Err(e) if e.message().contains("ttrpc: closed") => return Ok(Removal::InProgress),
                Err(e) => return Err(e),
            }
        }
        match ContainersClient::new(self.c.channel.clone())
            .delete(
                self.c
                    .request(DeleteContainerRequest { id: id.to_string() })?,
            )
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == Code::NotFound => return Ok(Removal::Removed),
            Err(s) => return Err(map_status(s)),
        }
        let remove = RemoveSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            key: record.snapshot_key.clone(),
        };
        match SnapshotsClient::new(self.c.channel.clone())
            .remove(self.c.request(remove)?)
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => return Err(map_status(s)),
        }
        let _ = std::fs::remove_dir_all(self.run.join(id));
        let _ = std::fs::remove_dir_all(self.data.join("logs").join(id));
        Ok(Removal::Removed)
    }

    #[allow(clippy::too_many_arguments)]
    async fn make_container(
        &self,
        name: &str,
        id: &str,
        labels: &Labels,
        image: String,
        top: String,
        spec: Value,
        lease: &str,
    ) -> Result<()> {
        let mut snapshots = SnapshotsClient::new(self.c.channel.clone());
        let prepare = PrepareSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            key: name.to_string(),
            parent: top,
            labels: HashMap::new(),
        };
        snapshots
            .prepare(self.c.leased(prepare, Some(lease))?)
            .await
            .map_err(map_status)?;
        let value = serde_json::to_vec(&spec).map_err(|e| {
            Error::new(ErrorKind::Internal, "cannot encode the spec").with_source(e)
        })?;
        let container = Container {
            id: id.to_string(),
            labels: labels.clone().into_iter().collect(),
            image,
            runtime: Some(Runtime {
                name: RUNTIME.to_string(),
                options: None,
            }),
            spec: Some(any(SPEC_TYPE, value)),
            snapshotter: SNAPSHOTTER.to_string(),
            snapshot_key: name.to_string(),
            ..Container::default()
        };
        let created = ContainersClient::new(self.c.channel.clone())
            .create(self.c.leased(
                CreateContainerRequest {
                    container: Some(container),
                },
                Some(lease),
            )?)
            .await;
        if let Err(s) = created {
            let remove = RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key: name.to_string(),
            };
            if let Ok(r) = self.c.request(remove) {
                let _ = snapshots.remove(r).await;
            }
            return Err(map_status(s));
        }
        Ok(())
    }

    async fn running_or_conflict(&self, id: &str) -> Result<()> {
        let record = self.container(id).await?;
        let id = record.id.as_str();
        match self.task(id).await? {
            Some(p) if p.status == RUNNING => Ok(()),
            _ => Err(state_conflict(
                format!("container {id} is not running: copies need it running"),
                "not running",
            )),
        }
    }
}
