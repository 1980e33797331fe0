//! Exec on Docker: the attached output stream, the exit code from exec inspect, and a way
//! to kill an exec although Docker has no exec-kill API (see `docs/adr/0003-exec-kill.md`).
//!
//! Killing: exec inspect gives the host PID of the exec's first process. When that PID is
//! visible here (`/proc`, engine on this host) and its cgroup names the container, the
//! whole process tree under it is signalled from the host. If the host refuses (EPERM:
//! the caller is not root), the same PIDs, translated into the container's PID namespace
//! (`NSpid`), are signalled by a `kill` run inside the container as root. Only when no PID
//! can be seen at all (a remote engine) is the signal sent to the container's main process,
//! which ends the container: the documented last resort.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::Docker;
use container_core::proctree::{self, Proc, Signalled};
use container_core::{
    Error, ErrorKind, ExecControl, ExecEvent, ExecSpec, ExecStream, KillGuard, Operation,
    OutputChunk, Result, Signal, StreamKind,
};
use futures::stream::{self, BoxStream, StreamExt};
use tokio::io::AsyncWriteExt;

use crate::error::{map_error, BACKEND};

/// Frame buffer of the attached stream: large enough for throughput, small enough that
/// memory per exec stays bounded.
const OUTPUT_CAPACITY: usize = 64 * 1024;
/// How long to wait for exec inspect to report the exit after the stream closed.
const EXIT_WAIT: Duration = Duration::from_secs(10);

/// Starts `spec` in `container` and returns its stream (timeout and drop-kill included).
pub(crate) async fn start(
    docker: &Docker,
    container: &str,
    spec: &ExecSpec,
    call_timeout: Duration,
) -> Result<ExecStream> {
    let ctx = |e: Error| e.context(BACKEND, Operation::Exec, container.to_string());
    let options = CreateExecOptions::<String> {
        cmd: Some(spec.cmd.clone()),
        env: (!spec.env.is_empty()).then(|| spec.env.clone()),
        working_dir: spec.working_dir.clone(),
        user: spec.user.map(|u| u.to_string()),
        tty: Some(spec.tty),
        attach_stdin: Some(spec.stdin.is_some()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..CreateExecOptions::default()
    };
    let created = unary(call_timeout, docker.create_exec(container, options))
        .await
        .map_err(ctx)?;
    let exec_id = created.id;
    let control = Arc::new(DockerExecControl {
        docker: docker.clone(),
        exec_id: exec_id.clone(),
        container: container.to_string(),
        signalled: Signalled::default(),
    });
    // From here until the stream exists, a dropped future must still end the process.
    let guard = KillGuard::new(control.clone(), spec.kill_grace);
    let started = unary(
        call_timeout,
        docker.start_exec(
            &exec_id,
            Some(StartExecOptions {
                detach: false,
                tty: spec.tty,
                output_capacity: Some(OUTPUT_CAPACITY),
            }),
        ),
    )
    .await
    .map_err(ctx)?;
    let StartExecResults::Attached { output, mut input } = started else {
        return Err(ctx(Error::new(
            ErrorKind::Internal,
            "engine started the exec detached",
        )));
    };
    if let Some(data) = spec.stdin.clone() {
        // Feed stdin, then close our write half: the process sees EOF.
        tokio::spawn(async move {
            if let Err(e) = input.write_all(&data).await {
                tracing::debug!(error = %e, "writing exec stdin failed");
            }
            let _ = input.shutdown().await;
        });
    } else {
        drop(input);
    }
    guard.disarm();
    let events = events(docker.clone(), exec_id, container.to_string(), output);
    Ok(ExecStream::new(events, control, spec, container).with_backend(BACKEND))
}

async fn unary<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = std::result::Result<T, bollard::errors::Error>>,
) -> Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(map_error),
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!("the engine did not answer within {limit:?}"),
        )),
    }
}

type Output = std::pin::Pin<
    Box<
        dyn futures::Stream<
                Item = std::result::Result<bollard::container::LogOutput, bollard::errors::Error>,
            > + Send,
    >,
>;

/// State of the event stream: reading output, then the exit code, then done.
enum Phase {
    Output(Output),
    Exit,
    Done,
}

struct EventState {
    docker: Docker,
    exec_id: String,
    container: String,
    phase: Phase,
    /// First stdout bytes were the runtime's own "exec failed" message: see `runtime_failure`.
    runtime_failure: Option<i64>,
    first_chunk: bool,
}

/// Output chunks as the engine sends them (read only when polled: backpressure), then the
/// exit code from exec inspect.
fn events(
    docker: Docker,
    exec_id: String,
    container: String,
    output: Output,
) -> BoxStream<'static, Result<ExecEvent>> {
    let state = EventState {
        docker,
        exec_id,
        container,
        phase: Phase::Output(output),
        runtime_failure: None,
        first_chunk: true,
    };
    stream::unfold(state, |mut st| async move {
        loop {
            match std::mem::replace(&mut st.phase, Phase::Done) {
                Phase::Output(mut out) => match out.next().await {
                    Some(Ok(log)) => {
                        st.phase = Phase::Output(out);
                        let Some(mut chunk) = chunk(log) else {
                            continue;
                        };
                        if std::mem::take(&mut st.first_chunk) {
                            if let Some(code) = runtime_failure(&chunk) {
                                st.runtime_failure = Some(code);
                                chunk.stream = StreamKind::Stderr;
                            }
                        }
                        return Some((Ok(ExecEvent::Output(chunk)), st));
                    }
                    Some(Err(e)) => {
                        let err =
                            map_error(e).context(BACKEND, Operation::Exec, st.container.clone());
                        return Some((Err(err), st));
                    }
                    None => st.phase = Phase::Exit,
                },
                Phase::Exit => {
                    let result = exit_code(&st.docker, &st.exec_id)
                        .await
                        .map(|code| ExecEvent::Exit(st.runtime_failure.unwrap_or(code)))
                        .map_err(|e| e.context(BACKEND, Operation::Exec, st.container.clone()));
                    return Some((result, st));
                }
                Phase::Done => return None,
            }
        }
    })
    .boxed()
}

