//! `ContainerManager` for Podman's libpod REST API.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use container_core::{
    archive, validate, BackendKind, Capabilities, ConnectOptions, ContainerConfig, ContainerInfo,
    ContainerManager, EngineInfo, Error, ErrorKind, ExecSpec, ExecStream, ImageRef, Labels,
    LogOptions, LogStream, Operation, OutputChunk, Ownership, PullOptions, Result, Signal,
    StreamKind, VolumeConfig, VolumeInfo,
};
use containers_api::conn::hyper::{self, Body, Method, Request};
use containers_api::conn::Transport;
use futures::StreamExt;
use podman_api::conn::TtyChunk;
use podman_api::opts::{
    ContainerDeleteOpts, ContainerListFilter, ContainerListOpts, ContainerLogsOpts, ImageOpt,
    VolumeCreateOpts, VolumeListFilter, VolumeListOpts,
};
use podman_api::Podman;
use tokio::io::AsyncReadExt;
use tracing::instrument;

use crate::convert;
use crate::error::{map_error, text_error, BACKEND};

/// The default endpoint when neither the options nor `CONTAINER_HOST` name one.
pub const DEFAULT_ENDPOINT: &str = "unix:///run/podman/podman.sock";

/// The API version prefix of the requests this backend sends itself.
const API_PREFIX: &str = "/v4.0.0";

/// A [`ContainerManager`] on a Podman service (`podman system service`).
#[derive(Debug, Clone)]
pub struct PodmanManager {
    podman: Podman,
    /// The same endpoint for the requests podman-api cannot make (create with named
    /// volumes, stop with a timeout, streamed archive upload).
    transport: Transport,
    ownership: Ownership,
    endpoint: String,
    call_timeout: Duration,
}

impl PodmanManager {
    /// Connects to the service named by `options.endpoint`, else `CONTAINER_HOST` (as
    /// podman-remote), else the default root socket. `unix://` paths and plain `tcp://` /
    /// `http://` endpoints are supported.
    /// Fails with `Unavailable` if the service does not answer within the connect timeout.
    #[instrument(skip_all, fields(backend = BACKEND, operation = "connect"))]
    pub async fn connect(options: ConnectOptions) -> Result<Self> {
        let endpoint = options
            .endpoint
            .clone()
            .or_else(|| {
                std::env::var("CONTAINER_HOST")
                    .ok()
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let ctx = |e: Error| e.context(BACKEND, Operation::Connect, endpoint.clone());
        let (podman, transport) = client(&endpoint).map_err(ctx)?;
        let manager = PodmanManager {
            podman,
            transport,
            ownership: options.ownership,
            endpoint: endpoint.clone(),
            call_timeout: options.call_timeout,
        };
        match tokio::time::timeout(options.connect_timeout, manager.podman.ping()).await {
            Ok(Ok(_)) => Ok(manager),
            Ok(Err(e)) => {
                let e = map_error(e);
                let e = if matches!(e.kind(), ErrorKind::Internal | ErrorKind::NotFound) {
                    Error::new(ErrorKind::Unavailable, "the engine did not answer").with_source(e)
                } else {
                    e
                };
                Err(ctx(e))
            }
            Err(_) => Err(ctx(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "no answer within the connect timeout {:?}",
                    options.connect_timeout
                ),
            ))),
        }
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
        fut: impl Future<Output = std::result::Result<T, podman_api::Error>>,
    ) -> Result<T> {
        self.call_within(self.call_timeout, op, resource, fut).await
    }

    async fn call_within<T>(
        &self,
        limit: Duration,
        op: Operation,
        resource: &str,
        fut: impl Future<Output = std::result::Result<T, podman_api::Error>>,
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

    /// One request podman-api cannot make, with libpod's error body turned into the same
    /// `Fault` podman-api raises (so [`map_error`] handles both alike).
    async fn raw(
        &self,
        method: Method,
        endpoint: &str,
        body: Body,
        content_type: &str,
    ) -> std::result::Result<Bytes, podman_api::Error> {
        let uri = self
            .transport
            .make_uri(&format!("{API_PREFIX}{endpoint}"))
            .map_err(podman_api::Error::from)?;
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", content_type)
            .body(body)
            .map_err(|e| podman_api::Error::from(containers_api::conn::Error::from(e)))?;
        let response = self
            .transport
            .request(request)
            .await
            .map_err(podman_api::Error::from)?;
        let status = response.status();
        let bytes = hyper::body::to_bytes(response.into_body())
            .await
            .map_err(|e| podman_api::Error::from(containers_api::conn::Error::from(e)))?;
        if status.is_success() {
            return Ok(bytes);
        }
        let text = String::from_utf8_lossy(&bytes);
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| text.trim().to_string());
        Err(podman_api::Error::Fault {
            code: status,
            message,
        })
    }

