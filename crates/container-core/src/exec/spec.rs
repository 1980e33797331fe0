//! What to run and what comes back: [`ExecSpec`] with its builders, output chunks,
//! events, and the buffered result.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;

use crate::types::{RedactedEnv, User};

/// Default cap of the buffered exec: 16 MiB per stream.
pub const DEFAULT_OUTPUT_LIMIT: usize = 16 << 20;
/// Default grace between SIGTERM and SIGKILL when an exec times out or is dropped.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(2);

/// A reader an exec's stdin is copied from as the process reads it (a terminal, a pipe,
/// a socket): taken by the first exec started with it; a spec cloned shares it, and a
/// second start finds it taken (its process sees EOF at once).
#[derive(Clone)]
pub struct StdinStream(Arc<Mutex<Option<Box<dyn AsyncRead + Send + Unpin>>>>);

impl StdinStream {
    /// A stream over `reader`.
    pub fn new(reader: impl AsyncRead + Send + Unpin + 'static) -> Self {
        StdinStream(Arc::new(Mutex::new(Some(Box::new(reader)))))
    }

    /// The reader, once; `None` after that.
    pub fn take(&self) -> Option<Box<dyn AsyncRead + Send + Unpin>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

impl PartialEq for StdinStream {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for StdinStream {}

impl fmt::Debug for StdinStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let taken = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none();
        f.debug_struct("StdinStream")
            .field("taken", &taken)
            .finish()
    }
}

/// A command to run in a running container.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecSpec {
    /// Argv; must not be empty.
    pub cmd: Vec<String>,
    /// Extra environment as `KEY=VALUE`. Values never appear in Debug output.
    pub env: Vec<String>,
    /// Absolute working directory; the container's when `None`.
    pub working_dir: Option<String>,
    /// User and group; the container's when `None`.
    pub user: Option<User>,
    /// Bytes written to the process's stdin, then EOF. No stdin when `None`.
    pub stdin: Option<Bytes>,
    /// A reader copied into the process's stdin as the process reads it, then EOF
    /// (set with [`stdin_reader`](Self::stdin_reader)); not with [`stdin`](Self::stdin).
    pub stdin_stream: Option<StdinStream>,
    /// Allocate a TTY (stdout and stderr merge into stdout).
    pub tty: bool,
    /// Deadline; on expiry the processes get SIGTERM, then SIGKILL after `kill_grace`,
    /// and the exec returns [`ErrorKind::Timeout`](crate::ErrorKind::Timeout).
    pub timeout: Option<Duration>,
    /// Grace between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// Bytes the buffered [`exec`](crate::ContainerManager::exec) keeps per stream.
    pub output_limit: usize,
}

impl Default for ExecSpec {
    fn default() -> Self {
        ExecSpec {
            cmd: Vec::new(),
            env: Vec::new(),
            working_dir: None,
            user: None,
            stdin: None,
            stdin_stream: None,
            tty: false,
            timeout: None,
            kill_grace: DEFAULT_KILL_GRACE,
            output_limit: DEFAULT_OUTPUT_LIMIT,
        }
    }
}

impl fmt::Debug for ExecSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecSpec")
            .field("cmd", &self.cmd)
            .field("env", &RedactedEnv(&self.env))
            .field("working_dir", &self.working_dir)
            .field("user", &self.user)
            .field("stdin", &self.stdin.as_ref().map(Bytes::len))
            .field("stdin_stream", &self.stdin_stream)
            .field("tty", &self.tty)
            .field("timeout", &self.timeout)
            .field("kill_grace", &self.kill_grace)
            .field("output_limit", &self.output_limit)
            .finish()
    }
}

impl ExecSpec {
    /// A spec running `cmd` with defaults for everything else.
    pub fn new<I, S>(cmd: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ExecSpec {
            cmd: cmd.into_iter().map(Into::into).collect(),
            ..ExecSpec::default()
        }
    }

    /// `sh -c script`.
    pub fn shell(script: impl Into<String>) -> Self {
        ExecSpec::new(["sh".to_string(), "-c".to_string(), script.into()])
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the user.
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some(User::new(uid, gid));
        self
    }

