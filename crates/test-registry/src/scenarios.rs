//! The registry-fault scenarios, written once against [`ContainerManager`] and run by
//! each backend's `tests/registry_faults.rs` on its real engine: a registry that fails
//! the first manifest requests (503, or a reset) is pulled from through the library's
//! retries; a permanent 404 or 401 fails the pull at once with its own kind, no retry
//! spent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use container_core::{ContainerManager, ErrorKind, PullOptions, PullProgress, RetryPolicy};

#[cfg(doc)]
use crate::FAULT_PROXY_PORT;
use crate::{Fault, FaultProxy, UniqueImage, REGISTRY_PORT};

/// What the requests for a manifest hold. The faults hit the manifest, not the ping
/// (Docker goes on after a failed `/v2/`) and not blobs (Docker retries a layer
/// download itself): a failed manifest request fails an attempt, so only the library's
/// retry gets the pull through.
pub const MANIFESTS: &str = "/manifests/";

/// Past this a pull hangs: the test fails instead of waiting on.
const HANG: Duration = Duration::from_secs(90);

/// The proxy stops by itself after this, whatever happens to the test.
const PROXY_LIFETIME: Duration = Duration::from_secs(150);

/// The engine a scenario runs on.
pub struct Engine<'a> {
    /// The manager under test.
    pub manager: &'a dyn ContainerManager,
    /// A short name for image names (`docker`, `containerd`).
    pub name: &'a str,
    /// The manifest requests of one attempt whose first fails (Docker asks with HEAD,
    /// then again with GET: 2; the containerd backend's puller asks once: 1).
    pub manifest_requests_per_attempt: usize,
    /// The port the proxy listens on: 0 for any free one; an engine that must be told
    /// which registries speak plain HTTP (Podman) needs [`FAULT_PROXY_PORT`], one
    /// scenario at a time.
    pub proxy_port: u16,
    /// The engine retries a connection reset by itself (Podman's containers/image):
    /// then the pull succeeds in one attempt of the library's.
    pub retries_resets_itself: bool,
}

impl std::fmt::Debug for Engine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("name", &self.name)
            .field(
                "manifest_requests_per_attempt",
                &self.manifest_requests_per_attempt,
            )
            .field("proxy_port", &self.proxy_port)
            .field("retries_resets_itself", &self.retries_resets_itself)
            .finish_non_exhaustive()
    }
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
async fn setup(engine: &Engine<'_>, name: &str, fault: Fault) -> (UniqueImage, FaultProxy) {
    let image = UniqueImage::push(&format!("container-rs/faults-{}-{name}", engine.name))
        .await
        .expect("push to the local registry (cargo xtask engines up)");
    let proxy = FaultProxy::start_at(engine.proxy_port, REGISTRY_PORT, fault, PROXY_LIFETIME)
        .await
        .expect("proxy");
    (image, proxy)
}

/// `fault` fails the first two manifest requests; the pull succeeds because it was
/// retried.
pub async fn first_two_fail_then_the_retried_pull_succeeds(
    engine: &Engine<'_>,
    name: &str,
    fault: Fault,
) {
    let m = engine.manager;
    let (image, proxy) = setup(engine, name, fault).await;
    let through = image.reference(proxy.addr());
    let (options, attempts) = counted(retry());
    let pulled = tokio::time::timeout(HANG, m.pull(&through, &options))
        .await
        .expect("the pull hung");
    let seen = proxy.requests();
    pulled.unwrap_or_else(|e| panic!("the retries got past two failed requests: {e}; {seen:?}"));
    assert_eq!(proxy.faulted(), 2, "{seen:?}");
    let attempts = attempts.load(Ordering::SeqCst);
    let engine_retried = engine.retries_resets_itself && name == "reset";
    assert!(
        attempts >= 2 || engine_retried,
        "the library retried: {attempts} attempt(s); {seen:?}"
    );
    assert!(m.image_exists(&through).await.expect("exists"));
    m.remove_image(&through, true).await.expect("remove");
}

/// `status` on every manifest request: the pull fails at once with one of `kinds`,
/// one attempt.
pub async fn a_permanent_manifest_status_fails_at_once(
    engine: &Engine<'_>,
    name: &str,
    status: u16,
    kinds: &[ErrorKind],
) {
    let m = engine.manager;
    let fault = Fault::Always {
        path: MANIFESTS.into(),
        status,
    };
    let (image, proxy) = setup(engine, name, fault).await;
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
        engine.manifest_requests_per_attempt,
        "the manifest asked for by one attempt, no more: {seen:?}"
    );
    assert!(!m.image_exists(&through).await.expect("exists"));
}
