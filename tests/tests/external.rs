//! A backend written outside the library's crates, tested by the suite through the
//! factory API: `cargo test -p container-conformance --features docker --test external`.
//!
//! `Relay` is what a third-party backend looks like: a [`raw::Engine`] implemented with
//! public API only (here it relays every engine call to the Docker engine and counts
//! them, standing in for a client of some other engine), turned into a full
//! `ContainerManager` by [`raw::EngineManager`], and handed to the suite as a factory.
//! The run is partial (lifecycle, idempotency and exec cases): its results go to
//! `target/conformance/external-docker.partial.json`.

use std::fs::File;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use container::docker::DockerEngine;
use container::raw::{
    ByteStream, Engine, EngineManager, ExecState, OutputStream, PullRequest, Removal,
};
use container::{
    BackendKind, Capabilities, ConnectOptions, ContainerConfig, ContainerInfo, ContainerManager,
    EngineInfo, ExecSpec, ImageRef, Labels, LogOptions, Result, Signal, VolumeInfo,
};
use container_conformance::{factory, Case, Section};

/// Relays every call to `inner` and counts the calls.
struct Relay {
    inner: DockerEngine,
    calls: AtomicU64,
}

impl Relay {
    fn inner(&self) -> &DockerEngine {
        self.calls.fetch_add(1, Ordering::Relaxed);
        &self.inner
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let calls = self.calls.load(Ordering::Relaxed);
        eprintln!("relay: {calls} engine calls");
    }
}

type Exec = <DockerEngine as Engine>::Exec;

#[async_trait]
impl Engine for Relay {
    type Exec = Exec;

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn info(&self) -> Result<EngineInfo> {
        self.inner().info().await
    }
    async fn pull(&self, request: PullRequest<'_>) -> Result<Option<String>> {
        self.inner().pull(request).await
    }
    async fn image_exists(&self, image: &ImageRef) -> Result<bool> {
        self.inner().image_exists(image).await
    }
    async fn remove_image(&self, image: &ImageRef, force: bool) -> Result<()> {
        self.inner().remove_image(image, force).await
    }
    async fn create(
        &self,
        name: &str,
        config: &ContainerConfig,
        labels: &Labels,
    ) -> Result<String> {
        self.inner().create(name, config, labels).await
    }
    async fn start(&self, id: &str) -> Result<()> {
        self.inner().start(id).await
    }
    async fn stop(&self, id: &str, grace: Option<Duration>) -> Result<()> {
        self.inner().stop(id, grace).await
    }
    async fn kill(&self, id: &str, signal: Signal) -> Result<()> {
        self.inner().kill(id, signal).await
    }
    async fn remove(&self, id: &str, force: bool) -> Result<Removal> {
        self.inner().remove(id, force).await
    }
    async fn inspect(&self, id: &str) -> Result<ContainerInfo> {
        self.inner().inspect(id).await
    }
    async fn wait(&self, id: &str) -> Result<Option<i64>> {
        self.inner().wait(id).await
    }
    async fn list(&self, labels: &Labels) -> Result<Vec<ContainerInfo>> {
        self.inner().list(labels).await
    }
    async fn logs(&self, id: &str, options: &LogOptions) -> Result<OutputStream> {
        self.inner().logs(id, options).await
    }
    async fn attach_stdin(
        &self,
        id: &str,
        source: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    ) -> Result<tokio::task::AbortHandle> {
        self.inner().attach_stdin(id, source).await
    }
    async fn resize_tty(&self, id: &str, rows: u16, cols: u16) -> Result<()> {
        self.inner().resize_tty(id, rows, cols).await
    }
    async fn exec_create(&self, container: &str, spec: &ExecSpec) -> Result<Exec> {
        self.inner().exec_create(container, spec).await
    }
    async fn exec_start(&self, exec: &Exec, spec: &ExecSpec) -> Result<OutputStream> {
        self.inner().exec_start(exec, spec).await
    }
    async fn exec_state(&self, exec: &Exec) -> Result<ExecState> {
        self.inner().exec_state(exec).await
    }
    async fn copy_from(&self, id: &str, path: &str) -> Result<ByteStream> {
        self.inner().copy_from(id, path).await
    }
    async fn copy_to(&self, id: &str, dir: &str, archive: File) -> Result<()> {
        self.inner().copy_to(id, dir, archive).await
    }
    async fn create_volume(&self, name: &str, labels: &Labels) -> Result<VolumeInfo> {
        self.inner().create_volume(name, labels).await
    }
    async fn inspect_volume(&self, name: &str) -> Result<VolumeInfo> {
        self.inner().inspect_volume(name).await
    }
    async fn list_volumes(&self, labels: &Labels) -> Result<Vec<VolumeInfo>> {
        self.inner().list_volumes(labels).await
    }
    async fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        self.inner().remove_volume(name, force).await
    }
}

/// The outside backend's connect: its own client (here: Docker's engine), wrapped.
async fn connect(options: ConnectOptions) -> Result<Arc<dyn ContainerManager>> {
    let endpoint = options
        .endpoint
        .clone()
        .unwrap_or_else(|| container::docker::DEFAULT_ENDPOINT.to_string());
    let manager = EngineManager::connect(
        BackendKind::Docker,
        &endpoint,
        options,
        |endpoint, options| async move {
            let docker = container::docker::connect(options.with_endpoint(endpoint)).await?;
            Ok(Relay {
                inner: docker.engine().clone(),
                calls: AtomicU64::new(0),
            })
        },
    )
    .await?;
    Ok(Arc::new(manager))
}

fn selected(case: &Case) -> bool {
    matches!(
        case.section,
        Section::Lifecycle | Section::Idempotency | Section::Exec
    )
}

fn main() -> ExitCode {
    container_conformance::run_selected("external-docker", factory(connect), selected)
}
