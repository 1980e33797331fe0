//! The fault harness (issue 13): what the library leaves behind when its callers give
//! up halfway, and when many of them work at once. Two parts, each in a session of its
//! own, against a real engine:
//!
//! - `soak`: a bounded number of operations (create, start, exec buffered and streamed,
//!   stop, remove, pull, copy out and in, volume create and remove), each raced against
//!   a random short sleep from a seeded RNG and dropped when the sleep wins;
//! - `workers`: 32 workers running whole lifecycles concurrently for a bounded time,
//!   where no error is acceptable but the `Timeout` of the exec that is meant to time out.
//!
//! After each part: no exec process left in the containers that still exist, then
//! `cleanup(Session)`, then nothing of the session in `list`/`list_volumes`, on
//! containerd nothing new in `ctr tasks|containers|snapshots|leases ls` and no new FIFO
//! folder, no panic, and once the manager is dropped, no more open file descriptors and
//! no more live tokio tasks than before it was connected (`checks`).
//!
//! Each backend has a `harness = false` binary (`tests/tests/faults_<backend>.rs`) that
//! calls [`run`]; `cargo xtask faults --backend <backend>` runs it. Arguments (after
//! `--`): `--part soak|workers|all`, `--iterations N` (default 300), `--soak-secs S`
//! (default 75: the soak stops early when its loop has run that long), `--workers N`
//! (default 32), `--worker-secs S` (default 45), `--seed N` (default: from the clock;
//! printed, so a failing soak can be replayed), `--ops pull,create` (the soak draws only
//! from these operations, to narrow a finding down). Results:
//! `<target>/faults/<backend>.json` (`<backend>.partial.json` when one part runs, or
//! `--ops` narrows the soak).

mod checks;
mod restart;
mod soak;
mod workers;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use container::PullOptions;
use serde::Serialize;
use serde_json::json;

use crate::ctx::{Ctx, Factory};
use crate::failure::describe;

/// The time budget of the restart part (it ends far sooner unless something hangs).
const RESTART_BUDGET_SECS: u64 = 180;

/// How long past its budget a part, or its checks, may run before it counts as a hang.
const HANG: Duration = Duration::from_secs(300);

/// Panics seen anywhere in the process (library tasks included), by the panic hook.
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Which parts to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Part {
    All,
    Soak,
    Workers,
    Restart,
}

/// The command line of a fault binary.
#[derive(Debug, Clone, Serialize)]
struct Options {
    part: Part,
    /// Soak iterations (operations started), at most.
    iterations: u64,
    /// The soak's loop stops once it has run this long, whatever the count.
    soak_secs: u64,
    /// Concurrent workers.
    workers: usize,
    /// How long workers start new lifecycles.
    worker_secs: u64,
    /// Seed of the soak's RNG.
    seed: u64,
    /// The soak operations to draw from (all when empty), to narrow down a finding.
    ops: Vec<String>,
}

impl Options {
    fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut o = Options {
            part: Part::All,
            iterations: 300,
            soak_secs: 75,
            workers: 32,
            worker_secs: 45,
            seed: clock_seed(),
            ops: Vec::new(),
        };
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            let (key, inline) = match arg.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (arg.clone(), None),
            };
            // cargo test may pass these; they mean nothing here.
            if matches!(key.as_str(), "--nocapture" | "--quiet" | "-q") {
                continue;
            }
            let value = match inline.or_else(|| args.next()) {
                Some(v) => v,
                None => return Err(format!("{key} needs a value")),
            };
            let number = |v: &str| {
                v.parse::<u64>()
                    .map_err(|e| format!("{key} {v:?}: not a number ({e})"))
            };
            match key.as_str() {
                "--part" => {
                    o.part = match value.as_str() {
                        "all" => Part::All,
                        "soak" => Part::Soak,
                        "workers" => Part::Workers,
                        "restart" => Part::Restart,
                        _ => {
                            return Err(format!("--part {value:?}: soak, workers, restart or all"))
                        }
                    }
                }
                "--iterations" => o.iterations = number(&value)?,
                "--soak-secs" => o.soak_secs = number(&value)?,
                "--workers" => {
                    o.workers = usize::try_from(number(&value)?).map_err(|e| e.to_string())?;
                }
                "--worker-secs" => o.worker_secs = number(&value)?,
                "--seed" => o.seed = number(&value)?,
                "--ops" => {
                    o.ops = value
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect();
                }
                _ => {
                    return Err(format!(
                        "unknown argument {key:?} (--part, --iterations, --soak-secs, \
                         --workers, --worker-secs, --seed, --ops)"
                    ))
                }
            }
        }
        Ok(o)
    }
}

