#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

use std::sync::Arc;

pub use container_core::{
    Account, BackendKind, Capabilities, CleanupReport, CleanupScope, ConnectOptions,
    ContainerConfig, ContainerInfo, ContainerManager, ContainerState, CopyOptions, EngineInfo,
    Error, ErrorKind, ExecEvent, ExecKiller, ExecOutput, ExecSpec, ExecStream, IdRange, ImageRef,
    Labels, LayerPhase, Line, LineEvent, Lines, LogOptions, LogStream, Mount, MountInfo,
    NetworkMode, Operation, OutputChunk, Ownership, ProgressFn, PullOptions, PullProgress,
    RegistryAuth, Relabel, Resources, Result, RetryPolicy, Signal, StdinFeed, StdinStream,
    StreamKind, Ulimit, User, VolumeConfig, VolumeInfo, PROXY_VARIABLES, SSH_AGENT_TARGET,
};

/// The reserved ownership labels and their prefix.
pub mod labels {
    pub use container_core::labels::{
        created_at, default_owner, ACCOUNT_LABEL, CONFIG_HASH_LABEL, CREATED_LABEL, DEFAULT_OWNER,
        LABEL_PREFIX, OWNER_LABEL, SESSION_LABEL,
    };
}

/// Exec defaults.
pub mod exec {
    pub use container_core::exec::{DEFAULT_KILL_GRACE, DEFAULT_OUTPUT_LIMIT, EXIT_DRAIN};
}

/// The input checks every manager runs before any engine call, for callers that want
/// to check a config early (say, when reading their own configuration file).
pub mod validate {
    pub use container_core::validate::*;
}

/// For implementing a backend: the engine trait and the one manager over it
/// ([`raw::Engine`], [`raw::EngineManager`]), and the helpers backends share. Users of
/// the library need none of it.
pub mod raw {
    pub use container_core::raw::*;
    pub use container_core::ExecControl;
    pub use container_core::{archive, proctree};
}

/// mockall mocks of [`ContainerManager`], for unit tests of code that uses it.
#[cfg(feature = "mock")]
pub use container_core::mock;

/// The Docker backend.
#[cfg(feature = "docker")]
pub use container_docker as docker;

/// The Podman backend.
#[cfg(feature = "podman")]
pub use container_podman as podman;

/// The containerd backend (gRPC, images pulled by this library; see
/// `docs/adr/0009-containerd.md`).
#[cfg(feature = "containerd")]
pub use container_containerd as containerd;

/// The environment variable that picks the backend for [`from_env`].
pub const BACKEND_ENV: &str = "CONTAINER_BACKEND";

/// Connects to `kind` at `endpoint` (the backend's default when `None`), with a fresh
/// session of the default owner; see [`connect_with`] to name the owner.
pub async fn connect(
    kind: BackendKind,
    endpoint: Option<&str>,
) -> Result<Arc<dyn ContainerManager>> {
    let mut options = ConnectOptions::default();
    options.endpoint = endpoint.map(str::to_string);
    connect_with(kind, options).await
}

/// Connects to `kind` with full options, and checks that the engine behind the endpoint
/// really is `kind` (a Podman socket behind a Docker endpoint is refused as Podman).
pub async fn connect_with(
    kind: BackendKind,
    options: ConnectOptions,
) -> Result<Arc<dyn ContainerManager>> {
    let manager = connect_unchecked(kind, options).await?;
    if !identity_needs_checking(kind) {
        return Ok(manager);
    }
    let info = manager.info().await?;
    if info.engine != kind {
        return Err(Error::invalid_input(format!(
            "{} is a {} engine, not {kind}",
            info.endpoint, info.engine
        ))
        .with_operation(Operation::Connect)
        .with_backend(kind));
    }
    Ok(manager)
}

async fn connect_unchecked(
    kind: BackendKind,
    options: ConnectOptions,
) -> Result<Arc<dyn ContainerManager>> {
    match kind {
        #[cfg(feature = "docker")]
        BackendKind::Docker => Ok(Arc::new(docker::connect(options).await?)),
        #[cfg(feature = "podman")]
        BackendKind::Podman => Ok(Arc::new(podman::connect(options).await?)),
        #[cfg(feature = "containerd")]
        BackendKind::Containerd => Ok(Arc::new(containerd::connect(options).await?)),
        #[allow(unreachable_patterns)] // reachable when a backend feature is off
        other => {
            drop(options);
            Err(Error::unsupported(&format!("backend-{other}"))
                .with_operation(Operation::Connect)
                .with_resource(format!(
                    "the {other} backend is not compiled in; enable the `{other}` feature"
                )))
        }
    }
}

/// Picks the backend from `CONTAINER_BACKEND` (`docker`, `podman`, `containerd`), or else
/// the first compiled-in backend whose engine answers at its default endpoint. The engine
/// identity is checked: a Podman service on `docker.sock` is reported as Podman.
pub async fn from_env() -> Result<Arc<dyn ContainerManager>> {
    from_env_with(ConnectOptions::default()).await
}

/// [`from_env`] with `options` for whichever backend is picked: name the owner of the
/// objects your tool makes in one call,
/// `from_env_with(ConnectOptions::owned_by("my-tool")?)`. An endpoint in `options`
/// applies to the backend named by `CONTAINER_BACKEND` only.
pub async fn from_env_with(options: ConnectOptions) -> Result<Arc<dyn ContainerManager>> {
    if let Ok(name) = std::env::var(BACKEND_ENV) {
        let kind: BackendKind = name.parse()?;
        return connect_with(kind, options).await;
    }
    let mut last = None;
    for kind in compiled_backends() {
        let mut options = options.clone();
        options.endpoint = None;
        match connect_unchecked(*kind, options).await {
            Ok(manager) if !identity_needs_checking(*kind) => return Ok(manager),
            Ok(manager) => {
                let info = manager.info().await?;
                if info.engine == *kind {
                    return Ok(manager);
                }
                tracing::info!(endpoint = %info.endpoint, engine = %info.engine, "engine is not {kind}");
                last = Some(
                    Error::new(
                        ErrorKind::Unsupported,
                        format!("{} is a {} engine, not {kind}", info.endpoint, info.engine),
                    )
                    .with_operation(Operation::Connect),
                );
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::unsupported("no-backend").with_operation(Operation::Connect)))
}

/// Whether an endpoint of `kind` may be served by another engine: only the Docker API is
/// (Podman's compatible API). The libpod and containerd APIs are their engines' own, and
/// the backend's connect has reached them already. Not asking saves an `info` per
/// connect, which takes 0.3-0.9 s on Podman 4.3.
fn identity_needs_checking(kind: BackendKind) -> bool {
    kind == BackendKind::Docker
}

/// The backends compiled into this build, in detection order.
pub fn compiled_backends() -> &'static [BackendKind] {
    &[
        #[cfg(feature = "docker")]
        BackendKind::Docker,
        #[cfg(feature = "podman")]
        BackendKind::Podman,
        #[cfg(feature = "containerd")]
        BackendKind::Containerd,
    ]
}
