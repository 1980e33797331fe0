//! Each measure: the library beside its references (the CLI, the raw client), in one
//! run, interleaved where a measure has several samples.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use container::{ContainerConfig, ContainerManager, ExecEvent, ExecSpec, LineEvent};
use futures::StreamExt;
use serde_json::{json, Value};

use crate::cli::{self, Cli};
use crate::raw::Raw;
use crate::stats::{median, ms_since, percentile, rss_kib};
use crate::{Args, Error, Measure};

/// The line `lines()` is measured with: 30 bytes and its newline.
const LINE: &str = "012345678901234567890123456789";

/// Size of each file of the tree copied out.
const COPY_FILE_MIB: u64 = 4;

/// Median, 90th percentile and count of `samples`.
fn side(samples: &[f64]) -> Value {
    json!({
        "median": median(samples),
        "p90": percentile(samples, 90),
        "samples": samples.len(),
    })
}

/// Every measure, in the bench container `id` (named `name`), which must be created.
pub(crate) async fn run(
    args: &Args,
    engine: Arc<dyn ContainerManager>,
    id: &str,
    name: &str,
) -> Result<Value, Error> {
    engine.start(id).await?;
    let cli = Cli {
        kind: engine.backend(),
    };
    let raw = Arc::new(Raw::connect(engine.backend()).await?);
    let at = Target { id, name };
    let wanted = |measure| args.only.is_empty() || args.only.contains(&measure);
    let mut results = json!({
        "cli": { "program": cli.program(), "version": cli.version() },
    });
    if wanted(Measure::RoundTrip) {
        results["exec_round_trip_ms"] = round_trip(args, engine.as_ref(), &cli, &raw, &at).await?;
    }
    if wanted(Measure::Throughput) {
        results["exec_stdout_throughput_mib_s"] =
            throughput(args, &engine, &cli, &raw, &at).await?;
    }
    if wanted(Measure::Lines) {
        results["exec_lines_throughput_mib_s"] = lines(args, engine.as_ref(), id).await?;
    }
    if wanted(Measure::Run) {
        results["run_to_completion_ms"] = run_to_completion(args, engine.as_ref(), &cli).await?;
    }
    if wanted(Measure::Concurrency) {
        results["concurrent_lifecycles"] = concurrency(args, &engine, &cli).await?;
    }
    if wanted(Measure::Pull) {
        results["pull_ms"] = pull(args, engine.as_ref(), &cli).await?;
    }
    if wanted(Measure::Copy) {
        results["copy_out_ms"] = copy_out(args, engine.as_ref(), &cli, &at).await?;
    }
    Ok(results)
}

/// The running bench container: its id (the library's, ctr's) and name (the CLIs').
struct Target<'a> {
    id: &'a str,
    name: &'a str,
}

/// `exec true`, interleaved: library, CLI, raw client; after a warm-up of each.
async fn round_trip(
    args: &Args,
    engine: &dyn ContainerManager,
    cli: &Cli,
    raw: &Raw,
    at: &Target<'_>,
) -> Result<Value, Error> {
    let (mut lib, mut by_cli, mut by_raw) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..args.round_trips + 3 {
        let t = Instant::now();
        let out = engine.exec(at.id, &ExecSpec::new(["true"])).await?;
        let lib_ms = ms_since(t);
        if out.exit_code != 0 {
            return Err("`true` failed".into());
        }
        let t = Instant::now();
        cli::run(cli.exec(at.name, at.id, &["true"]))?;
        let cli_ms = ms_since(t);
        let t = Instant::now();
        raw.exec(at.id, &["true"]).await?;
        let raw_ms = ms_since(t);
        if i >= 3 {
            lib.push(lib_ms);
            by_cli.push(cli_ms);
            by_raw.push(raw_ms);
        }
    }
    Ok(json!({
        "library": side(&lib),
        "cli": side(&by_cli),
        "raw_client": side(&by_raw),
        "ratio_library_to_cli": median(&lib) / median(&by_cli),
        "ratio_library_to_raw_client": median(&lib) / median(&by_raw),
    }))
}

