//! Secrets never reach the logs (issue 14, item 13): with every `tracing` event and every
//! `log` record captured at trace level, a create with a secret env value and a pull
//! with a registry password leave neither in what this library or the engine crates
//! log, on every backend compiled in. Two exceptions are known and documented in
//! `docs/security.md`: bollard logs request and response bodies at `debug` through `log`
//! (target `bollard::*`), and podman-api's transport logs response bodies at `trace`
//! (target `containers_api::*`); those records are counted here, not searched.
//!
//! Needs the engines of `cargo xtask engines up`.
#![cfg(all(feature = "docker", feature = "podman", feature = "containerd"))]

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use container::{
    BackendKind, CleanupScope, ConnectOptions, ContainerConfig, ExecSpec, PullOptions, RegistryAuth,
};

const IMAGE: &str = "127.0.0.1:5000/container-rs/busybox:1";
const ENV_SECRET: &str = "env-s3cret-4b1d9e";
const PASSWORD: &str = "registry-pa55-7c2f0a";
const USER: &str = "crs-secrets-user";

/// Every formatted event, one string each.
#[derive(Clone, Default)]
struct Records(Arc<Mutex<Vec<String>>>);

/// One event's bytes: `fmt` formats an event whole, then writes it through one writer.
struct Record {
    records: Records,
    bytes: Vec<u8>,
}

impl Write for Record {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.bytes).into_owned();
        self.records
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(text);
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Records {
    type Writer = Record;
    fn make_writer(&'a self) -> Record {
        Record {
            records: self.clone(),
            bytes: Vec::new(),
        }
    }
}

/// The forms a secret may take on the wire: itself, and the password inside an HTTP
/// Basic `Authorization` header.
fn forms() -> Vec<String> {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    vec![ENV_SECRET.to_string(), PASSWORD.to_string(), basic]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_logs() {
    let records = Records::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(records.clone())
        .try_init()
        .expect("the only subscriber of this test binary");
    std::env::set_var("CONTAINERD_NAMESPACE", "container-rs-secrets-test");

    for kind in [
        BackendKind::Docker,
        BackendKind::Podman,
        BackendKind::Containerd,
    ] {
        let options = ConnectOptions::owned_by("container-rs-secrets-test").expect("owner");
        let m = container::connect_with(kind, options)
            .await
            .unwrap_or_else(|e| panic!("{kind}: engine up? (cargo xtask engines up): {e}"));
        let auth = RegistryAuth::new(USER, PASSWORD).with_server("127.0.0.1:5000");
        m.pull(IMAGE, &PullOptions::default().with_auth(auth))
            .await
            .unwrap_or_else(|e| panic!("{kind}: pull: {e}"));
        let config = ContainerConfig::new(IMAGE)
            .name(format!("crs-secrets-{kind}"))
            .env("TOKEN", ENV_SECRET)
            .cmd(["sleep", "3600"]);
        let id = m.create(&config).await.expect("create");
        // Create by name again: the adoption path inspects the container (its env too).
        assert_eq!(m.create(&config).await.expect("create again"), id);
        m.start(&id).await.expect("start");
        let out = m
            .exec(&id, &ExecSpec::shell("test -n \"$TOKEN\""))
            .await
            .expect("exec");
        assert_eq!(out.exit_code, 0, "{kind}: the secret is in the container");
        m.inspect(&id).await.expect("inspect");
        m.cleanup(CleanupScope::Session).await.expect("cleanup");
    }

    let records = records.0.lock().unwrap_or_else(PoisonError::into_inner);
    // A formatted record reads `time LEVEL spans: target: message` (no spans: `time
    // LEVEL target: message`).
    let from = |target: &str| {
        let needle = format!(" {target}");
        move |r: &&String| r.contains(&needle)
    };
    let ours = records.iter().filter(from("container_")).count();
    let bollard = records.iter().filter(from("bollard::")).count();
    let podman_api = records.iter().filter(from("containers_api::")).count();
    // The capture works: this library's events and the engine crates' `log` records.
    assert!(ours > 0, "no event of this library captured");
    assert!(bollard > 0, "no `log` record of bollard captured");
    assert!(podman_api > 0, "no `log` record of podman-api captured");
    let known = |r: &&String| from("bollard::")(r) || from("containers_api::")(r);
    let mut leaks = Vec::new();
    for record in records.iter().filter(|r| !known(r)) {
        for secret in forms() {
            if record.contains(&secret) {
                leaks.push(record.clone());
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "{} of {} records show a secret: {leaks:#?}",
        leaks.len(),
        records.len()
    );
}
