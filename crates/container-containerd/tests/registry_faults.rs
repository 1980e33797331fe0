//! Registry faults against the real containerd and the local registry (issue 13,
//! registry faults): a registry that fails the first requests (503, or a reset) is
//! pulled from through the library's retries; a permanent 404 or 401 fails the pull at
//! once with its own kind, no retry spent.
//!
//! The pull is this library's own puller (oci-client) talking plain HTTP to the proxy
//! on `127.0.0.1`, then containerd's content store and unpacker.

use container_core::{ConnectOptions, ErrorKind};
use container_test_registry::scenarios::{self, Engine, MANIFESTS};
use container_test_registry::Fault;

const NAMESPACE: &str = "container-rs-registry-faults-test";

async fn manager() -> container_containerd::ContainerdManager {
    // The same value from every test of this binary, set before any connection.
    std::env::set_var("CONTAINERD_NAMESPACE", NAMESPACE);
    let options = ConnectOptions::owned_by_session("containerd-registry-faults-test", "faults")
        .expect("labels");
    container_containerd::connect(options)
        .await
        .expect("containerd answers (cargo xtask engines up)")
}

/// The scenarios' view of this engine.
fn engine<'a>(manager: &'a dyn container_core::ContainerManager) -> Engine<'a> {
    Engine {
        manager,
        name: "containerd",
        manifest_requests_per_attempt: 1,
        proxy_port: 0,
        retries_resets_itself: false,
    }
}

#[tokio::test]
async fn the_first_two_requests_answered_503_are_retried_through() {
    let m = manager().await;
    let fault = Fault::FirstAnswered {
        path: MANIFESTS.into(),
        first: 2,
        status: 503,
    };
    scenarios::first_two_fail_then_the_retried_pull_succeeds(&engine(&m), "503", fault).await;
}

#[tokio::test]
async fn the_first_two_connections_reset_are_retried_through() {
    let m = manager().await;
    let fault = Fault::FirstReset {
        path: MANIFESTS.into(),
        first: 2,
    };
    scenarios::first_two_fail_then_the_retried_pull_succeeds(&engine(&m), "reset", fault).await;
}

#[tokio::test]
async fn a_manifest_that_is_always_404_fails_at_once_with_not_found() {
    let m = manager().await;
    scenarios::a_permanent_manifest_status_fails_at_once(
        &engine(&m),
        "404",
        404,
        &[ErrorKind::NotFound],
    )
    .await;
}

#[tokio::test]
async fn a_manifest_that_is_always_401_without_a_challenge_fails_at_once() {
    let m = manager().await;
    scenarios::a_permanent_manifest_status_fails_at_once(
        &engine(&m),
        "401",
        401,
        &[ErrorKind::Unauthenticated],
    )
    .await;
}