fn chunk(log: bollard::container::LogOutput) -> Option<OutputChunk> {
    use bollard::container::LogOutput as L;
    let (stream, data) = match log {
        L::StdOut { message } | L::Console { message } => (StreamKind::Stdout, message),
        L::StdErr { message } => (StreamKind::Stderr, message),
        L::StdIn { .. } => return None,
    };
    (!data.is_empty()).then_some(OutputChunk { stream, data })
}

/// Docker 20.10 reports an exec whose binary cannot start as exit 126 with the runtime's
/// message on stdout. Normalise to what a shell (and the Docker CLI) says: 127 for "not
/// found", 126 for "not executable", message on stderr.
fn runtime_failure(chunk: &OutputChunk) -> Option<i64> {
    let text = String::from_utf8_lossy(&chunk.data);
    if !text.starts_with("OCI runtime exec failed") {
        return None;
    }
    if text.contains("no such file or directory") || text.contains("executable file not found") {
        Some(127)
    } else {
        Some(126)
    }
}

/// Polls exec inspect until the exec is no longer running and returns its exit code.
async fn exit_code(docker: &Docker, exec_id: &str) -> Result<i64> {
    let deadline = tokio::time::Instant::now() + EXIT_WAIT;
    let mut delay = Duration::from_millis(2);
    loop {
        let info = docker.inspect_exec(exec_id).await.map_err(map_error)?;
        if info.running != Some(true) {
            return Ok(info.exit_code.unwrap_or(-1));
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

/// How long a signal waits for an exec that was created but has not started yet (its
/// start request may still be on its way to the engine).
const START_WAIT: Duration = Duration::from_secs(3);

/// Signals one Docker exec's processes; see the module docs.
struct DockerExecControl {
    docker: Docker,
    exec_id: String,
    container: String,
    /// Every process signalled so far (see [`Signalled`]).
    signalled: Signalled,
}

#[async_trait]
impl ExecControl for DockerExecControl {
    async fn signal(&self, signal: Signal) -> Result<()> {
        let info = self.inspect_started().await?;
        let container_id = info.container_id.clone().unwrap_or_default();
        let running = info.running == Some(true);
        let found = info
            .pid
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| running && *p > 0)
            .and_then(|root| proctree::tree_in_container(root, &container_id))
            .unwrap_or_default();
        match self.signalled.signal(found, signal) {
            None if running => self.last_resort(signal).await,
            Some(refused) if !refused.is_empty() => self.kill_inside(&refused, signal).await,
            _ => Ok(()),
        }
    }

    async fn is_running(&self) -> Result<bool> {
        if !self.signalled.alive().is_empty() {
            return Ok(true);
        }
        let info = self
            .docker
            .inspect_exec(&self.exec_id)
            .await
            .map_err(map_error)?;
        Ok(info.running == Some(true))
    }
}

impl DockerExecControl {
    /// Exec inspect, waiting (up to [`START_WAIT`]) while the exec is created but not yet
    /// started: neither running nor exited.
    async fn inspect_started(&self) -> Result<bollard::models::ExecInspectResponse> {
        let deadline = tokio::time::Instant::now() + START_WAIT;
        loop {
            let info = self
                .docker
                .inspect_exec(&self.exec_id)
                .await
                .map_err(map_error)?;
            let pending = info.running != Some(true) && info.exit_code.is_none();
            if !pending || tokio::time::Instant::now() >= deadline {
                return Ok(info);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The host refused to signal (not root): send it from inside the container, as root,
    /// to the same processes under their in-container PIDs.
    async fn kill_inside(&self, procs: &[Proc], signal: Signal) -> Result<()> {
        let Some(cmd) = proctree::kill_argv(procs, signal) else {
            return Ok(());
        };
        let options = CreateExecOptions::<String> {
            cmd: Some(cmd),
            user: Some("0:0".into()),
            attach_stdout: Some(false),
            attach_stderr: Some(false),
            ..CreateExecOptions::default()
        };
        let created = self
            .docker
            .create_exec(&self.container, options)
            .await
            .map_err(map_error)?;
        self.docker
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: true,
                    ..StartExecOptions::default()
                }),
            )
            .await
            .map_err(map_error)?;
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
        let options = bollard::query_parameters::KillContainerOptions {
            signal: signal.name(),
        };
        match self
            .docker
            .kill_container(&self.container, Some(options))
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
    use bytes::Bytes;

    fn out(s: &str) -> OutputChunk {
        OutputChunk {
            stream: StreamKind::Stdout,
            data: Bytes::copy_from_slice(s.as_bytes()),
        }
    }

    #[test]
    fn runtime_messages_normalise_exit_codes() {
        let nf = "OCI runtime exec failed: exec failed: unable to start container process: \
                  exec: \"/nonexistent\": stat /nonexistent: no such file or directory: unknown";
        assert_eq!(runtime_failure(&out(nf)), Some(127));
        let np = "OCI runtime exec failed: exec failed: unable to start container process: \
                  exec: \"/etc/passwd\": permission denied: unknown";
        assert_eq!(runtime_failure(&out(np)), Some(126));
        assert_eq!(runtime_failure(&out("hello")), None);
    }
}
