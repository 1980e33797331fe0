//! [`ExecStream`]: an exec's events, produced by one task per exec that owns the whole
//! lifecycle ([`drive`]): it pumps the output, watches for the process's exit, runs the
//! deadline, and performs the kill on timeout, drop or cancel. The consumer only reads
//! a bounded channel, so a consumer that stops reading stalls the output (backpressure)
//! but never the deadline or the kill (`docs/adr/0003-exec-kill.md`).

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{BoxStream, Stream, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};

use super::control::{terminate, terminate_draining, ExecControl};
use super::lines::Lines;
use super::spec::{ExecEvent, ExecOutput, ExecSpec, OutputChunk, StreamKind};
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::types::BackendKind;

/// Output chunks held between the exec's task and its consumer: with the engine's own
/// buffers, what a consumer that stops reading costs in memory.
const CHANNEL: usize = 16;
/// After the process exited, how long the task still waits for output the engine has
/// not delivered yet (moby waits 2 s too). Time spent waiting for the consumer does not
/// count: a slow consumer never loses output.
pub const EXIT_DRAIN: Duration = Duration::from_secs(2);

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

/// How the engine tells that an exec's process exited, and with which code.
#[async_trait]
pub trait ExecExit: Send + Sync + 'static {
    /// Resolves once the process has exited: not when its output closes (a background
    /// child may hold it open, or the process may close it itself). `output_ended` turns
    /// true when the output reaches its end (a hint to look sooner).
    async fn exited(&self, output_ended: watch::Receiver<bool>) -> Result<()>;

    /// The exit code, once [`exited`](Self::exited) resolved. `settled` is false when the
    /// output was still open at the exit: output read since may refine the code (the
    /// engine's own start failures), so it is read again.
    async fn code(&self, settled: bool) -> Result<i64>;
}

/// The engine side of one started exec, as [`ExecStream::spawn`] takes it.
pub struct ExecSource {
    /// The process's output, read only as fast as the consumer takes it.
    pub output: BoxStream<'static, Result<OutputChunk>>,
    /// When the process exits, and its code.
    pub exit: Arc<dyn ExecExit>,
    /// Signals the exec's processes.
    pub control: Arc<dyn ExecControl>,
}

impl fmt::Debug for ExecSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecSource").finish_non_exhaustive()
    }
}

/// What names an exec in the errors its stream raises.
#[derive(Debug, Clone, Default)]
struct Naming {
    backend: Option<BackendKind>,
    resource: String,
}

impl Naming {
    fn error(&self, kind: ErrorKind, message: impl Into<String>) -> Error {
        self.apply(Error::new(kind, message))
    }

