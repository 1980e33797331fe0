//! Registry faults against the real Podman service and the local registry (issue 13,
//! registry faults), the scenarios Docker's and containerd's tests run: a registry that
//! fails the first requests (503, or a reset) is pulled from through the library's
//! retries; a permanent 404 or 401 fails the pull at once with its own kind, no retry
//! spent.
//!
//! Podman speaks plain HTTP only to the registries its `registries.conf` names insecure:
//! the test service's names the local registry and `127.0.0.1:5001`
//! (`FAULT_PROXY_PORT`), where the proxy listens. One port, so the scenarios run one
//! after another in one test.

use container_core::{ConnectOptions, ErrorKind};
use container_test_registry::scenarios::{self, Engine, MANIFESTS};
use container_test_registry::{Fault, FAULT_PROXY_PORT};

#[tokio::test]
async fn registry_faults_are_retried_through_or_fail_at_once() {
    let options =
        ConnectOptions::owned_by_session("podman-registry-faults-test", "faults").expect("labels");
    let m = container_podman::connect(options)
        .await
        .expect("Podman answers (cargo xtask engines up)");
    let engine = Engine {
        manager: &m,
        name: "podman",
        manifest_requests_per_attempt: 1,
        proxy_port: FAULT_PROXY_PORT,
        retries_resets_itself: true,
    };
    let fault = Fault::FirstAnswered {
        path: MANIFESTS.into(),
        first: 2,
        status: 503,
    };
    scenarios::first_two_fail_then_the_retried_pull_succeeds(&engine, "503", fault).await;
    let fault = Fault::FirstReset {
        path: MANIFESTS.into(),
        first: 2,
    };
    scenarios::first_two_fail_then_the_retried_pull_succeeds(&engine, "reset", fault).await;
    scenarios::a_permanent_manifest_status_fails_at_once(
        &engine,
        "404",
        404,
        &[ErrorKind::NotFound],
    )
    .await;
    scenarios::a_permanent_manifest_status_fails_at_once(
        &engine,
        "401",
        401,
        &[ErrorKind::Unauthenticated],
    )
    .await;
}
