//! Podman's libpod REST API as a [`raw::Engine`](container_core::raw::Engine): engine
//! calls and conversion only; the contract (validation, context, timeouts, retries,
//! idempotency) is core's [`EngineManager`].

use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use container_core::raw::{
    ceil_secs, ByteStream, Engine, EngineManager, ExecState, OutputStream, PullRequest, Removal,
};
use container_core::{
    BackendKind, Capabilities, ConnectOptions, ContainerConfig, ContainerInfo, EngineInfo, Error,
    ErrorKind, ExecSpec, ImageRef, Labels, LogOptions, Result, Signal, Ulimit, VolumeInfo,
};
use containers_api::conn::hyper::{self, Body, Method, Request};
use containers_api::conn::Transport;
use futures::StreamExt;
use podman_api::opts::{
    ContainerDeleteOpts, ContainerListFilter, ContainerListOpts, ImageOpt, VolumeCreateOpts,
    VolumeListFilter, VolumeListOpts,
};
use podman_api::Podman;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::convert;
use crate::error::{map_error, not_modified_ok, removal};
use crate::exec::PodmanExec;
use container_core::oom::OomWatch;

/// The default endpoint when neither the options nor `CONTAINER_HOST` name one.
pub const DEFAULT_ENDPOINT: &str = "unix:///run/podman/podman.sock";

/// The API version prefix of the requests this backend sends itself.
const API_PREFIX: &str = "/v4.0.0";

/// A [`ContainerManager`](container_core::ContainerManager) on a Podman service.
pub type PodmanManager = EngineManager<PodmanEngine>;