fn clock_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}

/// SplitMix64: small, seeded, and the same sequence on every machine for one seed.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// An index into a collection of `len` items.
    pub(crate) fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }
}

/// What one operation kind did over a part.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct OpStats {
    /// Started.
    pub(crate) attempts: u64,
    /// Dropped before it finished: faults injected (soak only).
    pub(crate) dropped: u64,
    /// Of the dropped exec streams: those dropped after output had arrived.
    pub(crate) dropped_mid_output: u64,
    /// Finished with `Ok` (or the expected error).
    pub(crate) ok: u64,
    /// Finished with an unexpected error.
    pub(crate) errors: u64,
    /// Total time of the finished ones, ms.
    pub(crate) finished_ms: u64,
    /// The slowest finished one, ms.
    pub(crate) max_ms: u64,
    /// The longest a drop itself took, ms.
    pub(crate) max_drop_ms: u64,
}

impl OpStats {
    pub(crate) fn finished(&mut self, took: Duration, ok: bool) {
        if ok {
            self.ok += 1;
        } else {
            self.errors += 1;
        }
        let ms = took.as_millis() as u64;
        self.finished_ms += ms;
        self.max_ms = self.max_ms.max(ms);
    }

    fn merge(&mut self, other: &OpStats) {
        self.attempts += other.attempts;
        self.dropped += other.dropped;
        self.dropped_mid_output += other.dropped_mid_output;
        self.ok += other.ok;
        self.errors += other.errors;
        self.finished_ms += other.finished_ms;
        self.max_ms = self.max_ms.max(other.max_ms);
        self.max_drop_ms = self.max_drop_ms.max(other.max_drop_ms);
    }
}

/// Per-operation statistics by operation name.
pub(crate) type Ops = BTreeMap<&'static str, OpStats>;

pub(crate) fn merge_ops(into: &mut Ops, from: &Ops) {
    for (op, s) in from {
        into.entry(op).or_default().merge(s);
    }
}

/// What a part's body reports (the checks come after it).
#[derive(Debug, Default)]
pub(crate) struct Body {
    /// Soak: operations started; workers: lifecycles started.
    pub(crate) iterations: u64,
    /// Workers: lifecycles that ran to the end without an error.
    pub(crate) completed: u64,
    pub(crate) ops: Ops,
    /// Unexpected errors, described (the first few hundred).
    pub(crate) errors: Vec<String>,
    /// Whether the loop stopped on its time budget before the count.
    pub(crate) cut_by_budget: bool,
    /// How long the body ran.
    pub(crate) loop_time: Duration,
    /// Soak: how long each operation typically took (learned; drops are drawn from it).
    pub(crate) typical_ms: BTreeMap<&'static str, u64>,
    /// Soak: what was done to each lifecycle container (by id), to explain a leak.
    pub(crate) history: BTreeMap<String, Vec<String>>,
}

/// The most errors a part keeps word for word (the count is always exact).
pub(crate) const MAX_ERRORS: usize = 200;

impl Body {
    pub(crate) fn error(&mut self, message: String) {
        if self.errors.len() < MAX_ERRORS {
            eprintln!("faults: {message}");
            self.errors.push(message);
        }
    }
}

/// The results of one part.
#[derive(Debug, Serialize)]
struct PartReport {
    part: &'static str,
    outcome: &'static str,
    session: Option<String>,
    wall_ms: u128,
    loop_ms: u128,
    iterations: u64,
    completed: u64,
    cut_by_budget: bool,
    faults_injected: u64,
    errors: usize,
    leaks_found: usize,
    panics: usize,
    ops: Ops,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    typical_ms: BTreeMap<&'static str, u64>,
    error_messages: Vec<String>,
    leaks: Vec<String>,
    figures: checks::Figures,
    failures: Vec<String>,
}