    /// Adds what `e` does not say yet: backend, operation, resource; and settles its
    /// retry status as an exec's (it may have run: never retried blindly).
    fn apply(&self, e: Error) -> Error {
        let mut e = e.with_operation(Operation::Exec).settle_retryable(false);
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

/// The streamed output of an exec: [`ExecEvent::Output`] chunks in order, then one
/// [`ExecEvent::Exit`].
///
/// The exec ends when its process exits, whatever happens to its output: output the
/// engine still delivers is drained for up to [`EXIT_DRAIN`], and children left holding
/// the output are left running (as `docker exec` does). Memory is bounded: a task reads
/// from the engine only while this stream's small buffer has room, so a slow consumer
/// slows the process down (backpressure) instead of buffering. The deadline and the kill
/// belong to that task, not to the consumer: on timeout every process the exec started
/// (daemonized ones included) is terminated (SIGTERM, SIGKILL after the grace) whether
/// or not anyone reads, then the stream yields one `Timeout` error. Dropping the stream
/// before the exit event does the same; a kill once begun always completes.
pub struct ExecStream {
    events: mpsc::Receiver<Result<ExecEvent>>,
    /// Dropping or sending tells the task to end the exec (unless it already exited).
    cancel: Option<oneshot::Sender<()>>,
    control: Option<Arc<dyn ExecControl>>,
    /// The exit status, a terminal error or the end was delivered.
    done: bool,
    naming: Naming,
}

impl fmt::Debug for ExecStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecStream")
            .field("resource", &self.naming.resource)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl ExecStream {
    /// Starts the task that drives `source` under `spec`'s timeout and kill grace.
    /// `backend` and `resource` (the container) go into the errors the stream raises.
    /// Must be called inside a tokio runtime.
    pub fn spawn(
        source: ExecSource,
        spec: &ExecSpec,
        backend: Option<BackendKind>,
        resource: impl Into<String>,
    ) -> Self {
        let (tx, events) = mpsc::channel(CHANNEL);
        let (cancel, cancelled) = oneshot::channel();
        let naming = Naming {
            backend,
            resource: resource.into(),
        };
        let control = source.control.clone();
        let limits = Limits {
            timeout: spec.timeout,
            grace: spec.kill_grace,
        };
        tokio::spawn(drive(source, limits, tx, cancelled, naming.clone()));
        ExecStream {
            events,
            cancel: Some(cancel),
            control: Some(control),
            done: false,
            naming,
        }
    }

    /// A stream of fixed events with no process behind it, for tests and mocks.
    pub fn from_events(events: Vec<ExecEvent>) -> Self {
        let (tx, rx) = mpsc::channel(events.len().max(1));
        for event in events {
            // Room for every event was made above.
            let _ = tx.try_send(Ok(event));
        }
        ExecStream {
            events: rx,
            cancel: None,
            control: None,
            done: false,
            naming: Naming::default(),
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
        Err(self.naming.error(
            ErrorKind::Internal,
            "exec output ended without an exit status",
        ))
    }

    /// Terminates the exec's processes (SIGTERM, SIGKILL after the grace) and waits until
    /// they are gone. Dropping the stream does the same in the background; call this when
    /// the program is about to exit (Ctrl-C) and the background task would not get to run.
    pub async fn cancel(mut self) {
        if let Some(cancel) = self.cancel.take() {
            let _ = cancel.send(());
        }
        // The task ends (and closes the channel) once the processes are gone.
        while self.events.recv().await.is_some() {}
    }

    /// A handle that SIGKILLs the exec's processes at once, while this stream (or its
    /// [`cancel`](Self::cancel)) still runs: a second Ctrl-C. `None` when no process is
    /// behind the stream any more.
    pub fn killer(&self) -> Option<ExecKiller> {
        if self.done {
            return None;
        }
        self.control.clone().map(ExecKiller)
    }

    /// Splits the output into lines of at most `max_line` bytes (see [`Lines`]).
    pub fn lines(self, max_line: usize) -> Lines {
        Lines::new(self, max_line)
    }
}

impl Stream for ExecStream {
    type Item = Result<ExecEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match this.events.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(ExecEvent::Exit(code)))) => {
                this.done = true;
                Poll::Ready(Some(Ok(ExecEvent::Exit(code))))
            }
            // Output and errors pass through; an error is the stream's last item (the
            // task ends the exec, then closes the channel).
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(other)) => Poll::Ready(Some(other)),
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(Some(Err(this.naming.error(
                    ErrorKind::Internal,
                    "exec output ended without an exit status",
                ))))
            }
        }
    }
}

/// The timeout and kill grace of one exec.
#[derive(Debug, Clone, Copy)]
struct Limits {
    timeout: Option<Duration>,
    grace: Duration,
}

/// What one read of the output gave.
enum Pumped {
    /// A chunk went to the consumer.
    Sent,
    /// An error went to the consumer: the output cannot be followed any further.
    Failed,
    /// The output ended.
    End,
    /// The consumer is gone.
    Gone,
}

/// Waits for room in the consumer's buffer, then moves one item of the output there.
/// Cancel-safe: dropped midway, nothing is lost (the permit returns, `next` keeps its
/// item).
async fn pump(
    tx: &mpsc::Sender<Result<ExecEvent>>,
    output: &mut BoxStream<'static, Result<OutputChunk>>,
) -> Pumped {
    let Ok(permit) = tx.reserve().await else {
        return Pumped::Gone;
    };
    match output.next().await {
        Some(Ok(chunk)) => {
            permit.send(Ok(ExecEvent::Output(chunk)));
            Pumped::Sent
        }
        Some(Err(e)) => {
            permit.send(Err(e));
            Pumped::Failed
        }
        None => Pumped::End,
    }
}

