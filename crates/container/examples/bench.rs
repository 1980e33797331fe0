//! Benchmarks of a backend against the engine's own CLI, measured in the same run and
//! reported as ratios (never asserted): exec round trip, exec stdout throughput, and the
//! memory the library holds while streaming. Run with `cargo xtask bench [--backend …]`;
//! the backend is `CONTAINER_BACKEND`'s (or detected), the CLI `docker`, `podman --remote`
//! or `ctr`.

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
    /// Where to write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
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
    let args = Args::parse();
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

    let mib_s = |secs: f64| args.mib as f64 / secs;
    let (lib_med, cli_med) = (median(lib_rt), median(cli_rt));
    Ok(json!({
        "cli": { "program": cli.program(), "version": cli_version },
        "exec_round_trip_ms": {
            "library_median": lib_med,
            "cli_median": cli_med,
            "ratio_library_to_cli": lib_med / cli_med,
            "samples": args.round_trips,
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
