//! Registry faults against the real Docker engine and the local registry (issue 13,
//! registry faults): a registry that fails the first requests (503, or a reset) is
//! pulled from through the library's retries; a permanent 404 or 401 fails the pull at
//! once with its own kind, no retry spent.
//!
//! Docker reaches the proxy at a `127.0.0.1` port over plain HTTP because it treats
//! 127.0.0.0/8 as an insecure registry by default (its HTTPS probe of the proxy is
//! relayed as it is and not counted as a request).

use container_core::{ConnectOptions, ErrorKind};
use container_test_registry::scenarios::{self, Engine, MANIFESTS};
use container_test_registry::Fault;

async fn manager() -> container_docker::DockerManager {
    let options =
        ConnectOptions::owned_by_session("docker-registry-faults-test", "faults").expect("labels");
    container_docker::connect(options)
        .await
        .expect("Docker answers (cargo xtask engines up)")
}

/// The scenarios' view of this engine.
fn engine<'a>(manager: &'a dyn container_core::ContainerManager) -> Engine<'a> {
    Engine {
        manager,
        name: "docker",
        manifest_requests_per_attempt: 2,
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