/// The task behind an [`ExecStream`]: output, exit, deadline and kill, in one place.
async fn drive(
    source: ExecSource,
    limits: Limits,
    tx: mpsc::Sender<Result<ExecEvent>>,
    mut cancelled: oneshot::Receiver<()>,
    naming: Naming,
) {
    let ExecSource {
        output,
        exit: status,
        control,
    } = source;
    // An output error comes after the start: named, and settled as an exec's.
    let errors = naming.clone();
    let mut output = output
        .map(move |item| item.map_err(|e| errors.apply(e)))
        .boxed();
    let (ended, output_ended) = watch::channel(false);
    let exit = status.exited(output_ended);
    let deadline = async {
        match limits.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    tokio::pin!(exit);
    let mut open = true;
    let settled = loop {
        tokio::select! {
            biased;
            _ = &mut cancelled => {
                tracing::debug!(resource = %naming.resource, "exec dropped or cancelled before its exit, terminating");
                if let Err(e) = terminate_draining(control, limits.grace, &mut output).await {
                    tracing::warn!(resource = %naming.resource, error = %e, "a dropped exec could not be ended");
                }
                return;
            }
            () = &mut deadline => {
                tracing::debug!(resource = %naming.resource, "exec deadline passed, terminating");
                let ended = terminate_draining(control, limits.grace, &mut output).await;
                drop(output);
                let _ = tx.send(Err(timed_out(&naming, limits.timeout, ended))).await;
                return;
            }
            exited = &mut exit => match exited {
                Ok(()) => break !open,
                Err(e) => {
                    // The engine cannot say how the process is: the stream ends with
                    // the error, and a process nobody can see any more is ended.
                    let e = naming.apply(e);
                    let _ = tx.send(Err(e)).await;
                    if let Err(e) = terminate_draining(control, limits.grace, &mut output).await {
                        tracing::debug!(error = %e, "ending an exec whose state is unknown failed");
                    }
                    return;
                }
            },
            pumped = pump(&tx, &mut output), if open => match pumped {
                Pumped::Sent => {}
                // Output lost midway (the connection to the engine broke): what the
                // exec does from here cannot be followed, so the stream ends with that
                // error and the exec is ended (as a drop would).
                Pumped::Failed => {
                    drop(output);
                    if let Err(e) = terminate(control, limits.grace).await {
                        tracing::debug!(error = %e, "ending an exec whose output was lost failed");
                    }
                    return;
                }
                Pumped::End => {
                    open = false;
                    let _ = ended.send(true);
                }
                // Dropped: `cancelled` fires on the next turn.
                Pumped::Gone => {}
            },
        }
    };
    // The process exited: what the engine still has is drained for a bounded time (the
    // consumer's pace aside); a child left holding the output is left alone.
    let mut budget = EXIT_DRAIN;
    while open {
        let Ok(permit) = tx.reserve().await else {
            return; // nobody reads: the process has exited, nothing to end
        };
        let waited = tokio::time::Instant::now();
        match tokio::time::timeout(budget, output.next()).await {
            Ok(Some(Ok(chunk))) => {
                permit.send(Ok(ExecEvent::Output(chunk)));
                budget = budget.saturating_sub(waited.elapsed());
            }
            // Output lost after the exit: the exit code would come with output missing.
            Ok(Some(Err(e))) => {
                permit.send(Err(e));
                return;
            }
            Ok(None) => open = false,
            Err(_) => {
                tracing::debug!(
                    resource = %naming.resource,
                    "exec exited; its output is still held open (a background child?), left running"
                );
                break;
            }
        }
    }
    drop(output);
    let event = status
        .code(settled)
        .await
        .map(ExecEvent::Exit)
        .map_err(|e| naming.apply(e));
    let _ = tx.send(event).await;
}

/// The `Timeout` an exec's deadline ends in, saying whether its processes were ended.
fn timed_out(naming: &Naming, timeout: Option<Duration>, ended: Result<()>) -> Error {
    let timeout = timeout.unwrap_or_default();
    match ended {
        Ok(()) => naming.error(
            ErrorKind::Timeout,
            format!("exec timed out after {timeout:?}; its processes were killed"),
        ),
        Err(cause) => naming
            .error(
                ErrorKind::Timeout,
                format!(
                    "exec timed out after {timeout:?}; its processes could not be ended: {}",
                    cause.message()
                ),
            )
            .with_source(cause),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::control::tests::fake;
    use crate::exec::spec::out;

    fn out_chunk(data: &'static [u8]) -> OutputChunk {
        OutputChunk::new(StreamKind::Stdout, data)
    }
    use crate::signal::Signal;
    use std::sync::atomic::Ordering;

    /// An exit that comes when `exit` resolves, with its code.
    struct FakeExit(
        tokio::sync::Mutex<Option<oneshot::Receiver<i64>>>,
        std::sync::Mutex<i64>,
    );

    #[async_trait]
    impl ExecExit for FakeExit {
        async fn exited(&self, _: watch::Receiver<bool>) -> Result<()> {
            let Some(rx) = self.0.lock().await.take() else {
                return std::future::pending().await;
            };
            let code = rx
                .await
                .map_err(|_| Error::new(ErrorKind::Internal, "no exit"))?;
            *self.1.lock().expect("lock") = code;
            Ok(())
        }
        async fn code(&self, _: bool) -> Result<i64> {
            Ok(*self.1.lock().expect("lock"))
        }
    }

    fn exit_when(rx: Option<oneshot::Receiver<i64>>) -> Arc<dyn ExecExit> {
        Arc::new(FakeExit(
            tokio::sync::Mutex::new(rx),
            std::sync::Mutex::new(-1),
        ))
    }

    fn exit_now(code: i64) -> Arc<dyn ExecExit> {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(code);
        exit_when(Some(rx))
    }

    /// An exec whose output and exit are the given ones, signalled through `proc`.
    fn spawned(
        output: BoxStream<'static, Result<OutputChunk>>,
        exit: Arc<dyn ExecExit>,
        proc: Arc<crate::exec::control::tests::FakeProc>,
        spec: &ExecSpec,
    ) -> ExecStream {
        let source = ExecSource {
            output,
            exit,
            control: proc,
        };
        ExecStream::spawn(source, spec, None, "c1")
    }

    /// A process that never ends by itself and never writes.
    fn silent(proc: Arc<crate::exec::control::tests::FakeProc>, spec: &ExecSpec) -> ExecStream {
        spawned(
            futures::stream::pending().boxed(),
            exit_when(None),
            proc,
            spec,
        )
    }

    /// Lets the exec's task run while time is paused.
    async fn settle(d: Duration) {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(d).await;
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
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

    #[tokio::test(start_paused = true)]
    async fn timeout_sends_term_then_kill_and_yields_timeout() {
        let proc = fake(true);
        let spec = ExecSpec::new(["sleep", "1000"]).timeout(Duration::from_secs(1));
        let stream = silent(proc.clone(), &spec);
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
        let stream = silent(proc.clone(), &spec);
        let e = stream.collect_output(10).await.expect_err("timeout");
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert_eq!(*proc.signals.lock().expect("lock"), vec![Signal::TERM]);
    }

    #[tokio::test(start_paused = true)]
    async fn drop_before_exit_kills_in_background() {
        let proc = fake(false);
        let spec = ExecSpec::new(["sleep", "1000"]);
        let stream = silent(proc.clone(), &spec);
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
        let stream = silent(proc.clone(), &spec);
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
        let stream = spawned(
            futures::stream::empty().boxed(),
            exit_now(0),
            proc.clone(),
            &spec,
        );
        let o = stream.collect_output(10).await.expect("ok");
        assert_eq!(o.exit_code, 0);
        tokio::task::yield_now().await;
        assert!(proc.signals.lock().expect("lock").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_holds_while_nobody_reads() {
        let proc = fake(true);
        let spec = ExecSpec::new(["sleep", "1000"]).timeout(Duration::from_secs(1));
        let stream = silent(proc.clone(), &spec);
        settle(Duration::from_secs(4)).await;
        assert_eq!(
            *proc.signals.lock().expect("lock"),
            vec![Signal::TERM, Signal::KILL],
            "killed without a single poll of the stream"
        );
        assert!(!proc.running.load(Ordering::SeqCst));
        let e = stream.collect_output(10).await.expect_err("timeout");
        assert_eq!(e.kind(), ErrorKind::Timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn a_drop_inside_the_grace_still_ends_in_kill() {
        let proc = fake(true);
        let spec = ExecSpec::new(["sleep", "1000"])
            .timeout(Duration::from_secs(1))
            .kill_grace(Duration::from_secs(3));
        let stream = silent(proc.clone(), &spec);
        settle(Duration::from_millis(1500)).await;
        assert_eq!(*proc.signals.lock().expect("lock"), vec![Signal::TERM]);
        drop(stream);
        settle(Duration::from_secs(4)).await;
        assert_eq!(
            *proc.signals.lock().expect("lock"),
            vec![Signal::TERM, Signal::KILL]
        );
        assert!(!proc.running.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn the_exit_ends_the_exec_although_a_child_holds_the_output() {
        let proc = fake(false);
        let spec =
            ExecSpec::new(["sh", "-c", "sleep 30 & echo ok"]).timeout(Duration::from_secs(60));
        let output = futures::stream::iter([Ok(out_chunk(b"ok\n"))])
            .chain(futures::stream::pending())
            .boxed();
        let stream = spawned(output, exit_now(3), proc.clone(), &spec);
        let started = tokio::time::Instant::now();
        let o = stream.collect_output(10).await.expect("exit");
        assert_eq!(o.exit_code, 3);
        assert_eq!(o.stdout, b"ok\n");
        let took = started.elapsed();
        assert!(took <= EXIT_DRAIN + Duration::from_millis(100), "{took:?}");
        settle(Duration::from_secs(1)).await;
        assert!(
            proc.signals.lock().expect("lock").is_empty(),
            "a finished exec's children are left alone"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_output_is_not_the_end() {
        let proc = fake(false);
        let spec = ExecSpec::new(["sh", "-c", "exec >f 2>&1; sleep 12"]);
        let (exited, exit) = oneshot::channel::<i64>();
        let mut stream = spawned(
            futures::stream::empty().boxed(),
            exit_when(Some(exit)),
            proc.clone(),
            &spec,
        );
        let early = tokio::time::timeout(Duration::from_secs(30), stream.next()).await;
        assert!(early.is_err(), "ended before the process exited: {early:?}");
        exited.send(0).expect("send");
        let o = stream.collect_output(10).await.expect("exit");
        assert_eq!(o.exit_code, 0);
        assert!(proc.signals.lock().expect("lock").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn lost_output_ends_the_stream_with_its_error_and_ends_the_exec() {
        let proc = fake(false);
        let spec = ExecSpec::new(["sh", "-c", "echo started; sleep 3"]);
        let output = futures::stream::iter([
            Ok(out_chunk(b"started\n")),
            Err(Error::new(ErrorKind::Unavailable, "connection lost")),
        ])
        .chain(futures::stream::pending())
        .boxed();
        let mut stream = spawned(output, exit_when(None), proc.clone(), &spec);
        assert!(matches!(
            stream.next().await,
            Some(Ok(ExecEvent::Output(_)))
        ));
        let e = stream.next().await.expect("an item").expect_err("the loss");
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(!e.is_retryable(), "an exec that may have run: {e}");
        assert!(stream.next().await.is_none(), "nothing after the error");
        settle(Duration::from_secs(1)).await;
        assert_eq!(
            *proc.signals.lock().expect("lock"),
            vec![Signal::TERM],
            "an exec that can no longer be followed is ended"
        );
    }

    /// An exec whose engine says it runs until its output has been read to the end, as
    /// Docker 28 holds an exec's exit (and its inspect) until the attached output drains;
    /// its process ends at SIGTERM.
    struct HeldByOutput {
        drained: Arc<std::sync::atomic::AtomicBool>,
        signals: std::sync::Mutex<Vec<Signal>>,
    }

    #[async_trait]
    impl ExecControl for HeldByOutput {
        async fn signal(&self, signal: Signal) -> Result<()> {
            self.signals.lock().expect("lock").push(signal);
            Ok(())
        }
        async fn is_running(&self) -> Result<bool> {
            Ok(!self.drained.load(Ordering::SeqCst))
        }
    }

    /// Far more output than the stream buffers, waiting in the engine; read to its end,
    /// it lets the engine report the exit.
    fn held_by_output() -> (ExecStream, Arc<HeldByOutput>) {
        let drained = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let control = Arc::new(HeldByOutput {
            drained: drained.clone(),
            signals: std::sync::Mutex::default(),
        });
        let output = futures::stream::iter((0..CHANNEL * 64).map(|_| Ok(out_chunk(b"y\n"))))
            .chain(futures::stream::poll_fn(move |_| {
                drained.store(true, Ordering::SeqCst);
                std::task::Poll::Ready(None)
            }))
            .boxed();
        let spec = ExecSpec::new(["yes"]).timeout(Duration::from_secs(1));
        let source = ExecSource {
            output,
            exit: exit_when(None),
            control: control.clone(),
        };
        (ExecStream::spawn(source, &spec, None, "c1"), control)
    }

    #[tokio::test(start_paused = true)]
    async fn a_timed_out_exec_nobody_reads_is_not_held_by_its_output() {
        let (stream, control) = held_by_output();
        settle(Duration::from_secs(3)).await;
        assert_eq!(
            *control.signals.lock().expect("lock"),
            vec![Signal::TERM],
            "the exit was seen once the output was drained, within the grace"
        );
        let e = stream.collect_output(1 << 20).await.expect_err("timeout");
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(e.message().contains("were killed"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_exec_is_not_held_by_its_output() {
        let (stream, control) = held_by_output();
        drop(stream);
        settle(Duration::from_millis(500)).await;
        assert!(
            control.drained.load(Ordering::SeqCst),
            "the output left in the engine is read while the exec is ended"
        );
        assert_eq!(*control.signals.lock().expect("lock"), vec![Signal::TERM]);
    }
}
