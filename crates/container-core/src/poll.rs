//! The one pacing behind every "look again until" loop of the library: an exec's exit,
//! an exec the engine has not started yet, another caller's removal, the processes of a
//! killed exec, a container's exit. Each loop looks, then calls [`Poll::pause`], which
//! sleeps the next pause (doubling from a first pause to a longest one, or one fixed
//! pause, from `backon`'s exponential builder), cuts it short when a hint comes (and
//! starts the pauses over), and says when the deadline has passed. Written here because
//! backon paces retries after errors, while here "not yet" is the normal answer, a hint
//! may cut a pause short, and a deadline ends the loop with no error of its own (each
//! caller says what did not happen in time).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::watch;
use tokio::time::Instant;

/// How one poll loop paces its looks; see the module docs.
pub struct Poll {
    first: Duration,
    longest: Duration,
    deadline: Option<Instant>,
    hint: Option<watch::Receiver<bool>>,
    /// The pauses still to come (made at the first pause, and again after a hint).
    pauses: Option<Box<dyn Iterator<Item = Duration> + Send + Sync>>,
}

impl std::fmt::Debug for Poll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poll")
            .field("first", &self.first)
            .field("longest", &self.longest)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Poll {
    /// Pauses doubling from `first` up to `longest`.
    pub fn doubling(first: Duration, longest: Duration) -> Self {
        Poll {
            first,
            longest: longest.max(first),
            deadline: None,
            hint: None,
            pauses: None,
        }
    }

    /// The same pause every time.
    pub fn every(pause: Duration) -> Self {
        Self::doubling(pause, pause)
    }

    /// Gives up once `limit` has passed (checked after each look: there is always one).
    pub fn within(mut self, limit: Duration) -> Self {
        self.deadline = Instant::now().checked_add(limit);
        self
    }

    /// Looks again at once, and starts the pauses over, when `hint` changes (to true):
    /// something happened that makes the answer likely to have changed.
    pub fn hinted_by(mut self, hint: watch::Receiver<bool>) -> Self {
        self.hint = Some(hint);
        self
    }

    /// Waits for the next look: the next pause (cut short by the hint), `false` once
    /// the deadline has passed (then the caller gives up; it has looked at least once).
    pub async fn pause(&mut self) -> bool {
        let pauses = self
            .pauses
            .get_or_insert_with(|| Box::new(pauses(self.first, self.longest)));
        let mut pause = pauses.next().unwrap_or(self.longest);
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            pause = pause.min(left);
        }
        let hinted = async {
            match self.hint.as_mut() {
                Some(hint) => hint.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            hinted = hinted => {
                if hinted {
                    self.pauses = None; // start over from the first pause
                } else {
                    // The hint's sender is gone: no more hints.
                    self.hint = None;
                }
            }
        }
        true
    }
}

/// The pauses from `first`, doubling up to `longest`, without end.
fn pauses(first: Duration, longest: Duration) -> impl Iterator<Item = Duration> + Send + Sync {
    let doubling = ExponentialBuilder::default()
        .with_min_delay(first)
        .with_max_delay(longest)
        .with_factor(2.0)
        .without_max_times()
        .build();
    // backon's builder may end; the loop here never runs out.
    doubling.chain(std::iter::repeat(longest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pauses_double_up_to_the_longest() {
        let mut poll = Poll::doubling(Duration::from_millis(10), Duration::from_millis(40));
        let mut gaps = Vec::new();
        for _ in 0..5 {
            let at = Instant::now();
            assert!(poll.pause().await);
            gaps.push(at.elapsed().as_millis());
        }
        assert_eq!(gaps, [10, 20, 40, 40, 40]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_ends_the_pauses() {
        let started = Instant::now();
        let mut poll = Poll::every(Duration::from_millis(300)).within(Duration::from_secs(1));
        let mut pauses = 0;
        while poll.pause().await {
            pauses += 1;
        }
        // 300, 300, 300, then the 100 left: the last look comes at the deadline.
        assert_eq!(pauses, 4);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        let mut none_left = Poll::every(Duration::from_secs(1)).within(Duration::ZERO);
        assert!(!none_left.pause().await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hint_cuts_the_pause_short_and_starts_over() {
        let (tx, rx) = watch::channel(false);
        let mut poll =
            Poll::doubling(Duration::from_millis(10), Duration::from_secs(60)).hinted_by(rx);
        for _ in 0..4 {
            assert!(poll.pause().await); // 10, 20, 40, 80
        }
        let hinter = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            tx.send_replace(true);
            tx
        });
        let at = Instant::now();
        assert!(poll.pause().await);
        assert_eq!(at.elapsed(), Duration::from_millis(5));
        let at = Instant::now();
        assert!(poll.pause().await);
        assert_eq!(
            at.elapsed(),
            Duration::from_millis(10),
            "the pauses start over"
        );
        drop(hinter.await.expect("the hinter task"));
        let at = Instant::now();
        assert!(poll.pause().await); // the sender is gone: no hint, a plain pause
        assert!(at.elapsed() <= Duration::from_millis(20));
    }
}
