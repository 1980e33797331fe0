//! The exec of [`EngineManager`]: create, start (never cut off midway), the exit read from
//! the engine's exec state (not from the end of the output), and the one [`ExecControl`]
//! for every engine (see `docs/adr/0003-exec-kill.md`). The lifecycle itself (output,
//! exit, deadline, kill) is [`ExecStream`]'s task.
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
//! Every exec is started with a mark in its environment ([`EXEC_MARK`], a random value
//! of its own), inherited by every process it starts: a timed-out, dropped or killed exec
//! ends its daemonized descendants too (re-parented to the container's init, out of its
//! tree), found by that mark among the container's own processes. A process that clears
//! its environment escapes this (see the ADR).
//!
//! The `/proc` and cgroup reads run on the blocking pool, never on the async workers.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::StreamExt;
use tokio::sync::{watch, Mutex as AsyncMutex};
use tokio::task::JoinHandle;

use super::manager::{within, EngineManager};
use super::{Engine, ExecState, OutputStream};
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::exec::{
    terminate, terminate_draining, ExecControl, ExecExit, ExecSource, ExecSpec, ExecStream,
};
use crate::manager::ContainerManager;
use crate::poll::Poll;
use crate::proctree::{self, ContainerCgroup, Signalled};
use crate::signal::Signal;

/// The environment variable that marks every process of one exec (see the module docs).
pub const EXEC_MARK: &str = "CONTAINER_RS_EXEC";
/// The first pause between two looks at an exec's state; it doubles up to
/// [`EXIT_POLL_MAX`], and starts again when the output ends.
const EXIT_POLL_FIRST: Duration = Duration::from_millis(2);
/// The longest pause between two looks at a running exec's state: how late, at most, the
/// end of an exec whose output is held open by a child is seen.
const EXIT_POLL_MAX: Duration = Duration::from_millis(250);
/// How long the engine may fail to answer about a running exec (retryable errors)
/// before the exec's stream ends with that error.
const STATE_OUTAGE: Duration = Duration::from_secs(10);
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
    let mark = uuid::Uuid::new_v4().simple().to_string();
    let mut spec = spec.clone();
    spec.env.push(format!("{EXEC_MARK}={mark}"));
    let spec = &spec;
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
        mark,
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
    let output = if engine.capabilities().attach_until_exit {
        attached_until_exit(output, engine.clone(), exec.clone())
    } else {
        output
    };
    let exit = Arc::new(EngineExit {
        engine,
        exec,
        container: container.to_string(),
        command: spec.cmd.first().cloned().unwrap_or_default(),
        limit: Some(manager.call_timeout()),
        seen: Mutex::new(None),
    });
    let source = ExecSource {
        output: output.boxed(),
        exit,
        control,
    };
    Ok(ExecStream::spawn(
        source,
        spec,
        Some(backend),
        manager.container(container),
    ))
}

