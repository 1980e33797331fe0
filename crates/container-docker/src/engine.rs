//! The Docker Engine API as a [`raw::Engine`]: engine calls and conversion only; the
//! contract (validation, context, timeouts, retries, idempotency) is core's
//! [`EngineManager`].

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bollard::container::AttachContainerResults;
use bollard::models::SystemInfoCgroupVersionEnum;
use bollard::query_parameters::{
    AttachContainerOptions, DownloadFromContainerOptions, InspectContainerOptions,
    KillContainerOptions, ListContainersOptions, ListVolumesOptions, LogsOptions,
    RemoveContainerOptions, RemoveImageOptions, RemoveVolumeOptions, ResizeContainerTTYOptions,
    StartContainerOptions, StopContainerOptions, UploadToContainerOptions, WaitContainerOptions,
};
use bollard::{Docker, API_DEFAULT_VERSION};
use container_core::raw::{
    ByteStream, Engine, EngineManager, ExecState, OutputStream, PullRequest, Removal,
};
use container_core::{
    BackendKind, Capabilities, ConnectOptions, ContainerConfig, ContainerInfo, EngineInfo, Error,
    ErrorKind, ExecSpec, IdRange, ImageRef, Labels, LogOptions, Result, Signal, VolumeInfo,
};
use futures::{StreamExt, TryStreamExt};

use crate::convert;
use crate::error::{map_error, removal};
use crate::exec::DockerExec;

/// The default endpoint when neither the options nor `DOCKER_HOST` name one.
pub const DEFAULT_ENDPOINT: &str = "unix:///var/run/docker.sock";

/// A [`ContainerManager`](container_core::ContainerManager) on a Docker Engine.
pub type DockerManager = EngineManager<DockerEngine>;

/// Connects to the engine named by `options.endpoint`, else `DOCKER_HOST`, else the
/// default socket. `tcp://` endpoints use TLS when `DOCKER_TLS_VERIFY` is set or
/// `DOCKER_CERT_PATH` names a folder with `ca.pem`, `cert.pem`, `key.pem` (as the
/// Docker CLI does); `https://` always uses TLS, `http://` never does.
/// Fails with `Unavailable` if the engine does not answer within the connect timeout.
pub async fn connect(options: ConnectOptions) -> Result<DockerManager> {
    let endpoint = options
        .endpoint
        .clone()
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    EngineManager::connect(
        BackendKind::Docker,
        &endpoint,
        options,
        |endpoint, options| async move {
            // bollard's timeout covers a request up to its response headers; the manager
            // adds its own per-call deadline on top, and streams have their own. Version
            // negotiation is the first request: it also proves the engine answers.
            let secs = options.call_timeout.as_secs().max(1);
            let docker = client(&endpoint, secs)?
                .negotiate_version()
                .await
                .map_err(map_error)?;
            Ok(DockerEngine {
                docker,
                endpoint,
                host: Arc::default(),
            })
        },
    )
    .await
}

/// The Docker Engine API through bollard; see [`connect`].
#[derive(Debug, Clone)]
pub struct DockerEngine {
    docker: Docker,
    endpoint: String,
    /// What the daemon said of its host at the first `info` (the connect's ping).
    host: Arc<OnceLock<Host>>,
}

/// Facts of the daemon's host that decide what it can do.
#[derive(Debug, Clone, Copy)]
struct Host {
    /// A rootless daemon (rootlesskit's user namespace).
    rootless: bool,
    /// cgroup v1 (or hybrid): a rootless daemon has no cgroups of its own there.
    cgroup_v1: bool,
}

/// The socket path of a `unix://` (or bare path) endpoint.
fn unix_socket(endpoint: &str) -> Option<&str> {
    endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.starts_with('/').then_some(endpoint))
}

