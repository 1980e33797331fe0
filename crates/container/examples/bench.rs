//! Benchmarks of a backend against the engine's own CLI and, where this example has it,
//! the raw client crate (bollard, podman-api) called in this same process, measured in
//! the same run and reported as ratios (never asserted): exec round trip, exec stdout
//! throughput (as chunks and as lines), the memory the library holds while streaming,
//! and run to completion (create, start, wait, remove) against the CLI's `run --rm`. Run
//! with `cargo xtask bench [--backend …] [--quick]`; the backend is `CONTAINER_BACKEND`'s
//! (or detected), the CLI `docker`, `podman --remote` or `ctr`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use container::{CleanupScope, ContainerConfig, ExecEvent, ExecSpec};
use futures::StreamExt;
use serde_json::json;

/// Benchmark options.
#[derive(Debug, Parser)]
struct Args {
    /// Image to run.
    #[arg(long, default_value = "127.0.0.1:5000/container-rs/busybox:1")]
    image: String,
    /// Round trips per side.
    #[arg(long, default_value_t = 30)]
    round_trips: usize,
    /// MiB streamed per side.
    #[arg(long, default_value_t = 512)]
    mib: u64,
    /// Runs to completion per side.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// A few samples of everything and small sizes: that every measure runs (CI), not
    /// what it gives.
    #[arg(long)]
    quick: bool,
    /// Where to write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The line `lines()` is measured with: 30 bytes and its newline.
const LINE: &str = "012345678901234567890123456789";

/// The engine's own CLI, talking to the same engine (and namespace) as the library.
struct Cli {
    kind: container::BackendKind,
}

impl Cli {
    fn program(&self) -> &'static str {
        match self.kind {
            container::BackendKind::Podman => "podman",
            container::BackendKind::Containerd => "ctr",
            _ => "docker",
        }
    }

    fn base(&self) -> Command {
        let env_or = |k: &str, d: &str| {
            std::env::var(k)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| d.to_string())
        };
        let mut c = Command::new(self.program());
        match self.kind {
            container::BackendKind::Podman => {
                c.args(["--remote", "--url"])
                    .arg(env_or("CONTAINER_HOST", "unix:///run/podman/podman.sock"));
            }
            container::BackendKind::Containerd => {
                c.args(["-n"])
                    .arg(env_or("CONTAINERD_NAMESPACE", "container-rs"));
            }
            _ => {}
        }
        c
    }

    /// `exec` of `cmd` in the container (`name` for docker/podman, `id` for ctr).
    fn exec(&self, name: &str, id: &str, cmd: &[&str]) -> Command {
        let mut c = self.base();
        match self.kind {
            container::BackendKind::Containerd => {
                static N: AtomicU64 = AtomicU64::new(0);
                let exec_id = format!(
                    "bench-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                );
                c.args(["tasks", "exec", "--exec-id", &exec_id, id]);
            }
            _ => {
                c.args(["exec", name]);
            }
        }
        c.args(cmd);
        c
    }

    /// `run --rm` of `true` (containerd: `ctr run --rm` with a name of its own).
    fn run_rm(&self, image: &str, n: usize) -> Command {
        let mut c = self.base();
        match self.kind {
            container::BackendKind::Containerd => {
                let name = format!("crs-bench-run-{}-{n}", std::process::id());
                c.args(["run", "--rm", image, &name, "true"]);
            }
            _ => {
                c.args(["run", "--rm", "--network", "none", image, "true"]);
            }
        }
        c
    }

    fn version(&self) -> String {
        let mut c = self.base();
        match self.kind {
            container::BackendKind::Containerd => c.args(["--version"]),
            _ => c.args(["version", "--format", "{{.Client.Version}}"]),
        };
        c.output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }
}

fn median(v: &[f64]) -> f64 {
    percentile(v, 50)
}

/// The `p`th percentile of `v` (nearest rank), for `p` in 1..=100.
fn percentile(v: &[f64], p: usize) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (v.len() * p).div_ceil(100).max(1);
    v[rank - 1]
}

/// Resident memory of this process in KiB (`VmRSS`).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = Args::parse();
    if args.quick {
        args.round_trips = args.round_trips.min(3);
        args.mib = args.mib.min(8);
        args.runs = args.runs.min(2);
    }
    let engine = container::from_env().await?;
    let info = engine.info().await?;
    engine.pull(&args.image, &Default::default()).await?;
    let name = format!("crs-bench-{}", std::process::id());
    let id = engine
        .create(
            &ContainerConfig::new(&args.image)
                .name(&name)
                .cmd(["sleep", "infinity"])
                .init(true),
        )
        .await?;
    let result = run(&args, engine.as_ref(), &id, &name).await;
    engine.cleanup(CleanupScope::Session).await?;
    let mut report = result?;
    report["engine"] = json!(info);
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(path) = &args.json {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
        eprintln!("results: {}", path.display());
    }
    Ok(())
}

