//! [`EngineManager`]: the contract of [`ContainerManager`], written once over any [`Engine`].

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use tracing::Instrument;

use super::{Engine, Removal};
use crate::archive;
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::exec::{ExecSpec, ExecStream, StdinFeed, StdinStream};
use crate::labels::Ownership;
use crate::manager::{ContainerManager, LogStream};
use crate::poll::Poll;
use crate::reference::ImageRef;
use crate::retry::{self, RetryPolicy};
use crate::signal::Signal;
use crate::types::{
    BackendKind, Capabilities, ConnectOptions, ContainerConfig, ContainerInfo, ContainerState,
    CopyOptions, EngineInfo, Labels, LayerPhase, LogOptions, PullOptions, PullProgress,
    VolumeConfig, VolumeInfo,
};
use crate::validate;

/// How long a stop may take when neither the caller nor the container names a grace:
/// the engines' own default.
const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
/// How often `wait` looks again at a container that has not run yet.
const WAIT_POLL: Duration = Duration::from_millis(200);
/// How often a removal in progress is checked.
const REMOVAL_POLL: Duration = Duration::from_millis(50);

/// A [`ContainerManager`] over any [`Engine`]: the whole contract, once (see the
/// [module docs](super)). Backends expose it as their manager type
/// (`container_docker::DockerManager` is `EngineManager<DockerEngine>`).
pub struct EngineManager<E: Engine> {
    engine: Arc<E>,
    backend: BackendKind,
    endpoint: String,
    ownership: Ownership,
    call_timeout: Duration,
    retry: RetryPolicy,
    remote_exec_kill: bool,
    /// The ssh forward an `ssh://` endpoint is reached through (ADR 0016): it lives as
    /// long as the manager and its clones.
    tunnel: Option<Arc<crate::ssh::Tunnel>>,
    /// The containers this manager created or inspected, by id: their names, so errors
    /// name a container the way its user does (see [`container`](Self::container)), and
    /// their accounts, so `start` needs no inspect to know whether to make one.
    known: Arc<Mutex<HashMap<String, Known>>>,
}

/// What a manager remembers of a container it created or inspected.
#[derive(Debug, Clone)]
struct Known {
    name: String,
    /// The account its labels name (`None`: it has none).
    account: Option<crate::types::Account>,
}

/// How many container names [`EngineManager`] remembers; past it, it forgets them all
/// (errors then show ids only until the names are seen again).
const NAMES_KEPT: usize = 4096;

impl<E: Engine> std::fmt::Debug for EngineManager<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineManager")
            .field("backend", &self.backend)
            .field("endpoint", &self.endpoint)
            .field("ownership", &self.ownership)
            .field("call_timeout", &self.call_timeout)
            .finish_non_exhaustive()
    }
}

impl<E: Engine> Clone for EngineManager<E> {
    fn clone(&self) -> Self {
        EngineManager {
            engine: self.engine.clone(),
            backend: self.backend,
            endpoint: self.endpoint.clone(),
            ownership: self.ownership.clone(),
            call_timeout: self.call_timeout,
            retry: self.retry.clone(),
            remote_exec_kill: self.remote_exec_kill,
            tunnel: self.tunnel.clone(),
            known: self.known.clone(),
        }
    }
}