/// `output` of an engine that keeps it attached until the exec's process exits
/// ([`Capabilities::attach_until_exit`](crate::Capabilities::attach_until_exit)): an end
/// while the engine still reports the process running is the connection lost (an engine
/// restart, a cut link), and ends in `Unavailable`. (Docker then kills the process and
/// reports exit 126 for it: a code no process gave.)
fn attached_until_exit<E: Engine>(
    output: OutputStream,
    engine: Arc<E>,
    exec: Arc<E::Exec>,
) -> OutputStream {
    let check = futures::stream::once(async move {
        match engine.exec_state(&exec).await {
            Ok(state) if state.running => Some(Err(Error::new(
                ErrorKind::Unavailable,
                "the connection to the engine was lost while the exec runs (its output ended \
                 before its process)",
            ))),
            // Exited (the normal end), or the engine cannot say: the exit watch decides.
            _ => None,
        }
    })
    .filter_map(std::future::ready);
    output.chain(check).boxed()
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
        let started = started.map_err(|e| {
            Error::new(ErrorKind::Internal, "the exec start task failed").with_source(e)
        })?;
        if let Err(e) = &started {
            if e.kind() == ErrorKind::Timeout {
                // Cut off by the call timeout: the engine may have started the process
                // all the same. End whatever of it runs (nothing, if it never started).
                let (control, grace) = (self.control.clone(), self.grace);
                tokio::spawn(async move {
                    if let Err(e) = terminate(control, grace).await {
                        tracing::warn!(error = %e, "an exec whose start timed out could not be ended");
                    }
                });
            }
        }
        started
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
                if let Ok(Ok(mut output)) = starting.await {
                    if let Err(e) = terminate_draining(control, grace, &mut output).await {
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
/// (a `tar` for copies) whose output was read to its end.
async fn exit_code<E: Engine>(engine: &E, exec: &E::Exec, command: &str) -> Result<i64> {
    let (_ended, output_ended) = watch::channel(true);
    let state = wait_exited(engine, exec, None, output_ended).await?;
    code_of(&state, command)
}

/// The exit code in `state`; the engine must give one once the exec ended.
fn code_of(state: &ExecState, command: &str) -> Result<i64> {
    state.exit_code.ok_or_else(|| {
        Error::new(
            ErrorKind::Internal,
            format!("the engine reports the exec `{command}` ended but gives no exit code"),
        )
    })
}

/// Polls `exec`'s state (each look within `limit`) until its process has exited; that
/// state. The one poll loop behind every exec's end: a state that says "not running" ends
/// it once the engine says the exec started (or, for engines that cannot say, once the
/// output ended); before that it is an exec the engine has not started yet. Retryable
/// errors are looked past for [`STATE_OUTAGE`].
async fn wait_exited<E: Engine>(
    engine: &E,
    exec: &E::Exec,
    limit: Option<Duration>,
    output_ended: watch::Receiver<bool>,
) -> Result<ExecState> {
    let mut failing: Option<tokio::time::Instant> = None;
    let ended = output_ended.clone();
    // The output's end is a hint: the exit is likely near, look again at once.
    let mut poll = Poll::doubling(EXIT_POLL_FIRST, EXIT_POLL_MAX).hinted_by(output_ended);
    loop {
        let ended = *ended.borrow();
        let state = match limit {
            Some(limit) => within(limit, Operation::Exec, engine.exec_state(exec)).await,
            None => engine.exec_state(exec).await,
        };
        match state {
            Ok(state) if !state.running && (state.started || ended) => return Ok(state),
            Ok(_) => failing = None,
            Err(e) if e.is_retryable() => {
                let since = *failing.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= STATE_OUTAGE {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
        poll.pause().await; // no deadline: always true
    }
}

/// The exit of one exec, read from the engine's exec state.
struct EngineExit<E: Engine> {
    engine: Arc<E>,
    exec: Arc<E::Exec>,
    /// The exec's container, to tell a lost exec from a removed container.
    container: String,
    command: String,
    limit: Option<Duration>,
    /// The state that said the process exited.
    seen: Mutex<Option<ExecState>>,
}

#[async_trait]
impl<E: Engine> ExecExit for EngineExit<E> {
    async fn exited(&self, output_ended: watch::Receiver<bool>) -> Result<()> {
        let state =
            match wait_exited(self.engine.as_ref(), &self.exec, self.limit, output_ended).await {
                Err(e) if e.kind() == ErrorKind::NotFound => return Err(self.lost(e).await),
                other => other?,
            };
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(state);
        Ok(())
    }

    async fn code(&self, settled: bool) -> Result<i64> {
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::Internal, "the exec's exit was not seen"))?;
        if settled {
            return code_of(&seen, &self.command);
        }
        // Output read after the exit can refine the code (Docker's start failures).
        let again = match self.limit {
            Some(limit) => within(limit, Operation::Exec, self.engine.exec_state(&self.exec)).await,
            None => self.engine.exec_state(&self.exec).await,
        };
        match again {
            Ok(state) if !state.running && state.exit_code.is_some() => {
                code_of(&state, &self.command)
            }
            _ => code_of(&seen, &self.command),
        }
    }
}

impl<E: Engine> EngineExit<E> {
    /// The engine no longer knows the exec (`gone`, a `NotFound`). With its container
    /// removed, that is the answer; with the container still there, the engine lost the
    /// exec (a restarted dockerd forgets every exec): its result is unknown, which is
    /// `Unavailable`, not a missing object the caller named.
    async fn lost(&self, gone: Error) -> Error {
        let inspect = self.engine.inspect(&self.container);
        let container = match self.limit {
            Some(limit) => within(limit, Operation::Exec, inspect).await,
            None => inspect.await,
        };
        match container {
            Err(e) if e.kind() == ErrorKind::NotFound => gone,
            _ => Error::new(
                ErrorKind::Unavailable,
                "the engine no longer knows this exec although its container exists (the \
                 engine restarted?): the step's result is unknown",
            )
            .with_source(gone),
        }
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
    /// The value of [`EXEC_MARK`] in this exec's processes.
    mark: String,
    /// The container's cgroup, once found.
    cgroup: AsyncMutex<Option<ContainerCgroup>>,
    /// Every process signalled so far (see [`Signalled`]).
    signalled: Arc<Signalled>,
}

#[async_trait]
impl<E: Engine> ExecControl for Control<E> {
    async fn signal(&self, signal: Signal) -> Result<()> {
        // The exec's own process: natively where the engine can, else by its tree.
        let (state, native) = if self.engine.capabilities().native_exec_kill {
            let sent = match self.call(self.engine.exec_kill(&self.exec, signal)).await {
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()), // already exited
                other => other,
            };
            (None, Some(sent))
        } else {
            (self.started().await?, None)
        };
        let running = state.as_ref().is_some_and(|s| s.running);
        let seen = self.seen().await?;
        tracing::debug!(?state, ?seen, %signal, "signalling exec");
        let cgroup = match seen {
            Seen::Local(cgroup) => Some(cgroup),
            Seen::Stopped => None,
            Seen::Remote if native.is_none() && running => return self.remote(signal).await,
            Seen::Remote => None,
        };
        // Then every process it started, daemonized ones included (by the mark).
        let root = state.and_then(|s| s.pid.filter(|_| s.running));
        let signalled = self.signalled.clone();
        let mark = self.mark.clone();
        let main = cgroup.as_ref().map(ContainerCgroup::main_pid);
        let refused = tokio::task::spawn_blocking(move || {
            let found = cgroup
                .map(|c| c.exec_processes(root, Some((EXEC_MARK, &mark))))
                .unwrap_or_default();
            signalled.signal(found, signal)
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, "the signal task failed").with_source(e))?;
        if !refused.is_empty() {
            if let Some(main) = main {
                self.kill_inside(&refused, main, signal).await?;
            }
        }
        native.unwrap_or(Ok(()))
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
        let mut poll = Poll::every(START_POLL).within(START_WAIT);
        loop {
            let state = match self.call(self.engine.exec_state(&self.exec)).await {
                Ok(state) => state,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let pending = !state.started || (state.running && state.pid.is_none());
            if !pending || !poll.pause().await {
                return Ok(Some(state));
            }
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
    async fn kill_inside(&self, pids: &[i32], main: i32, signal: Signal) -> Result<()> {
        let pids = pids.to_vec();
        let argv = tokio::task::spawn_blocking(move || proctree::kill_argv(&pids, main, signal))
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

/// How long an abandoned [`OwnExec`] gets between SIGTERM and SIGKILL.
const OWN_EXEC_GRACE: Duration = Duration::from_secs(2);
/// The deadline of each engine call an abandoned [`OwnExec`]'s kill makes.
const OWN_EXEC_CALL: Duration = Duration::from_secs(30);

/// An exec a backend runs for itself (a copy's `tar`), marked like every exec: created by
/// [`OwnExec::create`], ended with every process it started (SIGTERM, SIGKILL after a
/// grace, in a task of its own) if this guard is dropped before
/// [`finished`](OwnExec::finished). Without it a copy whose caller gave up left its `tar`
/// blocked for good on an engine whose shim keeps the exec's pipes open (containerd).
pub struct OwnExec<E: Engine> {
    exec: Arc<E::Exec>,
    spec: ExecSpec,
    control: Option<Arc<Control<E>>>,
}

impl<E: Engine> std::fmt::Debug for OwnExec<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnExec")
            .field("cmd", &self.spec.cmd)
            .field("armed", &self.control.is_some())
            .finish_non_exhaustive()
    }
}

impl<E: Engine + Clone> OwnExec<E> {
    /// Creates `spec` (given the exec mark) in the running `container`; start it with
    /// [`exec`](Self::exec) and [`spec`](Self::spec).
    pub async fn create(engine: &E, container: &str, spec: &ExecSpec) -> Result<Self> {
        OwnExec::create_shared(Arc::new(engine.clone()), container, spec).await
    }
}

impl<E: Engine> OwnExec<E> {
    /// [`create`](Self::create) with an engine already shared.
    pub(crate) async fn create_shared(
        engine: Arc<E>,
        container: &str,
        spec: &ExecSpec,
    ) -> Result<Self> {
        let mark = uuid::Uuid::new_v4().simple().to_string();
        let mut spec = spec.clone();
        spec.env.push(format!("{EXEC_MARK}={mark}"));
        let exec = Arc::new(engine.exec_create(container, &spec).await?);
        let control = Arc::new(Control {
            engine,
            exec: exec.clone(),
            container: container.to_string(),
            call_timeout: OWN_EXEC_CALL,
            remote_kill: false,
            mark,
            cgroup: AsyncMutex::new(None),
            signalled: Arc::default(),
        });
        Ok(OwnExec {
            exec,
            spec,
            control: Some(control),
        })
    }
}

impl<E: Engine> OwnExec<E> {
    /// The engine's exec.
    pub fn exec(&self) -> &E::Exec {
        &self.exec
    }

    /// The spec it was created with (the mark included): the one to start it with.
    pub fn spec(&self) -> &ExecSpec {
        &self.spec
    }

    /// Its exit code, once its output was read to the end; the guard is disarmed.
    pub async fn finished(mut self, engine: &E) -> Result<i64> {
        let command = self.spec.cmd.first().cloned().unwrap_or_default();
        let code = exit_code(engine, &self.exec, &command).await;
        if code.is_ok() {
            self.control = None;
        }
        code
    }

    /// `Ok` once it exited 0; otherwise `Internal`, naming its exit code and what it said
    /// on `stderr`.
    pub async fn succeeded(self, engine: &E, stderr: &[u8]) -> Result<()> {
        let command = self.spec.cmd.first().cloned().unwrap_or_default();
        match self.finished(engine).await? {
            0 => Ok(()),
            code => Err(own_exec_failed(&command, code, stderr)),
        }
    }
}

/// The error for one of the library's own execs (`command`) that exited `code` having
/// said `stderr`.
pub(crate) fn own_exec_failed(command: &str, code: i64, stderr: &[u8]) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!(
            "{command} in the container exited {code}: {}",
            String::from_utf8_lossy(stderr).trim()
        ),
    )
}

impl<E: Engine> Drop for OwnExec<E> {
    fn drop(&mut self) {
        let Some(control) = self.control.take() else {
            return;
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            tracing::debug!(cmd = ?self.spec.cmd, "the library's own exec abandoned, ending it");
            handle.spawn(async move {
                if let Err(e) = terminate(control, OWN_EXEC_GRACE).await {
                    tracing::warn!(error = %e, "an abandoned exec of the library could not be ended");
                }
            });
        }
    }
}
