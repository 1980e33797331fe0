//! [`ExecStream`]: an exec's events with the deadline, drop-kill and cancel rules, as
//! one state machine ([`State`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{BoxStream, Stream, StreamExt};
use futures::FutureExt;

use super::control::{terminate, ExecControl};
use super::lines::Lines;
use super::spec::{ExecEvent, ExecOutput, ExecSpec, StreamKind, DEFAULT_KILL_GRACE};
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::types::BackendKind;

/// Kills an exec's processes with SIGKILL, from outside its [`ExecStream`].
#[derive(Clone)]
pub struct ExecKiller(Arc<dyn ExecControl>);

impl fmt::Debug for ExecKiller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecKiller").finish_non_exhaustive()
    }
}

impl ExecKiller {
    /// SIGKILL to every process of the exec (the container's main process is never one).
    pub async fn kill(&self) -> Result<()> {
        self.0.signal(crate::Signal::KILL).await
    }
}

/// Where an [`ExecStream`] is.
enum State {
    /// Output flows; the deadline, when there is one, runs. `control` is `None` for a
    /// stream with no process behind it.
    Running {
        control: Option<Arc<dyn ExecControl>>,
        deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    },
    /// The deadline passed: the processes are being terminated; then one `Timeout`.
    Killing(BoxFuture<'static, Result<()>>),
    /// The exit status, the timeout or the end was delivered, or the stream was
    /// cancelled: nothing is left to run or to kill.
    Done,
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
    state: State,
    timeout: Duration,
    kill_grace: Duration,
    backend: Option<BackendKind>,
    resource: String,
}

impl fmt::Debug for ExecStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Running { .. } => "running",
            State::Killing(_) => "killing",
            State::Done => "done",
        };
        f.debug_struct("ExecStream")
            .field("resource", &self.resource)
            .field("timeout", &self.timeout)
            .field("state", &state)
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
            state: State::Running {
                control: Some(control),
                deadline: spec.timeout.map(|t| Box::pin(tokio::time::sleep(t))),
            },
            timeout: spec.timeout.unwrap_or_default(),
            kill_grace: spec.kill_grace,
            backend: None,
            resource: resource.into(),
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
            state: State::Running {
                control: None,
                deadline: None,
            },
            timeout: Duration::ZERO,
            kill_grace: DEFAULT_KILL_GRACE,
            backend: None,
            resource: String::new(),
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
        let ended = match std::mem::replace(&mut self.state, State::Done) {
            State::Running {
                control: Some(control),
                ..
            } => terminate(control, self.kill_grace).await,
            State::Killing(killing) => killing.await,
            State::Running { control: None, .. } | State::Done => Ok(()),
        };
        if let Err(e) = ended {
            tracing::warn!(resource = %self.resource, error = %e, "a cancelled exec could not be ended");
        }
    }

    /// A handle that SIGKILLs the exec's processes at once, while this stream (or its
    /// [`cancel`](Self::cancel)) still runs: a second Ctrl-C. `None` when no process is
    /// behind the stream any more.
    pub fn killer(&self) -> Option<ExecKiller> {
        match &self.state {
            State::Running {
                control: Some(control),
                ..
            } => Some(ExecKiller(control.clone())),
            _ => None,
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
}

impl Stream for ExecStream {
    type Item = Result<ExecEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Killing(killing) => {
                    let ended = match killing.as_mut().poll(cx) {
                        Poll::Ready(ended) => ended,
                        Poll::Pending => return Poll::Pending,
                    };
                    this.state = State::Done;
                    let timeout = this.timeout;
                    let e = match ended {
                        Ok(()) => this.error(
                            ErrorKind::Timeout,
                            format!("exec timed out after {timeout:?}; its processes were killed"),
                        ),
                        Err(cause) => this
                            .error(
                                ErrorKind::Timeout,
                                format!(
                                    "exec timed out after {timeout:?}; its processes could not \
                                     be ended: {}",
                                    cause.message()
                                ),
                            )
                            .with_source(cause),
                    };
                    return Poll::Ready(Some(Err(e)));
                }
                State::Running { control, deadline } => {
                    if deadline
                        .as_mut()
                        .is_some_and(|d| d.as_mut().poll(cx).is_ready())
                    {
                        tracing::debug!(resource = %this.resource, "exec deadline passed, terminating");
                        let killing = match control.take() {
                            Some(control) => terminate(control, this.kill_grace).boxed(),
                            None => futures::future::ready(Ok(())).boxed(),
                        };
                        this.state = State::Killing(killing);
                        continue;
                    }
                    let event = match this.events.poll_next_unpin(cx) {
                        Poll::Ready(event) => event,
                        Poll::Pending => return Poll::Pending,
                    };
                    return Poll::Ready(match event {
                        Some(Ok(ExecEvent::Exit(code))) => {
                            this.state = State::Done;
                            Some(Ok(ExecEvent::Exit(code)))
                        }
                        // Output and engine errors pass through; an error does not end
                        // the process (dropping the stream does).
                        Some(other) => Some(other),
                        None => {
                            this.state = State::Done;
                            Some(Err(this.error(
                                ErrorKind::Internal,
                                "exec output ended without an exit status",
                            )))
                        }
                    });
                }
            }
        }
    }
}

impl Drop for ExecStream {
    fn drop(&mut self) {
        let State::Running {
            control: Some(control),
            ..
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                tracing::debug!(resource = %self.resource, "exec dropped before exit, terminating");
                let (grace, resource) = (self.kill_grace, self.resource.clone());
                handle.spawn(async move {
                    if let Err(e) = terminate(control, grace).await {
                        tracing::warn!(%resource, error = %e, "a dropped exec could not be ended");
                    }
                });
            }
            Err(_) => tracing::warn!(
                resource = %self.resource,
                "exec dropped outside a tokio runtime; its processes may keep running"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::control::tests::fake;
    use crate::exec::spec::out;
    use crate::signal::Signal;
    use std::sync::atomic::Ordering;

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
}
