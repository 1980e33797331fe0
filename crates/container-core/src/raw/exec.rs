//! The exec of [`EngineManager`]: create, start (never cut off midway), output then exit
//! status, and the one [`ExecControl`] for every engine (see `docs/adr/0003-exec-kill.md`).
//!
//! Killing, for an engine without a native exec kill, signals only processes proven to be
//! the exec's ([`proctree`]): the tree under the PID the engine reports for the exec,
//! taken from the container's own cgroup, never the container's main process, each pinned
//! with a pidfd. An exec the engine has not started yet is waited for. An exec whose
//! processes cannot be seen from this host (a remote engine) is ended by signalling the
//! container's main process only when the caller opted in
//! ([`ConnectOptions::remote_exec_kill`](crate::ConnectOptions::remote_exec_kill));
//! otherwise the kill fails and the caller is told so.
//!
//! The `/proc` and cgroup reads run on the blocking pool, never on the async workers.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::Mutex as AsyncMutex;
use tokio::task::JoinHandle;

use super::manager::{within, EngineManager};
use super::{Engine, ExecState, OutputStream};
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::exec::{terminate, ExecControl, ExecEvent, ExecSpec, ExecStream};
use crate::manager::ContainerManager;
use crate::proctree::{self, ContainerCgroup, Signalled};
use crate::signal::Signal;

/// How long to wait for the engine to report the exit after the output closed.
const EXIT_WAIT: Duration = Duration::from_secs(10);
/// How long a signal waits for an exec the engine has not started yet, or whose PID it
/// has not filled in yet (moby reports `Running` before the PID).
const START_WAIT: Duration = Duration::from_secs(3);
/// How often a not-yet-started exec is inspected.
const START_POLL: Duration = Duration::from_millis(20);

/// Starts `spec` in `container` and returns its stream (timeout and drop-kill included).
pub(super) async fn start<E: Engine>(
    manager: &EngineManager<E>,
    container: &str,
    spec: &ExecSpec,
) -> Result<ExecStream> {
    let engine = manager.engine_arc();
    let exec = manager
        .call(Operation::Exec, engine.exec_create(container, spec))
        .await?;
    let exec = Arc::new(exec);
    let control = Arc::new(Control {
        engine: engine.clone(),
        exec: exec.clone(),
        container: container.to_string(),
        call_timeout: manager.call_timeout(),
        remote_kill: manager.remote_exec_kill(),
        cgroup: AsyncMutex::new(None),
        signalled: Arc::default(),
    });
    // The start runs in its own task, so a caller that drops this future never cuts the
    // start request off midway (an engine may then lose track of a process that runs).
    // Until the stream exists, the guard owns the started exec and kills it if dropped.
    let starting = {
        let (engine, exec, spec) = (engine.clone(), exec.clone(), spec.clone());
        let limit = manager.call_timeout();
        tokio::spawn(async move {
            within(limit, Operation::Exec, engine.exec_start(&exec, &spec)).await
        })
    };
    let mut guard = StartGuard {
        starting: Some(starting),
        control: control.clone(),
        grace: spec.kill_grace,
    };
    let output = guard.wait().await?;
    let backend = manager.backend();
    let resource = manager.container(container);
    let output = output.map(move |item| {
        item.map(ExecEvent::Output)
            .map_err(|e| e.context(backend, Operation::Exec, resource.clone()))
    });
    let resource = manager.container(container);
    let command = spec.cmd.first().cloned().unwrap_or_default();
    let exit = stream::once(async move {
        exit_code(engine.as_ref(), &exec, &command)
            .await
            .map(ExecEvent::Exit)
            .map_err(|e| e.context(backend, Operation::Exec, resource))
    });
    let events: BoxStream<'static, Result<ExecEvent>> = output.chain(exit).boxed();
    Ok(ExecStream::new(events, control, spec, manager.container(container)).with_backend(backend))
}