    /// Adds an environment entry.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push(format!("{key}={value}"));
        self
    }

    /// Sets the working directory.
    pub fn working_dir(mut self, dir: impl Into<String>) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    /// Feeds `input` to stdin, then EOF.
    pub fn stdin(mut self, input: impl Into<Bytes>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// Copies `reader` into the process's stdin as the process reads it, then EOF: input
    /// that is not all there when the step starts (`containerctl exec -i`, a pipe).
    pub fn stdin_reader(mut self, reader: impl AsyncRead + Send + Unpin + 'static) -> Self {
        self.stdin_stream = Some(StdinStream::new(reader));
        self
    }

    /// Whether the process gets a stdin ([`stdin`](Self::stdin) or
    /// [`stdin_stream`](Self::stdin_stream)).
    pub fn has_stdin(&self) -> bool {
        self.stdin.is_some() || self.stdin_stream.is_some()
    }

    /// What a backend copies into the process's stdin: the bytes, or the stream's
    /// reader (an empty reader once another start took it); `None` without stdin.
    pub fn stdin_source(&self) -> Option<Box<dyn AsyncRead + Send + Unpin>> {
        if let Some(data) = &self.stdin {
            return Some(Box::new(std::io::Cursor::new(data.clone())));
        }
        let stream = self.stdin_stream.as_ref()?;
        Some(
            stream
                .take()
                .unwrap_or_else(|| Box::new(tokio::io::empty())),
        )
    }

    /// Allocates a TTY (stdout and stderr merge into stdout) or not.
    pub fn tty(mut self, tty: bool) -> Self {
        self.tty = tty;
        self
    }

    /// Sets the grace between SIGTERM and SIGKILL on timeout or drop.
    pub fn kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    /// Sets the buffered output cap per stream.
    pub fn output_limit(mut self, bytes: usize) -> Self {
        self.output_limit = bytes;
        self
    }
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StreamKind {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A piece of output, exactly the bytes the process wrote (not necessarily UTF-8 or whole lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    /// The stream it came from.
    pub stream: StreamKind,
    /// The bytes.
    pub data: Bytes,
}

impl OutputChunk {
    /// `data` from `stream`.
    pub fn new(stream: StreamKind, data: impl Into<Bytes>) -> Self {
        OutputChunk {
            stream,
            data: data.into(),
        }
    }
}

/// An output event of `s` on `stream`, for tests.
#[cfg(test)]
pub(crate) fn out(stream: StreamKind, s: &[u8]) -> ExecEvent {
    ExecEvent::Output(OutputChunk::new(stream, Bytes::copy_from_slice(s)))
}

/// An event of an exec stream: output, then exactly one exit status at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    /// Output from the process.
    Output(OutputChunk),
    /// The process exited with this code; the last event.
    Exit(i64),
}

/// The result of the buffered [`exec`](crate::ContainerManager::exec).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ExecOutput {
    /// Exit code of the process (a non-zero code is a result, not an error).
    pub exit_code: i64,
    /// Standard output, at most the spec's `output_limit` bytes.
    pub stdout: Vec<u8>,
    /// Standard error, at most the spec's `output_limit` bytes.
    pub stderr: Vec<u8>,
    /// True when either stream was cut at the limit.
    pub truncated: bool,
}

impl ExecOutput {
    /// An output with `exit_code` and the two streams, not truncated: what a mock's
    /// scripted `exec` returns (the struct is non-exhaustive).
    pub fn new(exit_code: i64, stdout: impl Into<Vec<u8>>, stderr: impl Into<Vec<u8>>) -> Self {
        ExecOutput {
            exit_code,
            stdout: stdout.into(),
            stderr: stderr.into(),
            truncated: false,
        }
    }

    /// Stdout as text, lossily decoded.
    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr as text, lossily decoded.
    pub fn stderr_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_spec_debug_redacts_env_values() {
        let spec = ExecSpec::new(["env"]).env("TOKEN", "hunter2");
        let text = format!("{spec:?}");
        assert!(text.contains("TOKEN=<redacted>"), "{text}");
        assert!(!text.contains("hunter2"));
    }
}