/// The uid and gid maps of the daemon that listens on `socket` (a rootless one, on this
/// host): the listener's pid from the socket's peer credentials, then its
/// `/proc/<pid>/uid_map` and `gid_map`. `None` when any of it cannot be read.
fn rootless_id_maps(socket: &str) -> Option<(Vec<IdRange>, Vec<IdRange>)> {
    let stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    let peer = rustix::net::sockopt::socket_peercred(&stream).ok()?;
    let pid = peer.pid.as_raw_nonzero().get();
    let read = |which: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/{which}"))
            .ok()
            .map(|text| id_ranges(&text))
    };
    Some((read("uid_map")?, read("gid_map")?))
}

/// The lines of a `/proc/<pid>/uid_map` (or `gid_map`): inside, outside, count. Parsed
/// here because procfs (0.17) does not read these files.
fn id_ranges(text: &str) -> Vec<IdRange> {
    text.lines()
        .filter_map(|line| {
            let mut n = line.split_whitespace().map(str::parse::<u32>);
            Some(IdRange {
                container_id: n.next()?.ok()?,
                host_id: n.next()?.ok()?,
                size: n.next()?.ok()?,
            })
        })
        .collect()
}

fn client(endpoint: &str, timeout_secs: u64) -> Result<Docker> {
    let tls = |addr: &str, (ca, cert, key): (PathBuf, PathBuf, PathBuf)| {
        Docker::connect_with_ssl(addr, &key, &cert, &ca, timeout_secs, API_DEFAULT_VERSION)
    };
    let docker = if let Some(path) = unix_socket(endpoint) {
        Docker::connect_with_unix(path, timeout_secs, API_DEFAULT_VERSION)
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

impl DockerEngine {
    /// The bollard client, for what this crate does not wrap.
    pub fn client(&self) -> &Docker {
        &self.docker
    }
}

#[async_trait]
impl Engine for DockerEngine {
    type Exec = DockerExec;

    fn capabilities(&self) -> Capabilities {
        // A rootless daemon on cgroup v1 takes memory, CPU and pids limits and drops them
        // (a warning in the create answer is all): no limits there, rather than limits
        // that are not. moby closes an exec's attach only once its process exited.
        let limits = self.host.get().is_none_or(|h| !(h.rootless && h.cgroup_v1));
        Capabilities::oci_engine()
            .with_resource_limits(limits)
            .with_attach_until_exit(true)
            .with_attach_stdin(true)
    }

    async fn ping(&self) -> Result<()> {
        // `/_ping`, what the docker CLI sends first: `info` would ask for `/version`
        // (the version negotiation just did) and `/info` again.
        self.docker.ping().await.map(drop).map_err(map_error)
    }

    async fn info(&self) -> Result<EngineInfo> {
        let (v, host) =
            tokio::try_join!(self.docker.version(), self.docker.info()).map_err(map_error)?;
        let rootless = host
            .security_options
            .iter()
            .flatten()
            .any(|o| o.split(',').any(|kv| kv == "name=rootless"));
        let cgroup_v1 = host.cgroup_version == Some(SystemInfoCgroupVersionEnum::_1);
        let _ = self.host.set(Host {
            rootless,
            cgroup_v1,
        });
        let mut info =
            convert::engine_info(v, &self.endpoint).with_resources(host.ncpu, host.mem_total);
        // The API does not say how a rootless daemon maps ids; its process does.
        if let (true, Some(socket)) = (rootless, unix_socket(&self.endpoint)) {
            let socket = socket.to_string();
            let maps = tokio::task::spawn_blocking(move || rootless_id_maps(&socket))
                .await
                .ok()
                .flatten();
            if let Some((uids, gids)) = maps {
                info = info.with_id_maps(uids, gids);
            }
        }
        Ok(info)
    }

    async fn pull(&self, request: PullRequest<'_>) -> Result<Option<String>> {
        crate::pull::pull_once(&self.docker, request).await
    }

    async fn image_exists(&self, image: &ImageRef) -> Result<bool> {
        match self
            .docker
            .inspect_image(&image.engine_name())
            .await
            .map_err(map_error)
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn remove_image(&self, image: &ImageRef, force: bool) -> Result<()> {
        let options = RemoveImageOptions {
            force,
            ..RemoveImageOptions::default()
        };
        self.docker
            .remove_image(&image.engine_name(), Some(options), None)
            .await
            .map(|_| ())
            .map_err(map_error)
    }

    async fn create(
        &self,
        name: &str,
        config: &ContainerConfig,
        labels: &Labels,
    ) -> Result<String> {
        let options = bollard::query_parameters::CreateContainerOptions {
            name: Some(name.to_string()),
            ..Default::default()
        };
        let body = convert::create_body(config, labels.clone())?;
        self.docker
            .create_container(Some(options), body)
            .await
            .map(|r| r.id)
            .map_err(map_error)
    }

    async fn start(&self, id: &str) -> Result<()> {
        // 304 (already running) arrives as Ok.
        self.docker
            .start_container(id, None::<StartContainerOptions>)
            .await
            .map_err(map_error)
    }

    async fn stop(&self, id: &str, grace: Option<Duration>) -> Result<()> {
        let t = grace.map(|g| i32::try_from(convert::ceil_secs(g)).unwrap_or(i32::MAX));
        let options = StopContainerOptions {
            t,
            ..StopContainerOptions::default()
        };
        self.docker
            .stop_container(id, Some(options))
            .await
            .map_err(map_error)
    }

    async fn kill(&self, id: &str, signal: Signal) -> Result<()> {
        let options = KillContainerOptions {
            signal: signal.name(),
        };
        self.docker
            .kill_container(id, Some(options))
            .await
            .map_err(map_error)
    }

    async fn remove(&self, id: &str, force: bool) -> Result<Removal> {
        let options = RemoveContainerOptions {
            force,
            v: true,
            ..RemoveContainerOptions::default()
        };
        removal(self.docker.remove_container(id, Some(options)).await)
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInfo> {
        self.docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map(convert::container_info)
            .map_err(map_error)
    }

    async fn wait(&self, id: &str) -> Result<Option<i64>> {
        let options = WaitContainerOptions {
            condition: "not-running".into(),
        };
        let mut s = self.docker.wait_container(id, Some(options));
        match s.next().await {
            Some(Ok(r)) => Ok(Some(r.status_code)),
            // bollard turns a non-zero exit into an error: it is a result here.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                Ok(Some(code))
            }
            Some(Err(e)) => Err(map_error(e)),
            None => Ok(None),
        }
    }

    async fn list(&self, labels: &Labels) -> Result<Vec<ContainerInfo>> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(convert::label_filters(labels)),
            ..ListContainersOptions::default()
        };
        let found = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(map_error)?;
        Ok(found.into_iter().map(convert::summary_info).collect())
    }

    async fn logs(&self, id: &str, options: &LogOptions) -> Result<OutputStream> {
        let query = LogsOptions {
            follow: options.follow,
            stdout: options.stdout,
            stderr: options.stderr,
            tail: "all".into(),
            ..LogsOptions::default()
        };
        let stream = self
            .docker
            .logs(id, Some(query))
            .map_err(map_error)
            .try_filter_map(|log| async move { Ok(convert::output_chunk(log)) });
        Ok(stream.boxed())
    }

    async fn attach_stdin(
        &self,
        id: &str,
        source: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    ) -> Result<tokio::task::AbortHandle> {
        let info = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(map_error)?;
        if !info
            .config
            .as_ref()
            .and_then(|c| c.open_stdin)
            .unwrap_or(false)
        {
            return Err(container_core::raw::no_open_stdin(id));
        }
        if !info.state.as_ref().and_then(|s| s.running).unwrap_or(false) {
            return Err(container_core::raw::not_running_for_stdin(id));
        }
        // Input only: the output is read with `logs`. Without a TTY moby copies the
        // input as is (detach keys apply to TTYs only) and, the container being
        // `StdinOnce`, closes the process's stdin when ours ends.
        let options = AttachContainerOptions {
            stdin: true,
            stream: true,
            ..AttachContainerOptions::default()
        };
        let AttachContainerResults { output, input } = self
            .docker
            .attach_container(id, Some(options))
            .await
            .map_err(map_error)?;
        Ok(container_core::exec::feed_stdin(
            source,
            async move { Ok(input) },
            |mut input| async move {
                use tokio::io::AsyncWriteExt as _;
                let _ = input.shutdown().await;
                drop(output);
            },
        ))
    }

    async fn resize_tty(&self, id: &str, rows: u16, cols: u16) -> Result<()> {
        let info = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(map_error)?;
        if !info.config.as_ref().and_then(|c| c.tty).unwrap_or(false) {
            return Err(container_core::raw::no_tty(id));
        }
        let options = ResizeContainerTTYOptions {
            h: i32::from(rows),
            w: i32::from(cols),
        };
        self.docker
            .resize_container_tty(id, options)
            .await
            .map_err(map_error)
    }

    async fn exec_create(&self, container: &str, spec: &ExecSpec) -> Result<DockerExec> {
        crate::exec::create(&self.docker, container, spec).await
    }

    async fn exec_start(&self, exec: &DockerExec, spec: &ExecSpec) -> Result<OutputStream> {
        exec.start(&self.docker, spec).await
    }

    async fn exec_state(&self, exec: &DockerExec) -> Result<ExecState> {
        exec.state(&self.docker).await
    }

    async fn copy_from(&self, id: &str, path: &str) -> Result<ByteStream> {
        let options = DownloadFromContainerOptions {
            path: path.to_string(),
        };
        Ok(self
            .docker
            .download_from_container(id, Some(options))
            .map_err(map_error)
            .boxed())
    }

    async fn copy_to(&self, id: &str, dir: &str, archive: File) -> Result<()> {
        let body = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(archive));
        let options = UploadToContainerOptions {
            path: dir.to_string(),
            ..UploadToContainerOptions::default()
        };
        self.docker
            .upload_to_container(id, Some(options), bollard::body_try_stream(body))
            .await
            .map_err(map_error)
    }

    async fn create_volume(&self, name: &str, labels: &Labels) -> Result<VolumeInfo> {
        let request = bollard::models::VolumeCreateRequest {
            name: Some(name.to_string()),
            labels: Some(labels.clone().into_iter().collect()),
            ..Default::default()
        };
        // Docker returns the existing volume for a name that exists.
        self.docker
            .create_volume(request)
            .await
            .map(convert::volume_info)
            .map_err(map_error)
    }

    async fn inspect_volume(&self, name: &str) -> Result<VolumeInfo> {
        self.docker
            .inspect_volume(name)
            .await
            .map(convert::volume_info)
            .map_err(map_error)
    }

    async fn list_volumes(&self, labels: &Labels) -> Result<Vec<VolumeInfo>> {
        let options = ListVolumesOptions {
            filters: Some(convert::label_filters(labels)),
        };
        let r = self
            .docker
            .list_volumes(Some(options))
            .await
            .map_err(map_error)?;
        Ok(r.volumes
            .unwrap_or_default()
            .into_iter()
            .map(convert::volume_info)
            .collect())
    }

    async fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        self.docker
            .remove_volume(name, Some(RemoveVolumeOptions { force }))
            .await
            .map_err(map_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_maps_read_as_the_kernel_writes_them() {
        let text = "         0       2301          1\n         1     100000      65536\n";
        let range = |container_id, host_id, size| IdRange {
            container_id,
            host_id,
            size,
        };
        assert_eq!(
            id_ranges(text),
            [range(0, 2301, 1), range(1, 100_000, 65536)]
        );
        assert_eq!(id_ranges("garbage\n1 2\n"), []);
        assert_eq!(unix_socket("unix:///run/d.sock"), Some("/run/d.sock"));
        assert_eq!(unix_socket("/run/d.sock"), Some("/run/d.sock"));
        assert_eq!(unix_socket("tcp://127.0.0.1:2376"), None);
    }
}