/// Owns the start task until its output is handed over; dropped earlier (the caller
/// went away), it lets the start finish, then terminates the exec and drops its output.
struct StartGuard {
    starting: Option<JoinHandle<Result<OutputStream>>>,
    control: Arc<dyn ExecControl>,
    grace: Duration,
}

impl StartGuard {
    async fn wait(&mut self) -> Result<OutputStream> {
        let Some(starting) = self.starting.as_mut() else {
            return Err(Error::new(ErrorKind::Internal, "the exec start was taken"));
        };
        let started = starting.await;
        self.starting = None;
        started.map_err(|e| {
            Error::new(ErrorKind::Internal, "the exec start task failed").with_source(e)
        })?
    }
}

impl Drop for StartGuard {
    fn drop(&mut self) {
        let Some(starting) = self.starting.take() else {
            return;
        };
        let (control, grace) = (self.control.clone(), self.grace);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            tracing::debug!("exec setup abandoned, terminating once started");
            handle.spawn(async move {
                if let Ok(Ok(output)) = starting.await {
                    if let Err(e) = terminate(control, grace).await {
                        tracing::warn!(error = %e, "an abandoned exec could not be ended");
                    }
                    drop(output);
                }
            });
        }
    }
}

/// Polls the exec's state until the engine no longer reports it running; its exit code.
/// `command` (the exec's argv\[0\]) names the exec in errors. For a backend's own execs
/// (a `tar` for copies) as much as for the manager's.
pub async fn exit_code<E: Engine>(engine: &E, exec: &E::Exec, command: &str) -> Result<i64> {
    let deadline = tokio::time::Instant::now() + EXIT_WAIT;
    let mut delay = Duration::from_millis(2);
    loop {
        let state = engine.exec_state(exec).await?;
        if !state.running {
            return state.exit_code.ok_or_else(|| {
                Error::new(
                    ErrorKind::Internal,
                    format!("the engine reports the exec `{command}` ended but gives no exit code"),
                )
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "the output of exec `{command}` closed but the engine still reports it running"
                ),
            ));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(100));
    }
}

/// Where the container's processes are, seen from this host.
#[derive(Debug, Clone)]
enum Seen {
    /// On this host: the container's cgroup.
    Local(ContainerCgroup),
    /// The container is not running: its execs end with it.
    Stopped,
    /// Running, but its main process is not visible here (a remote engine).
    Remote,
}

/// Signals one exec's processes; see the module docs.
struct Control<E: Engine> {
    engine: Arc<E>,
    exec: Arc<E::Exec>,
    container: String,
    call_timeout: Duration,
    remote_kill: bool,
    /// The container's cgroup, once found.
    cgroup: AsyncMutex<Option<ContainerCgroup>>,
    /// Every process signalled so far (see [`Signalled`]).
    signalled: Arc<Signalled>,
}

#[async_trait]
impl<E: Engine> ExecControl for Control<E> {
    async fn signal(&self, signal: Signal) -> Result<()> {
        if self.engine.capabilities().native_exec_kill {
            return self.call(self.engine.exec_kill(&self.exec, signal)).await;
        }
        let Some(state) = self.started().await? else {
            return Ok(()); // the engine no longer knows the exec: it is gone
        };
        let seen = self.seen().await?;
        tracing::debug!(?state, ?seen, %signal, "signalling exec");
        let cgroup = match seen {
            Seen::Local(cgroup) => Some(cgroup),
            Seen::Stopped => None,
            Seen::Remote if state.running => return self.remote(signal).await,
            Seen::Remote => None,
        };
        let root = state.pid.filter(|_| state.running);
        let signalled = self.signalled.clone();
        let refused = tokio::task::spawn_blocking(move || {
            let found = match (cgroup, root) {
                (Some(cgroup), Some(root)) => cgroup.exec_tree(root),
                _ => Vec::new(),
            };
            signalled.signal(found, signal)
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, "the signal task failed").with_source(e))?;
        if refused.is_empty() {
            Ok(())
        } else {
            self.kill_inside(&refused, signal).await
        }
    }

