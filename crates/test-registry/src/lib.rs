#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod scenarios;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::Reference;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The port of the local registry (`cargo xtask engines up`), on 127.0.0.1.
pub const REGISTRY_PORT: u16 = 5000;

/// The port a test proxy listens on when the engine itself pulls through it and must be
/// told the registry is plain HTTP (Podman's registries.conf names `127.0.0.1:5001`
/// insecure; Docker takes any loopback registry as such). One proxy at a time.
pub const FAULT_PROXY_PORT: u16 = 5001;

/// Bytes of the layer's one file: large enough that a proxy can stop in its middle.
const PAYLOAD_BYTES: usize = 1 << 20;

/// An image pushed to the local registry under a repository of its own, with one
/// uncompressed layer of random bytes that no engine has seen.
#[derive(Debug, Clone)]
pub struct UniqueImage {
    /// The repository in the registry, `<prefix>-<random hex>`.
    pub repository: String,
    /// The tag.
    pub tag: String,
    /// `sha256:<hex>` of the layer blob.
    pub layer_digest: String,
}

impl UniqueImage {
    /// Pushes a new image to the local registry as `<prefix>-<random hex>:1`.
    pub async fn push(
        prefix: &str,
    ) -> Result<UniqueImage, Box<dyn std::error::Error + Send + Sync>> {
        let seed = uuid::Uuid::new_v4().simple().to_string();
        let repository = format!("{prefix}-{}", &seed[..12]);
        let layer = layer_tar(&seed);
        let layer_digest = format!("sha256:{}", hex::encode(Sha256::digest(&layer)));
        let config = serde_json::json!({
            "architecture": host_arch(),
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        });
        let image = UniqueImage {
            repository,
            tag: "1".to_string(),
            layer_digest,
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = oci_client::Client::new(ClientConfig {
            protocol: ClientProtocol::Http,
            ..ClientConfig::default()
        });
        let reference: Reference = image
            .reference(SocketAddr::from((Ipv4Addr::LOCALHOST, REGISTRY_PORT)))
            .parse()?;
        client
            .push(
                &reference,
                &[ImageLayer::oci_v1(layer, None)],
                Config::oci_v1(config.to_string().into_bytes(), None),
                &RegistryAuth::Anonymous,
                None,
            )
            .await?;
        Ok(image)
    }

    /// The image's reference through the registry at `registry` (the local registry,
    /// or a proxy to it).
    pub fn reference(&self, registry: SocketAddr) -> String {
        format!("{registry}/{}:{}", self.repository, self.tag)
    }

    /// The reference in the local registry itself.
    pub fn direct(&self) -> String {
        self.reference(SocketAddr::from((Ipv4Addr::LOCALHOST, REGISTRY_PORT)))
    }

    /// What the request line of a pull of the layer blob holds: a [`StallProxy`]
    /// trigger.
    pub fn layer_request(&self) -> String {
        format!("/v2/{}/blobs/{}", self.repository, self.layer_digest)
    }
}

/// The OCI architecture name of this host.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A tar with one file of [`PAYLOAD_BYTES`] pseudo-random bytes drawn from `seed`
/// (incompressible, and unlike any other run's).
fn layer_tar(seed: &str) -> Vec<u8> {
    let mut payload = Vec::with_capacity(PAYLOAD_BYTES);
    let mut block = Sha256::digest(seed.as_bytes());
    while payload.len() < PAYLOAD_BYTES {
        payload.extend_from_slice(&block);
        block = Sha256::digest(block);
    }
    payload.truncate(PAYLOAD_BYTES);
    let mut header = tar::Header::new_gnu();
    header.set_size(PAYLOAD_BYTES as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_data(&mut header, "stall-test/payload.bin", payload.as_slice())
        .expect("a tar in memory cannot fail");
    builder.into_inner().expect("a tar in memory cannot fail")
}

/// A proxy on `127.0.0.1` to the registry on `127.0.0.1`: every connection is relayed
/// byte for byte, except that once a request holding the trigger (a path) has been
/// relayed, that connection's answer stops after `pass` bytes and the connection is
/// held open, silent, until the client goes away: a registry stalled mid-blob.
///
/// It stops by itself after its lifetime, or when dropped; every connection with it.
#[derive(Debug)]
pub struct StallProxy {
    addr: SocketAddr,
    stalled: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl StallProxy {
    /// Listens on a free port of `127.0.0.1`, relays to `127.0.0.1:upstream_port`, and
    /// stalls every answer to a request holding `trigger` after `pass` bytes; gone
    /// after `lifetime`.
    pub async fn start(
        upstream_port: u16,
        trigger: &str,
        pass: usize,
        lifetime: Duration,
    ) -> std::io::Result<StallProxy> {
        Self::start_at(0, upstream_port, trigger, pass, lifetime).await
    }

    /// [`start`](Self::start), listening on `127.0.0.1:port` (0: a free port).
    pub async fn start_at(
        port: u16,
        upstream_port: u16,
        trigger: &str,
        pass: usize,
        lifetime: Duration,
    ) -> std::io::Result<StallProxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
        let addr = listener.local_addr()?;
        let upstream = SocketAddr::from((Ipv4Addr::LOCALHOST, upstream_port));
        let stalled = Arc::new(AtomicUsize::new(0));
        let trigger: Arc<[u8]> = trigger.as_bytes().into();
        let counter = stalled.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            let serve = async {
                while let Ok((client, _)) = listener.accept().await {
                    while connections.try_join_next().is_some() {}
                    connections.spawn(relay(
                        client,
                        upstream,
                        trigger.clone(),
                        pass,
                        counter.clone(),
                    ));
                }
            };
            let _ = tokio::time::timeout(lifetime, serve).await;
            // Dropping the set aborts every connection still open.
            drop(connections);
        });
        Ok(StallProxy {
            addr,
            stalled,
            task,
        })
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many answers it has stalled so far (one per request holding the trigger).
    pub fn stalled(&self) -> usize {
        self.stalled.load(Ordering::SeqCst)
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether `haystack` holds `needle`.
fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Relays one connection; see [`StallProxy`].
async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    trigger: Arc<[u8]>,
    pass: usize,
    stalled: Arc<AtomicUsize>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let armed = AtomicBool::new(false);
    let requests = async {
        let mut buf = vec![0u8; 16 << 10];
        // The tail of what came before: a trigger split between two reads is found.
        let mut window: Vec<u8> = Vec::new();
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            window.extend_from_slice(&buf[..n]);
            // Armed before the request goes on, so its answer is already counted.
            if holds(&window, &trigger) && !armed.swap(true, Ordering::SeqCst) {
                stalled.fetch_add(1, Ordering::SeqCst);
            }
            let keep = trigger.len().saturating_sub(1);
            if window.len() > keep {
                window.drain(..window.len() - keep);
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    let answers = async {
        let mut buf = vec![0u8; 16 << 10];
        let mut passed = 0usize;
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut chunk = &buf[..n];
            let stall = armed.load(Ordering::SeqCst) && passed + chunk.len() >= pass;
            if stall {
                chunk = &chunk[..pass.saturating_sub(passed)];
            }
            if client_write.write_all(chunk).await.is_err() {
                break;
            }
            if armed.load(Ordering::SeqCst) {
                passed += chunk.len();
            }
            if stall {
                let _ = client_write.flush().await;
                // Silent from here on; the connection stays open until the client
                // leaves (`requests` ends) or the proxy's lifetime is over.
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = requests => {}
        () = answers => {}
    }
}

/// What a [`FaultProxy`] does to the HTTP requests it sees (every request gets a
/// connection of its own: the proxy asks the registry to close after each answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The first `first` requests whose request line holds `path` (`""`: every
    /// request) are answered with `status` (no auth challenge) and the connection
    /// closed; every other one is relayed.
    FirstAnswered {
        /// What the request line must hold, e.g. `/manifests/`.
        path: String,
        /// How many requests fail.
        first: usize,
        /// The status they get.
        status: u16,
    },
    /// The first `first` requests whose request line holds `path` (`""`: every
    /// request) are read, then their connection is reset (a TCP RST, no answer); every
    /// other one is relayed.
    FirstReset {
        /// What the request line must hold, e.g. `/manifests/`.
        path: String,
        /// How many requests fail.
        first: usize,
    },
    /// Every request whose request line holds `path` is answered with `status` (no auth
    /// challenge); every other one is relayed.
    Always {
        /// What the request line must hold, e.g. `/manifests/`.
        path: String,
        /// The status they get.
        status: u16,
    },
}

/// One HTTP request a [`FaultProxy`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    /// Its request line, e.g. `GET /v2/ HTTP/1.1`.
    pub line: String,
    /// Whether the proxy failed it (answered with the fault's status, or reset it).
    pub faulted: bool,
}

/// A proxy on `127.0.0.1` to the registry on `127.0.0.1` that fails requests as its
/// [`Fault`] says and relays the others byte for byte. A connection that does not
/// start with an HTTP request (an engine's TLS probe) is relayed as it is, uncounted.
///
/// It stops by itself after its lifetime, or when dropped; every connection with it.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free port of `127.0.0.1`, relays to `127.0.0.1:upstream_port` with
    /// `fault`; gone after `lifetime`.
    pub async fn start(
        upstream_port: u16,
        fault: Fault,
        lifetime: Duration,
    ) -> std::io::Result<FaultProxy> {
        Self::start_at(0, upstream_port, fault, lifetime).await
    }

    /// [`start`](Self::start), listening on `127.0.0.1:port` (0: a free port).
    pub async fn start_at(
        port: u16,
        upstream_port: u16,
        fault: Fault,
        lifetime: Duration,
    ) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
        let addr = listener.local_addr()?;
        let upstream = SocketAddr::from((Ipv4Addr::LOCALHOST, upstream_port));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let fault = Arc::new(fault);
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            let serve = async {
                while let Ok((client, _)) = listener.accept().await {
                    while connections.try_join_next().is_some() {}
                    connections.spawn(serve_one(client, upstream, fault.clone(), log.clone()));
                }
            };
            let _ = tokio::time::timeout(lifetime, serve).await;
            // Dropping the set aborts every connection still open.
            drop(connections);
        });
        Ok(FaultProxy { addr, seen, task })
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every HTTP request seen so far, in order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// How many requests it has failed so far.
    pub fn faulted(&self) -> usize {
        self.requests().iter().filter(|r| r.faulted).count()
    }

