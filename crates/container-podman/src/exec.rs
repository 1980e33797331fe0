//! Exec on Podman: create, the attached output stream, and exec inspect (see
//! `docs/adr/0003-exec-kill.md` for how core ends an exec).
//!
//! Reading: the exec is started by hand over an upgraded connection and its attach
//! stream decoded by [`crate::frames`] (podman-api's decoder panics on a stream id it
//! does not expect).
//!
//! Killing: libpod has no exec-kill API; core signals the tree under the PID exec
//! inspect reports while `Running`, within the container's cgroup only (never a process
//! merely because its parent is `conmon`, which is true of every container's PID 1).

use std::sync::{Arc, OnceLock};

use container_core::raw::ExecState;
use container_core::{ExecSpec, OutputChunk, Result, StreamKind};
use podman_api::api::Exec;
use podman_api::opts::{ExecCreateOpts, UserOpt};
use podman_api::Podman;
use serde_json::Value;

use crate::error::map_error;
use container_core::raw::OutputStream;
use futures::StreamExt;

/// One Podman exec.
pub struct PodmanExec {
    /// Kept from `create_exec`: one from `execs().get(id)` cannot be started.
    exec: Exec,
    /// What a shell would exit with when the runtime refused to start the command (read
    /// from its message, the first output): libpod says 125 for what it cannot classify.
    runtime_failure: Arc<OnceLock<i64>>,
}

impl std::fmt::Debug for PodmanExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodmanExec")
            .field("id", &self.exec.id().to_string())
            .finish_non_exhaustive()
    }
}

/// Creates (does not start) `spec` in `container`.
pub(crate) async fn create(
    podman: &Podman,
    container: &str,
    spec: &ExecSpec,
) -> Result<PodmanExec> {
    let mut opts = ExecCreateOpts::builder()
        .command(spec.cmd.clone())
        .tty(spec.tty)
        .attach_stdin(spec.has_stdin())
        .attach_stdout(true)
        .attach_stderr(true)
        .env(spec.env.iter().filter_map(|e| e.split_once('=')));
    if let Some(dir) = &spec.working_dir {
        opts = opts.working_dir(dir);
    }
    if let Some(user) = spec.user {
        opts = opts.user(UserOpt::UidGid(user.uid as isize, user.gid as isize));
    }
    let containers = podman.containers();
    let exec = containers
        .get(container)
        .create_exec(&opts.build())
        .await
        .map_err(map_error)?;
    Ok(PodmanExec {
        exec,
        runtime_failure: Arc::default(),
    })
}

/// The exit code libpod gives an exec whose command the runtime could not start, when it
/// cannot tell "not found" (127) from "not executable" (126): Podman 5 with runc 1.3,
/// for a directory ("is a directory").
const RUNTIME_FAILED: i64 = 125;

/// The shell status the runtime's message in `chunk` (libpod writes it to stderr as the
/// exec's first output: `Error: runc: exec failed: …`) stands for, if it is one.
fn runtime_failure(chunk: &OutputChunk) -> Option<i64> {
    if chunk.stream != StreamKind::Stderr {
        return None;
    }
    let text = String::from_utf8_lossy(&chunk.data);
    if !text.to_ascii_lowercase().starts_with("error: ") {
        return None;
    }
    container_core::error::shell_status_for_runtime_text(&text)
}

impl PodmanExec {
    /// The exec's id.
    pub(crate) fn id(&self) -> String {
        self.exec.id().to_string()
    }

    /// Exec inspect.
    pub(crate) async fn state(&self) -> Result<ExecState> {
        let v = self.exec.inspect().await.map_err(map_error)?;
        let mut state = exec_state(&v);
        if state.exit_code == Some(RUNTIME_FAILED) {
            if let Some(code) = self.runtime_failure.get() {
                state.exit_code = Some(*code);
            }
        }
        Ok(state)
    }

    /// `output` with its first chunk read for the runtime's start failure.
    pub(crate) fn watched(&self, output: OutputStream) -> OutputStream {
        let failure = self.runtime_failure.clone();
        let mut first = true;
        output
            .inspect(move |item| {
                if let (Ok(chunk), true) = (item, std::mem::take(&mut first)) {
                    if let Some(code) = runtime_failure(chunk) {
                        let _ = failure.set(code);
                    }
                }
            })
            .boxed()
    }
}

/// The fields of exec inspect this backend reads.
fn exec_state(v: &Value) -> ExecState {
    let running = v["Running"].as_bool().unwrap_or(false);
    let pid = v["Pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p > 0);
    ExecState {
        // libpod reports ExitCode 0 before the start: only a PID tells that it started.
        started: running || pid.is_some(),
        running,
        exit_code: v["ExitCode"].as_i64(),
        pid,
        container_id: v["ContainerID"].as_str().unwrap_or_default().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtimes_start_failure_is_read_as_a_shell_would_say_it() {
        let err = |text: &str| OutputChunk::new(StreamKind::Stderr, text.as_bytes().to_vec());
        let directory = "Error: runc: exec failed: unable to start container process: exec: \"/etc\": is a directory: OCI runtime error\n";
        assert_eq!(runtime_failure(&err(directory)), Some(126));
        let missing = "Error: runc: exec failed: unable to start container process: exec: \"/x\": stat /x: no such file or directory: OCI runtime attempted to invoke a command that was not found\n";
        assert_eq!(runtime_failure(&err(missing)), Some(127));
        // The same words from the process itself, or on stdout, are output, not a failure.
        assert_eq!(runtime_failure(&err("ls: /etc: is a directory\n")), None);
        let stdout = OutputChunk::new(StreamKind::Stdout, directory.as_bytes().to_vec());
        assert_eq!(runtime_failure(&stdout), None);
    }

    #[test]
    fn exec_inspect_fields_are_read() {
        let v = serde_json::json!({
            "Running": true, "Pid": 4242, "ExitCode": 0, "ContainerID": "abc"
        });
        assert_eq!(
            exec_state(&v),
            ExecState {
                started: true,
                running: true,
                exit_code: Some(0),
                pid: Some(4242),
                container_id: "abc".into()
            }
        );
        let stale = exec_state(&serde_json::json!({"Running": false, "Pid": 0, "ExitCode": 0}));
        assert!(!stale.running);
        assert!(!stale.started, "exit code 0 without a PID is not a start");
        assert_eq!(stale.pid, None);
    }
}
