//! The raw client crates called directly, in this process: the floor the library sits
//! on. Each does what a user of that crate writes for an exec: bollard and podman-api
//! create, start attached, read to the end, inspect; containerd-client makes the FIFOs,
//! execs, starts, reads to the end, waits and deletes the process.

use container::BackendKind;
use futures::StreamExt;

/// Any error of a raw client.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// A raw client of the backend's engine.
pub(crate) enum Raw {
    /// bollard.
    Docker(bollard::Docker),
    /// podman-api.
    #[cfg(feature = "podman")]
    Podman(podman_api::Podman),
    /// containerd-client.
    #[cfg(feature = "containerd")]
    Containerd(containerd::Client),
}

impl Raw {
    /// The raw client for `backend`, reaching the engine the library reaches.
    pub(crate) async fn connect(backend: BackendKind) -> Result<Raw, Error> {
        let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
        match backend {
            BackendKind::Docker => Ok(Raw::Docker(bollard::Docker::connect_with_defaults()?)),
            #[cfg(feature = "podman")]
            BackendKind::Podman => {
                let url = env("CONTAINER_HOST")
                    .unwrap_or_else(|| "unix:///run/podman/podman.sock".to_string());
                Ok(Raw::Podman(podman_api::Podman::new(url)?))
            }
            #[cfg(feature = "containerd")]
            BackendKind::Containerd => {
                let socket = env("CONTAINERD_ADDRESS")
                    .unwrap_or_else(|| "/run/containerd/containerd.sock".to_string());
                let namespace =
                    env("CONTAINERD_NAMESPACE").unwrap_or_else(|| "container-rs".to_string());
                Ok(Raw::Containerd(
                    containerd::Client::connect(&socket, namespace).await?,
                ))
            }
            other => Err(format!("no raw client for {other:?}").into()),
        }
    }

    /// Runs `cmd` in the running container `id`, reads its stdout to the end; the number
    /// of bytes read, once its exit code proved 0.
    pub(crate) async fn exec(&self, id: &str, cmd: &[&str]) -> Result<u64, Error> {
        match self {
            Raw::Docker(docker) => docker_exec(docker, id, cmd).await,
            #[cfg(feature = "podman")]
            Raw::Podman(podman) => podman_exec(podman, id, cmd).await,
            #[cfg(feature = "containerd")]
            Raw::Containerd(client) => client.exec(id, cmd).await,
        }
    }
}

