//! Retry policy: exponential backoff with jitter, capped by attempts and elapsed time,
//! applied only to errors that say a retry can help.
//!
//! The delays come from `backon`'s exponential builder; the loop is ours because the
//! final error must say that retries were exhausted and how many attempts were made.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::error::{Error, ErrorKind, Result};

/// Runs `fut` under an optional overall deadline (retries included, when `fut` is a
/// retry loop); on expiry a `Timeout` error says `what` did not finish. Marked retryable:
/// use it for idempotent operations only (pull, inspect, ...).
pub async fn with_deadline<T>(
    limit: Option<Duration>,
    what: &str,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Timeout,
                format!("{what} did not finish within {limit:?}"),
            )
            .set_retryable(true))
        }),
        None => fut.await,
    }
}

/// When and how often to retry a retryable failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 means no retry).
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub initial_delay: Duration,
    /// Upper bound of one delay.
    pub max_delay: Duration,
    /// Upper bound of all delays added up; `None` for no bound.
    pub max_elapsed: Option<Duration>,
    /// Randomise delays so that many clients do not retry in step.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    /// 4 attempts, 200 ms doubling to at most 5 s, at most 30 s of waiting, with jitter.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_elapsed: Some(Duration::from_secs(30)),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// The policy for idempotent engine calls: 3 attempts, 100 ms doubling to at most
    /// 1 s, at most 3 s of waiting, with jitter. Short, because the caller is waiting on
    /// an engine that should answer at once.
    pub fn calls() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_elapsed: Some(Duration::from_secs(3)),
            jitter: true,
        }
    }

    /// A policy that never retries.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    fn delays(&self) -> impl Iterator<Item = Duration> {
        let mut builder = ExponentialBuilder::new()
            .with_min_delay(self.initial_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .with_total_delay(self.max_elapsed);
        if self.jitter {
            builder = builder.with_jitter();
        }
        builder.build()
    }

    /// Runs `op` until it succeeds, fails with a non-retryable error, or the policy is
    /// spent. A retryable error that ends the loop is marked `retries_exhausted`.
    pub async fn run<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut delays = self.delays();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match op(attempt).await {
                Ok(v) => return Ok(v),
                Err(e) if !e.is_retryable() => return Err(e),
                Err(e) => match delays.next() {
                    Some(delay) => {
                        tracing::debug!(attempt, ?delay, error = %e, "retrying");
                        tokio::time::sleep(delay).await;
                    }
                    None => return Err(e.mark_exhausted(attempt)),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_elapsed: None,
            jitter: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_retryable_errors_until_success() {
        let calls = AtomicU32::new(0);
        let v = policy(5)
            .run(|attempt| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if attempt < 3 {
                        Err(Error::new(ErrorKind::Unavailable, "down"))
                    } else {
                        Ok(attempt)
                    }
                }
            })
            .await
            .expect("ok");
        assert_eq!(v, 3);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn never_retries_permanent_errors() {
        let calls = AtomicU32::new(0);
        let e = policy(5)
            .run(|_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(Error::new(ErrorKind::NotFound, "no such repo")) }
            })
            .await
            .expect_err("err");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(!e.retries_exhausted());
    }

    #[tokio::test(start_paused = true)]
    async fn marks_exhaustion_with_attempt_count_and_backs_off() {
        let start = tokio::time::Instant::now();
        let e = policy(4)
            .run(|_| async { Err::<(), _>(Error::new(ErrorKind::RateLimited, "slow down")) })
            .await
            .expect_err("err");
        assert!(e.retries_exhausted());
        assert!(!e.is_retryable());
        assert_eq!(e.attempts(), 4);
        // 100 + 200 + 400 ms of exponential backoff (the paused clock rounds up to ms).
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(700), "{waited:?}");
        assert!(waited < Duration::from_millis(720), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn total_delay_caps_the_loop() {
        let mut p = policy(100);
        p.max_elapsed = Some(Duration::from_millis(350));
        let e = p
            .run(|_| async { Err::<(), _>(Error::new(ErrorKind::Unavailable, "down")) })
            .await
            .expect_err("err");
        assert!(e.retries_exhausted());
        assert_eq!(e.attempts(), 3); // waits of 100 and 200 ms fit, 400 would not
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_turns_into_a_retryable_timeout() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(1)
        };
        let e = with_deadline(Some(Duration::from_secs(1)), "pull", slow)
            .await
            .expect_err("deadline");
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(e.is_retryable());
        assert_eq!(
            with_deadline(None, "pull", async { Ok(2) })
                .await
                .expect("ok"),
            2
        );
    }

    #[tokio::test]
    async fn none_runs_once() {
        let calls = AtomicU32::new(0);
        let e = RetryPolicy::none()
            .run(|_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(Error::new(ErrorKind::Unavailable, "down")) }
            })
            .await
            .expect_err("err");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(e.retries_exhausted());
    }
}
