//! `ContainerManager` for the Docker Engine API.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bollard::query_parameters::{
    CreateContainerOptions, DownloadFromContainerOptions, InspectContainerOptions,
    KillContainerOptions, ListContainersOptions, ListVolumesOptions, LogsOptions,
    RemoveContainerOptions, RemoveImageOptions, RemoveVolumeOptions, StartContainerOptions,
    StopContainerOptions, UploadToContainerOptions, WaitContainerOptions,
};
use bollard::{Docker, API_DEFAULT_VERSION};
use container_core::{
    archive, validate, BackendKind, Capabilities, ConnectOptions, ContainerConfig, ContainerInfo,
    ContainerManager, EngineInfo, Error, ErrorKind, ExecSpec, ExecStream, ImageRef, Labels,
    LogOptions, LogStream, Operation, OutputChunk, Ownership, PullOptions, Result, Signal,
    StreamKind, VolumeConfig, VolumeInfo,
};
use futures::{StreamExt, TryStreamExt};
use tracing::instrument;

use crate::convert;
use crate::error::{map_error, BACKEND};

/// The default endpoint when neither the options nor `DOCKER_HOST` name one.
pub const DEFAULT_ENDPOINT: &str = "unix:///var/run/docker.sock";

/// A [`ContainerManager`] on a Docker Engine.
#[derive(Debug, Clone)]
pub struct DockerManager {
    docker: Docker,
    ownership: Ownership,
    endpoint: String,
    call_timeout: Duration,
}