impl<E: Engine> EngineManager<E> {
    /// Builds the engine client for `endpoint` (the backend has resolved it from its
    /// options and environment) with `build` and proves that the engine
    /// answers ([`Engine::ping`]), both within `options.connect_timeout`. Every failure
    /// to reach the engine is `Unavailable`, with the same wording on every backend.
    pub async fn connect<F, Fut>(
        backend: BackendKind,
        endpoint: &str,
        options: ConnectOptions,
        build: F,
    ) -> Result<Self>
    where
        F: FnOnce(String, ConnectOptions) -> Fut,
        Fut: Future<Output = Result<E>>,
    {
        let span =
            tracing::info_span!("container", %backend, operation = "connect", resource = endpoint);
        validate::duration("connect timeout", options.connect_timeout)
            .and_then(|()| validate::duration("call timeout", options.call_timeout))
            .map_err(|e| e.context(backend, Operation::Connect, endpoint))?;
        let limit = options.connect_timeout;
        let (ownership, call_timeout, retry, remote_exec_kill) = (
            options.ownership.clone(),
            options.call_timeout,
            options.retry.clone(),
            options.remote_exec_kill,
        );
        // The first image reference parsed compiles oci-spec's reference regex: 65-125 ms
        // of CPU in a release build here, which a one-shot tool (a CLI run) paid before
        // its first image call. Compiled now, on a blocking thread, it overlaps the
        // connection's round trips instead.
        let _warm = tokio::task::spawn_blocking(|| crate::ImageRef::parse("busybox:1").map(drop));
        let reach = async {
            // An ssh endpoint is reached through a local socket that ssh forwards.
            let (tunnel, local) = match crate::ssh::SshTarget::parse(endpoint)? {
                Some(target) => {
                    let remote = target
                        .socket
                        .clone()
                        .unwrap_or_else(|| crate::ssh::default_remote_socket(backend).to_string());
                    let tunnel = crate::ssh::Tunnel::open(&target, &remote, limit).await?;
                    let local = tunnel.local_endpoint();
                    (Some(Arc::new(tunnel)), local)
                }
                None => (None, endpoint.to_string()),
            };
            let reached = async {
                let engine = build(local, options).await?;
                engine.ping().await?;
                Ok::<E, Error>(engine)
            }
            .await;
            match (reached, &tunnel) {
                (Ok(engine), _) => Ok((engine, tunnel)),
                // What ssh said is the reason (a socket it could not open remotely).
                (Err(e), Some(t)) => Err(t
                    .failure("the engine did not answer through ssh")
                    .with_source(e)),
                (Err(e), None) => Err(e),
            }
        };
        let (engine, tunnel) = match tokio::time::timeout(limit, reach.instrument(span)).await {
            Ok(Ok(reached)) => reached,
            Ok(Err(e)) => {
                let e = match e.kind() {
                    ErrorKind::Internal | ErrorKind::NotFound | ErrorKind::Unavailable => {
                        Error::new(
                            ErrorKind::Unavailable,
                            format!("no {backend} engine answers at {endpoint}"),
                        )
                        .with_source(e)
                    }
                    _ => e,
                };
                return Err(e.context(backend, Operation::Connect, endpoint));
            }
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("no {backend} engine answered at {endpoint} within {limit:?}"),
                )
                .context(backend, Operation::Connect, endpoint))
            }
        };
        Ok(EngineManager {
            engine: Arc::new(engine),
            backend,
            endpoint: endpoint.to_string(),
            ownership,
            call_timeout,
            retry,
            remote_exec_kill,
            tunnel,
            known: Arc::default(),
        })
    }

    /// The engine behind this manager.
    pub fn engine(&self) -> &E {
        &self.engine
    }

    /// The endpoint the engine talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub(super) fn engine_arc(&self) -> Arc<E> {
        self.engine.clone()
    }

    pub(super) fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    pub(super) fn remote_exec_kill(&self) -> bool {
        self.remote_exec_kill
    }

    /// How errors and spans name container `id`: `name (id)` when the name is known.
    pub(super) fn container(&self, id: &str) -> String {
        let names = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        match names.get(id) {
            Some(known) if known.name != id => format!("{} ({id})", known.name),
            _ => id.to_string(),
        }
    }

    /// Remembers container `id`, named `name`, labelled `labels`.
    fn remember(&self, id: &str, name: &str, labels: &Labels) {
        if id.is_empty() || name.is_empty() {
            return;
        }
        let known = Known {
            name: name.to_string(),
            account: super::account::from_labels(labels),
        };
        let mut names = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if names.len() >= NAMES_KEPT {
            names.clear();
        }
        names.insert(id.to_string(), known);
    }

    /// Whether container `id` was made with an account, if this manager knows it.
    fn known_account(&self, id: &str) -> Option<Option<crate::types::Account>> {
        let names = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        names.get(id).map(|known| known.account.clone())
    }

    fn forget(&self, id: &str) {
        let mut names = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        names.remove(id);
        names.retain(|_, known| known.name != id);
    }

    /// One operation: its span, and its errors with backend, operation and resource,
    /// their retry status settled by the operation's idempotency.
    async fn run<T>(
        &self,
        op: Operation,
        resource: &str,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        self.run_as(op, op.is_idempotent(), resource, fut).await
    }

    /// [`run`](Self::run) for an operation whose idempotency depends on its arguments
    /// (a create is idempotent by name only): every error the caller sees has its retry
    /// status settled here, by [`Error::settle_retryable`].
    async fn run_as<T>(
        &self,
        op: Operation,
        idempotent: bool,
        resource: &str,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let backend = self.backend;
        let span = tracing::info_span!("container", %backend, operation = op.as_str(), resource);
        fut.instrument(span).await.map_err(|e| {
            e.context(backend, op, resource)
                .settle_retryable(idempotent)
        })
    }

    /// One engine call under the per-call deadline.
    pub(super) async fn call<T>(
        &self,
        op: Operation,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        within(self.call_timeout, op, fut).await
    }

    /// An idempotent engine call: under the per-call deadline, retried per the policy.
    async fn idempotent<T, F, Fut>(&self, op: Operation, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        debug_assert!(op.is_idempotent());
        self.retry.run(|_| self.call(op, f())).await
    }

    fn unsupported(&self, capability: &str) -> Error {
        Error::unsupported(capability).with_backend(self.backend)
    }

    /// `Unsupported` for what `config` asks and the engine cannot do.
    fn check_capabilities(&self, config: &ContainerConfig) -> Result<()> {
        let caps = self.engine.capabilities();
        if config.init && !caps.init {
            return Err(self.unsupported("init"));
        }
        let r = &config.resources;
        let limited = r.memory_bytes.is_some() || r.cpus.is_some() || r.pids_limit.is_some();
        if limited && !caps.resource_limits {
            return Err(self.unsupported("resource_limits"));
        }
        if config.keep_id && !caps.userns_keep_id {
            return Err(self.unsupported("userns_keep_id"));
        }
        if (config.stdin_open || config.tty) && !caps.attach_stdin {
            return Err(self.unsupported("attach_stdin"));
        }
        Ok(())
    }

    async fn find(&self, name: &str) -> Result<Option<ContainerInfo>> {
        match self
            .idempotent(Operation::Inspect, || self.engine.inspect(name))
            .await
        {
            Ok(info) => Ok(Some(info)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits (up to the call timeout) until another caller's removal of `id` is done.
    async fn removal_done(&self, id: &str) -> Result<()> {
        let mut poll = Poll::every(REMOVAL_POLL).within(self.call_timeout);
        loop {
            if self.find(id).await?.is_none() {
                return Ok(());
            }
            if !poll.pause().await {
                break;
            }
        }
        Err(Error::new(
            ErrorKind::Timeout,
            format!(
                "another removal did not finish within {:?}",
                self.call_timeout
            ),
        ))
    }
}

/// `fut` under the deadline `limit`: past it, `Timeout`, retryable when `op` is idempotent.
/// A deadline the engine reports ("context deadline exceeded") follows the same rule, here
/// already, so a retry loop around the call sees it. Other errors are settled when the
/// operation ends ([`EngineManager::run`]): an exec's state poll, an idempotent read
/// under [`Operation::Exec`], looks past an outage.
pub(super) async fn within<T>(
    limit: Duration,
    op: Operation,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Err(e)) if e.kind() == ErrorKind::Timeout => Err(e.settle_retryable(op.is_idempotent())),
        Ok(r) => r,
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!("the engine did not answer within {limit:?}"),
        )
        .settle_retryable(op.is_idempotent())),
    }
}