/// Connects to the service named by `options.endpoint`, else `CONTAINER_HOST` (as
/// podman-remote), else the caller's rootless socket (`$XDG_RUNTIME_DIR/podman/podman.sock`,
/// when not root and it exists), else the root socket. `unix://` paths and plain `tcp://` /
/// `http://` endpoints are supported.
/// Fails with `Unavailable` if the service does not answer within the connect timeout.
pub async fn connect(options: ConnectOptions) -> Result<PodmanManager> {
    let endpoint = options
        .endpoint
        .clone()
        .or_else(|| {
            std::env::var("CONTAINER_HOST")
                .ok()
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(default_endpoint);
    EngineManager::connect(
        BackendKind::Podman,
        &endpoint,
        options,
        |endpoint, _| async move {
            let (podman, transport) = client(&endpoint)?;
            let local = matches!(transport, Transport::Unix { .. });
            Ok(PodmanEngine {
                rootless: local && !rustix::process::geteuid().is_root(),
                podman,
                transport,
                endpoint,
                oom: OomWatch::default(),
                ulimit_defaults: Arc::default(),
            })
        },
    )
    .await
}

/// Whether this host runs the unified cgroup hierarchy (v2) alone: only there can a
/// rootless engine (this host's, a local socket) apply resource limits.
fn unified_cgroups() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").is_file()
}

/// The root socket for root; for other users their rootless service's socket
/// (`$XDG_RUNTIME_DIR/podman/podman.sock`) when it exists.
fn default_endpoint() -> String {
    let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR").map(std::path::PathBuf::from);
    endpoint_for(rustix::process::geteuid().is_root(), runtime_dir.as_deref())
}

fn endpoint_for(root: bool, runtime_dir: Option<&std::path::Path>) -> String {
    if !root {
        if let Some(socket) = runtime_dir.map(|d| d.join("podman/podman.sock")) {
            if socket.exists() {
                return format!("unix://{}", socket.display());
            }
        }
    }
    DEFAULT_ENDPOINT.to_string()
}

/// The libpod API through podman-api; see [`connect`].
#[derive(Debug, Clone)]
pub struct PodmanEngine {
    podman: Podman,
    /// The same endpoint for the requests podman-api cannot make (create with named
    /// volumes, stop with a timeout, streamed archive upload).
    transport: Transport,
    endpoint: String,
    /// OOM kills libpod does not report (cgroup v1).
    oom: OomWatch,
    /// The service's default ulimits, once learned.
    ulimit_defaults: Arc<tokio::sync::OnceCell<Vec<Ulimit>>>,
    /// A rootless service: a local socket and a caller that is not root (Podman 4.3
    /// refuses keep-id when rootful).
    rootless: bool,
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

impl PodmanEngine {
    /// The service's default ulimits, learned once from a probe container created (never
    /// started) with `config`'s image and `labels`, then removed. The probe runs in a
    /// task of its own: a caller that gives up midway never leaves the probe behind.
    async fn default_ulimits(
        &self,
        config: &ContainerConfig,
        labels: &Labels,
    ) -> Result<Vec<Ulimit>> {
        self.ulimit_defaults
            .get_or_try_init(|| async {
                let (engine, image, labels) = (self.clone(), config.image.clone(), labels.clone());
                tokio::spawn(async move { engine.probe_ulimits(&image, &labels).await })
                    .await
                    .map_err(|e| {
                        Error::new(ErrorKind::Internal, "the ulimit probe task failed")
                            .with_source(e)
                    })?
            })
            .await
            .cloned()
    }

    /// Creates the probe, reads its ulimits, removes it.
    async fn probe_ulimits(&self, image: &str, labels: &Labels) -> Result<Vec<Ulimit>> {
        let probe = format!("crs-ulimits-{}", uuid::Uuid::new_v4().simple());
        let spec = serde_json::json!({
            "image": image,
            "name": probe,
            "command": ["true"],
            "labels": labels,
            "netns": {"nsmode": "none"},
        });
        self.create_raw(&spec, "the probe").await?;
        let containers = self.podman.containers();
        let handle = containers.get(&probe);
        let inspected = handle.inspect().await.map_err(map_error);
        let opts = ContainerDeleteOpts::builder()
            .force(true)
            .timeout(0)
            .build();
        if let Err(e) = handle.delete(&opts).await {
            tracing::warn!(container = %probe, error = %map_error(e), "probe not removed");
        }
        Ok(convert::default_ulimits(&inspected?))
    }

    /// The podman-api client, for what this crate does not wrap.
    pub fn client(&self) -> &Podman {
        &self.podman
    }

    /// One request podman-api cannot make (or decode safely); a failure status becomes
    /// the same `Fault` podman-api raises (so [`map_error`] handles both alike). With
    /// `upgrade`, the connection is asked to switch to the raw attach stream.
    async fn send(
        &self,
        method: Method,
        endpoint: &str,
        body: Body,
        content_type: &str,
        upgrade: bool,
    ) -> std::result::Result<hyper::Response<Body>, podman_api::Error> {
        let uri = self
            .transport
            .make_uri(&format!("{API_PREFIX}{endpoint}"))
            .map_err(podman_api::Error::from)?;
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", content_type);
        if upgrade {
            request = request
                .header("connection", "Upgrade")
                .header("upgrade", "tcp");
        }
        let request = request
            .body(body)
            .map_err(|e| podman_api::Error::from(containers_api::conn::Error::from(e)))?;
        let response = self
            .transport
            .request(request)
            .await
            .map_err(podman_api::Error::from)?;
        let status = response.status();
        if status.is_success() || status == hyper::StatusCode::SWITCHING_PROTOCOLS {
            return Ok(response);
        }
        let bytes = hyper::body::to_bytes(response.into_body())
            .await
            .map_err(|e| podman_api::Error::from(containers_api::conn::Error::from(e)))?;
        Err(fault(status, &bytes))
    }

    /// libpod's inspect of container `id`, as it answers.
    async fn inspect_libpod(
        &self,
        id: &str,
    ) -> Result<podman_api::models::ContainerInspectResponseLibpod> {
        self.podman
            .containers()
            .get(id)
            .inspect()
            .await
            .map_err(map_error)
    }

    /// `POST endpoint` with `body`, upgraded to a raw connection (the attach of an exec
    /// or of a container's stdin: `what`).
    async fn upgraded(
        &self,
        endpoint: &str,
        body: Body,
        what: &str,
    ) -> Result<hyper::upgrade::Upgraded> {
        let response = self
            .send(Method::POST, endpoint, body, "application/json", true)
            .await
            .map_err(map_error)?;
        if response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "libpod did not upgrade the {what} connection ({})",
                    response.status()
                ),
            ));
        }
        hyper::upgrade::on(response).await.map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("the {what} connection was not upgraded"),
            )
            .with_source(e)
        })
    }

    /// `POST /libpod/containers/create` with `spec` (`what` names it in an encoding
    /// error); the answer's bytes.
    async fn create_raw(&self, spec: &serde_json::Value, what: &str) -> Result<Bytes> {
        let body = serde_json::to_vec(spec).map_err(|e| {
            Error::new(ErrorKind::Internal, format!("cannot encode {what}")).with_source(e)
        })?;
        self.raw(
            Method::POST,
            "/libpod/containers/create",
            Body::from(body),
            "application/json",
        )
        .await
        .map_err(map_error)
    }

    /// [`send`](Self::send) for a request whose whole answer is read.
    async fn raw(
        &self,
        method: Method,
        endpoint: &str,
        body: Body,
        content_type: &str,
    ) -> std::result::Result<Bytes, podman_api::Error> {
        let response = self
            .send(method, endpoint, body, content_type, false)
            .await?;
        let status = response.status();
        let bytes = hyper::body::to_bytes(response.into_body())
            .await
            .map_err(|e| podman_api::Error::from(containers_api::conn::Error::from(e)))?;
        if status.is_success() {
            return Ok(bytes);
        }
        Err(fault(status, &bytes))
    }
}

