//! Benchmarks of a backend against the engine's own CLI and the raw client crate
//! (bollard, podman-api, containerd-client) called in this same process, measured in
//! one run, interleaved, and reported as ratios against issue 16's targets (never
//! asserted): exec round trip, stdout throughput (chunks, lines, the raw stream), the
//! memory the library holds while streaming, run to completion, concurrent lifecycles,
//! pulls and copies out. Run with `cargo xtask bench [--backend …] [--quick]`; the
//! backend is `CONTAINER_BACKEND`'s (or detected), the CLI `docker`, `podman --remote`
//! or `ctr`.

mod cli;
mod measures;
mod raw;
mod report;
mod stats;

use std::path::PathBuf;

use clap::Parser;
use container::{CleanupScope, ContainerConfig};
use serde_json::json;

/// Benchmark options.
#[derive(Debug, Parser)]
pub(crate) struct Args {
    /// Image to run.
    #[arg(long, default_value = "127.0.0.1:5000/container-rs/busybox:1")]
    image: String,
    /// Multi-layer image to pull (`cargo xtask engines up` pushes it).
    #[arg(long, default_value = "127.0.0.1:5000/container-rs/layers:1")]
    pull_image: String,
    /// Round trips per side.
    #[arg(long, default_value_t = 30)]
    round_trips: usize,
    /// MiB streamed per side for throughput; the memory is also measured at 1/16 and
    /// 1/4 of it.
    #[arg(long, default_value_t = 1024)]
    mib: u64,
    /// Interleaved rounds of the streaming measures (throughput, lines): each side's
    /// median is compared.
    #[arg(long, default_value_t = 5)]
    samples: usize,
    /// MiB of 30-byte lines per side for `lines()`.
    #[arg(long, default_value_t = 256)]
    lines_mib: u64,
    /// Runs to completion per side.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Concurrency levels of lifecycles (create, start, exec, remove).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 8, 32])]
    concurrency: Vec<usize>,
    /// Pulls per side (3 gave a median 1.5x `ctr` in one run, 0.89x with 6).
    #[arg(long, default_value_t = 5)]
    pulls: usize,
    /// MiB of the tree copied out (16 files per folder of 4 MiB each).
    #[arg(long, default_value_t = 256)]
    copy_mib: u64,
    /// Copies out per side.
    #[arg(long, default_value_t = 5)]
    copies: usize,
    /// Only these measures (round-trip, throughput, lines, run, concurrency, pull,
    /// copy); all when none is given.
    #[arg(long, value_delimiter = ',', value_enum)]
    only: Vec<Measure>,
    /// A few samples of everything at small sizes: that every measure runs (CI), not
    /// what it gives.
    #[arg(long)]
    quick: bool,
    /// Where to write the results as JSON (the markdown table goes beside it, `.md`).
    #[arg(long)]
    json: Option<PathBuf>,
}

/// What `--only` picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Measure {
    RoundTrip,
    Throughput,
    Lines,
    Run,
    Concurrency,
    Pull,
    Copy,
}

/// Any error of the benchmark.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = Args::parse();
    if args.quick {
        args.round_trips = args.round_trips.min(3);
        args.mib = args.mib.min(16);
        args.lines_mib = args.lines_mib.min(8);
        args.samples = 1;
        args.runs = args.runs.min(2);
        args.concurrency = vec![1, 2];
        args.pulls = 1;
        args.copy_mib = args.copy_mib.min(8);
        args.copies = 1;
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
    let result = measures::run(&args, engine.clone(), &id, &name).await;
    engine.cleanup(CleanupScope::Session).await?;
    let mut results = result?;
    results["engine"] = json!(info);
    let table = report::markdown(&results);
    println!("{}", serde_json::to_string_pretty(&results)?);
    println!("{table}");
    if let Some(path) = &args.json {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_vec_pretty(&results)?)?;
        std::fs::write(path.with_extension("md"), &table)?;
        eprintln!("results: {}", path.display());
    }
    Ok(())
}