fn ok_if_missing(r: Result<()>) -> Result<()> {
    match r {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn absolute(what: &str, path: &str) -> Result<()> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "{what} {path:?} must be absolute"
        )))
    }
}

#[async_trait]
impl<E: Engine> ContainerManager for EngineManager<E> {
    fn backend(&self) -> BackendKind {
        self.backend
    }

    fn capabilities(&self) -> Capabilities {
        self.engine.capabilities()
    }

    fn ownership(&self) -> &Ownership {
        &self.ownership
    }

    async fn info(&self) -> Result<EngineInfo> {
        let endpoint = self.endpoint.as_str();
        let fut = self.idempotent(Operation::Info, || self.engine.info());
        self.run(Operation::Info, endpoint, fut).await
    }

    async fn pull(&self, image: &str, options: &PullOptions) -> Result<()> {
        let fut = async {
            let reference = ImageRef::parse(image)?;
            validate::optional_duration("pull timeout", options.timeout)?;
            validate::optional_duration("pull attempt timeout", options.attempt_timeout)?;
            validate::optional_duration("pull stall timeout", options.stall_timeout)?;
            // Credentials go only to the registry they name, never to another one the
            // image happens to be on.
            if let Some(auth) = options
                .auth
                .as_ref()
                .filter(|a| !a.is_for(reference.registry()))
            {
                return Err(Error::invalid_input(format!(
                    "the credentials are for {}, the image is on {}: they are never sent \
                     to another registry",
                    auth.server.as_deref().unwrap_or_default(),
                    reference.registry()
                )));
            }
            // Whether the local copy was current: present before, and nothing fetched.
            // An engine that cannot say whether it had the image never claims so.
            let present_before = self
                .call(Operation::Pull, self.engine.image_exists(&reference))
                .await
                .unwrap_or(false);
            let fetched = AtomicBool::new(false);
            let progress = |event: &PullProgress| {
                if let PullProgress::Layer { phase, .. } = event {
                    if matches!(
                        phase,
                        LayerPhase::Downloading | LayerPhase::Verifying | LayerPhase::Extracting
                    ) {
                        fetched.store(true, Ordering::Relaxed);
                    }
                }
                options.report(event);
            };
            let progress =
                super::Progress::new(&progress).with_stall_timeout(options.stall_timeout);
            let attempts = options.retry.run(|attempt| {
                let reference = &reference;
                async move {
                    if attempt > 1 {
                        tracing::info!(image = %reference, attempt, "retrying pull");
                    }
                    options.report(&PullProgress::Resolving {
                        reference: reference.to_string(),
                    });
                    let request = super::PullRequest {
                        image: reference,
                        auth: options.auth.as_ref(),
                        progress,
                    };
                    // Settled per attempt, so the policy retries a deadline (the attempt's,
                    // the stall's, an engine's) like any transient failure.
                    let attempt = self.engine.pull(request);
                    let digest =
                        retry::with_deadline(options.attempt_timeout, "the pull attempt", attempt)
                            .await
                            .map_err(|e| e.settle_retryable(Operation::Pull.is_idempotent()))?;
                    // A stream can end "successfully" without the image (a dropped
                    // connection): confirm it.
                    if !self
                        .call(Operation::Pull, self.engine.image_exists(reference))
                        .await?
                    {
                        return Err(Error::new(
                            ErrorKind::Unavailable,
                            "the pull stream ended but the image is not present",
                        ));
                    }
                    Ok(digest)
                }
            });
            let digest = retry::with_deadline(options.timeout, "pull", attempts).await?;
            if present_before && !fetched.load(Ordering::Relaxed) {
                options.report(&PullProgress::AlreadyPresent {
                    reference: reference.to_string(),
                });
            }
            options.report(&PullProgress::Completed {
                reference: reference.to_string(),
                digest: digest.or_else(|| reference.digest().map(str::to_string)),
            });
            Ok(())
        };
        self.run(Operation::Pull, image, fut).await
    }

