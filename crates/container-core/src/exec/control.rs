//! Killing an exec: how a backend signals its processes ([`ExecControl`]) and the one
//! TERM → grace → KILL sequence ([`terminate`]). (The raw layer's start guard kills an
//! exec whose setup is abandoned.)

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{Stream, StreamExt};

use crate::error::{Error, ErrorKind, Result};
use crate::poll::Poll;
use crate::signal::Signal;

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
/// the engine says nothing runs. `Ok` once the processes are gone; an error when they
/// cannot be signalled at all (`Unsupported`: not visible from this host) or still run
/// after SIGKILL (`Timeout`). A failed SIGTERM is not final: SIGKILL follows.
pub async fn terminate(control: Arc<dyn ExecControl>, grace: Duration) -> Result<()> {
    const POLL: Duration = Duration::from_millis(50);
    const KILL_WAIT: Duration = Duration::from_secs(5);

    match control.signal(Signal::TERM).await {
        Err(e) if e.kind() == ErrorKind::Unsupported => return Err(e),
        Err(e) => tracing::debug!(error = %e, "SIGTERM to exec failed"),
        Ok(()) => {}
    }
    if wait_gone(control.as_ref(), grace, POLL).await {
        return Ok(());
    }
    if let Err(e) = control.signal(Signal::KILL).await {
        tracing::warn!(error = %e, "SIGKILL to exec failed");
    }
    if wait_gone(control.as_ref(), KILL_WAIT, POLL).await {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Timeout,
            format!("exec processes still running {KILL_WAIT:?} after SIGKILL"),
        ))
    }
}

/// [`terminate`] while what the engine still sends of the exec's output is read and
/// thrown away; the rest is the caller's to drop once this returns.
///
/// An engine may hold an exec's exit, and every answer about the exec, until its output
/// has been read: Docker 28 does (its exit handling waits for the attached output to
/// drain, and exec inspect waits for the exit handling), so a kill that left the output
/// unread would wait on itself, and every later exec in the same container would never
/// be seen to exit.
pub async fn terminate_draining<S>(
    control: Arc<dyn ExecControl>,
    grace: Duration,
    output: &mut S,
) -> Result<()>
where
    S: Stream + Unpin,
{
    let kill = terminate(control, grace);
    tokio::pin!(kill);
    let mut open = true;
    loop {
        tokio::select! {
            ended = &mut kill => return ended,
            item = output.next(), if open => open = item.is_some(),
        }
    }
}

async fn wait_gone(control: &dyn ExecControl, limit: Duration, poll: Duration) -> bool {
    let mut poll = Poll::every(poll).within(limit);
    loop {
        match control.is_running().await {
            Ok(false) => return true,
            Ok(true) => {}
            Err(e) => tracing::debug!(error = %e, "cannot tell whether exec still runs"),
        }
        if !poll.pause().await {
            return false;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Mutex;

    /// A fake process: running until it gets a signal that it does not ignore.
    pub(crate) struct FakeProc {
        pub(crate) running: AtomicBool,
        ignore_term: bool,
        pub(crate) signals: Mutex<Vec<Signal>>,
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

    pub(crate) fn fake(ignore_term: bool) -> Arc<FakeProc> {
        Arc::new(FakeProc {
            running: AtomicBool::new(true),
            ignore_term,
            signals: Mutex::new(Vec::new()),
            polls: AtomicU32::new(0),
        })
    }
}
