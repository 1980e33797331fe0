//! Helpers the cases share: containers to exec in, process checks with `ps` inside the
//! container, log polling, a byte-counting proxy in front of the engine socket (to prove
//! that invalid input never reaches the engine, and to cut connections mid-stream), and
//! plain HTTP to the local registry.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use container::labels::{LABEL_PREFIX, OWNER_LABEL, SESSION_LABEL};
use container::{
    BackendKind, ContainerConfig, ContainerManager, ExecEvent, ExecOutput, ExecSpec, ExecStream,
    Labels, LogOptions, StreamKind,
};
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::task::JoinHandle;

use crate::ctx::{Ctx, Tracker};
use crate::failure::{describe, Failure};

/// Label key every case puts on its objects, with a unique value, to list them back.
pub const CASE_LABEL: &str = "conformance.case";

/// A container that sleeps for an hour: something to exec in.
pub fn sleeper(ctx: &Ctx, name: &str) -> ContainerConfig {
    ContainerConfig::new(ctx.image())
        .name(name)
        .cmd(["sleep", "3600"])
}

/// Creates and starts `config` (whose name must be set), registered with `t` first.
pub async fn run_config(
    ctx: &Ctx,
    t: &mut Tracker,
    config: &ContainerConfig,
) -> Result<String, Failure> {
    if let Some(name) = &config.name {
        t.container(name.clone());
    }
    let id = ctx.manager().create(config).await?;
    t.container(id.clone());
    ctx.manager().start(&id).await?;
    Ok(id)
}

/// A fresh running sleeper for case `case`; returns its id.
pub async fn running(ctx: &Ctx, t: &mut Tracker, case: u32) -> Result<String, Failure> {
    let name = ctx.name(case);
    run_config(ctx, t, &sleeper(ctx, &name)).await
}

/// Runs `spec` and fails unless it exits 0.
pub async fn exec_ok(
    m: &dyn ContainerManager,
    id: &str,
    spec: &ExecSpec,
) -> Result<ExecOutput, Failure> {
    let out = m
        .exec(id, spec)
        .await
        .map_err(|e| Failure::new(format!("exec {:?}: {}", spec.cmd, describe(&e))))?;
    if out.exit_code != 0 {
        return Err(Failure::new(format!(
            "exec {:?} exited {}: stdout {:?} stderr {:?}",
            spec.cmd,
            out.exit_code,
            out.stdout_lossy(),
            out.stderr_lossy()
        )));
    }
    Ok(out)
}

/// `sh -c script` in `id`, which must exit 0; returns stdout as text.
pub async fn sh(m: &dyn ContainerManager, id: &str, script: &str) -> Result<String, Failure> {
    Ok(exec_ok(m, id, &ExecSpec::shell(script))
        .await?
        .stdout_lossy())
}

/// The container's process list (busybox `ps`: `PID USER TIME COMMAND`).
pub async fn processes(m: &dyn ContainerManager, id: &str) -> Result<String, Failure> {
    sh(m, id, "ps").await
}

/// Process lines of `ps` output (header skipped) whose command contains `pattern`.
pub fn matching_processes(ps: &str, pattern: &str) -> Vec<String> {
    ps.lines()
        .skip(1)
        .filter(|l| l.contains(pattern))
        .map(str::to_string)
        .collect()
}