    async fn image_exists(&self, image: &str) -> Result<bool> {
        let fut = async {
            let reference = ImageRef::parse(image)?;
            self.idempotent(Operation::ImageExists, || {
                self.engine.image_exists(&reference)
            })
            .await
        };
        self.run(Operation::ImageExists, image, fut).await
    }

    async fn remove_image(&self, image: &str, force: bool) -> Result<()> {
        let fut = async {
            let reference = ImageRef::parse(image)?;
            let r = self
                .call(
                    Operation::RemoveImage,
                    self.engine.remove_image(&reference, force),
                )
                .await;
            ok_if_missing(r)
        };
        self.run(Operation::RemoveImage, image, fut).await
    }

    async fn create(&self, config: &ContainerConfig) -> Result<String> {
        let resource = config.name.as_deref().unwrap_or(&config.image);
        // Idempotent by its name; without one, a try again makes another container.
        let idempotent = config.name.is_some();
        let fut = async {
            if let Some(tunnel) = &self.tunnel {
                validate::remote_bind_sources(config, &self.endpoint, tunnel.remote_socket())?;
            }
            validate::container_config(config)?;
            validate::engine_socket_not_bound(config, &self.endpoint)?;
            self.check_capabilities(config)?;
            // The hash is the caller's config's; the engine gets what the account, the
            // ssh agent and the proxies add.
            let labels = self.ownership.container_labels(config)?;
            let config = super::account::for_engine(config, |key| std::env::var(key).ok())?;
            let config = config.as_ref();
            let name = config
                .name
                .clone()
                .unwrap_or_else(|| format!("crs-{}", uuid::Uuid::new_v4().simple()));
            let create = || async {
                let id = self
                    .call(
                        Operation::Create,
                        self.engine.create(&name, config, &labels),
                    )
                    .await?;
                if id.is_empty() {
                    return Err(Error::new(
                        ErrorKind::Internal,
                        "the engine created the container but returned no id",
                    ));
                }
                Ok(id)
            };
            let id = self
                .ownership
                .create_idempotent(
                    &name,
                    &config.image,
                    &config.mounts,
                    &labels,
                    create,
                    || self.find(&name),
                )
                .await
                .map_err(|e| e.with_resource(name.clone()))?;
            self.remember(&id, &name, &labels);
            Ok(id)
        };
        self.run_as(Operation::Create, idempotent, resource, fut)
            .await
    }