/// libpod's error body (`{"message": ...}`) as the `Fault` podman-api raises.
fn fault(status: hyper::StatusCode, body: &[u8]) -> podman_api::Error {
    let text = String::from_utf8_lossy(body);
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| text.trim().to_string());
    podman_api::Error::Fault {
        code: status,
        message,
    }
}

#[async_trait]
impl Engine for PodmanEngine {
    type Exec = PodmanExec;

    fn capabilities(&self) -> Capabilities {
        // keep-id needs a rootless service: one on a local socket of a non-root caller.
        // A rootless service on cgroup v1 (or hybrid) accepts memory, CPU and pids limits
        // and ignores them ("Resource limits are not supported and ignored on cgroups V1
        // rootless systems"): no limits there, rather than limits that are not.
        // libpod (conmon) closes an exec's attach only once its process exited.
        let limits = !self.rootless || unified_cgroups();
        Capabilities::oci_engine()
            .with_resource_limits(limits)
            .with_userns_keep_id(self.rootless)
            .with_attach_until_exit(true)
            .with_attach_stdin(true)
    }

    async fn ping(&self) -> Result<()> {
        // `version` and `info` take up to a second on Podman 4.3; ping is instant.
        self.podman.ping().await.map(|_| ()).map_err(map_error)
    }

    async fn info(&self) -> Result<EngineInfo> {
        let info = self.podman.info().await.map_err(map_error)?;
        Ok(convert::engine_info(info, &self.endpoint))
    }

    async fn pull(&self, request: PullRequest<'_>) -> Result<Option<String>> {
        crate::pull::pull_once(&self.podman, request).await
    }

    async fn image_exists(&self, image: &ImageRef) -> Result<bool> {
        let images = self.podman.images();
        let local = image.engine_name();
        images.get(local.as_str()).exists().await.map_err(map_error)
    }

