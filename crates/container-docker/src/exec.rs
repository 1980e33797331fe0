//! Exec on Docker: create, the attached output stream, and exec inspect. Docker has no
//! exec-kill API: core signals the tree under the PID exec inspect reports, within the
//! container's cgroup (`docs/adr/0003-exec-kill.md`).

use std::sync::{Arc, OnceLock};

use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::Docker;
use container_core::raw::{ExecState, OutputStream};
use container_core::{Error, ErrorKind, ExecSpec, Result, StreamKind};
use futures::stream::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::convert::output_chunk;
use crate::error::{map_error, normalised_exit, not_running, runtime_failure, RuntimeFailure};

/// Frame buffer of the attached stream: large enough for throughput, small enough that
/// memory per exec stays bounded.
const OUTPUT_CAPACITY: usize = 64 * 1024;

/// One Docker exec.
#[derive(Debug)]
pub struct DockerExec {
    id: String,
    tty: bool,
    /// Set when the first stdout bytes were the runtime's own "exec failed" message:
    /// the exit code a shell would give (see [`runtime_failure`]).
    runtime_failure: Arc<OnceLock<i64>>,
}

/// Creates (does not start) `spec` in `container`.
pub(crate) async fn create(
    docker: &Docker,
    container: &str,
    spec: &ExecSpec,
) -> Result<DockerExec> {
    let options = CreateExecOptions::<String> {
        cmd: Some(spec.cmd.clone()),
        env: (!spec.env.is_empty()).then(|| spec.env.clone()),
        working_dir: spec.working_dir.clone(),
        user: spec.user.map(|u| u.to_string()),
        tty: Some(spec.tty),
        attach_stdin: Some(spec.has_stdin()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..CreateExecOptions::default()
    };
    let created = docker
        .create_exec(container, options)
        .await
        .map_err(map_error)?;
    Ok(DockerExec {
        id: created.id,
        tty: spec.tty,
        runtime_failure: Arc::default(),
    })
}

impl DockerExec {
    /// Starts the exec attached, feeds stdin, and returns its output.
    pub(crate) async fn start(&self, docker: &Docker, spec: &ExecSpec) -> Result<OutputStream> {
        let options = StartExecOptions {
            detach: false,
            tty: self.tty,
            output_capacity: Some(OUTPUT_CAPACITY),
        };
        let started = docker
            .start_exec(&self.id, Some(options))
            .await
            .map_err(map_error)?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(Error::new(
                ErrorKind::Internal,
                "engine started the exec detached",
            ));
        };
        if let Some(source) = spec.stdin_source() {
            // Feed stdin, then close our write half: the process sees EOF.
            container_core::exec::feed_stdin(
                source,
                async move { Ok(input) },
                |mut input| async move {
                    let _ = input.shutdown().await;
                },
            );
        } else {
            drop(input);
        }
        let failure = self.runtime_failure.clone();
        let mut first = true;
        let chunks = output.filter_map(move |item| {
            let item = match item {
                Ok(log) => output_chunk(log).map(|mut chunk| {
                    if std::mem::take(&mut first) {
                        match runtime_failure(&chunk) {
                            Some(RuntimeFailure::Exit(code)) => {
                                let _ = failure.set(code);
                                chunk.stream = StreamKind::Stderr;
                            }
                            Some(RuntimeFailure::NotRunning) => return Err(not_running(&chunk)),
                            None => {}
                        }
                    }
                    Ok(chunk)
                }),
                Err(e) => Some(Err(map_error(e))),
            };
            std::future::ready(item)
        });
        Ok(chunks.boxed())
    }

    /// Exec inspect.
    pub(crate) async fn state(&self, docker: &Docker) -> Result<ExecState> {
        let info = docker.inspect_exec(&self.id).await.map_err(map_error)?;
        let running = info.running == Some(true);
        let exit_code = normalised_exit(info.exit_code, self.runtime_failure.get().copied());
        Ok(ExecState {
            // Created but not started: neither running nor exited.
            started: running || exit_code.is_some(),
            running,
            exit_code,
            pid: info
                .pid
                .and_then(|p| i32::try_from(p).ok())
                .filter(|p| *p > 0),
            container_id: info.container_id.unwrap_or_default(),
        })
    }
}
