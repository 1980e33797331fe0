//! What one pull attempt reports to, and the stall deadline it keeps
//! (`docs/adr/0011-pull-deadlines.md`).

use std::future::Future;
use std::time::Duration;

use futures::{Stream, StreamExt};

use crate::error::{Error, ErrorKind, Result};
use crate::types::PullProgress;

/// Where one pull attempt ([`Engine::pull`](super::Engine::pull)) sends its layer
/// events, and how long it may wait for data: a pull that receives nothing for the
/// stall deadline (`PullOptions::stall_timeout`) is stalled.
///
/// A backend waits for every piece of data through [`next`](Self::next) (one item of a
/// stream: an engine's progress message, a chunk of a registry response) or
/// [`within`](Self::within) (one whole answer: a manifest, a credential helper); on
/// expiry they fail with `Timeout`, which the manager settles as retryable (a pull is
/// idempotent), so the retry policy tries again.
#[derive(Clone, Copy)]
pub struct Progress<'a> {
    report: &'a (dyn Fn(&PullProgress) + Send + Sync),
    stall: Option<Duration>,
}

impl std::fmt::Debug for Progress<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("stall", &self.stall)
            .finish_non_exhaustive()
    }
}

impl<'a> Progress<'a> {
    /// Events to `report`; no stall deadline until
    /// [`with_stall_timeout`](Self::with_stall_timeout).
    pub fn new(report: &'a (dyn Fn(&PullProgress) + Send + Sync)) -> Self {
        Progress {
            report,
            stall: None,
        }
    }

    /// With this stall deadline (`None`: wait for data as long as it takes).
    pub fn with_stall_timeout(mut self, stall: Option<Duration>) -> Self {
        self.stall = stall;
        self
    }

    /// The stall deadline, if any.
    pub fn stall_timeout(&self) -> Option<Duration> {
        self.stall
    }

    /// Sends `event` to the caller's progress callback.
    pub fn report(&self, event: &PullProgress) {
        (self.report)(event);
    }

    /// `fut` (one wait for data: `what` names it in the error), or `Timeout` when it
    /// does not finish within the stall deadline.
    pub async fn within<T>(&self, what: &str, fut: impl Future<Output = Result<T>>) -> Result<T> {
        match self.stall {
            Some(limit) => tokio::time::timeout(limit, fut)
                .await
                .unwrap_or_else(|_| Err(stalled(what, limit))),
            None => fut.await,
        }
    }

    /// The next item of `stream` (`None` at its end), or `Timeout` when none comes
    /// within the stall deadline: every item counts as data, however small.
    pub async fn next<S>(&self, what: &str, stream: &mut S) -> Result<Option<S::Item>>
    where
        S: Stream + Unpin,
    {
        self.within(what, async { Ok(stream.next().await) }).await
    }
}

/// The error of a wait for `what` that received nothing for `limit`.
fn stalled(what: &str, limit: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!("the pull stalled: nothing arrived for {limit:?} while waiting for {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;
    use tokio::time::{sleep, Instant};

    fn quiet(_: &PullProgress) {}

    /// A stream that yields an item after each of `gaps`, then never again.
    fn gaps(gaps: Vec<Duration>) -> impl Stream<Item = u32> + Unpin {
        Box::pin(
            stream::iter(gaps.into_iter().enumerate())
                .then(|(i, gap)| async move {
                    sleep(gap).await;
                    u32::try_from(i).unwrap_or(u32::MAX)
                })
                .chain(stream::pending()),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_goes_quiet_fails_with_a_timeout_after_the_stall_deadline() {
        let progress = Progress::new(&quiet).with_stall_timeout(Some(Duration::from_secs(60)));
        // Slow but moving: a gap just under the deadline, many times over, never stalls.
        let mut items = gaps(vec![Duration::from_secs(59); 5]);
        let started = Instant::now();
        for i in 0..5 {
            let got = progress
                .next("a message", &mut items)
                .await
                .expect("moving");
            assert_eq!(got, Some(i));
        }
        assert_eq!(started.elapsed(), Duration::from_secs(5 * 59));
        // Then nothing: a Timeout once the deadline has passed since the last item.
        let quiet_since = Instant::now();
        let waiting = progress.next("the engine's next progress message", &mut items);
        let e = tokio::time::timeout(Duration::from_secs(3600), waiting)
            .await
            .expect("hung: no stall deadline")
            .expect_err("stalled");
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        assert_eq!(quiet_since.elapsed(), Duration::from_secs(60));
        assert!(
            e.to_string().contains("the engine's next progress message"),
            "{e}"
        );
        // Settled as a pull's error, it is retried.
        assert!(e.settle_retryable(true).is_retryable());
    }

    #[tokio::test(start_paused = true)]
    async fn one_wait_is_bounded_as_a_whole_and_no_deadline_means_none() {
        let progress = Progress::new(&quiet).with_stall_timeout(Some(Duration::from_secs(5)));
        let slow = async {
            sleep(Duration::from_secs(6)).await;
            Ok(1)
        };
        let e = progress
            .within("the manifest", slow)
            .await
            .expect_err("stalled");
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        let fast = async {
            sleep(Duration::from_secs(4)).await;
            Ok(2)
        };
        assert_eq!(
            progress
                .within("the manifest", fast)
                .await
                .expect("in time"),
            2
        );
        // Errors of the wait itself pass through unchanged.
        let refused = async { Err::<(), _>(Error::new(ErrorKind::Unavailable, "refused")) };
        let e = progress.within("x", refused).await.expect_err("refused");
        assert_eq!(e.kind(), ErrorKind::Unavailable);

        // Without a stall deadline a long silence is waited out.
        let patient = Progress::new(&quiet);
        assert_eq!(patient.stall_timeout(), None);
        let mut items = gaps(vec![Duration::from_secs(24 * 3600)]);
        assert_eq!(
            patient.next("x", &mut items).await.expect("waited"),
            Some(0)
        );
    }

    #[test]
    fn events_reach_the_callback() {
        let seen = std::sync::Mutex::new(Vec::new());
        let record = |e: &PullProgress| seen.lock().expect("seen").push(e.clone());
        let progress = Progress::new(&record);
        let event = PullProgress::Resolving {
            reference: "r".into(),
        };
        progress.report(&event);
        assert_eq!(*seen.lock().expect("seen"), vec![event]);
    }
}