    async fn start(&self, id: &str) -> Result<()> {
        let fut = async {
            validate::container_ref(id)?;
            self.call(Operation::Start, self.engine.start(id)).await?;
            // A container made with an account: made (again) in it before the caller's
            // first exec can run. Known without an inspect for the containers this
            // manager created or inspected.
            let account = match self.known_account(id) {
                Some(account) => account,
                None => self
                    .find(id)
                    .await?
                    .and_then(|info| super::account::from_labels(&info.labels)),
            };
            if let Some(account) = account {
                self.call(
                    Operation::Start,
                    super::account::ensure(self.engine.clone(), id, &account),
                )
                .await?;
            }
            Ok(())
        };
        self.run(Operation::Start, &self.container(id), fut).await
    }

    async fn stop(&self, id: &str, grace: Option<Duration>) -> Result<()> {
        let fut = async {
            validate::container_ref(id)?;
            validate::optional_duration("stop grace", grace)?;
            // The engine waits up to the grace before killing: allow for it.
            let limit = self.call_timeout + grace.unwrap_or(DEFAULT_STOP_GRACE);
            within(limit, Operation::Stop, self.engine.stop(id, grace)).await
        };
        self.run(Operation::Stop, &self.container(id), fut).await
    }

    async fn kill(&self, id: &str, signal: Signal) -> Result<()> {
        let fut = async {
            validate::container_ref(id)?;
            self.call(Operation::Kill, self.engine.kill(id, signal))
                .await
        };
        self.run(Operation::Kill, &self.container(id), fut).await
    }