/// Runs the parts the command line asks for against the managers `factory` builds, and
/// returns the process exit code; results go to `<target>/faults/<name>.json`.
pub fn run(name: &str, factory: Factory) -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("faults[{name}]: {e}");
            return ExitCode::FAILURE;
        }
    };
    install_panic_hook();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("faults[{name}]: cannot build the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "faults[{name}]: seed {} (replay: cargo xtask faults --backend {name} --seed {})",
        options.seed, options.seed
    );
    let started = Instant::now();
    let mut parts = Vec::new();
    if matches!(options.part, Part::All | Part::Soak) {
        let report = runtime.block_on(run_part(name, &factory, "soak", &options));
        print_part(name, &report);
        parts.push(report);
    }
    if matches!(options.part, Part::All | Part::Workers) {
        let report = runtime.block_on(run_part(name, &factory, "workers", &options));
        print_part(name, &report);
        parts.push(report);
    }
    if matches!(options.part, Part::All | Part::Restart) {
        let report = runtime.block_on(run_part(name, &factory, "restart", &options));
        print_part(name, &report);
        parts.push(report);
    }
    let failures: Vec<String> = parts
        .iter()
        .flat_map(|p| p.failures.iter().map(move |f| format!("{}: {f}", p.part)))
        .collect();
    let outcome = if failures.is_empty() {
        "passed"
    } else {
        "failed"
    };
    let report = json!({
        "backend": name,
        "outcome": outcome,
        "seed": options.seed,
        "options": options,
        "started_unix": SystemTime::now()
            .checked_sub(started.elapsed())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs()),
        "wall_ms": started.elapsed().as_millis(),
        "failures": failures,
        "parts": parts,
    });
    write_results(
        name,
        options.part != Part::All || !options.ops.is_empty(),
        &report,
    );
    if failures.is_empty() {
        println!(
            "faults[{name}]: passed in {:.1} s (seed {})",
            started.elapsed().as_secs_f64(),
            options.seed
        );
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "\nfaults[{name}]: FAILED (seed {}):\n  {}\n",
            options.seed,
            failures.join("\n  ")
        );
        ExitCode::FAILURE
    }
}

/// Counts every panic, then lets the default hook print it.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(info.to_string());
        default(info);
    }));
}

