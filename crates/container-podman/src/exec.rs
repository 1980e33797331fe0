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

use container_core::raw::ExecState;
use container_core::{ExecSpec, Result};
use podman_api::api::Exec;
use podman_api::opts::{ExecCreateOpts, UserOpt};
use podman_api::Podman;
use serde_json::Value;

use crate::error::map_error;

/// One Podman exec.
pub struct PodmanExec {
    /// Kept from `create_exec`: one from `execs().get(id)` cannot be started.
    exec: Exec,
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
    Ok(PodmanExec { exec })
}

impl PodmanExec {
    /// The exec's id.
    pub(crate) fn id(&self) -> String {
        self.exec.id().to_string()
    }

    /// Exec inspect.
    pub(crate) async fn state(&self) -> Result<ExecState> {
        let v = self.exec.inspect().await.map_err(map_error)?;
        Ok(exec_state(&v))
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
