//! A Podman pull whose report stream goes silent ends at the per-attempt deadline
//! (issue 13, item 11; why Podman has no stall rule: `docs/adr/0011-pull-deadlines.md`).
//!
//! No real registry can stall a real Podman pull here: the service started by
//! `cargo xtask engines up` reaches plain-HTTP registries only where its
//! `registries.conf` marks them insecure, which is `127.0.0.1:5000` alone, and the
//! backend always verifies TLS, so a stalling proxy on another port is never reached
//! over HTTP. So the service itself is played, on `127.0.0.1`, by a small fake libpod
//! that answers like Podman 4.3 does (`_ping`, image `exists`, then a `200` pull stream
//! with one report and then silence, as while a large blob downloads): the backend's
//! own client and stream code and the manager run unchanged against it.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use container_core::{ConnectOptions, ContainerManager, ErrorKind, PullOptions, RetryPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The per-attempt deadline of the test's pulls.
const ATTEMPT: Duration = Duration::from_secs(2);
/// What a loaded 2-core machine may add.
const SLACK: Duration = Duration::from_secs(5);
/// Past this the pull hangs: the test fails instead of waiting on.
const HANG: Duration = Duration::from_secs(30);

/// What the fake service saw.
#[derive(Debug, Default)]
struct Seen {
    /// Pull requests.
    pulls: AtomicUsize,
    /// Pull connections the client closed.
    closed: AtomicUsize,
}

/// A fake libpod on `127.0.0.1`; it stops by itself after `lifetime`.
async fn fake_libpod(lifetime: Duration) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Seen::default());
    let counts = seen.clone();
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        let serve = async {
            while let Ok((socket, _)) = listener.accept().await {
                connections.spawn(serve(socket, counts.clone()));
            }
        };
        let _ = tokio::time::timeout(lifetime, serve).await;
        drop(connections);
    });
    (addr, seen)
}

/// The head of the next request on `socket` (its bodies are empty); `None` at the end.
async fn request(socket: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match socket.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

async fn serve(mut socket: TcpStream, seen: Arc<Seen>) {
    while let Some(head) = request(&mut socket).await {
        let line = head.lines().next().unwrap_or_default().to_string();
        let answer = if line.contains("/libpod/_ping") {
            "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nLibpod-Api-Version: 4.3.1\r\n\
             Libpod-Buildah-Version: 1.28.0\r\nDocker-Experimental: true\r\n\
             Cache-Control: no-cache\r\nPragma: no-cache\r\nContent-Length: 2\r\n\r\nOK"
                .to_string()
        } else if line.contains("/exists") {
            let body =
                r#"{"cause":"failed to find image","message":"no such image","response":404}"#;
            format!(
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
        } else if line.contains("/libpod/images/pull") {
            seen.pulls.fetch_add(1, Ordering::SeqCst);
            let report = "{\"stream\":\"Copying blob sha256:0123456789ab\\n\"}\n";
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                        Transfer-Encoding: chunked\r\n\r\n";
            let chunk = format!("{head}{:x}\r\n{report}\r\n", report.len());
            if socket.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
            // Then nothing, as while a large blob downloads; until the client leaves.
            let mut rest = [0u8; 64];
            while let Ok(n) = socket.read(&mut rest).await {
                if n == 0 {
                    break;
                }
            }
            seen.closed.fetch_add(1, Ordering::SeqCst);
            return;
        } else {
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n".to_string()
        };
        if socket.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_silent_pull_stream_ends_at_the_attempt_deadline_and_is_retried() {
    let (addr, seen) = fake_libpod(Duration::from_secs(60)).await;
    let options = ConnectOptions::owned_by_session("podman-pull-deadline-test", "pull-deadline")
        .expect("labels")
        .with_endpoint(format!("tcp://{addr}"));
    let m = container_podman::connect(options)
        .await
        .expect("the fake libpod answers");
    let options = PullOptions::default()
        .with_attempt_timeout(Some(ATTEMPT))
        .with_retry(RetryPolicy {
            max_attempts: 2,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_millis(200),
            max_elapsed: None,
            jitter: false,
        });

    let started = Instant::now();
    let pulled = tokio::time::timeout(
        HANG,
        m.pull("127.0.0.1:5000/container-rs/never-sent:1", &options),
    )
    .await
    .expect("the pull hung on a silent stream: no attempt deadline");
    let waited = started.elapsed();
    let e = pulled.expect_err("the stream went silent");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.retries_exhausted(), "{e}");
    assert_eq!(e.attempts(), 2, "{e}");
    assert!(waited >= 2 * ATTEMPT, "{waited:?}");
    assert!(waited < 2 * ATTEMPT + SLACK, "{waited:?}");
    assert_eq!(seen.pulls.load(Ordering::SeqCst), 2);
    // Each abandoned attempt closed its connection, which is what tells libpod to
    // give the pull up (it runs under the request).
    let closed = Instant::now();
    while seen.closed.load(Ordering::SeqCst) < 2 {
        assert!(
            closed.elapsed() < SLACK,
            "an abandoned pull's connection is still open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