/// Create, start attached, read to the end, inspect: what a bollard user writes.
async fn docker_exec(docker: &bollard::Docker, id: &str, cmd: &[&str]) -> Result<u64, Error> {
    use bollard::container::LogOutput;
    use bollard::exec::{CreateExecOptions, StartExecResults};
    let exec = docker
        .create_exec(
            id,
            CreateExecOptions::<String> {
                cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await?;
    let mut bytes = 0;
    if let StartExecResults::Attached { mut output, .. } = docker.start_exec(&exec.id, None).await?
    {
        while let Some(item) = output.next().await {
            if let LogOutput::StdOut { message } = item? {
                bytes += message.len() as u64;
            }
        }
    }
    match docker.inspect_exec(&exec.id).await?.exit_code {
        Some(0) => Ok(bytes),
        other => Err(format!("raw docker exec of {cmd:?}: exit {other:?}").into()),
    }
}

/// The same through podman-api.
#[cfg(feature = "podman")]
async fn podman_exec(podman: &podman_api::Podman, id: &str, cmd: &[&str]) -> Result<u64, Error> {
    use podman_api::conn::TtyChunk;
    use podman_api::opts::{ExecCreateOpts, ExecStartOpts};
    let exec = podman
        .containers()
        .get(id)
        .create_exec(
            &ExecCreateOpts::builder()
                .command(cmd)
                .attach_stdout(true)
                .attach_stderr(true)
                .build(),
        )
        .await?;
    let mut bytes = 0;
    if let Some(mut output) = exec.start(&ExecStartOpts::builder().build()).await? {
        while let Some(item) = output.next().await {
            if let TtyChunk::StdOut(data) = item? {
                bytes += data.len() as u64;
            }
        }
    }
    match exec.inspect().await?["ExitCode"].as_i64() {
        Some(0) => Ok(bytes),
        other => Err(format!("raw podman exec of {cmd:?}: exit {other:?}").into()),
    }
}

/// containerd-client, as its users write an exec (the way `ctr tasks exec` does it).
#[cfg(feature = "containerd")]
mod containerd {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    use containerd_client::services::v1::containers_client::ContainersClient;
    use containerd_client::services::v1::tasks_client::TasksClient;
    use containerd_client::services::v1::{
        DeleteProcessRequest, ExecProcessRequest, GetContainerRequest, StartRequest, WaitRequest,
    };
    use containerd_client::tonic::transport::Channel;
    use containerd_client::tonic::Request;
    use tokio::io::AsyncReadExt;

    use super::Error;

    /// A channel to containerd and the namespace of the library's containers.
    pub(crate) struct Client {
        channel: Channel,
        namespace: String,
        fifo_dir: tempfile::TempDir,
    }

    impl Client {
        pub(crate) async fn connect(socket: &str, namespace: String) -> Result<Client, Error> {
            Ok(Client {
                channel: containerd_client::connect(socket).await?,
                namespace,
                fifo_dir: tempfile::tempdir()?,
            })
        }

        fn request<T>(&self, message: T) -> Result<Request<T>, Error> {
            let mut request = Request::new(message);
            request
                .metadata_mut()
                .insert("containerd-namespace", self.namespace.parse()?);
            Ok(request)
        }

        /// Exec of `cmd` with the container's process settings, stdout and stderr on
        /// FIFOs read here; stdout's byte count once the exit code proved 0.
        pub(crate) async fn exec(&self, id: &str, cmd: &[&str]) -> Result<u64, Error> {
            static N: AtomicU64 = AtomicU64::new(0);
            let exec_id = format!("raw-{}", N.fetch_add(1, Ordering::Relaxed));
            let container = ContainersClient::new(self.channel.clone())
                .get(self.request(GetContainerRequest { id: id.into() })?)
                .await?
                .into_inner()
                .container
                .ok_or("no container")?;
            let spec = container.spec.ok_or("a container without a spec")?;
            let mut spec: serde_json::Value = serde_json::from_slice(&spec.value)?;
            let mut process = spec["process"].take();
            process["args"] = serde_json::json!(cmd);
            process["terminal"] = false.into();
            let fifo = |name: &str| -> Result<PathBuf, Error> {
                let path = self.fifo_dir.path().join(format!("{exec_id}-{name}"));
                nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
                Ok(path)
            };
            let (stdout, stderr) = (fifo("stdout")?, fifo("stderr")?);
            let open = |path: &Path| tokio::net::unix::pipe::OpenOptions::new().open_receiver(path);
            let (mut out, mut err) = (open(&stdout)?, open(&stderr)?);
            let mut tasks = TasksClient::new(self.channel.clone());
            tasks
                .exec(self.request(ExecProcessRequest {
                    container_id: id.into(),
                    exec_id: exec_id.clone(),
                    stdin: String::new(),
                    stdout: stdout.display().to_string(),
                    stderr: stderr.display().to_string(),
                    terminal: false,
                    spec: Some(prost_types::Any {
                        type_url:
                            "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
                        value: serde_json::to_vec(&process)?,
                    }),
                })?)
                .await?;
            tasks
                .start(self.request(StartRequest {
                    container_id: id.into(),
                    exec_id: exec_id.clone(),
                })?)
                .await?;
            let (mut buf, mut bytes, mut sink) = (vec![0; 1 << 16], 0u64, Vec::new());
            let read_out = async {
                loop {
                    match out.read(&mut buf).await? {
                        0 => return Ok::<_, std::io::Error>(bytes),
                        n => bytes += n as u64,
                    }
                }
            };
            let (bytes, _) = tokio::try_join!(read_out, err.read_to_end(&mut sink))?;
            let status = tasks
                .wait(self.request(WaitRequest {
                    container_id: id.into(),
                    exec_id: exec_id.clone(),
                })?)
                .await?
                .into_inner()
                .exit_status;
            tasks
                .delete_process(self.request(DeleteProcessRequest {
                    container_id: id.into(),
                    exec_id,
                })?)
                .await?;
            let _ = std::fs::remove_file(stdout);
            let _ = std::fs::remove_file(stderr);
            match status {
                0 => Ok(bytes),
                other => Err(format!("raw containerd exec of {cmd:?}: exit {other}").into()),
            }
        }
    }
}