fn panics_so_far() -> Vec<String> {
    PANICS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// One part: connect a fresh session, run the body, then every check.
async fn run_part(
    name: &str,
    factory: &Factory,
    part: &'static str,
    options: &Options,
) -> PartReport {
    let started = Instant::now();
    let panics_before = panics_so_far().len();
    let mut report = PartReport {
        part,
        outcome: "failed",
        session: None,
        wall_ms: 0,
        loop_ms: 0,
        iterations: 0,
        completed: 0,
        cut_by_budget: false,
        faults_injected: 0,
        errors: 0,
        leaks_found: 0,
        panics: 0,
        ops: Ops::new(),
        typical_ms: BTreeMap::new(),
        error_messages: Vec::new(),
        leaks: Vec::new(),
        figures: checks::Figures::default(),
        failures: Vec::new(),
    };
    let baseline = checks::Baseline::take().await;
    let ctx = match Ctx::connect(name, factory.clone()).await {
        Ok(ctx) => ctx,
        Err(e) => {
            report.failures.push(format!("setup: {e}"));
            report.wall_ms = started.elapsed().as_millis();
            return report;
        }
    };
    report.session = Some(ctx.ownership().session().to_string());
    println!(
        "faults[{name}]: {part}: session {}",
        ctx.ownership().session()
    );
    if let Err(e) = ctx
        .manager()
        .pull(ctx.image(), &PullOptions::default())
        .await
    {
        report.failures.push(format!(
            "setup: cannot pull the test image {}: {}",
            ctx.image(),
            describe(&e)
        ));
    }
    let mut probe = checks::Probe::start(&ctx, baseline).await;
    let budget = Duration::from_secs(match part {
        "soak" => options.soak_secs,
        "restart" => RESTART_BUDGET_SECS,
        _ => options.worker_secs,
    });
    let body = if report.failures.is_empty() {
        let body = async {
            match part {
                "soak" => soak::run(&ctx, options).await,
                "restart" => restart::run(&ctx).await,
                _ => workers::run(&ctx, options).await,
            }
        };
        match tokio::time::timeout(budget + HANG, body).await {
            Ok(body) => body,
            Err(_) => {
                report.failures.push(format!(
                    "the {part} hung: not over {:?} after its {budget:?} budget",
                    HANG
                ));
                Body::default()
            }
        }
    } else {
        Body::default()
    };
    let (mut leaks, figures) = match tokio::time::timeout(HANG, probe.finish(ctx)).await {
        Ok(checked) => checked,
        Err(_) => (
            vec![format!("the checks hung for {HANG:?}")],
            checks::Figures::default(),
        ),
    };
    for leak in &mut leaks {
        for (id, past) in &body.history {
            if leak.contains(id.as_str()) {
                leak.push_str(&format!(" [history of {id}: {}]", past.join(", ")));
            }
        }
    }
    let panics: Vec<String> = panics_so_far().into_iter().skip(panics_before).collect();

    report.loop_ms = body.loop_time.as_millis();
    report.iterations = body.iterations;
    report.completed = body.completed;
    report.cut_by_budget = body.cut_by_budget;
    report.faults_injected = body.ops.values().map(|s| s.dropped).sum();
    report.errors = body.ops.values().map(|s| s.errors).sum::<u64>() as usize;
    report.errors = report.errors.max(body.errors.len());
    report.leaks_found = leaks.len();
    report.panics = panics.len();
    report.ops = body.ops;
    report.typical_ms = body.typical_ms;
    if report.errors > 0 {
        report
            .failures
            .push(format!("{} unexpected error(s)", report.errors));
    }
    if !leaks.is_empty() {
        report
            .failures
            .push(format!("{} leak(s): {}", leaks.len(), leaks.join("; ")));
    }
    if !panics.is_empty() {
        report
            .failures
            .push(format!("{} panic(s): {}", panics.len(), panics.join("; ")));
    }
    if body.iterations == 0 && report.failures.is_empty() {
        report.failures.push("nothing ran".to_string());
    }
    report.error_messages = body.errors;
    report.leaks = leaks;
    report.figures = figures;
    report.outcome = if report.failures.is_empty() {
        "passed"
    } else {
        "failed"
    };
    report.wall_ms = started.elapsed().as_millis();
    report
}

fn print_part(name: &str, r: &PartReport) {
    println!(
        "faults[{name}]: {}: {} in {:.1} s (loop {:.1} s{}): {} {}, {} faults injected, \
         {} errors, {} leaks, {} panics",
        r.part,
        r.outcome,
        r.wall_ms as f64 / 1000.0,
        r.loop_ms as f64 / 1000.0,
        if r.cut_by_budget {
            ", stopped by its time budget"
        } else {
            ""
        },
        r.iterations,
        if r.part == "soak" {
            "operations".to_string()
        } else {
            format!("lifecycles ({} completed)", r.completed)
        },
        r.faults_injected,
        r.errors,
        r.leaks_found,
        r.panics
    );
    println!(
        "  {:<14} {:>8} {:>8} {:>6} {:>6} {:>6} {:>8} {:>8} {:>8}",
        "operation", "attempts", "dropped", "mid", "ok", "errors", "mean ms", "max ms", "drop ms"
    );
    for (op, s) in &r.ops {
        let finished = s.ok + s.errors;
        println!(
            "  {op:<14} {:>8} {:>8} {:>6} {:>6} {:>6} {:>8} {:>8} {:>8}",
            s.attempts,
            s.dropped,
            s.dropped_mid_output,
            s.ok,
            s.errors,
            s.finished_ms.checked_div(finished).unwrap_or(0),
            s.max_ms,
            s.max_drop_ms
        );
    }
    if !r.typical_ms.is_empty() {
        println!("  typical durations learned (ms): {}", json!(r.typical_ms));
    }
    println!("  figures: {}", json!(r.figures));
}

/// `<target>/faults/<name>.json` (`.partial.json` when one part ran).
pub(crate) fn results_path(name: &str, partial: bool) -> PathBuf {
    let suffix = if partial { ".partial" } else { "" };
    crate::harness::target_dir()
        .join("faults")
        .join(format!("{name}{suffix}.json"))
}

fn write_results(name: &str, partial: bool, report: &serde_json::Value) {
    crate::harness::write_json(&results_path(name, partial), report, "faults");
}

/// A name no other object uses: `crs-<session>-<part>-<n>`.
pub(crate) fn unique_name(ctx: &Ctx, part: &str, n: u64) -> String {
    format!("crs-{}-{part}-{n}", ctx.short_session())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_gives_one_sequence() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs[0], xs[1]);
        assert!((0..1000).all(|_| a.below(7) < 7));
        assert_eq!(a.below(0), 0);
    }

    #[test]
    fn options_parse_with_defaults() {
        let o = Options::parse(
            ["--part", "soak", "--iterations=10", "--seed", "7"]
                .into_iter()
                .map(String::from),
        )
        .map_err(|e| e.to_string());
        let o = match o {
            Ok(o) => o,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(o.part, Part::Soak);
        assert_eq!((o.iterations, o.seed, o.workers), (10, 7, 32));
        assert!(Options::parse(["--bogus", "1"].into_iter().map(String::from)).is_err());
        assert!(Options::parse(["--seed"].into_iter().map(String::from)).is_err());
    }
}