    async fn remove_image(&self, image: &ImageRef, force: bool) -> Result<()> {
        let local = image.engine_name();
        let images = self.podman.images();
        let handle = images.get(local.as_str());
        if force {
            return handle.remove().await.map_err(map_error);
        }
        // libpod merely untags an image that has other names, even when a container
        // uses it; Docker refuses. Refuse likewise.
        let opts = ContainerListOpts::builder()
            .all(true)
            .filter([ContainerListFilter::Ancestor(ImageOpt::Name(
                local.as_str().into(),
            ))])
            .build();
        let users = self
            .podman
            .containers()
            .list(&opts)
            .await
            .map_err(map_error)?;
        if let Some(user) = users.into_iter().next() {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "image is in use by container {}",
                    user.id.unwrap_or_default()
                ),
            ));
        }
        handle.delete().await.map_err(map_error)
    }

    async fn create(
        &self,
        name: &str,
        config: &ContainerConfig,
        labels: &Labels,
    ) -> Result<String> {
        let defaults = if config.resources.ulimits.is_empty() {
            Vec::new()
        } else {
            self.default_ulimits(config, labels).await?
        };
        // A rootless service maps container ids to subordinate ones: the caller's own
        // account (the service's user) is kept as itself (keep-id), so that what it
        // writes into bind mounts is the caller's on the host (ADR 0013).
        let own_account = self.rootless
            && config
                .account
                .as_ref()
                .is_some_and(|a| a.uid == rustix::process::geteuid().as_raw());
        let keep_id;
        let config = if own_account && !config.keep_id {
            keep_id = config.clone().keep_id(true);
            &keep_id
        } else {
            config
        };
        let spec = convert::create_spec(name, config, labels, &defaults)?;
        let bytes = self.create_raw(&spec, "the create request").await?;
        convert::created_id(&bytes)
    }

    async fn start(&self, id: &str) -> Result<()> {
        let containers = self.podman.containers();
        let handle = containers.get(id);
        let info = handle.inspect().await.map_err(map_error)?;
        let limited = info
            .host_config
            .as_ref()
            .and_then(|h| h.memory)
            .is_some_and(|m| m > 0);
        let idle = matches!(
            info.state.as_ref().and_then(|s| s.status.as_deref()),
            Some("created" | "configured" | "exited" | "stopped")
        );
        if limited && idle {
            // Create first (the cgroup exists, the process waits), arm the OOM watch,
            // then start: see `oom`.
            not_modified_ok(handle.init().await)?;
            let started = handle.inspect().await.map_err(map_error)?;
            let pid = started.state.as_ref().and_then(|s| s.pid);
            if let (Some(id), Some(pid)) = (started.id, pid.and_then(|p| i32::try_from(p).ok())) {
                let oom = self.oom.clone();
                let armed = tokio::task::spawn_blocking(move || oom.arm(&id, pid))
                    .await
                    .unwrap_or(false);
                tracing::debug!(armed, "OOM watch");
            }
        }
        not_modified_ok(handle.start(None).await)
    }

    async fn stop(&self, id: &str, grace: Option<Duration>) -> Result<()> {
        // Sent by hand: podman-api sends `Timeout`, which Podman 4.3 ignores.
        let endpoint = match grace {
            Some(g) => format!("/libpod/containers/{id}/stop?timeout={}", ceil_secs(g)),
            None => format!("/libpod/containers/{id}/stop"),
        };
        let r = self
            .raw(Method::POST, &endpoint, Body::empty(), "application/json")
            .await;
        not_modified_ok(r.map(|_| ()))
    }

    async fn kill(&self, id: &str, signal: Signal) -> Result<()> {
        let containers = self.podman.containers();
        containers
            .get(id)
            .send_signal(signal.name())
            .await
            .map_err(map_error)
    }

    async fn remove(&self, id: &str, force: bool) -> Result<Removal> {
        let mut opts = ContainerDeleteOpts::builder().volumes(true).force(force);
        if force {
            // No stop grace for a forced removal (and the parameter Podman 4.3 reads).
            opts = opts.timeout(0);
        }
        let containers = self.podman.containers();
        removal(containers.get(id).delete(&opts.build()).await)
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInfo> {
        let containers = self.podman.containers();
        let mut info = containers
            .get(id)
            .inspect()
            .await
            .map(convert::container_info)
            .map_err(map_error)?;
        info.oom_killed |= self.oom.killed(&info.id);
        Ok(info)
    }

    async fn wait(&self, id: &str) -> Result<Option<i64>> {
        // libpod's wait answers without the exit code: core reads it from inspect.
        let containers = self.podman.containers();
        containers
            .get(id)
            .wait(&Default::default())
            .await
            .map_err(map_error)?;
        Ok(None)
    }

    async fn list(&self, labels: &Labels) -> Result<Vec<ContainerInfo>> {
        let opts = ContainerListOpts::builder().all(true).filter(
            labels
                .iter()
                .map(|(k, v)| ContainerListFilter::LabelKeyVal(k.clone(), v.clone())),
        );
        let containers = self.podman.containers();
        let found = containers.list(&opts.build()).await.map_err(map_error)?;
        Ok(found.into_iter().map(convert::summary_info).collect())
    }

    async fn logs(&self, id: &str, options: &LogOptions) -> Result<OutputStream> {
        // Framed even for a TTY (its output comes as stdout frames).
        // Requested by hand and decoded by `frames`: podman-api's decoder can panic.
        let endpoint = format!(
            "/libpod/containers/{id}/logs?follow={}&stdout={}&stderr={}",
            options.follow, options.stdout, options.stderr
        );
        let response = self
            .send(
                Method::GET,
                &endpoint,
                Body::empty(),
                "application/json",
                false,
            )
            .await
            .map_err(map_error)?;
        let body = response.into_body();
        Ok(crate::frames::decode(
            tokio_util::io::StreamReader::new(
                body.map(|chunk| chunk.map_err(std::io::Error::other)),
            ),
            false,
        ))
    }

    async fn attach_stdin(
        &self,
        id: &str,
        source: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    ) -> Result<tokio::task::AbortHandle> {
        let info = self.inspect_libpod(id).await?;
        let config = info.config.as_ref();
        if !config.and_then(|c| c.open_stdin).unwrap_or(false) {
            return Err(container_core::raw::no_open_stdin(id));
        }
        if !info.state.and_then(|s| s.running).unwrap_or(false) {
            return Err(container_core::raw::not_running_for_stdin(id));
        }
        // The output is read with `logs`. An empty `detachKeys` turns detaching off, so
        // any bytes pass; a TTY keeps the default keys (ctrl-p, ctrl-q), as `docker run
        // -it` and `podman run -it` do. libpod passes no input to a TTY attached without
        // stdout (seen on Podman 4.3): there the output is attached too, and drained.
        let tty = config.and_then(|c| c.tty).unwrap_or(false);
        let query = if tty {
            "stdin=true&stdout=true&stderr=false&stream=true"
        } else {
            "stdin=true&stdout=false&stderr=false&stream=true&detachKeys="
        };
        let endpoint = format!("/libpod/containers/{id}/attach?{query}");
        let upgraded = self.upgraded(&endpoint, Body::empty(), "attach").await?;
        let (reader, writer) = tokio::io::split(upgraded);
        // A TTY's attached output, drained until it ends (aborted with the feed).
        let drain = tty.then(|| {
            let mut reader = reader;
            tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
                let _ = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await;
            }))
        });
        Ok(container_core::exec::feed_stdin(
            source,
            async move { Ok(writer) },
            |mut writer| async move {
                let _ = writer.shutdown().await;
                if let Some(drain) = drain {
                    let _ = drain.await;
                }
            },
        ))
    }

    async fn resize_tty(&self, id: &str, rows: u16, cols: u16) -> Result<()> {
        let info = self.inspect_libpod(id).await?;
        if !info.config.and_then(|c| c.tty).unwrap_or(false) {
            return Err(container_core::raw::no_tty(id));
        }
        let endpoint = format!("/libpod/containers/{id}/resize?h={rows}&w={cols}");
        self.send(
            Method::POST,
            &endpoint,
            Body::empty(),
            "application/json",
            false,
        )
        .await
        .map(drop)
        .map_err(map_error)
    }

    async fn exec_create(&self, container: &str, spec: &ExecSpec) -> Result<PodmanExec> {
        crate::exec::create(&self.podman, container, spec).await
    }

    async fn exec_start(&self, exec: &PodmanExec, spec: &ExecSpec) -> Result<OutputStream> {
        // Started by hand over an upgraded connection and decoded by `frames`:
        // podman-api's decoder can panic on a frame it does not expect.
        let body = serde_json::json!({"Detach": false, "Tty": spec.tty}).to_string();
        let endpoint = format!("/libpod/exec/{}/start", exec.id());
        let upgraded = self.upgraded(&endpoint, Body::from(body), "exec").await?;
        let (reader, mut writer) = tokio::io::split(upgraded);
        match spec.stdin_source() {
            // Feed stdin, then close our write half: the process sees EOF.
            Some(source) => {
                container_core::exec::feed_stdin(
                    source,
                    async move { Ok(writer) },
                    |mut writer| async move {
                        let _ = writer.shutdown().await;
                    },
                );
            }
            None => {
                let _ = writer.shutdown().await;
            }
        }
        // Buffered: a frame header is 8 bytes, and read straight from the connection
        // each cost a read of its own (conmon sends frames of a few KiB).
        let reader = tokio::io::BufReader::with_capacity(crate::frames::PIECE, reader);
        Ok(exec.watched(crate::frames::decode(reader, spec.tty)))
    }

    async fn exec_state(&self, exec: &PodmanExec) -> Result<ExecState> {
        exec.state().await
    }

    async fn copy_from(&self, id: &str, path: &str) -> Result<ByteStream> {
        // libpod's archive rounds mtimes to the nearest second; a `tar` run in the
        // container keeps them as stat says (whole seconds, as Docker's archive does).
        let running = self
            .inspect_libpod(id)
            .await?
            .state
            .is_some_and(|s| s.running == Some(true));
        if running {
            if let Some(archive) = container_core::raw::tar_out(self, id, path).await? {
                return Ok(archive);
            }
        }
        let (podman, id, path) = (self.podman.clone(), id.to_string(), path.to_string());
        Ok(crate::stream::in_task(move |tx| async move {
            let containers = podman.containers();
            let handle = containers.get(id);
            crate::stream::forward_bytes(handle.copy_from(path), tx).await;
        }))
    }

    async fn copy_to(&self, id: &str, dir: &str, archive: File) -> Result<()> {
        // Stream the archive from its file: memory stays bounded whatever its size.
        let (mut sender, body) = Body::channel();
        let feeding = tokio::spawn(async move {
            let mut file = tokio::fs::File::from_std(archive);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match file.read(&mut buf).await {
                    Ok(0) => return,
                    Ok(n) => {
                        let data = Bytes::copy_from_slice(&buf[..n]);
                        if sender.send_data(data).await.is_err() {
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
            url::form_urlencoded::byte_serialize(dir.as_bytes()).collect::<String>()
        );
        let r = self
            .raw(Method::PUT, &endpoint, body, "application/x-tar")
            .await
            .map(|_| ())
            .map_err(map_error);
        feeding.abort();
        r
    }

    async fn create_volume(&self, name: &str, labels: &Labels) -> Result<VolumeInfo> {
        let opts = VolumeCreateOpts::builder()
            .name(name)
            .labels(labels.clone())
            .build();
        // A name in use is `Conflict` here; core then inspects the existing volume.
        self.podman
            .volumes()
            .create(&opts)
            .await
            .map(convert::created_volume_info)
            .map_err(map_error)
    }

    async fn inspect_volume(&self, name: &str) -> Result<VolumeInfo> {
        let volumes = self.podman.volumes();
        volumes
            .get(name)
            .inspect()
            .await
            .map(convert::volume_info)
            .map_err(map_error)
    }

    async fn list_volumes(&self, labels: &Labels) -> Result<Vec<VolumeInfo>> {
        let opts = VolumeListOpts::builder()
            .filter(
                labels
                    .iter()
                    .map(|(k, v)| VolumeListFilter::LabelKeyVal(k.clone(), v.clone())),
            )
            .build();
        let found = self.podman.volumes().list(&opts).await.map_err(map_error)?;
        Ok(found.into_iter().map(convert::volume_info).collect())
    }

    async fn remove_volume(&self, name: &str, _force: bool) -> Result<()> {
        // Never libpod's force: it removes every container that uses the volume, running
        // ones and other owners' included. A volume in use is `Conflict`, as on Docker.
        self.podman
            .volumes()
            .get(name)
            .delete()
            .await
            .map_err(map_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootless_users_get_their_own_socket() {
        let dir = tempfile::tempdir().expect("tmp");
        assert_eq!(
            endpoint_for(false, Some(dir.path())),
            DEFAULT_ENDPOINT,
            "no socket yet"
        );
        std::fs::create_dir(dir.path().join("podman")).expect("mkdir");
        std::fs::write(dir.path().join("podman/podman.sock"), b"").expect("touch");
        let own = format!("unix://{}/podman/podman.sock", dir.path().display());
        assert_eq!(endpoint_for(false, Some(dir.path())), own);
        assert_eq!(
            endpoint_for(true, Some(dir.path())),
            DEFAULT_ENDPOINT,
            "root uses the root socket"
        );
        assert_eq!(endpoint_for(false, None), DEFAULT_ENDPOINT);
    }

    #[test]
    fn endpoints_are_parsed() {
        assert!(client("unix:///run/podman/podman.sock").is_ok());
        assert!(client("tcp://127.0.0.1:8080").is_ok());
        let e = client("ftp://x").expect_err("bad scheme");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
}
