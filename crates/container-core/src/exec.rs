//! Exec: the spec, the streamed output, the timeout and drop-kill logic shared by every
//! backend, and the buffered form built on top of the stream.
//!
//! A backend implements only [`ContainerManager::exec_stream`](crate::ContainerManager::exec_stream):
//! it returns the engine's output as a stream of [`ExecEvent`]s plus an [`ExecControl`]
//! that can signal the exec's processes. [`ExecStream`] adds the rest once, for all
//! backends: the deadline (SIGTERM to every process of the exec, SIGKILL after the grace),
//! kill on drop, and the `exit status must come last` rule.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::{BoxStream, Stream, StreamExt};
use futures::FutureExt;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Operation, Result};
use crate::signal::Signal;
use crate::types::{BackendKind, RedactedEnv, User};

/// Default cap of the buffered exec: 16 MiB per stream.
pub const DEFAULT_OUTPUT_LIMIT: usize = 16 << 20;
/// Default grace between SIGTERM and SIGKILL when an exec times out or is dropped.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(2);

/// A command to run in a running container.
#[derive(Clone, PartialEq, Eq)]
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
    /// Allocate a TTY (stdout and stderr merge into stdout).
    pub tty: bool,
    /// Deadline; on expiry the processes get SIGTERM, then SIGKILL after `kill_grace`,
    /// and the exec returns [`ErrorKind::Timeout`].
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
    /// Stdout as text, lossily decoded.
    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr as text, lossily decoded.
    pub fn stderr_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// How a backend signals the processes of one exec. Docker and Podman have no exec-kill
/// API, so each backend supplies its own way (see `docs/adr`).
#[async_trait]
pub trait ExecControl: Send + Sync + 'static {
    /// Sends `signal` to every process the exec started (the whole tree).
    async fn signal(&self, signal: Signal) -> Result<()>;
    /// Whether any process of the exec is still alive.
    async fn is_running(&self) -> Result<bool>;
}

/// SIGTERM to every process of the exec, SIGKILL after `grace`, then wait (bounded) until
/// the engine says nothing runs. Errors are logged: this runs on timeout and drop paths
/// where there is nobody to return them to.
pub async fn terminate(control: Arc<dyn ExecControl>, grace: Duration) {
    const POLL: Duration = Duration::from_millis(50);
    const KILL_WAIT: Duration = Duration::from_secs(5);

    if let Err(e) = control.signal(Signal::TERM).await {
        tracing::debug!(error = %e, "SIGTERM to exec failed");
    }
    let gone = wait_gone(control.as_ref(), grace, POLL).await;
    if !gone {
        if let Err(e) = control.signal(Signal::KILL).await {
            tracing::warn!(error = %e, "SIGKILL to exec failed");
        }
        if !wait_gone(control.as_ref(), KILL_WAIT, POLL).await {
            tracing::warn!("exec processes still running after SIGKILL");
        }
    }
}

/// Terminates an exec (see [`terminate`]) if dropped while armed: a backend holds one from
/// the moment the engine knows the exec until its [`ExecStream`] exists, so a caller that
/// drops the future during the setup still leaves nothing running.
pub struct KillGuard {
    control: Option<Arc<dyn ExecControl>>,
    grace: Duration,
}

impl fmt::Debug for KillGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KillGuard")
            .field("armed", &self.control.is_some())
            .field("grace", &self.grace)
            .finish()
    }
}

impl KillGuard {
    /// An armed guard for the exec behind `control`.
    pub fn new(control: Arc<dyn ExecControl>, grace: Duration) -> Self {
        KillGuard {
            control: Some(control),
            grace,
        }
    }

    /// The setup finished: the stream owns the exec now.
    pub fn disarm(mut self) {
        self.control = None;
    }
}

impl Drop for KillGuard {
    fn drop(&mut self) {
        let Some(control) = self.control.take() else {
            return;
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            tracing::debug!("exec setup abandoned, terminating");
            handle.spawn(terminate(control, self.grace));
        }
    }
}