async fn run(
    args: &Args,
    engine: &dyn container::ContainerManager,
    id: &str,
    name: &str,
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    engine.start(id).await?;
    let cli = Cli {
        kind: engine.backend(),
    };
    let cli_version = cli.version();

    // Round trip of `true`: library vs CLI, after a warm-up.
    for _ in 0..3 {
        engine.exec(id, &ExecSpec::new(["true"])).await?;
    }
    let mut lib_rt = Vec::new();
    for _ in 0..args.round_trips {
        let t = Instant::now();
        let out = engine.exec(id, &ExecSpec::new(["true"])).await?;
        lib_rt.push(t.elapsed().as_secs_f64() * 1e3);
        if out.exit_code != 0 {
            return Err("`true` failed".into());
        }
    }
    let mut cli_rt = Vec::new();
    for _ in 0..args.round_trips {
        let t = Instant::now();
        let status = cli.exec(name, id, &["true"]).status()?;
        cli_rt.push(t.elapsed().as_secs_f64() * 1e3);
        if !status.success() {
            return Err(format!("{} exec failed", cli.program()).into());
        }
    }
    let raw_rt = raw::round_trips(engine.backend(), id, args.round_trips).await?;

    // Throughput of stdout: `head -c N /dev/zero`, bytes counted and dropped.
    let bytes = args.mib << 20;
    let script = format!("head -c {bytes} /dev/zero");
    let baseline = rss_kib();
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let t = Instant::now();
    let mut stream = engine.exec_stream(id, &ExecSpec::shell(&script)).await?;
    let (mut got, mut chunks) = (0u64, 0u64);
    while let Some(event) = stream.next().await {
        match event? {
            ExecEvent::Output(c) => {
                got += c.data.len() as u64;
                chunks += 1;
            }
            ExecEvent::Exit(code) if code != 0 => return Err(format!("exit {code}").into()),
            ExecEvent::Exit(_) => {}
        }
    }
    let lib_secs = t.elapsed().as_secs_f64();
    sampler.abort();
    if got != bytes {
        return Err(format!("received {got} of {bytes} bytes").into());
    }
    let t = Instant::now();
    let status = cli
        .exec(name, id, &["sh", "-c", &script])
        .stdout(Stdio::null())
        .status()?;
    let cli_secs = t.elapsed().as_secs_f64();
    if !status.success() {
        return Err(format!("{} exec (throughput) failed", cli.program()).into());
    }

    // The same size as lines, through `ExecStream::lines` (what a log consumer reads),
    // against the same output as chunks through the library.
    let lines_script = format!("yes {LINE} | head -c {bytes}");
    let t = Instant::now();
    let mut chunked = engine
        .exec_stream(id, &ExecSpec::shell(&lines_script))
        .await?;
    let mut chunk_bytes = 0u64;
    while let Some(event) = chunked.next().await {
        if let ExecEvent::Output(c) = event? {
            chunk_bytes += c.data.len() as u64;
        }
    }
    let chunk_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut lines = engine
        .exec_stream(id, &ExecSpec::shell(&lines_script))
        .await?
        .lines(1 << 16);
    let mut line_bytes = 0u64;
    while let Some(event) = lines.next().await {
        if let container::LineEvent::Line(line) = event? {
            line_bytes += line.data.len() as u64 + 1;
        }
    }
    let lines_secs = t.elapsed().as_secs_f64();
    // (The last line has no newline: counted with one, it gives one byte more.)
    if chunk_bytes != bytes || line_bytes.abs_diff(bytes) > 1 {
        return Err(format!("lines: {chunk_bytes} and {line_bytes} of {bytes} bytes").into());
    }

    // Run to completion: create, start, wait, remove; against the CLI's `run --rm`.
    let mut lib_runs = Vec::new();
    for n in 0..args.runs {
        let t = Instant::now();
        let config = ContainerConfig::new(&args.image)
            .name(format!("crs-bench-lib-{}-{n}", std::process::id()))
            .cmd(["true"]);
        let run = engine.create(&config).await?;
        engine.start(&run).await?;
        let code = engine.wait(&run).await?;
        engine.remove(&run, true).await?;
        lib_runs.push(t.elapsed().as_secs_f64() * 1e3);
        if code != 0 {
            return Err(format!("a run of `true` exited {code}").into());
        }
    }
    let mut cli_runs = Vec::new();
    for n in 0..args.runs {
        let t = Instant::now();
        let status = cli.run_rm(&args.image, n).stdout(Stdio::null()).status()?;
        cli_runs.push(t.elapsed().as_secs_f64() * 1e3);
        if !status.success() {
            return Err(format!("{} run --rm failed", cli.program()).into());
        }
    }

    let mib_s = |secs: f64| args.mib as f64 / secs;
    let (lib_med, cli_med) = (median(&lib_rt), median(&cli_rt));
    let raw_med = (!raw_rt.is_empty()).then(|| median(&raw_rt));
    let (lib_run, cli_run) = (median(&lib_runs), median(&cli_runs));
    let p90 = |v: &[f64]| (!v.is_empty()).then(|| percentile(v, 90));
    Ok(json!({
        "cli": { "program": cli.program(), "version": cli_version },
        "exec_round_trip_ms": {
            "library_median": lib_med,
            "cli_median": cli_med,
            "raw_client_median": raw_med,
            "library_p90": p90(&lib_rt),
            "cli_p90": p90(&cli_rt),
            "raw_client_p90": p90(&raw_rt),
            "ratio_library_to_cli": lib_med / cli_med,
            "ratio_library_to_raw_client": raw_med.map(|raw| lib_med / raw),
            "samples": args.round_trips,
        },
        "exec_lines_throughput_mib_s": {
            "chunks": mib_s(chunk_secs),
            "lines": mib_s(lines_secs),
            "ratio_lines_to_chunks": chunk_secs / lines_secs,
            "line_bytes": LINE.len() + 1,
        },
        "run_to_completion_ms": {
            "library_median": lib_run,
            "cli_run_rm_median": cli_run,
            "library_p90": p90(&lib_runs),
            "cli_run_rm_p90": p90(&cli_runs),
            "ratio_library_to_cli": lib_run / cli_run,
            "samples": args.runs,
        },
        "exec_stdout_throughput_mib_s": {
            "library": mib_s(lib_secs),
            "cli": mib_s(cli_secs),
            "ratio_library_to_cli": cli_secs / lib_secs,
            "mib": args.mib,
            "chunks": chunks,
        },
        "streaming_memory_kib": {
            "rss_before": baseline,
            "rss_peak": peak.load(Ordering::Relaxed),
            "growth": peak.load(Ordering::Relaxed).saturating_sub(baseline),
        },
    }))
}

