//! The image path against the real containerd and the local registry that
//! `cargo xtask engines up` starts (run by `cargo xtask ci`).

mod common;

use std::sync::Mutex;
use std::time::Duration;

use container_containerd::Containerd;
use container_core::raw::Progress;
use container_core::{ErrorKind, ImageRef, LayerPhase, PullProgress};

const IMAGE: &str = "127.0.0.1:5000/container-rs/busybox-user:2";
const NAMESPACE: &str = "container-rs-test";

fn phases(events: &Mutex<Vec<PullProgress>>) -> Vec<LayerPhase> {
    events
        .lock()
        .expect("events")
        .iter()
        .filter_map(|e| match e {
            PullProgress::Layer { phase, .. } => Some(*phase),
            _ => None,
        })
        .collect()
}

/// `ctr` in the test namespace.
fn ctr(args: &[&str]) -> String {
    common::ctr(NAMESPACE, args)
}

#[tokio::test]
async fn pull_unpacks_and_remove_collects_without_any_go_tool() {
    let c = Containerd::connect(None, Some(NAMESPACE), Duration::from_secs(5))
        .await
        .expect("containerd answers (cargo xtask engines up)");
    assert_eq!(c.namespace(), NAMESPACE);
    let info = c.info().await.expect("info");
    assert!(!info.version.is_empty());
    let image = ImageRef::parse(IMAGE).expect("ref");
    match c.remove_image(&image, true).await {
        Ok(()) => {}
        Err(e) => assert_eq!(e.kind(), ErrorKind::NotFound, "{e}"),
    }
    assert!(!c.image_exists(&image).await.expect("exists"));

    let events = Mutex::new(Vec::new());
    let record = |e: &PullProgress| events.lock().expect("events").push(e.clone());
    let digest = c
        .pull(&image, None, Progress::new(&record))
        .await
        .expect("pull");
    let digest = digest.expect("a manifest digest");
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert!(c.image_exists(&image).await.expect("exists"));
    let first = phases(&events);
    assert!(
        first.contains(&LayerPhase::Extracting),
        "unpacked: {first:?}"
    );
    // containerd agrees: all content present, the image's layers unpacked.
    let check = ctr(&["images", "check"]);
    let line = check
        .lines()
        .find(|l| l.contains(IMAGE))
        .expect("image listed");
    assert!(line.contains("complete"), "{check}");
    let snapshots = ctr(&["snapshots", "--snapshotter", "overlayfs", "ls"]);
    assert!(
        snapshots.lines().count() >= 3,
        "two committed layers: {snapshots}"
    );

    // Again: nothing fetched or unpacked.
    events.lock().expect("events").clear();
    c.pull(&image, None, Progress::new(&record))
        .await
        .expect("second pull");
    let second = phases(&events);
    assert!(
        second.iter().all(|p| *p == LayerPhase::AlreadyExists),
        "a present image is not fetched again: {second:?}"
    );

    c.remove_image(&image, false).await.expect("remove");
    assert!(!c.image_exists(&image).await.expect("exists"));

    let missing = ImageRef::parse("127.0.0.1:5000/container-rs/no-such-image:1").expect("ref");
    let e = c
        .pull(&missing, None, Progress::new(&record))
        .await
        .expect_err("missing");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn other_tools_namespaces_and_missing_sockets_are_refused() {
    let e = Containerd::connect(None, Some("moby"), Duration::from_secs(5))
        .await
        .expect_err("moby is Docker's");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let dir = tempfile::tempdir().expect("tmp");
    let socket = dir.path().join("absent.sock");
    let e = Containerd::connect(socket.to_str(), None, Duration::from_secs(2))
        .await
        .expect_err("no socket");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_retryable());
}
