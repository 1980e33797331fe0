//! A registry that stops sending mid-blob, against the real Docker engine and the local
//! registry (run by `cargo xtask ci`): the pull fails with a `Timeout` within the stall
//! deadline, is retried, and the engine pulls normally afterwards (issue 13, item 11).
//!
//! Docker reaches the proxy at a `127.0.0.1` port over plain HTTP because it treats
//! 127.0.0.0/8 as an insecure registry by default.

use std::time::{Duration, Instant};

use container_core::{ConnectOptions, ContainerManager, ErrorKind, PullOptions, RetryPolicy};
use container_test_registry::{StallProxy, UniqueImage, REGISTRY_PORT};

/// The stall deadline of the test's pulls.
const STALL: Duration = Duration::from_secs(3);
/// What a loaded 2-core machine may add to each attempt (the HTTPS probe, manifest,
/// config).
const SLACK: Duration = Duration::from_secs(10);
/// Past this the pull hangs: the test fails instead of waiting on.
const HANG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_registry_that_stops_sending_mid_blob_fails_the_pull_with_a_timeout() {
    // An image no engine has: its layer must really be downloaded (Docker skips a layer
    // it has under any name).
    let image = UniqueImage::push("container-rs/pull-stall-docker")
        .await
        .expect("push to the local registry (cargo xtask engines up)");
    // 64 KiB of the 1 MiB layer's answer, then silence.
    let proxy = StallProxy::start(
        REGISTRY_PORT,
        &image.layer_request(),
        64 << 10,
        Duration::from_secs(120),
    )
    .await
    .expect("proxy");
    let options =
        ConnectOptions::owned_by_session("docker-pull-stall-test", "pull-stall").expect("labels");
    let m = container_docker::connect(options)
        .await
        .expect("Docker answers (cargo xtask engines up)");
    let through = image.reference(proxy.addr());
    let options = PullOptions::default()
        .with_stall_timeout(Some(STALL))
        .with_retry(RetryPolicy {
            max_attempts: 2,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_millis(200),
            max_elapsed: None,
            jitter: false,
        });

    let started = Instant::now();
    let pulled = tokio::time::timeout(HANG, m.pull(&through, &options))
        .await
        .expect("the pull hung on a stalled registry: no stall deadline");
    let waited = started.elapsed();
    let e = pulled.expect_err("the registry stalled mid-blob");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(
        e.to_string().contains("stalled"),
        "the stall deadline, not another: {e}"
    );
    // Retried (a pull is idempotent), then given up on.
    assert!(e.retries_exhausted(), "{e}");
    assert_eq!(e.attempts(), 2, "{e}");
    assert!(
        proxy.stalled() >= 2,
        "each attempt asked for the blob again"
    );
    assert!(waited >= 2 * STALL, "{waited:?}");
    assert!(waited < 2 * (STALL + SLACK), "{waited:?}");
    assert!(!m.image_exists(&through).await.expect("exists"));

    // The engine is fine: the same image straight from the registry.
    m.pull(&image.direct(), &PullOptions::default())
        .await
        .expect("pull without the proxy");
    assert!(m.image_exists(&image.direct()).await.expect("exists"));
    m.remove_image(&image.direct(), true).await.expect("remove");
}