/// The raw client crates called directly, in this process: the floor the library sits on.
mod raw {
    use std::time::Instant;

    use container::BackendKind;
    use futures::StreamExt;

    type Error = Box<dyn std::error::Error>;

    /// `n` round trips of `true` in `id` through the backend's own client crate, in ms;
    /// none where this example has no raw client for the backend (containerd).
    pub(crate) async fn round_trips(
        backend: BackendKind,
        id: &str,
        n: usize,
    ) -> Result<Vec<f64>, Error> {
        let mut samples = Vec::new();
        match backend {
            BackendKind::Docker => {
                let docker = bollard::Docker::connect_with_defaults()?;
                for i in 0..n + 3 {
                    let t = Instant::now();
                    docker_true(&docker, id).await?;
                    if i >= 3 {
                        samples.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                }
            }
            #[cfg(feature = "podman")]
            BackendKind::Podman => {
                let url = std::env::var("CONTAINER_HOST")
                    .ok()
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| "unix:///run/podman/podman.sock".to_string());
                let podman = podman_api::Podman::new(url)?;
                for i in 0..n + 3 {
                    let t = Instant::now();
                    podman_true(&podman, id).await?;
                    if i >= 3 {
                        samples.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                }
            }
            _ => {}
        }
        Ok(samples)
    }

    /// Create, start attached, read to the end, inspect: what a bollard user writes.
    async fn docker_true(docker: &bollard::Docker, id: &str) -> Result<(), Error> {
        use bollard::exec::{CreateExecOptions, StartExecResults};
        let exec = docker
            .create_exec(
                id,
                CreateExecOptions::<String> {
                    cmd: Some(vec!["true".into()]),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await?;
        if let StartExecResults::Attached { mut output, .. } =
            docker.start_exec(&exec.id, None).await?
        {
            while let Some(item) = output.next().await {
                item?;
            }
        }
        match docker.inspect_exec(&exec.id).await?.exit_code {
            Some(0) => Ok(()),
            other => Err(format!("raw docker exec of `true`: exit {other:?}").into()),
        }
    }

    /// The same through podman-api.
    #[cfg(feature = "podman")]
    async fn podman_true(podman: &podman_api::Podman, id: &str) -> Result<(), Error> {
        use podman_api::opts::{ExecCreateOpts, ExecStartOpts};
        let exec = podman
            .containers()
            .get(id)
            .create_exec(
                &ExecCreateOpts::builder()
                    .command(["true"])
                    .attach_stdout(true)
                    .attach_stderr(true)
                    .build(),
            )
            .await?;
        if let Some(mut output) = exec.start(&ExecStartOpts::builder().build()).await? {
            while let Some(item) = output.next().await {
                item?;
            }
        }
        match exec.inspect().await?["ExitCode"].as_i64() {
            Some(0) => Ok(()),
            other => Err(format!("raw podman exec of `true`: exit {other:?}").into()),
        }
    }
}