async fn wait_gone(control: &dyn ExecControl, limit: Duration, poll: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match control.is_running().await {
            Ok(false) => return true,
            Ok(true) => {}
            Err(e) => {
                tracing::debug!(error = %e, "cannot tell whether exec still runs");
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(poll).await;
    }
}

/// The streamed output of an exec: [`ExecEvent::Output`] chunks in order, then one
/// [`ExecEvent::Exit`].
///
/// Memory is bounded: the backend reads from the engine only when this stream is polled,
/// so a slow consumer slows the process down (backpressure) instead of buffering.
/// On timeout the stream yields one `Timeout` error after the processes are gone.
/// Dropping the stream before the exit event kills the processes in the background.
pub struct ExecStream {
    events: BoxStream<'static, Result<ExecEvent>>,
    control: Option<Arc<dyn ExecControl>>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    timeout: Duration,
    kill_grace: Duration,
    killing: Option<BoxFuture<'static, ()>>,
    backend: Option<BackendKind>,
    resource: String,
    finished: bool,
}

impl fmt::Debug for ExecStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecStream")
            .field("resource", &self.resource)
            .field("timeout", &self.timeout)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl ExecStream {
    /// Wraps a backend's event stream and control, applying `spec`'s timeout and grace.
    /// `resource` (the container) goes into the errors this stream raises.
    pub fn new(
        events: BoxStream<'static, Result<ExecEvent>>,
        control: Arc<dyn ExecControl>,
        spec: &ExecSpec,
        resource: impl Into<String>,
    ) -> Self {
        ExecStream {
            events,
            control: Some(control),
            deadline: spec.timeout.map(|t| Box::pin(tokio::time::sleep(t))),
            timeout: spec.timeout.unwrap_or_default(),
            kill_grace: spec.kill_grace,
            killing: None,
            backend: None,
            resource: resource.into(),
            finished: false,
        }
    }

    /// Names the backend in the errors this stream raises.
    pub fn with_backend(mut self, backend: BackendKind) -> Self {
        self.backend = Some(backend);
        self
    }

    /// A stream of fixed events with no process behind it, for tests and mocks.
    pub fn from_events(events: Vec<ExecEvent>) -> Self {
        ExecStream {
            events: futures::stream::iter(events.into_iter().map(Ok)).boxed(),
            control: None,
            deadline: None,
            timeout: Duration::ZERO,
            kill_grace: DEFAULT_KILL_GRACE,
            killing: None,
            backend: None,
            resource: String::new(),
            finished: false,
        }
    }

    /// Reads the whole stream, keeping at most `limit` bytes per output stream.
    pub async fn collect_output(mut self, limit: usize) -> Result<ExecOutput> {
        let mut out = ExecOutput::default();
        while let Some(event) = self.next().await {
            match event? {
                ExecEvent::Output(chunk) => {
                    let buf = match chunk.stream {
                        StreamKind::Stdout => &mut out.stdout,
                        StreamKind::Stderr => &mut out.stderr,
                    };
                    let room = limit.saturating_sub(buf.len());
                    if chunk.data.len() > room {
                        out.truncated = true;
                    }
                    buf.extend_from_slice(&chunk.data[..chunk.data.len().min(room)]);
                }
                ExecEvent::Exit(code) => {
                    out.exit_code = code;
                    return Ok(out);
                }
            }
        }
        Err(self.error(
            ErrorKind::Internal,
            "exec output ended without an exit status",
        ))
    }

    /// Terminates the exec's processes (SIGTERM, SIGKILL after the grace) and waits until
    /// they are gone. Dropping the stream does the same in the background; call this when
    /// the program is about to exit (Ctrl-C) and the background task would not get to run.
    pub async fn cancel(mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        if let Some(control) = self.control.take() {
            terminate(control, self.kill_grace).await;
        }
    }

    /// Splits the output into lines of at most `max_line` bytes (see [`Lines`]).
    pub fn lines(self, max_line: usize) -> Lines {
        Lines::new(self, max_line)
    }

    fn error(&self, kind: ErrorKind, message: impl Into<String>) -> Error {
        let mut e = Error::new(kind, message).with_operation(Operation::Exec);
        if let Some(backend) = self.backend {
            e = e.with_backend(backend);
        }
        if self.resource.is_empty() {
            e
        } else {
            e.with_resource(self.resource.clone())
        }
    }

    fn start_kill(&mut self) {
        if let Some(control) = self.control.take() {
            self.killing = Some(terminate(control, self.kill_grace).boxed());
        } else {
            self.killing = Some(futures::future::ready(()).boxed());
        }
    }
}

impl Stream for ExecStream {
    type Item = Result<ExecEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        if this.killing.is_none() {
            if let Some(deadline) = this.deadline.as_mut() {
                if deadline.as_mut().poll(cx).is_ready() {
                    tracing::debug!(resource = %this.resource, "exec deadline passed, terminating");
                    this.start_kill();
                }
            }
        }
        if let Some(killing) = this.killing.as_mut() {
            ready!(killing.as_mut().poll(cx));
            this.killing = None;
            this.finished = true;
            let timeout = this.timeout;
            return Poll::Ready(Some(Err(this.error(
                ErrorKind::Timeout,
                format!("exec timed out after {timeout:?}; its processes were killed"),
            ))));
        }
        match ready!(this.events.poll_next_unpin(cx)) {
            Some(Ok(ExecEvent::Exit(code))) => {
                this.finished = true;
                this.control = None;
                Poll::Ready(Some(Ok(ExecEvent::Exit(code))))
            }
            Some(other) => Poll::Ready(Some(other)),
            None => {
                this.finished = true;
                this.control = None;
                Poll::Ready(Some(Err(this.error(
                    ErrorKind::Internal,
                    "exec output ended without an exit status",
                ))))
            }
        }
    }
}