    async fn is_running(&self) -> Result<bool> {
        let signalled = self.signalled.clone();
        let alive = tokio::task::spawn_blocking(move || signalled.any_alive())
            .await
            .unwrap_or(true);
        if alive {
            return Ok(true);
        }
        match self.call(self.engine.exec_state(&self.exec)).await {
            Ok(state) => Ok(state.running),
            // The engine no longer knows the exec (its container is gone): not running.
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl<E: Engine> Control<E> {
    async fn call<T>(&self, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        within(self.call_timeout, Operation::Exec, fut).await
    }

    /// The exec's state once the engine has started it and, while it runs, named its
    /// PID (waiting up to [`START_WAIT`]); `None` when the engine no longer knows it.
    async fn started(&self) -> Result<Option<ExecState>> {
        let deadline = tokio::time::Instant::now() + START_WAIT;
        loop {
            let state = match self.call(self.engine.exec_state(&self.exec)).await {
                Ok(state) => state,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let pending = !state.started || (state.running && state.pid.is_none());
            if !pending || tokio::time::Instant::now() >= deadline {
                return Ok(Some(state));
            }
            tokio::time::sleep(START_POLL).await;
        }
    }

    /// Whether the container's processes are visible here, from its main process.
    async fn seen(&self) -> Result<Seen> {
        let mut cached = self.cgroup.lock().await;
        if let Some(cgroup) = cached.as_ref() {
            return Ok(Seen::Local(cgroup.clone()));
        }
        let info = match self.call(self.engine.inspect(&self.container)).await {
            Ok(info) => info,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Seen::Stopped),
            Err(e) => return Err(e),
        };
        let Some(main) = info
            .pid
            .filter(|_| info.state.is_running())
            .and_then(|p| i32::try_from(p).ok())
        else {
            return Ok(Seen::Stopped);
        };
        let found = tokio::task::spawn_blocking(move || ContainerCgroup::of_main_process(main))
            .await
            .map_err(|e| {
                Error::new(ErrorKind::Internal, "the cgroup task failed").with_source(e)
            })?;
        Ok(match found {
            Some(cgroup) => {
                *cached = Some(cgroup.clone());
                Seen::Local(cgroup)
            }
            None => Seen::Remote,
        })
    }

    /// The host refused to signal (not root): send it from inside the container, as root,
    /// to the same processes under their in-container PIDs.
    async fn kill_inside(&self, pids: &[i32], signal: Signal) -> Result<()> {
        let pids = pids.to_vec();
        let argv = tokio::task::spawn_blocking(move || proctree::kill_argv(&pids, signal))
            .await
            .map_err(|e| Error::new(ErrorKind::Internal, "the pid task failed").with_source(e))?;
        let Some(cmd) = argv else {
            return Ok(());
        };
        let spec = ExecSpec::new(cmd).user(0, 0);
        let exec = self
            .call(self.engine.exec_create(&self.container, &spec))
            .await?;
        let output = self.call(self.engine.exec_start(&exec, &spec)).await?;
        let drain = tokio::spawn(output.for_each(|_| async {}));
        let _ = tokio::time::timeout(START_WAIT, drain).await;
        Ok(())
    }

    /// The exec runs on an engine whose processes this host cannot see: signal the
    /// container's main process (which ends the container) if the caller opted in.
    async fn remote(&self, signal: Signal) -> Result<()> {
        if !self.remote_kill {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "the exec's processes are not visible from this host (a remote engine); \
                 ConnectOptions::with_remote_exec_kill(true) ends such an exec by \
                 signalling its container",
            ));
        }
        tracing::warn!(
            container = %self.container,
            %signal,
            "exec processes are not visible from this host; signalling the container as opted in"
        );
        match self.call(self.engine.kill(&self.container, signal)).await {
            Err(e) if matches!(e.kind(), ErrorKind::Conflict | ErrorKind::NotFound) => Ok(()),
            other => other,
        }
    }
}