impl DockerManager {
    /// Connects to the engine named by `options.endpoint`, else `DOCKER_HOST`, else the
    /// default socket. `tcp://` endpoints use TLS when `DOCKER_TLS_VERIFY` is set or
    /// `DOCKER_CERT_PATH` names a folder with `ca.pem`, `cert.pem`, `key.pem` (as the
    /// Docker CLI does); `https://` always uses TLS, `http://` never does.
    /// Fails with `Unavailable` if the engine does not answer within the connect timeout.
    #[instrument(skip_all, fields(backend = BACKEND, operation = "connect"))]
    pub async fn connect(options: ConnectOptions) -> Result<Self> {
        let endpoint = options
            .endpoint
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let ctx = |e: Error| e.context(BACKEND, Operation::Connect, endpoint.clone());
        // bollard's timeout covers a request up to its response headers; we add our own
        // per-call deadline on top, and streams have their own.
        let secs = options.call_timeout.as_secs().max(1);
        let docker = client(&endpoint, secs).map_err(ctx)?;
        let reach = async {
            docker.ping().await.map_err(map_error)?;
            docker.negotiate_version().await.map_err(map_error)
        };
        let docker = match tokio::time::timeout(options.connect_timeout, reach).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                let kind = e.kind();
                let e = if kind == ErrorKind::Internal || kind == ErrorKind::NotFound {
                    Error::new(ErrorKind::Unavailable, "the engine did not answer").with_source(e)
                } else {
                    e
                };
                return Err(ctx(e));
            }
            Err(_) => {
                return Err(ctx(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "no answer within the connect timeout {:?}",
                        options.connect_timeout
                    ),
                )))
            }
        };
        Ok(DockerManager {
            docker,
            ownership: options.ownership,
            endpoint,
            call_timeout: options.call_timeout,
        })
    }

    /// The endpoint this manager talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Runs one engine call under the per-call deadline and maps its error.
    async fn call<T>(
        &self,
        op: Operation,
        resource: &str,
        fut: impl Future<Output = std::result::Result<T, bollard::errors::Error>>,
    ) -> Result<T> {
        self.call_within(self.call_timeout, op, resource, fut).await
    }

    async fn call_within<T>(
        &self,
        limit: Duration,
        op: Operation,
        resource: &str,
        fut: impl Future<Output = std::result::Result<T, bollard::errors::Error>>,
    ) -> Result<T> {
        let result = match tokio::time::timeout(limit, fut).await {
            Ok(r) => r.map_err(map_error),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("the engine did not answer within {limit:?}"),
            )
            .set_retryable(op.is_idempotent())),
        };
        result.map_err(|e| e.context(BACKEND, op, resource.to_string()))
    }

    async fn find_by_name(&self, name: &str) -> Result<Option<ContainerInfo>> {
        let found = self
            .call(
                Operation::Create,
                name,
                self.docker
                    .inspect_container(name, None::<InspectContainerOptions>),
            )
            .await;
        match found {
            Ok(r) => Ok(Some(convert::container_info(r))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn client(endpoint: &str, timeout_secs: u64) -> Result<Docker> {
    let tls = |addr: &str, (ca, cert, key): (PathBuf, PathBuf, PathBuf)| {
        Docker::connect_with_ssl(addr, &key, &cert, &ca, timeout_secs, API_DEFAULT_VERSION)
    };
    let docker = if let Some(path) = endpoint.strip_prefix("unix://") {
        Docker::connect_with_unix(path, timeout_secs, API_DEFAULT_VERSION)
    } else if endpoint.starts_with('/') {
        Docker::connect_with_unix(endpoint, timeout_secs, API_DEFAULT_VERSION)
    } else if endpoint.starts_with("http://") {
        Docker::connect_with_http(endpoint, timeout_secs, API_DEFAULT_VERSION)
    } else if endpoint.starts_with("https://") {
        // https always means TLS; the client files default to ~/.docker.
        let paths = tls_paths(true).ok_or_else(|| {
            Error::invalid_input("TLS needs DOCKER_CERT_PATH or a home directory")
        })?;
        tls(endpoint, paths)
    } else if endpoint.starts_with("tcp://") {
        // Like the Docker CLI: tcp:// is TLS when DOCKER_TLS_VERIFY or DOCKER_CERT_PATH is set.
        match tls_paths(false) {
            Some(paths) => tls(endpoint, paths),
            None => Docker::connect_with_http(endpoint, timeout_secs, API_DEFAULT_VERSION),
        }
    } else {
        return Err(Error::invalid_input(format!(
            "endpoint {endpoint:?} must be unix://, tcp://, http(s):// or a socket path"
        )));
    };
    docker.map_err(map_error)
}

/// TLS files `ca.pem`, `cert.pem`, `key.pem` from `DOCKER_CERT_PATH` (default `~/.docker`)
/// when TLS is `required`, `DOCKER_TLS_VERIFY` is set, or `DOCKER_CERT_PATH` is given.
fn tls_paths(required: bool) -> Option<(PathBuf, PathBuf, PathBuf)> {
    let verify =
        required || std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| !v.is_empty() && v != "0");
    let dir = match std::env::var_os("DOCKER_CERT_PATH") {
        Some(d) => PathBuf::from(d),
        None if verify => PathBuf::from(std::env::var_os("HOME")?).join(".docker"),
        None => return None,
    };
    Some((
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    ))
}

/// Ok for "already in the target state" (Docker answers 304, which bollard passes as Ok,
/// or 409 for a kill of a stopped container).
fn ok_if_missing(r: Result<()>) -> Result<()> {
    match r {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[async_trait]
impl ContainerManager for DockerManager {
    fn backend(&self) -> BackendKind {
        BackendKind::Docker
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            init: true,
            resource_limits: true,
            userns_keep_id: false,
            tty_exec: true,
            native_exec_kill: false,
            copy_files: true,
        }
    }

    fn ownership(&self) -> &Ownership {
        &self.ownership
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "info"))]
    async fn info(&self) -> Result<EngineInfo> {
        let v = self
            .call(Operation::Info, &self.endpoint, self.docker.version())
            .await?;
        Ok(EngineInfo {
            backend: BackendKind::Docker,
            engine: convert::engine_kind(&v),
            version: v.version.unwrap_or_default(),
            api_version: v.api_version,
            os: v.os.unwrap_or_default(),
            arch: v.arch.unwrap_or_default(),
            endpoint: self.endpoint.clone(),
        })
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "pull", resource = image))]
    async fn pull(&self, image: &str, options: &PullOptions) -> Result<()> {
        crate::pull::pull(&self.docker, image, options).await
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "image_exists", resource = image))]
    async fn image_exists(&self, image: &str) -> Result<bool> {
        let r = ImageRef::parse(image)
            .map_err(|e| e.context(BACKEND, Operation::ImageExists, image.to_string()))?;
        let local = crate::pull::image_ref_for_engine(&r);
        match self
            .call(
                Operation::ImageExists,
                image,
                self.docker.inspect_image(&local),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "remove_image", resource = image))]
    async fn remove_image(&self, image: &str, force: bool) -> Result<()> {
        let r = ImageRef::parse(image)
            .map_err(|e| e.context(BACKEND, Operation::RemoveImage, image.to_string()))?;
        let local = crate::pull::image_ref_for_engine(&r);
        let options = RemoveImageOptions {
            force,
            ..RemoveImageOptions::default()
        };
        let r = self
            .call(
                Operation::RemoveImage,
                image,
                self.docker.remove_image(&local, Some(options), None),
            )
            .await
            .map(|_| ());
        ok_if_missing(r)
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "create", resource = config.name.as_deref().unwrap_or(&config.image)))]
    async fn create(&self, config: &ContainerConfig) -> Result<String> {
        let resource = config.name.clone().unwrap_or_else(|| config.image.clone());
        validate::container_config(config)
            .map_err(|e| e.context(BACKEND, Operation::Create, resource.clone()))?;
        let labels = self.ownership.container_labels(config);
        let name = config
            .name
            .clone()
            .unwrap_or_else(|| format!("crs-{}", uuid::Uuid::new_v4().simple()));
        self.ownership
            .create_idempotent(
                &name,
                &labels,
                || async {
                    let options = CreateContainerOptions {
                        name: Some(name.clone()),
                        ..CreateContainerOptions::default()
                    };
                    let body = convert::create_body(config, labels.clone());
                    self.call(
                        Operation::Create,
                        &name,
                        self.docker.create_container(Some(options), body),
                    )
                    .await
                    .map(|r| r.id)
                },
                || self.find_by_name(&name),
            )
            .await
            .map_err(|e| e.context(BACKEND, Operation::Create, name.clone()))
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "start", resource = id))]
    async fn start(&self, id: &str) -> Result<()> {
        validate::container_ref(id).map_err(|e| e.context(BACKEND, Operation::Start, id))?;
        self.call(
            Operation::Start,
            id,
            self.docker
                .start_container(id, None::<StartContainerOptions>),
        )
        .await
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "stop", resource = id))]
    async fn stop(&self, id: &str, grace: Option<Duration>) -> Result<()> {
        validate::container_ref(id).map_err(|e| e.context(BACKEND, Operation::Stop, id))?;
        let t = grace.map(|g| i32::try_from(convert::ceil_secs(g)).unwrap_or(i32::MAX));
        let options = StopContainerOptions {
            t,
            ..StopContainerOptions::default()
        };
        // The engine waits up to the grace before killing: allow for it.
        let limit = self.call_timeout + grace.unwrap_or(Duration::from_secs(10));
        self.call_within(
            limit,
            Operation::Stop,
            id,
            self.docker.stop_container(id, Some(options)),
        )
        .await
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "kill", resource = id))]
    async fn kill(&self, id: &str, signal: &str) -> Result<()> {
        let ctx = |e: Error| e.context(BACKEND, Operation::Kill, id.to_string());
        validate::container_ref(id).map_err(ctx)?;
        let signal: Signal = signal.parse().map_err(ctx)?;
        let options = KillContainerOptions {
            signal: signal.name(),
        };
        self.call(
            Operation::Kill,
            id,
            self.docker.kill_container(id, Some(options)),
        )
        .await
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "remove", resource = id))]
    async fn remove(&self, id: &str, force: bool) -> Result<()> {
        validate::container_ref(id).map_err(|e| e.context(BACKEND, Operation::Remove, id))?;
        let options = RemoveContainerOptions {
            force,
            v: true,
            ..RemoveContainerOptions::default()
        };
        let r = self
            .call(
                Operation::Remove,
                id,
                self.docker.remove_container(id, Some(options)),
            )
            .await;
        match r {
            // Another caller is removing it: wait until it is gone, then it is done.
            Err(e)
                if e.kind() == ErrorKind::Conflict
                    && e.to_string().contains("already in progress") =>
            {
                let deadline = tokio::time::Instant::now() + self.call_timeout;
                while tokio::time::Instant::now() < deadline {
                    match self.inspect(id).await {
                        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                        Err(e) => return Err(e),
                        Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                Err(e)
            }
            other => ok_if_missing(other),
        }
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "inspect", resource = id))]
    async fn inspect(&self, id: &str) -> Result<ContainerInfo> {
        validate::container_ref(id).map_err(|e| e.context(BACKEND, Operation::Inspect, id))?;
        self.call(
            Operation::Inspect,
            id,
            self.docker
                .inspect_container(id, None::<InspectContainerOptions>),
        )
        .await
        .map(convert::container_info)
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "wait", resource = id))]
    async fn wait(&self, id: &str) -> Result<i64> {
        validate::container_ref(id).map_err(|e| e.context(BACKEND, Operation::Wait, id))?;
        let options = WaitContainerOptions {
            condition: "not-running".into(),
        };
        let mut s = self.docker.wait_container(id, Some(options));
        match s.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            // bollard turns a non-zero exit into an error: it is a result here.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(map_error(e).context(BACKEND, Operation::Wait, id.to_string())),
            None => self.inspect(id).await.map(|i| match i.state {
                container_core::ContainerState::Exited(c) => c,
                _ => 0,
            }),
        }
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "list"))]
    async fn list(&self, labels: &Labels) -> Result<Vec<ContainerInfo>> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(convert::label_filters(labels)),
            ..ListContainersOptions::default()
        };
        let found = self
            .call(
                Operation::List,
                &self.endpoint,
                self.docker.list_containers(Some(options)),
            )
            .await?;
        Ok(found
            .into_iter()
            .map(convert::summary_info)
            // Belt and braces: never return what does not match the selector.
            .filter(|c| labels.iter().all(|(k, v)| c.labels.get(k) == Some(v)))
            .collect())
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "logs", resource = id))]
    async fn logs(&self, id: &str, options: &LogOptions) -> Result<LogStream> {
        validate::container_ref(id).map_err(|e| e.context(BACKEND, Operation::Logs, id))?;
        // Fail early on a missing container instead of inside the stream.
        self.inspect(id).await?;
        let query = LogsOptions {
            follow: options.follow,
            stdout: options.stdout,
            stderr: options.stderr,
            tail: "all".into(),
            ..LogsOptions::default()
        };
        let resource = id.to_string();
        let stream = self
            .docker
            .logs(id, Some(query))
            .map_err(move |e| map_error(e).context(BACKEND, Operation::Logs, resource.clone()))
            .try_filter_map(|log| async move {
                use bollard::container::LogOutput as L;
                Ok(match log {
                    L::StdOut { message } | L::Console { message } => Some(OutputChunk {
                        stream: StreamKind::Stdout,
                        data: message,
                    }),
                    L::StdErr { message } => Some(OutputChunk {
                        stream: StreamKind::Stderr,
                        data: message,
                    }),
                    L::StdIn { .. } => None,
                })
            });
        Ok(stream.boxed())
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "exec", resource = id))]
    async fn exec_stream(&self, id: &str, spec: &ExecSpec) -> Result<ExecStream> {
        validate::container_ref(id)
            .and_then(|()| validate::exec_spec(spec))
            .map_err(|e| e.context(BACKEND, Operation::Exec, id))?;
        crate::exec::start(&self.docker, id, spec, self.call_timeout).await
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "copy_from", resource = id))]
    async fn copy_from(&self, id: &str, container_path: &str, host_dir: &Path) -> Result<()> {
        let ctx = |e: Error| e.context(BACKEND, Operation::CopyFrom, id.to_string());
        validate::container_ref(id).map_err(ctx)?;
        if !container_path.starts_with('/') {
            return Err(ctx(Error::invalid_input(format!(
                "container path {container_path:?} must be absolute"
            ))));
        }
        validate::host_path(host_dir).map_err(ctx)?;
        let options = DownloadFromContainerOptions {
            path: container_path.to_string(),
        };
        let body = self
            .docker
            .download_from_container(id, Some(options))
            .map(|chunk| chunk.map_err(map_error));
        archive::receive_and_unpack(body, host_dir, self.call_timeout)
            .await
            .map_err(ctx)
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "copy_to", resource = id))]
    async fn copy_to(&self, id: &str, host_path: &Path, container_dir: &str) -> Result<()> {
        let ctx = |e: Error| e.context(BACKEND, Operation::CopyTo, id.to_string());
        validate::container_ref(id).map_err(ctx)?;
        if !container_dir.starts_with('/') {
            return Err(ctx(Error::invalid_input(format!(
                "container directory {container_dir:?} must be absolute"
            ))));
        }
        let source = host_path.to_path_buf();
        let file = tokio::task::spawn_blocking(move || archive::pack(&source))
            .await
            .map_err(|e| ctx(Error::new(ErrorKind::Internal, "pack task failed").with_source(e)))?
            .map_err(ctx)?;
        let body = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
        let options = UploadToContainerOptions {
            path: container_dir.to_string(),
            ..UploadToContainerOptions::default()
        };
        self.call(
            Operation::CopyTo,
            id,
            self.docker
                .upload_to_container(id, Some(options), bollard::body_try_stream(body)),
        )
        .await
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "create_volume", resource = config.name))]
    async fn create_volume(&self, config: &VolumeConfig) -> Result<VolumeInfo> {
        validate::volume_config(config)
            .map_err(|e| e.context(BACKEND, Operation::CreateVolume, config.name.clone()))?;
        let request = bollard::models::VolumeCreateRequest {
            name: Some(config.name.clone()),
            labels: Some(self.ownership.volume_labels(config).into_iter().collect()),
            ..Default::default()
        };
        // Docker returns the existing volume for a name that exists: idempotent.
        self.call(
            Operation::CreateVolume,
            &config.name,
            self.docker.create_volume(request),
        )
        .await
        .map(convert::volume_info)
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "inspect_volume", resource = name))]
    async fn inspect_volume(&self, name: &str) -> Result<VolumeInfo> {
        validate::volume_name(name)
            .map_err(|e| e.context(BACKEND, Operation::InspectVolume, name))?;
        self.call(
            Operation::InspectVolume,
            name,
            self.docker.inspect_volume(name),
        )
        .await
        .map(convert::volume_info)
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "list_volumes"))]
    async fn list_volumes(&self, labels: &Labels) -> Result<Vec<VolumeInfo>> {
        let options = ListVolumesOptions {
            filters: Some(convert::label_filters(labels)),
        };
        let r = self
            .call(
                Operation::ListVolumes,
                &self.endpoint,
                self.docker.list_volumes(Some(options)),
            )
            .await?;
        Ok(r.volumes
            .unwrap_or_default()
            .into_iter()
            .map(convert::volume_info)
            .filter(|v| labels.iter().all(|(k, val)| v.labels.get(k) == Some(val)))
            .collect())
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "remove_volume", resource = name))]
    async fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        validate::volume_name(name)
            .map_err(|e| e.context(BACKEND, Operation::RemoveVolume, name))?;
        let r = self
            .call(
                Operation::RemoveVolume,
                name,
                self.docker
                    .remove_volume(name, Some(RemoveVolumeOptions { force })),
            )
            .await;
        ok_if_missing(r)
    }
}