    /// How many requests whose request line holds `path` it has seen so far.
    pub fn requests_holding(&self, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.line.contains(path))
            .count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a fault does to one request.
enum Verdict {
    Answer(u16),
    Reset,
    Relay,
}

/// The registry's error body for a status (the distribution spec's shape); the message
/// of each avoids the words a classifier by text would look for, so that only the code
/// (or the status) says what went wrong.
fn error_body(status: u16) -> &'static str {
    match status {
        401 => {
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"access to the requested resource is not authorized"}]}"#
        }
        // Worded as Google's Artifact Registry words it: only the code says "not found".
        404 => r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"Failed to fetch \"1\""}]}"#,
        429 => r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"too many requests"}]}"#,
        _ => r#"{"errors":[{"code":"UNAVAILABLE","message":"service unavailable"}]}"#,
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// Serves one connection of a [`FaultProxy`].
async fn serve_one(
    mut client: TcpStream,
    upstream: SocketAddr,
    fault: Arc<Fault>,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
) {
    // The request head (or whatever the client sent first, if not HTTP).
    let mut head = Vec::new();
    let mut buf = vec![0u8; 16 << 10];
    let end = loop {
        let n = match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        head.extend_from_slice(&buf[..n]);
        if !head[0].is_ascii_uppercase() || head.len() > 64 << 10 {
            break None;
        }
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break Some(i + 4);
        }
    };
    let Some(end) = end else {
        // Not HTTP (a TLS probe): relayed as it is.
        let Ok(mut server) = TcpStream::connect(upstream).await else {
            return;
        };
        if server.write_all(&head).await.is_ok() {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        }
        return;
    };
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let line = text.lines().next().unwrap_or_default().to_string();
    let verdict = {
        let Ok(mut log) = seen.lock() else {
            return;
        };
        let matching = |path: &str| line.contains(path);
        // Earlier requests that matched, i.e. that this fault has already failed.
        let before = |path: &str| log.iter().filter(|r| r.line.contains(path)).count();
        let verdict = match &*fault {
            Fault::FirstAnswered {
                path,
                first,
                status,
            } if matching(path) && before(path) < *first => Verdict::Answer(*status),
            Fault::FirstReset { path, first } if matching(path) && before(path) < *first => {
                Verdict::Reset
            }
            Fault::Always { path, status } if matching(path) => Verdict::Answer(*status),
            _ => Verdict::Relay,
        };
        log.push(SeenRequest {
            line: line.clone(),
            faulted: !matches!(verdict, Verdict::Relay),
        });
        verdict
    };
    match verdict {
        Verdict::Answer(status) => {
            let body = if line.starts_with("HEAD ") {
                ""
            } else {
                error_body(status)
            };
            let answer = format!(
                "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\n\
                 Docker-Distribution-Api-Version: registry/2.0\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                reason(status),
                error_body(status).len(),
            );
            let _ = client.write_all(answer.as_bytes()).await;
            let _ = client.shutdown().await;
        }
        Verdict::Reset => {
            // Closed with a TCP reset: the request was sent and no answer will come.
            let _ = client.set_zero_linger();
        }
        Verdict::Relay => {
            // One request per connection: the registry closes after its answer, and
            // says so to the client, which opens a new connection for the next one.
            let mut rewritten = String::with_capacity(text.len() + 20);
            for (i, l) in text.split_inclusive("\r\n").enumerate() {
                if i > 0 && l.to_ascii_lowercase().starts_with("connection:") {
                    continue;
                }
                if l == "\r\n" {
                    rewritten.push_str("Connection: close\r\n");
                }
                rewritten.push_str(l);
            }
            let Ok(mut server) = TcpStream::connect(upstream).await else {
                return;
            };
            if server.write_all(rewritten.as_bytes()).await.is_err()
                || server.write_all(&head[end..]).await.is_err()
            {
                return;
            }
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream on 127.0.0.1 that answers every request with `body`, then closes.
    async fn upstream(body: Vec<u8>) -> (u16, JoinHandle<()>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = socket.read(&mut buf).await;
                    let _ = socket.write_all(&body).await;
                });
            }
        });
        (port, task)
    }

    async fn fetch(proxy: SocketAddr, request: &str) -> (Vec<u8>, bool) {
        let mut socket = TcpStream::connect(proxy).await.expect("connect");
        socket.write_all(request.as_bytes()).await.expect("send");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_millis(500), socket.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (got, false),
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                Err(_) => return (got, true),
            }
        }
    }

    #[tokio::test]
    async fn relays_everything_but_stalls_the_triggered_answer() {
        let body = vec![7u8; 100_000];
        let (port, server) = upstream(body.clone()).await;
        let proxy = StallProxy::start(port, "/blobs/x", 1000, Duration::from_secs(30))
            .await
            .expect("proxy");
        assert!(proxy.addr().ip().is_loopback());
        let (other, held) = fetch(proxy.addr(), "GET /v2/ HTTP/1.1\r\n\r\n").await;
        assert_eq!(other, body);
        assert!(!held, "an answer without the trigger is relayed whole");
        let (stalled, held) = fetch(proxy.addr(), "GET /v2/r/blobs/x HTTP/1.1\r\n\r\n").await;
        assert_eq!(stalled.len(), 1000);
        assert!(held, "the triggered answer is held open, silent");
        assert_eq!(proxy.stalled(), 1);
        server.abort();
    }

    #[tokio::test]
    async fn stops_by_itself_after_its_lifetime() {
        let (port, server) = upstream(vec![1u8; 10_000]).await;
        let proxy = StallProxy::start(port, "/blobs/x", 10, Duration::from_millis(300))
            .await
            .expect("proxy");
        let mut socket = TcpStream::connect(proxy.addr()).await.expect("connect");
        socket
            .write_all(b"GET /v2/r/blobs/x HTTP/1.1\r\n\r\n")
            .await
            .expect("send");
        let mut got = Vec::new();
        // The held connection ends when the proxy's lifetime does.
        let _closed_or_reset =
            tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut got))
                .await
                .expect("the proxy stopped by itself");
        assert_eq!(got.len(), 10);
        server.abort();
    }

    /// An upstream on 127.0.0.1 that answers each request with a 200 of `body` and
    /// closes (as a registry asked to `Connection: close` does).
    async fn closing_upstream(body: &'static str) -> (u16, JoinHandle<()>) {
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        upstream(answer.into_bytes()).await
    }

    #[tokio::test]
    async fn the_first_requests_get_the_status_then_requests_are_relayed() {
        let (port, server) = closing_upstream("ok").await;
        let fault = Fault::FirstAnswered {
            path: String::new(),
            first: 2,
            status: 503,
        };
        let proxy = FaultProxy::start(port, fault, Duration::from_secs(30))
            .await
            .expect("proxy");
        assert!(proxy.addr().ip().is_loopback());
        for _ in 0..2 {
            let (got, held) = fetch(proxy.addr(), "GET /v2/ HTTP/1.1\r\n\r\n").await;
            let got = String::from_utf8_lossy(&got).into_owned();
            assert!(got.starts_with("HTTP/1.1 503 "), "{got}");
            assert!(!got.contains("WWW-Authenticate"), "{got}");
            assert!(!held, "a failed request's connection is closed");
        }
        let (got, _) = fetch(proxy.addr(), "GET /v2/ HTTP/1.1\r\n\r\n").await;
        assert!(got.ends_with(b"ok"), "{}", String::from_utf8_lossy(&got));
        assert_eq!(proxy.faulted(), 2);
        assert_eq!(proxy.requests().len(), 3);
        server.abort();
    }

    #[tokio::test]
    async fn the_first_requests_are_reset_then_relayed() {
        let (port, server) = closing_upstream("ok").await;
        let proxy = FaultProxy::start(
            port,
            Fault::FirstReset {
                path: String::new(),
                first: 1,
            },
            Duration::from_secs(30),
        )
        .await
        .expect("proxy");
        let (got, held) = fetch(proxy.addr(), "GET /v2/ HTTP/1.1\r\n\r\n").await;
        assert!(got.is_empty() && !held, "no answer, the connection gone");
        let (got, _) = fetch(proxy.addr(), "GET /v2/ HTTP/1.1\r\n\r\n").await;
        assert!(got.ends_with(b"ok"));
        assert_eq!(proxy.faulted(), 1);
        server.abort();
    }

    #[tokio::test]
    async fn a_permanent_fault_hits_every_matching_request_and_only_those() {
        let (port, server) = closing_upstream("ok").await;
        let fault = Fault::Always {
            path: "/manifests/".into(),
            status: 404,
        };
        let proxy = FaultProxy::start(port, fault, Duration::from_secs(30))
            .await
            .expect("proxy");
        for _ in 0..3 {
            let (got, _) = fetch(proxy.addr(), "GET /v2/r/manifests/1 HTTP/1.1\r\n\r\n").await;
            let got = String::from_utf8_lossy(&got).into_owned();
            assert!(got.starts_with("HTTP/1.1 404 ") && got.contains("MANIFEST_UNKNOWN"));
            assert!(
                !got.contains("not found") && !got.contains("unknown\""),
                "{got}"
            );
        }
        let (got, _) = fetch(proxy.addr(), "GET /v2/ HTTP/1.1\r\n\r\n").await;
        assert!(got.ends_with(b"ok"));
        assert_eq!(proxy.requests_holding("/manifests/"), 3);
        assert_eq!(proxy.faulted(), 3);
        server.abort();
    }

    #[tokio::test]
    async fn only_requests_holding_the_path_count_towards_the_first() {
        let (port, server) = closing_upstream("ok").await;
        let fault = Fault::FirstAnswered {
            path: "/manifests/".into(),
            first: 1,
            status: 503,
        };
        let proxy = FaultProxy::start(port, fault, Duration::from_secs(30))
            .await
            .expect("proxy");
        let (got, _) = fetch(proxy.addr(), "GET /v2/ HTTP/1.1\r\n\r\n").await;
        assert!(got.ends_with(b"ok"), "the ping is relayed");
        let (got, _) = fetch(proxy.addr(), "GET /v2/r/manifests/1 HTTP/1.1\r\n\r\n").await;
        assert!(got.starts_with(b"HTTP/1.1 503 "));
        let (got, _) = fetch(proxy.addr(), "GET /v2/r/manifests/1 HTTP/1.1\r\n\r\n").await;
        assert!(
            got.ends_with(b"ok"),
            "only the first manifest request fails"
        );
        assert_eq!(proxy.faulted(), 1);
        assert_eq!(proxy.requests_holding("/manifests/"), 2);
        server.abort();
    }

    #[tokio::test]
    async fn the_fault_proxy_stops_by_itself_after_its_lifetime() {
        let (port, server) = closing_upstream("ok").await;
        let proxy = FaultProxy::start(
            port,
            Fault::FirstReset {
                path: String::new(),
                first: 0,
            },
            Duration::from_millis(200),
        )
        .await
        .expect("proxy");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            TcpStream::connect(proxy.addr()).await.is_err(),
            "still listening"
        );
        server.abort();
    }

    #[test]
    fn every_layer_is_new() {
        let a = layer_tar("a");
        assert_ne!(a, layer_tar("b"));
        assert!(a.len() > PAYLOAD_BYTES);
    }
}
