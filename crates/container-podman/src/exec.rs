//! Exec on Podman: the attached output stream, the exit code from exec inspect, and a way
//! to kill an exec although libpod has no exec-kill API (see `docs/adr/0003-exec-kill.md`).
//!
//! Reading: podman-api's frame decoder panics on a stream id above 2, so the attached
//! stream is read inside its own task, which hands frames over through a one-slot channel
//! (backpressure is kept: the task reads a frame only when the previous one was taken). A
//! panic of that task becomes an `Internal` error.
//!
//! Killing: exec inspect gives the host PID of the exec's first process while `Running`
//! is true. Only then, and only when that PID is visible here (`/proc`) and either its
//! cgroup names the container or its parent is `conmon` (the exec's monitor), is the
//! whole process tree under it signalled from the host. A stale PID (the exec ended and
//! the PID was reused) is never signalled. If the host refuses (EPERM), the same PIDs in
//! the container's PID namespace are signalled by a `kill` exec run inside the container
//! as root. Only when no PID can be seen at all (a remote engine) is the signal sent to
//! the container's main process, which ends the container: the documented last resort.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use container_core::proctree::{self, Proc, Signalled};
use container_core::{
    Error, ErrorKind, ExecControl, ExecEvent, ExecSpec, ExecStream, KillGuard, Operation,
    OutputChunk, Result, Signal, StreamKind,
};
use futures::io::AsyncWriteExt;
use futures::stream::{self, BoxStream, StreamExt};
use podman_api::api::Exec;
use podman_api::conn::TtyChunk;
use podman_api::opts::{ExecCreateOpts, ExecStartOpts, UserOpt};
use podman_api::Podman;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::error::{map_error, text_error, BACKEND};

/// How long to wait for exec inspect to report the exit after the stream closed.
const EXIT_WAIT: Duration = Duration::from_secs(10);
/// The environment variable that marks an exec's processes (see `start`).
pub(crate) const EXEC_MARKER: &str = "CONTAINER_RS_EXEC";
/// How long a signal waits for an exec that was created but has not started yet.
const START_WAIT: Duration = Duration::from_secs(3);

/// Starts `spec` in `container` and returns its stream (timeout and drop-kill included).
pub(crate) async fn start(
    podman: &Podman,
    container: &str,
    spec: &ExecSpec,
    call_timeout: Duration,
) -> Result<ExecStream> {
    let ctx = |e: Error| e.context(BACKEND, Operation::Exec, container.to_string());
    let mut opts = ExecCreateOpts::builder()
        .command(spec.cmd.clone())
        .tty(spec.tty)
        .attach_stdin(spec.stdin.is_some())
        .attach_stdout(true)
        .attach_stderr(true);
    // A unique marker in the exec's environment (inherited by its children) finds its
    // processes even when libpod loses track of them: an exec whose start request is cut
    // off is reported as exited (125) while its process runs on.
    let marker_value = uuid::Uuid::new_v4().simple().to_string();
    let marker = format!("{EXEC_MARKER}={marker_value}");
    opts = opts.env(
        spec.env
            .iter()
            .filter_map(|e| e.split_once('='))
            .chain(std::iter::once((EXEC_MARKER, marker_value.as_str()))),
    );
    if let Some(dir) = &spec.working_dir {
        opts = opts.working_dir(dir);
    }
    if let Some(user) = spec.user {
        opts = opts.user(UserOpt::UidGid(user.uid as isize, user.gid as isize));
    }
    let containers = podman.containers();
    let handle = containers.get(container);
    // Keep this `Exec`: one from `execs().get(id)` cannot be started.
    let exec = unary(call_timeout, handle.create_exec(&opts.build()))
        .await
        .map_err(ctx)?;
    let exec_id = exec.id().to_string();
    let control = Arc::new(PodmanExecControl {
        podman: podman.clone(),
        exec_id: exec_id.clone(),
        container: container.to_string(),
        marker,
        signalled: Signalled::default(),
    });
    // From here until the stream exists, a dropped future must still end the process.
    let guard = KillGuard::new(control.clone(), spec.kill_grace);
    let started = unary(
        call_timeout,
        exec.start(&ExecStartOpts::builder().tty(spec.tty).build()),
    )
    .await
    .map_err(ctx)?;
    let Some(multiplexer) = started else {
        return Err(ctx(Error::new(
            ErrorKind::Internal,
            "engine started the exec detached",
        )));
    };
    let (reader, mut writer) = multiplexer.split();
    let (tx, rx) = mpsc::channel(1);
    let stdin = spec.stdin.clone();
    let reading = tokio::spawn(async move {
        if let Some(data) = stdin {
            // Feed stdin, then close our write half: the process sees EOF.
            tokio::spawn(async move {
                if let Err(e) = writer.write_all(&data).await {
                    tracing::debug!(error = %e, "writing exec stdin failed");
                }
                let _ = writer.close().await;
            });
        } else {
            drop(writer);
        }
        let mut reader = std::pin::pin!(reader);
        while let Some(item) = reader.next().await {
            if tx
                .send(item.map_err(|e| map_error(e.into())))
                .await
                .is_err()
            {
                return; // the consumer is gone
            }
        }
    });
    guard.disarm();
    let events = events(exec, container.to_string(), rx, reading);
    Ok(ExecStream::new(events, control, spec, container).with_backend(BACKEND))
}