impl Drop for ExecStream {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let Some(control) = self.control.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                tracing::debug!(resource = %self.resource, "exec dropped before exit, terminating");
                handle.spawn(terminate(control, self.kill_grace));
            }
            Err(_) => tracing::warn!(
                resource = %self.resource,
                "exec dropped outside a tokio runtime; its processes may keep running"
            ),
        }
    }
}

/// One line of output: the bytes up to and without the newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The stream it came from.
    pub stream: StreamKind,
    /// The bytes, without `\n` (a trailing `\r` is kept).
    pub data: Bytes,
    /// True when the line was longer than the limit and cut; the rest is dropped.
    pub truncated: bool,
}

/// A line from [`Lines`]: a line of output or the exit code at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineEvent {
    /// A line of output.
    Line(Line),
    /// The exit code; the last event.
    Exit(i64),
}

#[derive(Default)]
struct LineBuf {
    buf: BytesMut,
    truncated: bool,
}

/// Splits an [`ExecStream`] into lines per stream, each at most `max_line` bytes, for log
/// consumers. Memory stays bounded by `2 * max_line` whatever the process writes.
pub struct Lines {
    inner: ExecStream,
    max_line: usize,
    stdout: LineBuf,
    stderr: LineBuf,
    ready: VecDeque<LineEvent>,
    done: bool,
}

impl fmt::Debug for Lines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lines")
            .field("max_line", &self.max_line)
            .finish_non_exhaustive()
    }
}

impl Lines {
    fn new(inner: ExecStream, max_line: usize) -> Self {
        Lines {
            inner,
            max_line: max_line.max(1),
            stdout: LineBuf::default(),
            stderr: LineBuf::default(),
            ready: VecDeque::new(),
            done: false,
        }
    }