/// Polls `ps` in the container until no process matches `pattern`; fails after `within`.
pub async fn wait_gone(
    m: &dyn ContainerManager,
    id: &str,
    pattern: &str,
    within: Duration,
) -> Result<Duration, Failure> {
    let started = Instant::now();
    loop {
        let ps = processes(m, id).await?;
        if matching_processes(&ps, pattern).is_empty() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > within {
            return Err(Failure::new(format!(
                "a process matching {pattern:?} still runs {within:?} later:\n{ps}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `ps` until a process matches `pattern` (it started); fails after `within`.
pub async fn wait_present(
    m: &dyn ContainerManager,
    id: &str,
    pattern: &str,
    within: Duration,
) -> Result<(), Failure> {
    let started = Instant::now();
    loop {
        let ps = processes(m, id).await?;
        if !matching_processes(&ps, pattern).is_empty() {
            return Ok(());
        }
        if started.elapsed() > within {
            return Err(Failure::new(format!(
                "no process matching {pattern:?} appeared within {within:?}:\n{ps}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `check` every `poll` until it returns true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, poll: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return true;
        }
        if started.elapsed() > within {
            return false;
        }
        tokio::time::sleep(poll).await;
    }
}

/// `labels` (from inspect or list) are exactly the user's `expected` labels plus this
/// run's owner and session labels.
pub fn check_labels(
    ctx: &Ctx,
    labels: &Labels,
    expected: &Labels,
    source: &str,
) -> Result<(), Failure> {
    let user: Labels = labels
        .iter()
        .filter(|(k, _)| !k.starts_with(LABEL_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    crate::ensure_eq!(&user, expected, "user labels from {source}");
    crate::ensure_eq!(
        labels.get(OWNER_LABEL).map(String::as_str),
        Some(ctx.ownership().owner()),
        "owner label from {source}"
    );
    crate::ensure_eq!(
        labels.get(SESSION_LABEL).map(String::as_str),
        Some(ctx.ownership().session()),
        "session label from {source}"
    );
    Ok(())
}

/// The container's whole log so far (not following): (stdout, stderr).
pub async fn logs(m: &dyn ContainerManager, id: &str) -> Result<(Vec<u8>, Vec<u8>), Failure> {
    read_logs(m, id, &LogOptions::default(), Duration::from_secs(30)).await
}

/// Reads the log stream to its end: (stdout, stderr). Fails, showing what arrived so far,
/// if the stream does not end within `within`.
pub async fn read_logs(
    m: &dyn ContainerManager,
    id: &str,
    options: &LogOptions,
    within: Duration,
) -> Result<(Vec<u8>, Vec<u8>), Failure> {
    let mut stream = m.logs(id, options).await?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(chunk)) => {
                let chunk = chunk?;
                match chunk.stream {
                    StreamKind::Stdout => out.extend_from_slice(&chunk.data),
                    StreamKind::Stderr => err.extend_from_slice(&chunk.data),
                }
            }
            Ok(None) => return Ok((out, err)),
            Err(_) => {
                return Err(Failure::new(format!(
                    "the log stream (follow: {}) did not end within {within:?}; so far \
                     stdout {:?} stderr {:?}",
                    options.follow,
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&err)
                )))
            }
        }
    }
}

/// Polls the logs until stdout contains `needle`.
pub async fn wait_for_log(
    m: &dyn ContainerManager,
    id: &str,
    needle: &str,
    within: Duration,
) -> Result<(), Failure> {
    let started = Instant::now();
    loop {
        let (out, err) = logs(m, id).await?;
        if String::from_utf8_lossy(&out).contains(needle) {
            return Ok(());
        }
        if started.elapsed() > within {
            return Err(Failure::new(format!(
                "{needle:?} did not appear in the logs within {within:?}: stdout {:?} stderr {:?}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The next event of an exec stream within `within`, or a failure.
pub async fn next_event(
    stream: &mut ExecStream,
    within: Duration,
) -> Result<Option<ExecEvent>, Failure> {
    match tokio::time::timeout(within, stream.next()).await {
        Ok(Some(Ok(e))) => Ok(Some(e)),
        Ok(Some(Err(e))) => Err(Failure::new(format!("exec stream error: {}", describe(&e)))),
        Ok(None) => Ok(None),
        Err(_) => Err(Failure::new(format!("no exec event within {within:?}"))),
    }
}

/// `unix://<path>` for Docker and Podman, the bare path for containerd.
pub fn unix_endpoint(kind: BackendKind, path: &Path) -> String {
    match kind {
        BackendKind::Containerd => path.display().to_string(),
        _ => format!("unix://{}", path.display()),
    }
}

/// Where a proxy forwards to.
#[derive(Debug, Clone)]
enum Upstream {
    Unix(PathBuf),
    Tcp(String),
}

impl Upstream {
    fn parse(endpoint: &str) -> Result<Upstream, Failure> {
        if let Some(path) = endpoint.strip_prefix("unix://") {
            return Ok(Upstream::Unix(PathBuf::from(path)));
        }
        if endpoint.starts_with('/') {
            return Ok(Upstream::Unix(PathBuf::from(endpoint)));
        }
        for scheme in ["tcp://", "http://"] {
            if let Some(addr) = endpoint.strip_prefix(scheme) {
                let addr = addr.trim_end_matches('/');
                if !is_loopback_addr(addr) {
                    return Err(Failure::new(format!(
                        "the engine endpoint {endpoint} is not on 127.0.0.0/8; the suite sends \
                         no traffic elsewhere"
                    )));
                }
                return Ok(Upstream::Tcp(addr.to_string()));
            }
        }
        Err(Failure::new(format!(
            "cannot put a proxy in front of the engine endpoint {endpoint:?}"
        )))
    }
}

fn is_loopback_addr(host_port: &str) -> bool {
    let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h);
    host == "localhost" || host.starts_with("127.")
}

/// A unix socket that forwards to the engine and counts the bytes sent to it: a manager
/// connected through it shows whether an operation reached the engine at all. It can
/// also cut every open connection at once ([`cut`](Self::cut)), as an engine restart or
/// a broken link would.
#[derive(Debug)]
pub struct CountingProxy {
    _dir: tempfile::TempDir,
    path: PathBuf,
    to_engine: Arc<AtomicU64>,
    cut: tokio::sync::broadcast::Sender<()>,
    /// Connections to close at their first request, unanswered and unforwarded.
    drops: Arc<AtomicU64>,
    /// Connections accepted, and those closed that way.
    accepted: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl CountingProxy {
    /// Starts a proxy in front of `endpoint` (as reported by `EngineInfo::endpoint`).
    pub async fn start(endpoint: &str) -> Result<CountingProxy, Failure> {
        let upstream = Upstream::parse(endpoint)?;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("engine.sock");
        let listener = UnixListener::bind(&path)?;
        let to_engine = Arc::new(AtomicU64::new(0));
        let counter = to_engine.clone();
        let (cut, _) = tokio::sync::broadcast::channel(1);
        let cuts = cut.clone();
        let (drops, accepted, dropped): (Arc<AtomicU64>, Arc<AtomicU64>, Arc<AtomicU64>) =
            (Arc::default(), Arc::default(), Arc::default());
        let (to_drop, accepts, drops_done) = (
            Arc::clone(&drops),
            Arc::clone(&accepted),
            Arc::clone(&dropped),
        );
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let counter = counter.clone();
                let mut cut = cuts.subscribe();
                accepts.fetch_add(1, Ordering::SeqCst);
                let (to_drop, drops_done) = (to_drop.clone(), drops_done.clone());
                tokio::spawn(async move {
                    let mut first = vec![0u8; 64 * 1024];
                    let n = match client.read(&mut first).await {
                        Ok(n) if n > 0 => n,
                        _ => return,
                    };
                    let take =
                        to_drop.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d: u64| {
                            d.checked_sub(1)
                        });
                    if take.is_ok() {
                        drops_done.fetch_add(1, Ordering::SeqCst);
                        return; // closed, the request neither answered nor forwarded
                    }
                    counter.fetch_add(n as u64, Ordering::SeqCst);
                    let first = &first[..n];
                    let relayed = async {
                        match upstream {
                            Upstream::Unix(p) => match UnixStream::connect(p).await {
                                Ok(mut up) => {
                                    up.write_all(first).await?;
                                    relay(client, up, counter).await
                                }
                                Err(e) => Err(e),
                            },
                            Upstream::Tcp(a) => match TcpStream::connect(a).await {
                                Ok(mut up) => {
                                    up.write_all(first).await?;
                                    relay(client, up, counter).await
                                }
                                Err(e) => Err(e),
                            },
                        }
                    };
                    // A cut drops both ends at once, mid-request or mid-stream.
                    let result = tokio::select! {
                        r = relayed => r,
                        _ = cut.recv() => Ok(()),
                    };
                    if let Err(e) = result {
                        eprintln!("conformance: proxy connection ended: {e}");
                    }
                });
            }
        });
        Ok(CountingProxy {
            _dir: dir,
            path,
            to_engine,
            cut,
            drops,
            accepted,
            dropped,
            accept,
        })
    }

    /// Closes each of the next `n` connections at its first request, without answering
    /// or forwarding it (the request was sent: it may have run, as far as the client
    /// knows).
    pub fn drop_next(&self, n: u64) {
        self.drops.store(n, Ordering::SeqCst);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections closed by [`drop_next`](Self::drop_next) so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }

    /// Cuts every connection open now (new ones are accepted as before).
    pub fn cut(&self) {
        let _ = self.cut.send(());
    }

    /// The proxy's socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes sent to the engine so far.
    pub fn bytes_to_engine(&self) -> u64 {
        self.to_engine.load(Ordering::SeqCst)
    }

    /// Bytes sent to the engine once the connection is quiet (no byte for 200 ms, at most
    /// 3 s): what earlier calls set off (an HTTP/2 PING acknowledged late, say) is not
    /// counted against the calls that come next, and what they set off is all counted.
    pub async fn quiet_bytes_to_engine(&self) -> u64 {
        let started = Instant::now();
        let mut last = self.bytes_to_engine();
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = self.bytes_to_engine();
            if now == last || started.elapsed() > Duration::from_secs(3) {
                return now;
            }
            last = now;
        }
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn relay<A, B>(client: A, engine: B, counter: Arc<AtomicU64>) -> std::io::Result<()>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let (mut engine_r, mut engine_w) = tokio::io::split(engine);
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = client_r.read(&mut buf).await?;
            if n == 0 {
                engine_w.shutdown().await?;
                return Ok::<_, std::io::Error>(());
            }
            counter.fetch_add(n as u64, Ordering::SeqCst);
            engine_w.write_all(&buf[..n]).await?;
        }
    };
    let down = async {
        tokio::io::copy(&mut engine_r, &mut client_w).await?;
        client_w.shutdown().await
    };
    tokio::try_join!(up, down)?;
    Ok(())
}

/// A manager connected through a [`CountingProxy`], in the run's session.
pub async fn counted_manager(
    ctx: &Ctx,
) -> Result<(Arc<dyn ContainerManager>, CountingProxy), Failure> {
    let proxy = CountingProxy::start(&ctx.engine().endpoint).await?;
    let mut options = ctx.options(ctx.ownership().clone());
    options.endpoint = Some(unix_endpoint(ctx.kind(), proxy.path()));
    let manager = ctx.connect_with(options).await?;
    Ok((manager, proxy))
}

/// A response from the local registry.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The registry host of `image` (`127.0.0.1:5000`) and its repository path.
pub fn split_image(image: &str) -> Result<(String, String), Failure> {
    let (host, rest) = image
        .split_once('/')
        .ok_or_else(|| Failure::new(format!("{image} has no registry host")))?;
    let repo = rest.split(['@', ':']).next().unwrap_or(rest).to_string();
    Ok((host.to_string(), repo))
}

/// A plain HTTP/1.0 request to the registry serving `image`, which must be on
/// 127.0.0.0/8 (the suite sends no traffic elsewhere).
pub async fn registry_request(
    image: &str,
    method: &str,
    path: &str,
    accept: &str,
) -> Result<HttpResponse, Failure> {
    let (host, _) = split_image(image)?;
    if !is_loopback_addr(&host) {
        return Err(Failure::new(format!(
            "registry {host} is not on 127.0.0.0/8; the suite sends no traffic elsewhere"
        )));
    }
    let exchange = async {
        let mut conn = TcpStream::connect(&host).await?;
        let request =
            format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\nAccept: {accept}\r\n\r\n");
        conn.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = match tokio::time::timeout(Duration::from_secs(10), exchange).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(Failure::new(format!(
                "registry {host} did not answer in 10 s"
            )))
        }
    };
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| Failure::new("registry response without a header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Failure::new(format!("bad registry status line in {head:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// Accept header for every manifest type a registry may hold.
pub const MANIFEST_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.index.v1+json";