/// stdout of `head -c` through `exec_stream`, counted and dropped, against the CLI's with
/// stdout on `/dev/null` and the raw client's stream counted and dropped; `args.samples`
/// rounds of them all in turn, each side's median taken (one sample of 1 GiB per side
/// swung the ratio from 0.79 to 1.30 between runs: the engine's pipeline, not ours,
/// varies). The library and the raw client are each read twice per round: by a task
/// of the runtime (how a build runner reads a step's log) and by the thread blocked on
/// `main`, which the runtime's workers wake across threads for every read (see
/// `docs/performance.md`). The library's memory is sampled first, streaming N/16, N/4
/// and N.
async fn throughput(
    args: &Args,
    engine: &Arc<dyn ContainerManager>,
    cli: &Cli,
    raw: &Arc<Raw>,
    at: &Target<'_>,
) -> Result<Value, Error> {
    let script = |mib: u64| format!("head -c {} /dev/zero", mib << 20);
    let whole = args.mib << 20;
    let mut memory = Vec::new();
    let mut lib = Vec::new();
    for mib in [args.mib / 16, args.mib / 4, args.mib] {
        if mib == 0 {
            continue;
        }
        let t = Instant::now();
        let script = script(mib);
        let reading = library_bytes(engine, at.id, &script, Reader::Task);
        let (got, growth) = with_peak_rss(reading).await;
        let secs = t.elapsed().as_secs_f64();
        if got? != mib << 20 {
            return Err(format!("the library's stream of {mib} MiB came short").into());
        }
        memory.push(json!({ "mib": mib, "rss_growth_kib": growth }));
        if mib == args.mib {
            lib.push(secs);
        }
    }
    let (mut lib_main, mut by_cli, mut by_raw, mut raw_main) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let short = |side: &str, got: u64| {
        if got == whole {
            Ok(())
        } else {
            Err(Error::from(format!("{side} stream came short")))
        }
    };
    for round in 0..args.samples {
        if round > 0 {
            let t = Instant::now();
            short(
                "the library's",
                library_bytes(engine, at.id, &script(args.mib), Reader::Task).await?,
            )?;
            lib.push(t.elapsed().as_secs_f64());
        }
        let t = Instant::now();
        short(
            "the library's",
            library_bytes(engine, at.id, &script(args.mib), Reader::Main).await?,
        )?;
        lib_main.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        cli::run(cli.exec(at.name, at.id, &["sh", "-c", &script(args.mib)]))?;
        by_cli.push(t.elapsed().as_secs_f64());
        for (reader, times) in [(Reader::Task, &mut by_raw), (Reader::Main, &mut raw_main)] {
            let t = Instant::now();
            short(
                "the raw client's",
                raw_bytes(raw, at.id, &script(args.mib), reader).await?,
            )?;
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let (lib_secs, cli_secs, raw_secs) = (median(&lib), median(&by_cli), median(&by_raw));
    let (lib_main_secs, raw_main_secs) = (median(&lib_main), median(&raw_main));
    let rate = |secs: f64| args.mib as f64 / secs;
    let rates = |v: &[f64]| v.iter().map(|s| rate(*s)).collect::<Vec<_>>();
    Ok(json!({
        "mib": args.mib,
        "samples": args.samples,
        "library": rate(lib_secs),
        "cli": rate(cli_secs),
        "raw_client": rate(raw_secs),
        "library_samples": rates(&lib),
        "cli_samples": rates(&by_cli),
        "raw_client_samples": rates(&by_raw),
        "ratio_library_to_cli": cli_secs / lib_secs,
        "ratio_library_to_raw_client": raw_secs / lib_secs,
        "main_thread": {
            "library": rate(lib_main_secs),
            "raw_client": rate(raw_main_secs),
            "library_samples": rates(&lib_main),
            "raw_client_samples": rates(&raw_main),
            "ratio_library_to_cli": cli_secs / lib_main_secs,
            "ratio_library_to_raw_client": raw_main_secs / lib_main_secs,
        },
        "memory": memory,
        "rss_before_kib": rss_kib(),
    }))
}

/// Where a stream is read: in a task of the runtime, or on the thread blocked on `main`.
#[derive(Debug, Clone, Copy)]
enum Reader {
    Task,
    Main,
}

impl Reader {
    /// `read`, awaited here or in a task of its own.
    async fn run<F>(self, read: F) -> Result<u64, Error>
    where
        F: Future<Output = Result<u64, Error>> + Send + 'static,
    {
        match self {
            Reader::Main => read.await,
            Reader::Task => tokio::spawn(read).await?,
        }
    }
}

/// [`stream_bytes`], read where `reader` says.
async fn library_bytes(
    engine: &Arc<dyn ContainerManager>,
    id: &str,
    script: &str,
    reader: Reader,
) -> Result<u64, Error> {
    let (engine, id, script) = (engine.clone(), id.to_string(), script.to_string());
    reader
        .run(async move { stream_bytes(engine.as_ref(), &id, &script).await })
        .await
}

/// The raw client's stdout of `script`, read where `reader` says.
async fn raw_bytes(raw: &Arc<Raw>, id: &str, script: &str, reader: Reader) -> Result<u64, Error> {
    let (raw, id, script) = (raw.clone(), id.to_string(), script.to_string());
    reader
        .run(async move { raw.exec(&id, &["sh", "-c", &script]).await })
        .await
}

/// The bytes of stdout of `script` through `exec_stream`, checked to exit 0.
async fn stream_bytes(engine: &dyn ContainerManager, id: &str, script: &str) -> Result<u64, Error> {
    let mut stream = engine.exec_stream(id, &ExecSpec::shell(script)).await?;
    let mut got = 0u64;
    while let Some(event) = stream.next().await {
        match event? {
            ExecEvent::Output(c) => got += c.data.len() as u64,
            ExecEvent::Exit(0) => {}
            ExecEvent::Exit(code) => return Err(format!("exit {code}").into()),
        }
    }
    Ok(got)
}

/// `work`'s output and how far this process's RSS rose above its level before, in
/// KiB, sampled every 20 ms.
async fn with_peak_rss<F: Future>(work: F) -> (F::Output, u64) {
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
    let out = work.await;
    sampler.abort();
    peak.fetch_max(rss_kib(), Ordering::Relaxed);
    (out, peak.load(Ordering::Relaxed).saturating_sub(baseline))
}

/// The same output as chunks and as lines through `ExecStream::lines` (what a log
/// consumer reads), `args.samples` rounds of the two in turn, medians compared.
async fn lines(args: &Args, engine: &dyn ContainerManager, id: &str) -> Result<Value, Error> {
    let bytes = args.lines_mib << 20;
    let script = format!("yes {LINE} | head -c {bytes}");
    let (mut by_chunks, mut by_lines) = (Vec::new(), Vec::new());
    for _ in 0..args.samples {
        let t = Instant::now();
        let chunk_bytes = stream_bytes(engine, id, &script).await?;
        by_chunks.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let mut lines = engine
            .exec_stream(id, &ExecSpec::shell(&script))
            .await?
            .lines(1 << 16);
        let mut line_bytes = 0u64;
        while let Some(event) = lines.next().await {
            if let LineEvent::Line(line) = event? {
                line_bytes += line.data.len() as u64 + 1;
            }
        }
        by_lines.push(t.elapsed().as_secs_f64());
        // (The last line has no newline: counted with one, it gives one byte more.)
        if chunk_bytes != bytes || line_bytes.abs_diff(bytes) > 1 {
            return Err(format!("lines: {chunk_bytes} and {line_bytes} of {bytes} bytes").into());
        }
    }
    let (chunk_secs, lines_secs) = (median(&by_chunks), median(&by_lines));
    let rate = |secs: f64| args.lines_mib as f64 / secs;
    Ok(json!({
        "mib": args.lines_mib,
        "samples": args.samples,
        "chunks": rate(chunk_secs),
        "lines": rate(lines_secs),
        "ratio_lines_to_chunks": chunk_secs / lines_secs,
        "line_bytes": LINE.len() + 1,
    }))
}

/// One lifecycle through the library: create `cmd` in `image`, start it; then, for a
/// long-lived container, exec `true` in it; wait, remove. Its exit code.
async fn lifecycle(
    engine: &dyn ContainerManager,
    image: &str,
    name: String,
    long_lived: bool,
) -> Result<i64, Error> {
    let cmd: &[&str] = if long_lived {
        &["sleep", "infinity"]
    } else {
        &["true"]
    };
    let config = ContainerConfig::new(image)
        .name(name)
        .cmd(cmd.iter().copied())
        .init(long_lived);
    let id = engine.create(&config).await?;
    let result = async {
        engine.start(&id).await?;
        if long_lived {
            Ok(engine.exec(&id, &ExecSpec::new(["true"])).await?.exit_code)
        } else {
            Ok(engine.wait(&id).await?)
        }
    }
    .await;
    engine.remove(&id, true).await?;
    result
}

/// Create, start, wait, remove of `true`, interleaved with the CLI's `run --rm`.
async fn run_to_completion(
    args: &Args,
    engine: &dyn ContainerManager,
    cli: &Cli,
) -> Result<Value, Error> {
    let (mut lib, mut by_cli) = (Vec::new(), Vec::new());
    for n in 0..args.runs {
        let t = Instant::now();
        let name = format!("crs-bench-lib-{}-{n}", std::process::id());
        let code = lifecycle(engine, &args.image, name, false).await?;
        lib.push(ms_since(t));
        if code != 0 {
            return Err(format!("a run of `true` exited {code}").into());
        }
        let t = Instant::now();
        cli::run(cli.run_rm(&args.image))?;
        by_cli.push(ms_since(t));
    }
    Ok(json!({
        "library": side(&lib),
        "cli_run_rm": side(&by_cli),
        "ratio_library_to_cli": median(&lib) / median(&by_cli),
    }))
}

/// At each level n: n lifecycles at once (a long-lived container, an exec of `true`
/// in it, its removal), twice per worker, through the library (tasks of this process)
/// and as many CLI workers (commands in threads).
async fn concurrency(
    args: &Args,
    engine: &Arc<dyn ContainerManager>,
    cli: &Cli,
) -> Result<Value, Error> {
    let rounds = if args.quick { 1 } else { 2 };
    let mut levels = Vec::new();
    for &n in &args.concurrency {
        let t = Instant::now();
        let mut workers = Vec::new();
        for w in 0..n {
            let (engine, image) = (engine.clone(), args.image.clone());
            workers.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for r in 0..rounds {
                    let t = Instant::now();
                    let name = format!("crs-bench-c-{}-{n}-{w}-{r}", std::process::id());
                    let done = match lifecycle(engine.as_ref(), &image, name, true).await {
                        Ok(0) => Ok(ms_since(t)),
                        Ok(code) => Err(format!("exec exited {code}")),
                        Err(e) => Err(e.to_string()),
                    };
                    out.push(done);
                }
                out
            }));
        }
        let mut lib = Vec::new();
        for worker in workers {
            lib.extend(worker.await?);
        }
        let lib_secs = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut threads = Vec::new();
        for _ in 0..n {
            let (kind, image) = (cli.kind, args.image.clone());
            threads.push(tokio::task::spawn_blocking(move || {
                let cli = Cli { kind };
                (0..rounds)
                    .map(|_| {
                        let t = Instant::now();
                        cli.lifecycle(&image)
                            .map(|()| ms_since(t))
                            .map_err(|e| e.to_string())
                    })
                    .collect::<Vec<_>>()
            }));
        }
        let mut by_cli = Vec::new();
        for thread in threads {
            by_cli.extend(thread.await?);
        }
        let cli_secs = t.elapsed().as_secs_f64();
        let summary = |results: &[Result<f64, String>], secs: f64| {
            let ok: Vec<f64> = results.iter().filter_map(|r| r.clone().ok()).collect();
            let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
            json!({
                "lifecycles_per_s": ok.len() as f64 / secs,
                "latency_ms": side(&ok),
                "failures": errors.len(),
                "first_failure": errors.first(),
            })
        };
        let (lib, by_cli) = (summary(&lib, lib_secs), summary(&by_cli, cli_secs));
        let ratio = lib["lifecycles_per_s"].as_f64().unwrap_or(0.0)
            / by_cli["lifecycles_per_s"].as_f64().unwrap_or(f64::NAN);
        levels.push(json!({
            "concurrency": n,
            "lifecycles": n * rounds,
            "library": lib,
            "cli": by_cli,
            "ratio_library_to_cli_throughput": ratio,
        }));
    }
    Ok(json!(levels))
}