async fn unary<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = std::result::Result<T, podman_api::Error>>,
) -> Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(map_error),
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!("the engine did not answer within {limit:?}"),
        )),
    }
}

/// State of the event stream: reading output, then the exit code, then done.
enum Phase {
    Output(
        mpsc::Receiver<Result<TtyChunk>>,
        tokio::task::JoinHandle<()>,
    ),
    Exit,
    Done,
}

struct EventState {
    exec: Exec,
    container: String,
    phase: Phase,
}

/// Output chunks as the engine sends them (read only when polled: backpressure), then the
/// exit code from exec inspect.
fn events(
    exec: Exec,
    container: String,
    rx: mpsc::Receiver<Result<TtyChunk>>,
    reading: tokio::task::JoinHandle<()>,
) -> BoxStream<'static, Result<ExecEvent>> {
    let state = EventState {
        exec,
        container,
        phase: Phase::Output(rx, reading),
    };
    stream::unfold(state, |mut st| async move {
        loop {
            match std::mem::replace(&mut st.phase, Phase::Done) {
                Phase::Output(mut rx, reading) => match rx.recv().await {
                    Some(Ok(tty)) => {
                        st.phase = Phase::Output(rx, reading);
                        if let Some(chunk) = chunk(tty) {
                            return Some((Ok(ExecEvent::Output(chunk)), st));
                        }
                    }
                    Some(Err(e)) => {
                        let err = e.context(BACKEND, Operation::Exec, st.container.clone());
                        return Some((Err(err), st));
                    }
                    None => {
                        // The reader ended: normally, or by a panic of the decoder.
                        if let Err(e) = reading.await {
                            let err = text_error(&format!("exec output could not be decoded: {e}"))
                                .context(BACKEND, Operation::Exec, st.container.clone());
                            return Some((Err(err), st));
                        }
                        st.phase = Phase::Exit;
                    }
                },
                Phase::Exit => {
                    let result = exit_code(&st.exec)
                        .await
                        .map(ExecEvent::Exit)
                        .map_err(|e| e.context(BACKEND, Operation::Exec, st.container.clone()));
                    return Some((result, st));
                }
                Phase::Done => return None,
            }
        }
    })
    .boxed()
}

fn chunk(tty: TtyChunk) -> Option<OutputChunk> {
    let (stream, data) = match tty {
        TtyChunk::StdOut(d) => (StreamKind::Stdout, d),
        TtyChunk::StdErr(d) => (StreamKind::Stderr, d),
        TtyChunk::StdIn(_) => return None,
    };
    (!data.is_empty()).then(|| OutputChunk {
        stream,
        data: Bytes::from(data),
    })
}

/// The fields of exec inspect this backend reads.
#[derive(Debug, Default, PartialEq, Eq)]
struct ExecState {
    running: bool,
    exit_code: Option<i64>,
    pid: Option<i32>,
    container_id: String,
}

fn exec_state(v: &Value) -> ExecState {
    ExecState {
        running: v["Running"].as_bool().unwrap_or(false),
        exit_code: v["ExitCode"].as_i64(),
        pid: v["Pid"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p > 0),
        container_id: v["ContainerID"].as_str().unwrap_or_default().to_string(),
    }
}

async fn inspect(podman: &Podman, exec_id: &str) -> Result<ExecState> {
    // `execs().get()` cannot start an exec but inspects it fine.
    let v = podman
        .execs()
        .get(exec_id)
        .inspect()
        .await
        .map_err(map_error)?;
    Ok(exec_state(&v))
}

