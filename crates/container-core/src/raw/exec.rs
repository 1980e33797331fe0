//! The exec of [`EngineManager`]: create, guard, start, output then exit status, and the
//! one [`ExecControl`] for every engine (see `docs/adr/0003-exec-kill.md`).
//!
//! Killing, for an engine without a native exec kill: the engine names the host
//! processes proven to be the exec's ([`Engine::exec_processes`]); they are signalled
//! from the host, and remembered with their start times so that later rounds (SIGKILL
//! after the grace, "is anything still running?") also reach children re-parented to
//! the container's PID 1. If the host refuses (EPERM: the caller is not root), the same
//! processes are signalled by a `kill` run inside the container as root. Only when no
//! process can be seen while the engine says the exec runs (a remote engine) is the
//! signal sent to the container's main process: the documented last resort.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};

use super::manager::{within, EngineManager};
use super::{Engine, ExecState};
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::exec::{ExecControl, ExecEvent, ExecSpec, ExecStream, KillGuard};
use crate::manager::ContainerManager;
use crate::proctree::{self, Proc, Signalled};
use crate::signal::Signal;

/// How long to wait for the engine to report the exit after the output closed.
const EXIT_WAIT: Duration = Duration::from_secs(10);
/// How long a signal waits for an exec that was created but has not started yet (its
/// start request may still be on its way to the engine).
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
        signalled: Signalled::default(),
    });
    // From here until the stream exists, a dropped future must still end the process.
    let guard = KillGuard::new(control.clone(), spec.kill_grace);
    let output = manager
        .call(Operation::Exec, engine.exec_start(&exec, spec))
        .await?;
    guard.disarm();
    let backend = manager.backend();
    let resource = manager.container(container);
    let output = output.map(move |item| {
        item.map(ExecEvent::Output)
            .map_err(|e| e.context(backend, Operation::Exec, resource.clone()))
    });
    let resource = manager.container(container);
    let exit = stream::once(async move {
        exit_code(engine.as_ref(), &exec)
            .await
            .map(ExecEvent::Exit)
            .map_err(|e| e.context(backend, Operation::Exec, resource))
    });
    let events: BoxStream<'static, Result<ExecEvent>> = output.chain(exit).boxed();
    Ok(ExecStream::new(events, control, spec, manager.container(container)).with_backend(backend))
}

/// Polls the exec's state until the engine no longer reports it running; its exit code.
async fn exit_code<E: Engine>(engine: &E, exec: &E::Exec) -> Result<i64> {
    let deadline = tokio::time::Instant::now() + EXIT_WAIT;
    let mut delay = Duration::from_millis(2);
    loop {
        let state = engine.exec_state(exec).await?;
        if !state.running {
            return state.exit_code.ok_or_else(|| {
                Error::new(
                    ErrorKind::Internal,
                    "the engine reports the exec ended but gives no exit code",
                )
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::new(
                ErrorKind::Timeout,
                "exec output closed but the engine still reports it running",
            ));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(100));
    }
}

/// Signals one exec's processes; see the module docs.
struct Control<E: Engine> {
    engine: Arc<E>,
    exec: Arc<E::Exec>,
    container: String,
    call_timeout: Duration,
    /// Every process signalled so far (see [`Signalled`]).
    signalled: Signalled,
}

#[async_trait]
impl<E: Engine> ExecControl for Control<E> {
    async fn signal(&self, signal: Signal) -> Result<()> {
        if self.engine.capabilities().native_exec_kill {
            return self.call(self.engine.exec_kill(&self.exec, signal)).await;
        }
        let (state, found) = self.started().await?;
        tracing::debug!(?state, found = found.len(), %signal, "signalling exec");
        match self.signalled.signal(found, signal) {
            None if state.running => self.last_resort(signal).await,
            Some(refused) if !refused.is_empty() => self.kill_inside(&refused, signal).await,
            _ => Ok(()),
        }
    }

    async fn is_running(&self) -> Result<bool> {
        if !self.signalled.alive().is_empty() {
            return Ok(true);
        }
        Ok(self.call(self.engine.exec_state(&self.exec)).await?.running)
    }
}

impl<E: Engine> Control<E> {
    async fn call<T>(&self, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        within(self.call_timeout, Operation::Exec, fut).await
    }

    /// The exec's state and visible processes, waiting (up to [`START_WAIT`]) while it is
    /// created but not yet started.
    async fn started(&self) -> Result<(ExecState, Vec<Proc>)> {
        let deadline = tokio::time::Instant::now() + START_WAIT;
        loop {
            let state = self.call(self.engine.exec_state(&self.exec)).await?;
            let found = self.engine.exec_processes(&self.exec, &state).await?;
            if state.started || !found.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok((state, found));
            }
            tokio::time::sleep(START_POLL).await;
        }
    }

    /// The host refused to signal (not root): send it from inside the container, as root,
    /// to the same processes under their in-container PIDs.
    async fn kill_inside(&self, procs: &[Proc], signal: Signal) -> Result<()> {
        let Some(cmd) = proctree::kill_argv(procs, signal) else {
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

    /// No process of the exec is visible from here (remote engine): signal the container's
    /// main process, which ends the container and with it the exec.
    async fn last_resort(&self, signal: Signal) -> Result<()> {
        tracing::warn!(
            container = %self.container,
            %signal,
            "exec processes are not visible from this host; signalling the container"
        );
        match self.call(self.engine.kill(&self.container, signal)).await {
            Err(e) if e.kind() == ErrorKind::Conflict => Ok(()), // already stopped
            other => other,
        }
    }
}
