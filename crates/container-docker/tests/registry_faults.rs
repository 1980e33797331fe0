//! Registry faults against the real Docker engine and the local registry (issue 13,
//! registry faults): a registry that fails the first requests (503, or a reset) is
//! pulled from through the library's retries; a permanent 404 or 401 fails the pull at
//! once with its own kind, no retry spent.
//!
//! Docker reaches the proxy at a `127.0.0.1` port over plain HTTP because it treats
//! 127.0.0.0/8 as an insecure registry by default (its HTTPS probe of the proxy is
//! relayed as it is and not counted as a request).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use container_core::{
    ConnectOptions, ContainerManager, ErrorKind, PullOptions, PullProgress, RetryPolicy,
};
use container_test_registry::{Fault, FaultProxy, UniqueImage, REGISTRY_PORT};

/// What the requests for a manifest hold. The faults hit the manifest, not the ping
/// (Docker goes on after a failed `/v2/`) and not blobs (Docker retries a layer
/// download itself): two failed manifest requests (Docker's HEAD, then its GET) fail
/// an attempt, so only the library's retry gets the pull through.
const MANIFESTS: &str = "/manifests/";

/// The manifest requests of one attempt whose first fails: Docker asks with HEAD, then again with GET.
const MANIFEST_REQUESTS_PER_ATTEMPT: usize = 2;

/// Past this a pull hangs: the test fails instead of waiting on.
const HANG: Duration = Duration::from_secs(90);

/// The proxy stops by itself after this, whatever happens to the test.
const PROXY_LIFETIME: Duration = Duration::from_secs(150);

async fn manager() -> container_docker::DockerManager {
    let options =
        ConnectOptions::owned_by_session("docker-registry-faults-test", "faults").expect("labels");
    container_docker::connect(options)
        .await
        .expect("Docker answers (cargo xtask engines up)")
}

/// Four attempts 200 ms apart: enough for two failed requests, fast.
fn retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        initial_delay: Duration::from_millis(200),
        max_delay: Duration::from_millis(200),
        max_elapsed: None,
        jitter: false,
    }
}

/// Pull options with `retry` that count the attempts (one `Resolving` each).
fn counted(retry: RetryPolicy) -> (PullOptions, Arc<AtomicUsize>) {
    let attempts = Arc::new(AtomicUsize::new(0));
    let seen = attempts.clone();
    let options = PullOptions::default()
        .with_retry(retry)
        .with_stall_timeout(Some(Duration::from_secs(20)))
        .with_progress(move |p| {
            if matches!(p, PullProgress::Resolving { .. }) {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        });
    (options, attempts)
}

/// Pushes a fresh image and starts a proxy to the registry with `fault`.
async fn setup(name: &str, fault: Fault) -> (UniqueImage, FaultProxy) {
    let image = UniqueImage::push(&format!("container-rs/faults-docker-{name}"))
        .await
        .expect("push to the local registry (cargo xtask engines up)");
    let proxy = FaultProxy::start(REGISTRY_PORT, fault, PROXY_LIFETIME)
        .await
        .expect("proxy");
    (image, proxy)
}

/// `fault` fails the first two manifest requests; the pull succeeds because it was retried.
async fn first_two_fail_then_the_retried_pull_succeeds(name: &str, fault: Fault) {
    let (image, proxy) = setup(name, fault).await;
    let m = manager().await;
    let through = image.reference(proxy.addr());
    let (options, attempts) = counted(retry());
    let pulled = tokio::time::timeout(HANG, m.pull(&through, &options))
        .await
        .expect("the pull hung");
    let seen = proxy.requests();
    pulled.unwrap_or_else(|e| panic!("the retries got past two failed requests: {e}; {seen:?}"));
    assert_eq!(proxy.faulted(), 2, "{seen:?}");
    let attempts = attempts.load(Ordering::SeqCst);
    assert!(
        attempts >= 2,
        "the library retried: {attempts} attempt(s); {seen:?}"
    );
    assert!(m.image_exists(&through).await.expect("exists"));
    m.remove_image(&through, true).await.expect("remove");
}

#[tokio::test]
async fn the_first_two_requests_answered_503_are_retried_through() {
    let fault = Fault::FirstAnswered {
        path: MANIFESTS.into(),
        first: 2,
        status: 503,
    };
    first_two_fail_then_the_retried_pull_succeeds("503", fault).await;
}

#[tokio::test]
async fn the_first_two_connections_reset_are_retried_through() {
    let fault = Fault::FirstReset {
        path: MANIFESTS.into(),
        first: 2,
    };
    first_two_fail_then_the_retried_pull_succeeds("reset", fault).await;
}

/// `status` on every manifest request: the pull fails at once with `kind`, one attempt.
async fn a_permanent_manifest_status_fails_at_once(name: &str, status: u16, kinds: &[ErrorKind]) {
    let fault = Fault::Always {
        path: MANIFESTS.into(),
        status,
    };
    let (image, proxy) = setup(name, fault).await;
    let m = manager().await;
    let through = image.reference(proxy.addr());
    let (options, attempts) = counted(retry());
    let pulled = tokio::time::timeout(HANG, m.pull(&through, &options))
        .await
        .expect("the pull hung");
    let seen = proxy.requests();
    let e = pulled.expect_err("every manifest request fails");
    assert!(kinds.contains(&e.kind()), "{e}; {seen:?}");
    assert!(!e.is_retryable(), "{e}");
    assert!(!e.retries_exhausted(), "no retry was spent: {e}");
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "one attempt: {e}; {seen:?}"
    );
    assert!(proxy.faulted() >= 1, "the manifest was asked for: {seen:?}");
    assert_eq!(proxy.faulted(), proxy.requests_holding(MANIFESTS));
    assert_eq!(
        proxy.requests_holding(MANIFESTS),
        MANIFEST_REQUESTS_PER_ATTEMPT,
        "the manifest asked for by one attempt, no more: {seen:?}"
    );
    assert!(!m.image_exists(&through).await.expect("exists"));
}

#[tokio::test]
async fn a_manifest_that_is_always_404_fails_at_once_with_not_found() {
    a_permanent_manifest_status_fails_at_once("404", 404, &[ErrorKind::NotFound]).await;
}

#[tokio::test]
async fn a_manifest_that_is_always_401_without_a_challenge_fails_at_once() {
    a_permanent_manifest_status_fails_at_once("401", 401, &[ErrorKind::Unauthenticated]).await;
}