/// Polls exec inspect until the exec is no longer running and returns its exit code.
async fn exit_code(exec: &Exec) -> Result<i64> {
    let deadline = tokio::time::Instant::now() + EXIT_WAIT;
    let mut delay = Duration::from_millis(2);
    loop {
        let state = exec_state(&exec.inspect().await.map_err(map_error)?);
        if !state.running {
            return Ok(state.exit_code.unwrap_or(-1));
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

/// Signals one Podman exec's processes; see the module docs.
struct PodmanExecControl {
    podman: Podman,
    exec_id: String,
    container: String,
    /// `CONTAINER_RS_EXEC=<unique>`, in the environment of every process of this exec.
    marker: String,
    /// Every process signalled so far (see [`Signalled`]).
    signalled: Signalled,
}

/// Whether `pid` (from exec inspect while running) is this exec's process.
fn belongs(pid: i32, container_id: &str) -> bool {
    proctree::in_container(pid, container_id)
        || proctree::parent_comm(pid).is_some_and(|c| c == "conmon")
}

#[async_trait]
impl ExecControl for PodmanExecControl {
    async fn signal(&self, signal: Signal) -> Result<()> {
        let state = self.inspect_started().await?;
        tracing::debug!(exec = %self.exec_id, ?state, %signal, "signalling exec");
        let mut found = self.marked(&state.container_id);
        if state.running {
            if let Some(root) = state.pid.filter(|p| belongs(*p, &state.container_id)) {
                found.extend(proctree::tree(root).unwrap_or_default());
            }
        }
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
        Ok(inspect(&self.podman, &self.exec_id).await?.running)
    }
}

impl PodmanExecControl {
    /// Exec inspect, waiting (up to [`START_WAIT`]) while the exec is created but not yet
    /// started: neither running nor exited.
    async fn inspect_started(&self) -> Result<ExecState> {
        let deadline = tokio::time::Instant::now() + START_WAIT;
        loop {
            let state = inspect(&self.podman, &self.exec_id).await?;
            // libpod reports ExitCode 0 before the start: a PID tells that it started,
            // and so do processes carrying the marker.
            let pending = !state.running
                && state.pid.is_none()
                && self.marked(&state.container_id).is_empty();
            if !pending || tokio::time::Instant::now() >= deadline {
                return Ok(state);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The processes in `container_id` that carry this exec's marker.
    fn marked(&self, container_id: &str) -> Vec<Proc> {
        proctree::with_env_marker(&self.marker)
            .into_iter()
            .filter(|(pid, _)| {
                container_id.is_empty() || proctree::in_container(*pid, container_id)
            })
            .collect()
    }

    /// The host refused to signal (not root): send it from inside the container, as root,
    /// to the same processes under their in-container PIDs.
    async fn kill_inside(&self, procs: &[Proc], signal: Signal) -> Result<()> {
        let Some(cmd) = proctree::kill_argv(procs, signal) else {
            return Ok(());
        };
        let opts = ExecCreateOpts::builder()
            .command(cmd)
            .user(UserOpt::UidGid(0, 0))
            .attach_stdout(true)
            .attach_stderr(true)
            .build();
        let containers = self.podman.containers();
        let exec = containers
            .get(&self.container)
            .create_exec(&opts)
            .await
            .map_err(map_error)?;
        // Attached: a detached exec is unreliable on Podman 4.3. Drain in a task (the
        // decoder may panic), bounded by the start wait.
        let start = ExecStartOpts::builder().build();
        if let Some(out) = exec.start(&start).await.map_err(map_error)? {
            let drain = tokio::spawn(out.split().0.for_each(|_| async {}));
            let _ = tokio::time::timeout(START_WAIT, drain).await;
        }
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
        let containers = self.podman.containers();
        match containers
            .get(&self.container)
            .send_signal(signal.name())
            .await
            .map_err(map_error)
        {
            Err(e) if e.kind() == ErrorKind::Conflict => Ok(()), // already stopped
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_inspect_fields_are_read() {
        let v = serde_json::json!({
            "Running": true, "Pid": 4242, "ExitCode": 0, "ContainerID": "abc"
        });
        assert_eq!(
            exec_state(&v),
            ExecState {
                running: true,
                exit_code: Some(0),
                pid: Some(4242),
                container_id: "abc".into()
            }
        );
        let stale = exec_state(&serde_json::json!({"Running": false, "Pid": 0}));
        assert!(!stale.running);
        assert_eq!(stale.pid, None);
    }

    #[test]
    fn foreign_processes_do_not_belong_to_an_exec() {
        let me = std::process::id() as i32;
        assert!(!belongs(me, "0123456789abcdef"));
    }
}
