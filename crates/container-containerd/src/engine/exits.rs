//! Exit statuses of execs as containerd publishes them (`/tasks/exit`), read by one
//! subscription per engine that is proven live before the first exec it covers.
//!
//! containerd 2.x answers "running" for an exec whose output a left-behind child still
//! holds, for up to 10 s after its process exited (the task state waits for the output
//! copy), yet publishes the exit at once. A subscription made per exec raced the exec
//! itself: containerd serves the subscribe and the exec's create and start on
//! goroutines of their own, so under load the exit could be published before the
//! subscription was registered, and was lost (a step then ended 10 s late; seen in the
//! conformance suite on containerd 2.1). containerd answers a subscription with nothing
//! until an event comes, so liveness is proven by an event of our own: after
//! subscribing, the watch publishes one on [`SYNC_TOPIC`] and execs wait (briefly) until
//! it, or any event, came back.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use containerd_client::events::TaskExit;
use containerd_client::services::v1::events_client::EventsClient;
use containerd_client::services::v1::{PublishRequest, SubscribeRequest};
use prost::Message;
use tokio::sync::{watch, Notify};

use crate::client::Containerd;

/// The topic of a process's exit in containerd's events.
const EXIT_TOPIC: &str = "/tasks/exit";
/// The topic of the event the watch publishes to prove its subscription is live.
const SYNC_TOPIC: &str = "/container-rs/sync";
/// How many published exits are kept for execs nobody has asked about yet (other
/// sessions' execs in the namespace publish too): the oldest go first.
const KEPT: usize = 4096;
/// How long an exec waits for a new subscription to prove live; past it, the exec goes
/// on (its state is polled: an exit missed only delays its end).
const LIVE_WAIT: Duration = Duration::from_secs(2);

/// The engine's exit watch; clones share it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExitWatch {
    board: Arc<Board>,
}

/// An exec: its container's id and its own.
type ExecKey = (String, String);

#[derive(Debug, Default)]
struct Board {
    /// Exit status by (container id, exec id), and the order they came in.
    codes: Mutex<(HashMap<ExecKey, i64>, VecDeque<ExecKey>)>,
    /// Woken at every exit recorded.
    arrived: Notify,
    /// The subscription's task and whether it is live (an event came back), while it runs.
    task: Mutex<Option<(tokio::task::AbortHandle, watch::Receiver<bool>)>>,
}

impl Drop for Board {
    fn drop(&mut self) {
        if let Some((task, _)) = self
            .task
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

impl ExitWatch {
    /// Makes sure the subscription runs (again, if its stream ended) and waits until it
    /// is live, at most [`LIVE_WAIT`].
    pub(crate) async fn ensure(&self, c: &Containerd) {
        let mut live = {
            let mut task = self
                .board
                .task
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match &*task {
                Some((handle, live)) if !handle.is_finished() => live.clone(),
                _ => {
                    let (handle, live) = subscribe(c, Arc::downgrade(&self.board));
                    *task = Some((handle, live.clone()));
                    live
                }
            }
        };
        let _ = tokio::time::timeout(LIVE_WAIT, live.wait_for(|live| *live)).await;
    }

    /// The published exit status of exec `exec` of `container`, if it came.
    pub(crate) fn code(&self, container: &str, exec: &str) -> Option<i64> {
        let codes = self
            .board
            .codes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        codes
            .0
            .get(&(container.to_string(), exec.to_string()))
            .copied()
    }

    /// Forgets the exit of `exec` of `container` (the exec is over).
    pub(crate) fn forget(&self, container: &str, exec: &str) {
        let mut codes = self
            .board
            .codes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (container.to_string(), exec.to_string());
        if codes.0.remove(&key).is_some() {
            codes.1.retain(|k| *k != key);
        }
    }

    /// Resolves at the next exit recorded (of any exec: check [`code`](Self::code)).
    pub(crate) fn arrived(&self) -> tokio::sync::futures::Notified<'_> {
        self.board.arrived.notified()
    }
}

impl Board {
    fn record(&self, exit: TaskExit) {
        let key = (exit.container_id, exit.id);
        let mut codes = self.codes.lock().unwrap_or_else(PoisonError::into_inner);
        if codes
            .0
            .insert(key.clone(), i64::from(exit.exit_status))
            .is_none()
        {
            codes.1.push_back(key);
        }
        while codes.1.len() > KEPT {
            if let Some(old) = codes.1.pop_front() {
                codes.0.remove(&old);
            }
        }
        drop(codes);
        self.arrived.notify_waiters();
    }
}

/// Subscribes to exits (and the sync topic) in `c`'s namespace, then publishes a sync
/// event; the task records every exec's exit into `board` while it lives. The receiver
/// turns true once the stream delivered an event.
fn subscribe(
    c: &Containerd,
    board: Weak<Board>,
) -> (tokio::task::AbortHandle, watch::Receiver<bool>) {
    let namespace = c.namespace();
    let filters = vec![
        format!("topic==\"{EXIT_TOPIC}\",namespace==\"{namespace}\""),
        format!("topic==\"{SYNC_TOPIC}\",namespace==\"{namespace}\""),
    ];
    let (live_tx, live) = watch::channel(false);
    let mut events = EventsClient::new(c.channel.clone());
    let publisher = c.clone();
    let task = tokio::spawn(async move {
        let mut stream = match events.subscribe(SubscribeRequest { filters }).await {
            Ok(response) => response.into_inner(),
            Err(e) => {
                tracing::debug!(error = %e, "no exit events; exec states are polled");
                return;
            }
        };
        while let Ok(Some(envelope)) = stream.message().await {
            let _ = live_tx.send(true);
            let Some(board) = board.upgrade() else {
                return;
            };
            let exit = envelope
                .event
                .filter(|any| any.type_url.ends_with("containerd.events.TaskExit"))
                .and_then(|any| TaskExit::decode(any.value.as_slice()).ok());
            // A container's own process has the container's id: only execs are kept.
            if let Some(exit) = exit.filter(|e| e.id != e.container_id) {
                board.record(exit);
            }
        }
    });
    // The sync event goes after the subscribe request (tonic sends that request before
    // its answer comes: the answer is the first event). It is published again until
    // the subscription proved live, in case it was registered after the first one.
    let mut proven = live.clone();
    tokio::spawn(async move {
        let mut events = EventsClient::new(publisher.channel.clone());
        for _ in 0..20 {
            let sync = PublishRequest {
                topic: SYNC_TOPIC.to_string(),
                event: Some(prost_types::Any {
                    type_url: "types.container-rs.io/sync".to_string(),
                    value: Vec::new(),
                }),
            };
            let Ok(request) = publisher.request(sync) else {
                return;
            };
            if let Err(e) = events.publish(request).await {
                tracing::debug!(error = %e, "cannot publish the exit watch's sync event");
                return;
            }
            let proven = proven.wait_for(|live| *live);
            // Live, or the subscription's task is gone: either way, done.
            if let Ok(_done) = tokio::time::timeout(Duration::from_millis(100), proven).await {
                return;
            }
        }
    });
    (task.abort_handle(), live)
}
