#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

use std::sync::Arc;

pub use container_core::*;

/// The Docker backend.
#[cfg(feature = "docker")]
pub use container_docker as docker;

/// The Podman backend.
#[cfg(feature = "podman")]
pub use container_podman as podman;

/// The environment variable that picks the backend for [`from_env`].
pub const BACKEND_ENV: &str = "CONTAINER_BACKEND";

/// Connects to `kind` at `endpoint` (the backend's default when `None`).
pub async fn connect(
    kind: BackendKind,
    endpoint: Option<&str>,
) -> Result<Arc<dyn ContainerManager>> {
    let options = ConnectOptions {
        endpoint: endpoint.map(str::to_string),
        ..ConnectOptions::default()
    };
    connect_with(kind, options).await
}

/// Connects to `kind` with full options, and checks that the engine behind the endpoint
/// really is `kind` (a Podman socket behind a Docker endpoint is refused as Podman).
pub async fn connect_with(
    kind: BackendKind,
    options: ConnectOptions,
) -> Result<Arc<dyn ContainerManager>> {
    let manager = connect_unchecked(kind, options).await?;
    let info = manager.info().await?;
    if info.engine != kind {
        return Err(Error::invalid_input(format!(
            "{} is a {} engine, not {kind}",
            info.endpoint, info.engine
        ))
        .with_operation(Operation::Connect)
        .with_backend(kind.as_str()));
    }
    Ok(manager)
}

async fn connect_unchecked(
    kind: BackendKind,
    options: ConnectOptions,
) -> Result<Arc<dyn ContainerManager>> {
    match kind {
        #[cfg(feature = "docker")]
        BackendKind::Docker => Ok(Arc::new(docker::DockerManager::connect(options).await?)),
        #[cfg(feature = "podman")]
        BackendKind::Podman => Ok(Arc::new(podman::PodmanManager::connect(options).await?)),
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
    if let Ok(name) = std::env::var(BACKEND_ENV) {
        let kind: BackendKind = name.parse()?;
        return connect_with(kind, ConnectOptions::default()).await;
    }
    let mut last = None;
    for kind in compiled_backends() {
        match connect_unchecked(*kind, ConnectOptions::default()).await {
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

/// The backends compiled into this build, in detection order.
pub fn compiled_backends() -> &'static [BackendKind] {
    &[
        #[cfg(feature = "docker")]
        BackendKind::Docker,
        #[cfg(feature = "podman")]
        BackendKind::Podman,
    ]
}
