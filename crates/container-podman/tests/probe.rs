//! The Podman backend's ulimit probe against the real Podman service (run by
//! `cargo xtask ci`): a create abandoned while the probe runs leaves no probe container
//! (issue 13, item 14).

use std::time::{Duration, Instant};

use container_core::labels::{OWNER_LABEL, SESSION_LABEL};
use container_core::{
    ConnectOptions, ContainerConfig, ContainerManager, Labels, PullOptions, Ulimit,
};

const IMAGE: &str = "127.0.0.1:5000/container-rs/busybox:1";
const OWNER: &str = "podman-probe-test";

#[tokio::test]
async fn an_abandoned_create_leaves_no_ulimit_probe() {
    let session = format!("probe-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let connect = || async {
        let options = ConnectOptions::owned_by_session(OWNER, &session).expect("labels");
        container_podman::connect(options)
            .await
            .expect("Podman answers (cargo xtask engines up)")
    };
    let m = connect().await;
    m.pull(IMAGE, &PullOptions::default()).await.expect("pull");
    let selector: Labels = [
        (OWNER_LABEL.to_string(), OWNER.to_string()),
        (SESSION_LABEL.to_string(), session.clone()),
    ]
    .into();
    for step in 0..12u64 {
        // A fresh manager probes once, on its first create with ulimits.
        let fresh = connect().await;
        let mut config = ContainerConfig::new(IMAGE)
            .name(format!("{session}-{step}"))
            .cmd(["sleep", "600"]);
        config
            .resources
            .ulimits
            .push(Ulimit::new("nofile", 1024, 2048));
        tokio::select! {
            made = fresh.create(&config) => { made.expect("create"); }
            () = tokio::time::sleep(Duration::from_millis(step * 15)) => {}
        }
    }
    // The abandoned probes finish in their own tasks, then remove themselves.
    let started = Instant::now();
    let probes = loop {
        let probes: Vec<String> = m
            .list(&selector)
            .await
            .expect("list")
            .into_iter()
            .map(|c| c.name)
            .filter(|n| n.starts_with("crs-ulimits-"))
            .collect();
        if probes.is_empty() || started.elapsed() > Duration::from_secs(10) {
            break probes;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for c in m.list(&selector).await.expect("list") {
        let _ = m.remove(&c.id, true).await;
    }
    assert_eq!(probes, Vec::<String>::new(), "ulimit probes left behind");
}