/// The multi-layer image pulled by the library and by the CLI in turn, each after the
/// CLI removed it (so both start from the same store: its own layers gone).
async fn pull(args: &Args, engine: &dyn ContainerManager, cli: &Cli) -> Result<Value, Error> {
    let (mut lib, mut by_cli) = (Vec::new(), Vec::new());
    for _ in 0..args.pulls {
        cli.remove_image(&args.pull_image)?;
        let t = Instant::now();
        engine.pull(&args.pull_image, &Default::default()).await?;
        lib.push(ms_since(t));
        cli.remove_image(&args.pull_image)?;
        let t = Instant::now();
        cli::run(cli.pull(&args.pull_image))?;
        by_cli.push(ms_since(t));
    }
    cli.remove_image(&args.pull_image)?;
    Ok(json!({
        "image": args.pull_image,
        "library": side(&lib),
        "cli": side(&by_cli),
        "ratio_library_to_cli": median(&lib) / median(&by_cli),
    }))
}

/// A tree of `copy_mib` MiB (random files of 4 MiB, 16 per folder) copied out of the
/// bench container into an empty host folder, by the library and by the CLI in turn.
async fn copy_out(
    args: &Args,
    engine: &dyn ContainerManager,
    cli: &Cli,
    at: &Target<'_>,
) -> Result<Value, Error> {
    let files = (args.copy_mib / COPY_FILE_MIB).max(1);
    let bytes = files * (COPY_FILE_MIB << 20);
    let make = format!(
        "rm -rf /tree && i=0 && while [ $i -lt {files} ]; do d=/tree/d$((i / 16)); \
         mkdir -p $d && head -c {} /dev/urandom > $d/f$i || exit 1; i=$((i + 1)); done",
        COPY_FILE_MIB << 20
    );
    let made = engine.exec(at.id, &ExecSpec::shell(&make)).await?;
    if made.exit_code != 0 {
        return Err(format!("making the tree: exit {}", made.exit_code).into());
    }
    let (mut lib, mut by_cli) = (Vec::new(), Vec::new());
    for _ in 0..args.copies {
        let dir = tempfile::tempdir()?;
        let t = Instant::now();
        engine.copy_from(at.id, "/tree", dir.path()).await?;
        lib.push(ms_since(t));
        check_size(dir.path(), bytes)?;
        drop(dir);
        let dir = tempfile::tempdir()?;
        let t = Instant::now();
        cli.copy_out(at.name, at.id, "/tree", dir.path())?;
        by_cli.push(ms_since(t));
        check_size(dir.path(), bytes)?;
    }
    Ok(json!({
        "mib": bytes >> 20,
        "files": files,
        "library": side(&lib),
        "cli": side(&by_cli),
        "ratio_library_to_cli": median(&lib) / median(&by_cli),
    }))
}

/// That the regular files under `dir` hold `bytes` in all.
fn check_size(dir: &Path, bytes: u64) -> Result<(), Error> {
    fn total(dir: &Path) -> std::io::Result<u64> {
        let mut sum = 0;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                sum += total(&entry.path())?;
            } else if kind.is_file() {
                sum += entry.metadata()?.len();
            }
        }
        Ok(sum)
    }
    match total(dir)? {
        got if got == bytes => Ok(()),
        got => Err(format!("copied {got} of {bytes} bytes into {}", dir.display()).into()),
    }
}