    fn push(&mut self, stream: StreamKind, mut data: Bytes) {
        let max = self.max_line;
        let lb = match stream {
            StreamKind::Stdout => &mut self.stdout,
            StreamKind::Stderr => &mut self.stderr,
        };
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(pos) => {
                    let part = data.split_to(pos + 1);
                    append_capped(lb, &part[..pos], max);
                    let line = Line {
                        stream,
                        data: lb.buf.split().freeze(),
                        truncated: std::mem::take(&mut lb.truncated),
                    };
                    self.ready.push_back(LineEvent::Line(line));
                }
                None => {
                    append_capped(lb, &data, max);
                    data.clear();
                }
            }
        }
    }

    fn flush(&mut self) {
        for (stream, lb) in [
            (StreamKind::Stdout, &mut self.stdout),
            (StreamKind::Stderr, &mut self.stderr),
        ] {
            if !lb.buf.is_empty() || lb.truncated {
                self.ready.push_back(LineEvent::Line(Line {
                    stream,
                    data: lb.buf.split().freeze(),
                    truncated: std::mem::take(&mut lb.truncated),
                }));
            }
        }
    }
}

fn append_capped(lb: &mut LineBuf, bytes: &[u8], max: usize) {
    let room = max.saturating_sub(lb.buf.len());
    if bytes.len() > room {
        lb.truncated = true;
    }
    lb.buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

impl Stream for Lines {
    type Item = Result<LineEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(event) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(event)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(this.inner.poll_next_unpin(cx)) {
                Some(Ok(ExecEvent::Output(chunk))) => this.push(chunk.stream, chunk.data),
                Some(Ok(ExecEvent::Exit(code))) => {
                    this.flush();
                    this.ready.push_back(LineEvent::Exit(code));
                    this.done = true;
                }
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                None => this.done = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Mutex;

    fn out(stream: StreamKind, s: &[u8]) -> ExecEvent {
        ExecEvent::Output(OutputChunk {
            stream,
            data: Bytes::copy_from_slice(s),
        })
    }

    #[tokio::test]
    async fn collect_caps_and_flags_truncation_but_keeps_exit_code() {
        let s = ExecStream::from_events(vec![
            out(StreamKind::Stdout, b"hello "),
            out(StreamKind::Stderr, b"oops"),
            out(StreamKind::Stdout, b"world"),
            ExecEvent::Exit(3),
        ]);
        let o = s.collect_output(8).await.expect("collect");
        assert_eq!(o.stdout, b"hello wo");
        assert_eq!(o.stderr, b"oops");
        assert!(o.truncated);
        assert_eq!(o.exit_code, 3);
    }

    #[tokio::test]
    async fn missing_exit_is_an_error() {
        let s = ExecStream::from_events(vec![out(StreamKind::Stdout, b"x")]);
        let e = s.collect_output(10).await.expect_err("no exit");
        assert_eq!(e.kind(), ErrorKind::Internal);
    }

    #[tokio::test]
    async fn lines_split_per_stream_and_cap_length() {
        let s = ExecStream::from_events(vec![
            out(StreamKind::Stdout, b"ab"),
            out(StreamKind::Stderr, b"e1\ne"),
            out(StreamKind::Stdout, b"c\n0123456789abc\nta"),
            out(StreamKind::Stderr, b"2\n"),
            ExecEvent::Exit(0),
        ]);
        let events: Vec<_> = s
            .lines(10)
            .map(|e| e.expect("line"))
            .collect::<Vec<_>>()
            .await;
        let line = |stream, d: &[u8], truncated| {
            LineEvent::Line(Line {
                stream,
                data: Bytes::copy_from_slice(d),
                truncated,
            })
        };
        assert_eq!(
            events,
            vec![
                line(StreamKind::Stderr, b"e1", false),
                line(StreamKind::Stdout, b"abc", false),
                line(StreamKind::Stdout, b"0123456789", true),
                line(StreamKind::Stderr, b"e2", false),
                line(StreamKind::Stdout, b"ta", false),
                LineEvent::Exit(0),
            ]
        );
    }

    /// A fake process: running until it gets a signal that it does not ignore.
    struct FakeProc {
        running: AtomicBool,
        ignore_term: bool,
        signals: Mutex<Vec<Signal>>,
        polls: AtomicU32,
    }

    #[async_trait]
    impl ExecControl for FakeProc {
        async fn signal(&self, signal: Signal) -> Result<()> {
            self.signals.lock().expect("lock").push(signal);
            if signal == Signal::KILL || !self.ignore_term {
                self.running.store(false, Ordering::SeqCst);
            }
            Ok(())
        }
        async fn is_running(&self) -> Result<bool> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            Ok(self.running.load(Ordering::SeqCst))
        }
    }

    fn fake(ignore_term: bool) -> Arc<FakeProc> {
        Arc::new(FakeProc {
            running: AtomicBool::new(true),
            ignore_term,
            signals: Mutex::new(Vec::new()),
            polls: AtomicU32::new(0),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_sends_term_then_kill_and_yields_timeout() {
        let proc = fake(true);
        let spec = ExecSpec::new(["sleep", "1000"]).timeout(Duration::from_secs(1));
        let events = futures::stream::pending().boxed();
        let stream = ExecStream::new(events, proc.clone(), &spec, "c1");
        let started = tokio::time::Instant::now();
        let e = stream.collect_output(10).await.expect_err("timeout");
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert_eq!(e.resource(), Some("c1"));
        assert_eq!(e.operation(), Some(Operation::Exec));
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_secs(3), "{elapsed:?}"); // 1 s timeout + 2 s grace
        assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
        assert_eq!(
            *proc.signals.lock().expect("lock"),
            vec![Signal::TERM, Signal::KILL]
        );
        assert!(!proc.running.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_without_kill_when_term_is_enough() {
        let proc = fake(false);
        let spec = ExecSpec::new(["sleep", "1000"]).timeout(Duration::from_secs(1));
        let stream = ExecStream::new(futures::stream::pending().boxed(), proc.clone(), &spec, "c");
        let e = stream.collect_output(10).await.expect_err("timeout");
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert_eq!(*proc.signals.lock().expect("lock"), vec![Signal::TERM]);
    }

    #[tokio::test(start_paused = true)]
    async fn drop_before_exit_kills_in_background() {
        let proc = fake(false);
        let spec = ExecSpec::new(["sleep", "1000"]);
        let stream = ExecStream::new(futures::stream::pending().boxed(), proc.clone(), &spec, "c");
        drop(stream);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(*proc.signals.lock().expect("lock"), vec![Signal::TERM]);
        assert!(!proc.running.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_terminates_and_waits() {
        let proc = fake(true);
        let spec = ExecSpec::new(["sleep", "1000"]);
        let stream = ExecStream::new(futures::stream::pending().boxed(), proc.clone(), &spec, "c");
        stream.cancel().await;
        assert!(
            !proc.running.load(Ordering::SeqCst),
            "gone when cancel returns"
        );
        assert_eq!(
            *proc.signals.lock().expect("lock"),
            vec![Signal::TERM, Signal::KILL]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn armed_guard_terminates_on_drop_and_disarmed_does_not() {
        let proc = fake(false);
        KillGuard::new(proc.clone(), Duration::from_secs(1)).disarm();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(proc.signals.lock().expect("lock").is_empty());
        drop(KillGuard::new(proc.clone(), Duration::from_secs(1)));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(*proc.signals.lock().expect("lock"), vec![Signal::TERM]);
    }

    #[tokio::test]
    async fn finished_stream_does_not_signal_on_drop() {
        let proc = fake(false);
        let spec = ExecSpec::new(["true"]);
        let events = futures::stream::iter(vec![Ok(ExecEvent::Exit(0))]).boxed();
        let stream = ExecStream::new(events, proc.clone(), &spec, "c");
        let o = stream.collect_output(10).await.expect("ok");
        assert_eq!(o.exit_code, 0);
        tokio::task::yield_now().await;
        assert!(proc.signals.lock().expect("lock").is_empty());
    }

    #[test]
    fn exec_spec_debug_redacts_env_values() {
        let spec = ExecSpec::new(["env"]).env("TOKEN", "hunter2");
        let text = format!("{spec:?}");
        assert!(text.contains("TOKEN=<redacted>"), "{text}");
        assert!(!text.contains("hunter2"));
    }
}