    async fn find_by_name(&self, name: &str) -> Result<Option<ContainerInfo>> {
        let containers = self.podman.containers();
        let found = self
            .call(Operation::Create, name, containers.get(name).inspect())
            .await;
        match found {
            Ok(r) => Ok(Some(convert::container_info(r))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn client(endpoint: &str) -> Result<(Podman, Transport)> {
    let path = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.starts_with('/').then_some(endpoint));
    if let Some(path) = path {
        let transport = Transport::Unix {
            client: hyper::Client::builder().build(hyperlocal::UnixConnector),
            path: path.into(),
        };
        return Ok((Podman::unix(path), transport));
    }
    let host = endpoint
        .strip_prefix("tcp://")
        .or_else(|| endpoint.strip_prefix("http://"))
        .ok_or_else(|| {
            Error::invalid_input(format!(
                "endpoint {endpoint:?} must be unix://, tcp://, http:// or a socket path"
            ))
        })?;
    let podman = Podman::tcp(host).map_err(map_error)?;
    let url = url::Url::parse(&format!("http://{host}"))
        .map_err(|e| Error::invalid_input(format!("endpoint {endpoint:?}")).with_source(e))?;
    let transport = Transport::Tcp {
        client: hyper::Client::builder().build(containers_api::conn::get_http_connector()),
        host: url,
    };
    Ok((podman, transport))
}

/// Ok for "already in the target state": libpod answers 304, which podman-api raises as
/// an error.
fn ok_if_not_modified(r: Result<()>) -> Result<()> {
    match r {
        Err(e) if is_not_modified(&e) => Ok(()),
        other => other,
    }
}

fn is_not_modified(e: &Error) -> bool {
    use std::error::Error as _;
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(podman_api::Error::Fault { code, .. }) = s.downcast_ref::<podman_api::Error>() {
            return code.as_u16() == 304;
        }
        source = s.source();
    }
    false
}

fn ok_if_missing(r: Result<()>) -> Result<()> {
    match r {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Reads a stream of frames inside its own task (podman-api's decoder panics on an
/// unknown stream id) and hands them over through a one-slot channel: backpressure kept,
/// a panic becomes an `Internal` error. `read` makes the frames (it may borrow what it
/// owns) and passes each one to [`forward`].
fn frames_in_task<F, Fut>(read: F, op: Operation, resource: String) -> LogStream
where
    F: FnOnce(Frames) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<OutputChunk>>(1);
    let task = tokio::spawn(read(tx));
    futures::stream::unfold((rx, Some(task)), move |(mut rx, task)| {
        let resource = resource.clone();
        async move {
            match rx.recv().await {
                Some(item) => Some((
                    item.map_err(|e| e.context(BACKEND, op, resource)),
                    (rx, task),
                )),
                None => match task?.await {
                    Ok(()) => None,
                    Err(e) => Some((
                        Err(text_error(&format!("output could not be decoded: {e}"))
                            .context(BACKEND, op, resource)),
                        (rx, None),
                    )),
                },
            }
        }
    })
    .boxed()
}

/// Where [`frames_in_task`]'s reader sends the frames.
type Frames = tokio::sync::mpsc::Sender<Result<OutputChunk>>;

/// Sends each frame of `frames` to `tx` until either side ends.
async fn forward<S>(frames: S, tx: Frames)
where
    S: futures::Stream<Item = std::result::Result<TtyChunk, podman_api::Error>>,
{
    let mut frames = std::pin::pin!(frames);
    while let Some(item) = frames.next().await {
        let item = match item {
            Ok(TtyChunk::StdOut(d)) => Ok((StreamKind::Stdout, d)),
            Ok(TtyChunk::StdErr(d)) => Ok((StreamKind::Stderr, d)),
            Ok(TtyChunk::StdIn(_)) => continue,
            Err(e) => Err(map_error(e)),
        };
        let item = item.map(|(stream, data)| OutputChunk {
            stream,
            data: Bytes::from(data),
        });
        if tx.send(item).await.is_err() {
            return;
        }
    }
}

#[async_trait]
impl ContainerManager for PodmanManager {
    fn backend(&self) -> BackendKind {
        BackendKind::Podman
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
        let info = self
            .call(Operation::Info, &self.endpoint, self.podman.info())
            .await?;
        let (version, api_version) = match info.version {
            Some(v) => (v.version, v.api_version),
            None => (None, None),
        };
        let (os, arch) = match info.host {
            Some(h) => (h.os, h.arch),
            None => (None, None),
        };
        Ok(EngineInfo {
            backend: BackendKind::Podman,
            // The libpod API exists only on Podman.
            engine: BackendKind::Podman,
            version: version.unwrap_or_default(),
            api_version,
            os: os.unwrap_or_default(),
            arch: arch.unwrap_or_default(),
            endpoint: self.endpoint.clone(),
        })
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "pull", resource = image))]
    async fn pull(&self, image: &str, options: &PullOptions) -> Result<()> {
        crate::pull::pull(&self.podman, image, options).await
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "image_exists", resource = image))]
    async fn image_exists(&self, image: &str) -> Result<bool> {
        let r = ImageRef::parse(image)
            .map_err(|e| e.context(BACKEND, Operation::ImageExists, image.to_string()))?;
        let local = crate::pull::image_ref_for_engine(&r);
        let images = self.podman.images();
        self.call(
            Operation::ImageExists,
            image,
            images.get(local.as_str()).exists(),
        )
        .await
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "remove_image", resource = image))]
    async fn remove_image(&self, image: &str, force: bool) -> Result<()> {
        let r = ImageRef::parse(image)
            .map_err(|e| e.context(BACKEND, Operation::RemoveImage, image.to_string()))?;
        let local = crate::pull::image_ref_for_engine(&r);
        let images = self.podman.images();
        let handle = images.get(local.as_str());
        let r = if force {
            self.call(Operation::RemoveImage, image, handle.remove())
                .await
        } else {
            // libpod merely untags an image that has other names, even when a container
            // uses it; Docker refuses. Refuse likewise.
            let opts = ContainerListOpts::builder()
                .all(true)
                .filter([ContainerListFilter::Ancestor(ImageOpt::Name(
                    local.as_str().into(),
                ))])
                .build();
            let containers = self.podman.containers();
            let users = self
                .call(Operation::RemoveImage, image, containers.list(&opts))
                .await?;
            if let Some(user) = users.into_iter().next() {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "image is in use by container {}",
                        user.id.unwrap_or_default()
                    ),
                )
                .context(BACKEND, Operation::RemoveImage, image.to_string()));
            }
            self.call(Operation::RemoveImage, image, handle.delete())
                .await
        };
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
        let mut config = config.clone();
        config.name = Some(name.clone());
        let spec = convert::create_spec(&config, &labels);
        let body = serde_json::to_vec(&spec).map_err(|e| {
            Error::new(ErrorKind::Internal, "cannot encode the create request")
                .with_source(e)
                .context(BACKEND, Operation::Create, name.clone())
        })?;
        self.ownership
            .create_idempotent(
                &name,
                &labels,
                || async {
                    let bytes = self
                        .call(
                            Operation::Create,
                            &name,
                            self.raw(
                                Method::POST,
                                "/libpod/containers/create",
                                Body::from(body.clone()),
                                "application/json",
                            ),
                        )
                        .await?;
                    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                        Error::new(ErrorKind::Internal, "unreadable create response").with_source(e)
                    })?;
                    Ok(v["Id"].as_str().unwrap_or_default().to_string())
                },
                || self.find_by_name(&name),
            )
            .await
            .map_err(|e| e.context(BACKEND, Operation::Create, name.clone()))
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "start", resource = id))]
    async fn start(&self, id: &str) -> Result<()> {
        validate::container_ref(id).map_err(|e| e.context(BACKEND, Operation::Start, id))?;
        let containers = self.podman.containers();
        let r = self
            .call(Operation::Start, id, containers.get(id).start(None))
            .await;
        ok_if_not_modified(r)
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "stop", resource = id))]
    async fn stop(&self, id: &str, grace: Option<Duration>) -> Result<()> {
        validate::container_ref(id).map_err(|e| e.context(BACKEND, Operation::Stop, id))?;
        // Sent by hand: podman-api sends `Timeout`, which Podman 4.3 ignores.
        let endpoint = match grace {
            Some(g) => format!(
                "/libpod/containers/{id}/stop?timeout={}",
                convert::ceil_secs(g)
            ),
            None => format!("/libpod/containers/{id}/stop"),
        };
        // The engine waits up to the grace before killing: allow for it.
        let limit = self.call_timeout + grace.unwrap_or(Duration::from_secs(10));
        let r = self
            .call_within(
                limit,
                Operation::Stop,
                id,
                self.raw(Method::POST, &endpoint, Body::empty(), "application/json"),
            )
            .await
            .map(|_| ());
        ok_if_not_modified(r)
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "kill", resource = id))]
    async fn kill(&self, id: &str, signal: &str) -> Result<()> {
        let ctx = |e: Error| e.context(BACKEND, Operation::Kill, id.to_string());
        validate::container_ref(id).map_err(ctx)?;
        let signal: Signal = signal.parse().map_err(ctx)?;
        let containers = self.podman.containers();
        self.call(
            Operation::Kill,
            id,
            containers.get(id).send_signal(signal.name()),
        )
        .await
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "remove", resource = id))]
    async fn remove(&self, id: &str, force: bool) -> Result<()> {
        validate::container_ref(id).map_err(|e| e.context(BACKEND, Operation::Remove, id))?;
        let mut opts = ContainerDeleteOpts::builder().volumes(true).force(force);
        if force {
            // No stop grace for a forced removal (and the parameter Podman 4.3 reads).
            opts = opts.timeout(0);
        }
        let containers = self.podman.containers();
        let r = self
            .call(
                Operation::Remove,
                id,
                containers.get(id).delete(&opts.build()),
            )
            .await;
        match r {
            // Another caller is removing it: wait until it is gone, then it is done.
            Err(e) if e.kind() != ErrorKind::NotFound && e.to_string().contains("in progress") => {
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
        let containers = self.podman.containers();
        self.call(Operation::Inspect, id, containers.get(id).inspect())
            .await
            .map(convert::container_info)
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "wait", resource = id))]
    async fn wait(&self, id: &str) -> Result<i64> {
        validate::container_ref(id).map_err(|e| e.context(BACKEND, Operation::Wait, id))?;
        let containers = self.podman.containers();
        // libpod's wait answers without the exit code: read it from inspect afterwards.
        containers
            .get(id)
            .wait(&Default::default())
            .await
            .map_err(|e| map_error(e).context(BACKEND, Operation::Wait, id.to_string()))?;
        self.inspect(id).await.map(|i| match i.state {
            container_core::ContainerState::Exited(c) => c,
            _ => 0,
        })
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "list"))]
    async fn list(&self, labels: &Labels) -> Result<Vec<ContainerInfo>> {
        let opts = ContainerListOpts::builder().all(true).filter(
            labels
                .iter()
                .map(|(k, v)| ContainerListFilter::LabelKeyVal(k.clone(), v.clone())),
        );
        let containers = self.podman.containers();
        let found = self
            .call(
                Operation::List,
                &self.endpoint,
                containers.list(&opts.build()),
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
        let opts = ContainerLogsOpts::builder()
            .follow(options.follow)
            .stdout(options.stdout)
            .stderr(options.stderr)
            .build();
        let podman = self.podman.clone();
        let owned = id.to_string();
        let read = move |tx| async move {
            let containers = podman.containers();
            let handle = containers.get(owned);
            forward(handle.logs(&opts), tx).await;
        };
        Ok(frames_in_task(read, Operation::Logs, id.to_string()))
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "exec", resource = id))]
    async fn exec_stream(&self, id: &str, spec: &ExecSpec) -> Result<ExecStream> {
        validate::container_ref(id)
            .and_then(|()| validate::exec_spec(spec))
            .map_err(|e| e.context(BACKEND, Operation::Exec, id))?;
        crate::exec::start(&self.podman, id, spec, self.call_timeout).await
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
        let containers = self.podman.containers();
        let handle = containers.get(id);
        let body = handle
            .copy_from(container_path)
            .map(|chunk| chunk.map(Bytes::from).map_err(map_error));
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
        // Stream the archive from its file: memory stays bounded whatever its size.
        let (mut sender, body) = Body::channel();
        let feeding = tokio::spawn(async move {
            let mut file = tokio::fs::File::from_std(file);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match file.read(&mut buf).await {
                    Ok(0) => return,
                    Ok(n) => {
                        if sender
                            .send_data(Bytes::copy_from_slice(&buf[..n]))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "reading the archive failed");
                        sender.abort();
                        return;
                    }
                }
            }
        });
        let endpoint = format!(
            "/libpod/containers/{id}/archive?path={}",
            url::form_urlencoded::byte_serialize(container_dir.as_bytes()).collect::<String>()
        );
        let r = self
            .call(
                Operation::CopyTo,
                id,
                self.raw(Method::PUT, &endpoint, body, "application/x-tar"),
            )
            .await
            .map(|_| ());
        feeding.abort();
        r
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "create_volume", resource = config.name))]
    async fn create_volume(&self, config: &VolumeConfig) -> Result<VolumeInfo> {
        validate::volume_config(config)
            .map_err(|e| e.context(BACKEND, Operation::CreateVolume, config.name.clone()))?;
        let opts = VolumeCreateOpts::builder()
            .name(&config.name)
            .labels(self.ownership.volume_labels(config))
            .build();
        let volumes = self.podman.volumes();
        match self
            .call(Operation::CreateVolume, &config.name, volumes.create(&opts))
            .await
        {
            Ok(v) => Ok(convert::created_volume_info(v)),
            // An existing volume of that name is the result (idempotent, as on Docker).
            Err(e) if e.kind() == ErrorKind::Conflict => self.inspect_volume(&config.name).await,
            Err(e) => Err(e),
        }
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "inspect_volume", resource = name))]
    async fn inspect_volume(&self, name: &str) -> Result<VolumeInfo> {
        validate::volume_name(name)
            .map_err(|e| e.context(BACKEND, Operation::InspectVolume, name))?;
        let volumes = self.podman.volumes();
        self.call(Operation::InspectVolume, name, volumes.get(name).inspect())
            .await
            .map(convert::volume_info)
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "list_volumes"))]
    async fn list_volumes(&self, labels: &Labels) -> Result<Vec<VolumeInfo>> {
        let opts = VolumeListOpts::builder()
            .filter(
                labels
                    .iter()
                    .map(|(k, v)| VolumeListFilter::LabelKeyVal(k.clone(), v.clone())),
            )
            .build();
        let volumes = self.podman.volumes();
        let found = self
            .call(Operation::ListVolumes, &self.endpoint, volumes.list(&opts))
            .await?;
        Ok(found
            .into_iter()
            .map(convert::volume_info)
            .filter(|v| labels.iter().all(|(k, val)| v.labels.get(k) == Some(val)))
            .collect())
    }

    #[instrument(skip_all, fields(backend = BACKEND, operation = "remove_volume", resource = name))]
    async fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        validate::volume_name(name)
            .map_err(|e| e.context(BACKEND, Operation::RemoveVolume, name))?;
        let volumes = self.podman.volumes();
        let handle = volumes.get(name);
        let r = if force {
            self.call(Operation::RemoveVolume, name, handle.remove())
                .await
        } else {
            self.call(Operation::RemoveVolume, name, handle.delete())
                .await
        };
        ok_if_missing(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_modified_is_recognised_through_the_context() {
        let e = map_error(podman_api::Error::Fault {
            code: hyper::StatusCode::NOT_MODIFIED,
            message: String::new(),
        })
        .context(BACKEND, Operation::Start, "x");
        assert!(is_not_modified(&e));
        assert!(ok_if_not_modified(Err(e)).is_ok());
    }

    #[test]
    fn endpoints_are_parsed() {
        assert!(client("unix:///run/podman/podman.sock").is_ok());
        assert!(client("tcp://127.0.0.1:8080").is_ok());
        let e = client("ftp://x").expect_err("bad scheme");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
}