    async fn remove(&self, id: &str, force: bool) -> Result<()> {
        let fut = async {
            validate::container_ref(id)?;
            match self
                .call(Operation::Remove, self.engine.remove(id, force))
                .await
            {
                Ok(Removal::Removed) => Ok(()),
                // Another caller is removing it: done once it is gone.
                Ok(Removal::InProgress) => self.removal_done(id).await,
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        };
        let result = self.run(Operation::Remove, &self.container(id), fut).await;
        if result.is_ok() {
            self.forget(id);
        }
        result
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInfo> {
        let fut = async {
            validate::container_ref(id)?;
            let info = self
                .idempotent(Operation::Inspect, || self.engine.inspect(id))
                .await?;
            self.remember(&info.id, &info.name, &info.labels);
            Ok(info)
        };
        self.run(Operation::Inspect, &self.container(id), fut).await
    }

    async fn wait(&self, id: &str) -> Result<i64> {
        let fut = async {
            validate::container_ref(id)?;
            // No deadline: a wait waits. Engines answer at once for a container that was
            // never started (Docker even with exit code 0): then wait for it to run and
            // exit, so the code returned is always the code of a real exit.
            let mut poll = Poll::every(WAIT_POLL);
            loop {
                let code = self.engine.wait(id).await?;
                let info = match self
                    .idempotent(Operation::Inspect, || self.engine.inspect(id))
                    .await
                {
                    Ok(info) => info,
                    // Removed right after it exited (auto-remove, a concurrent remove):
                    // the engine's exit code is the answer.
                    Err(e) if e.kind() == ErrorKind::NotFound => return code.ok_or(e),
                    Err(e) => return Err(e),
                };
                match info.state {
                    ContainerState::Exited(exited) => return Ok(code.unwrap_or(exited)),
                    ContainerState::Created
                    | ContainerState::Running
                    | ContainerState::Restarting
                    | ContainerState::Paused => {
                        poll.pause().await; // no deadline: always true
                    }
                    other => {
                        return Err(Error::new(
                            ErrorKind::Conflict,
                            format!("the container is {other:?}: it has no exit to wait for"),
                        ))
                    }
                }
            }
        };
        self.run(Operation::Wait, &self.container(id), fut).await
    }

    async fn list(&self, labels: &Labels) -> Result<Vec<ContainerInfo>> {
        let fut = async {
            let found = self
                .idempotent(Operation::List, || self.engine.list(labels))
                .await?;
            // Belt and braces: never return what does not match the selector.
            Ok(found
                .into_iter()
                .filter(|c| labels.iter().all(|(k, v)| c.labels.get(k) == Some(v)))
                .collect())
        };
        self.run(Operation::List, &self.endpoint, fut).await
    }

    async fn logs(&self, id: &str, options: &LogOptions) -> Result<LogStream> {
        let fut = async {
            validate::container_ref(id)?;
            // Fail early on a missing container instead of inside the stream.
            self.idempotent(Operation::Inspect, || self.engine.inspect(id))
                .await?;
            self.call(Operation::Logs, self.engine.logs(id, options))
                .await
        };
        let resource = self.container(id);
        let stream = self.run(Operation::Logs, &resource, fut).await?;
        let backend = self.backend;
        Ok(stream
            .map_err(move |e| {
                e.context(backend, Operation::Logs, resource.clone())
                    .settle_retryable(Operation::Logs.is_idempotent())
            })
            .boxed())
    }

    async fn attach_stdin(&self, id: &str, stdin: StdinStream) -> Result<StdinFeed> {
        let fut = async {
            validate::container_ref(id)?;
            if !self.engine.capabilities().attach_stdin {
                return Err(self.unsupported("attach_stdin"));
            }
            let source = stdin.take().ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidInput,
                    "this stdin stream was taken by an exec or attach before",
                )
            })?;
            self.call(Operation::AttachStdin, self.engine.attach_stdin(id, source))
                .await
        };
        let task = self
            .run(Operation::AttachStdin, &self.container(id), fut)
            .await?;
        Ok(StdinFeed::new(task))
    }

    async fn resize_tty(&self, id: &str, rows: u16, cols: u16) -> Result<()> {
        let fut = async {
            validate::container_ref(id)?;
            if rows == 0 || cols == 0 {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("a terminal of {rows} rows and {cols} columns: neither may be 0"),
                ));
            }
            if !self.engine.capabilities().attach_stdin {
                return Err(self.unsupported("attach_stdin"));
            }
            self.call(Operation::ResizeTty, self.engine.resize_tty(id, rows, cols))
                .await
        };
        self.run(Operation::ResizeTty, &self.container(id), fut)
            .await
    }

    async fn exec_stream(&self, id: &str, spec: &ExecSpec) -> Result<ExecStream> {
        let fut = async {
            validate::container_ref(id)?;
            validate::exec_spec(spec)?;
            if spec.tty && !self.engine.capabilities().tty_exec {
                return Err(self.unsupported("tty_exec"));
            }
            super::exec::start(self, id, spec).await
        };
        self.run(Operation::Exec, &self.container(id), fut).await
    }

    async fn copy_from_with(
        &self,
        id: &str,
        container_path: &str,
        host_dir: &Path,
        options: &CopyOptions,
    ) -> Result<()> {
        let fut = async {
            validate::container_ref(id)?;
            absolute("container path", container_path)?;
            validate::host_path(host_dir)?;
            if !self.engine.capabilities().copy_files {
                return Err(self.unsupported("copy_files"));
            }
            let body = self
                .call(
                    Operation::CopyFrom,
                    self.engine.copy_from(id, container_path),
                )
                .await?;
            // Every entry must lie under the requested name, as the engines name them.
            let root = Path::new(container_path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
            let how = archive::Unpack {
                root,
                owner: options.owner,
                shared_write: options.shared_write,
                max_bytes: options.max_bytes,
                max_entries: options.max_entries,
            };
            archive::receive_and_unpack(body, host_dir, self.call_timeout, &how).await
        };
        self.run(Operation::CopyFrom, &self.container(id), fut)
            .await
    }

    async fn copy_to(&self, id: &str, host_path: &Path, container_dir: &str) -> Result<()> {
        let fut = async {
            validate::container_ref(id)?;
            absolute("container directory", container_dir)?;
            if !self.engine.capabilities().copy_files {
                return Err(self.unsupported("copy_files"));
            }
            let source = host_path.to_path_buf();
            let file = tokio::task::spawn_blocking(move || archive::pack(&source))
                .await
                .map_err(|e| {
                    Error::new(ErrorKind::Internal, "pack task failed").with_source(e)
                })??;
            // A progress deadline, not a total one: a large copy takes as long as it
            // takes while bytes move; a stall ends it.
            let progress = file.try_clone().map_err(|e| {
                Error::new(ErrorKind::Internal, "cannot watch the archive").with_source(e)
            })?;
            archive::upload_with_progress(
                self.engine.copy_to(id, container_dir, file),
                progress,
                self.call_timeout,
            )
            .await
        };
        self.run(Operation::CopyTo, &self.container(id), fut).await
    }

    async fn create_volume(&self, config: &VolumeConfig) -> Result<VolumeInfo> {
        let name = config.name.as_str();
        let fut = async {
            validate::volume_config(config)?;
            let labels = self.ownership.volume_labels(config);
            let created = self
                .call(
                    Operation::CreateVolume,
                    self.engine.create_volume(name, &labels),
                )
                .await;
            let volume = match created {
                Ok(v) => v,
                // The name is taken: the existing volume is the result if it is ours.
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    self.idempotent(Operation::InspectVolume, || {
                        self.engine.inspect_volume(name)
                    })
                    .await?
                }
                Err(e) => return Err(e),
            };
            if !self.ownership.owns(&volume.labels) {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "a volume named {name} exists without the owner label of {}; it was \
                         left untouched",
                        self.ownership.owner()
                    ),
                ));
            }
            Ok(volume)
        };
        self.run(Operation::CreateVolume, name, fut).await
    }

    async fn inspect_volume(&self, name: &str) -> Result<VolumeInfo> {
        let fut = async {
            validate::volume_name(name)?;
            self.idempotent(Operation::InspectVolume, || {
                self.engine.inspect_volume(name)
            })
            .await
        };
        self.run(Operation::InspectVolume, name, fut).await
    }

    async fn list_volumes(&self, labels: &Labels) -> Result<Vec<VolumeInfo>> {
        let fut = async {
            let found = self
                .idempotent(Operation::ListVolumes, || self.engine.list_volumes(labels))
                .await?;
            Ok(found
                .into_iter()
                .filter(|v| labels.iter().all(|(k, val)| v.labels.get(k) == Some(val)))
                .collect())
        };
        self.run(Operation::ListVolumes, &self.endpoint, fut).await
    }

    async fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        let fut = async {
            validate::volume_name(name)?;
            let r = self
                .call(
                    Operation::RemoveVolume,
                    self.engine.remove_volume(name, force),
                )
                .await;
            ok_if_missing(r)
        };
        self.run(Operation::RemoveVolume, name, fut).await
    }
}
