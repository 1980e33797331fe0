//! Killing an exec: how a backend signals its processes ([`ExecControl`]), the one
//! TERM → grace → KILL sequence ([`terminate`]), and the guard that runs it when an exec
//! setup is abandoned ([`KillGuard`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, ErrorKind, Result};
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

/// Terminates an exec (see [`terminate`]) if dropped while armed: a backend holds one from
/// the moment the engine knows the exec until its [`ExecStream`](super::ExecStream) exists, so a caller that
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
            let grace = self.grace;
            handle.spawn(async move {
                if let Err(e) = terminate(control, grace).await {
                    tracing::warn!(error = %e, "an abandoned exec could not be ended");
                }
            });
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
}
