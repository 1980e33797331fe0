//! The libtest-mimic harness: one trial per case (plus one check per `[feature]` case),
//! a shared tokio runtime, the final leak check and the JSON results.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use container::{BackendKind, Capabilities, CleanupScope, PullOptions};
use futures::future::BoxFuture;
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use serde::Serialize;
use serde_json::json;

use crate::cases::{Case, CaseFn, CASES};
use crate::ctx::{Ctx, Factory, SLACK};
use crate::failure::{describe, Failure};

/// A case that runs longer than this fails (and its objects are still cleaned up).
pub const CASE_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the whole suite against the managers `factory` builds and returns the process
/// exit code; results go to [`results_path`]`(name)`. `factory` gets connect options
/// with the suite's ownership and timeouts (and sometimes an endpoint of a case's own)
/// and returns the manager under test: an in-tree backend through the facade, or any
/// outside implementation of `ContainerManager`.
///
/// ```no_run
/// use container_conformance::{factory, run, BackendKind};
/// fn main() -> std::process::ExitCode {
///     run("docker", factory(|options| container::connect_with(BackendKind::Docker, options)))
/// }
/// ```
pub fn run(name: &str, factory: Factory) -> ExitCode {
    run_selected(name, factory, |_| true)
}

/// [`run`] with only the cases `select` picks: for an outside backend trying a part of
/// the contract, or a smoke run. A run that leaves cases out is partial: its results go
/// to the `.partial.json` file and never stand for the backend.
pub fn run_selected(name: &str, factory: Factory, select: fn(&Case) -> bool) -> ExitCode {
    run_suite(name, factory, select, None)
}

/// Counts an engine's own objects (tasks, snapshots, leases, content, …) by kind, as the
/// engine itself reports them: what the contract's `list` cannot see.
pub type Census =
    Arc<dyn Fn() -> BoxFuture<'static, Result<BTreeMap<String, u64>, String>> + Send + Sync>;

/// [`run`] with a census of the engine's own objects taken once the test images are in
/// and again after the leak check: any kind that grew is reported as left behind (a
/// containerd snapshot, lease or task that no container carries any more).
pub fn run_with_census(name: &str, factory: Factory, census: Census) -> ExitCode {
    run_suite(name, factory, |_| true, Some(census))
}

fn run_suite(
    name: &str,
    factory: Factory,
    select: fn(&Case) -> bool,
    census: Option<Census>,
) -> ExitCode {
    let kind = name;
    let selected_all = CASES.iter().all(select);
    let args = Arguments::from_args();
    let started = Instant::now();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("conformance[{kind}]: cannot build the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };

    let partial = is_partial(&args) || !selected_all;
    let ctx = match runtime.block_on(setup(name, factory, census.is_some())) {
        Ok(ctx) => ctx,
        Err(message) => {
            if args.list {
                // Listing needs no engine: show every trial, capabilities unknown.
                let trials = plan(None, select)
                    .into_iter()
                    .map(|p| p.trial(|| Ok(Completion::Completed)))
                    .collect();
                let _listed = libtest_mimic::run(&args, trials);
                return ExitCode::SUCCESS;
            }
            eprintln!("\nconformance[{kind}]: FAILED before any case ran: {message}\n");
            write_results(&Report::setup_failed(name, message, started), partial);
            return ExitCode::FAILURE;
        }
    };

    let before = match &census {
        Some(count) => match runtime.block_on(count()) {
            Ok(counts) => Some(counts),
            Err(e) => {
                eprintln!("\nconformance[{kind}]: FAILED before any case ran: census: {e}\n");
                write_results(
                    &Report::setup_failed(name, format!("census: {e}"), started),
                    partial,
                );
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let caps = ctx.capabilities();
    let records: Records = Arc::default();
    let plans = plan(Some(caps), select);
    let mut statuses = Vec::new();
    let mut trials = Vec::new();
    for p in plans {
        let runner = runner(&p, &ctx, runtime.handle().clone(), records.clone());
        let trial = p.trial(runner);
        statuses.push((p, args.is_filtered_out(&trial), args.is_ignored(&trial)));
        trials.push(trial);
    }

    let conclusion = libtest_mimic::run(&args, trials);
    if args.list {
        return ExitCode::SUCCESS;
    }

    let (leaks, leak_error) = runtime.block_on(async {
        if tokio::time::timeout(Duration::from_secs(120), ctx.settle())
            .await
            .is_err()
        {
            eprintln!("conformance[{kind}]: case cleanups still running after 120 s");
        }
        let (mut leaks, mut error) = leak_check(&ctx).await;
        if let (Some(count), Some(before)) = (&census, &before) {
            match count().await {
                Ok(after) => leaks.extend(grown(before, &after)),
                Err(e) => error = Some(format!("census: {e}")),
            }
        }
        (leaks, error)
    });
    let executed = conclusion.num_passed + conclusion.num_failed;

    let mut verdict = Vec::new();
    if conclusion.has_failed() {
        verdict.push(format!("{} case(s) failed", conclusion.num_failed));
    }
    if !leaks.is_empty() {
        verdict.push(format!(
            "objects of the run's sessions were left behind: {}",
            leaks.join(", ")
        ));
    }
    if let Some(e) = &leak_error {
        verdict.push(format!("the leak check could not run: {e}"));
    }
    if executed == 0 {
        verdict.push("no case executed".to_string());
    }

    let recorded = records
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let report = Report::finished(
        &ctx,
        started,
        &statuses,
        &recorded,
        &leaks,
        leak_error.as_deref(),
        &verdict,
    );
    write_results(&report, partial);
    if verdict.is_empty() {
        println!(
            "conformance[{kind}]: passed ({executed} trials executed, {} ignored, no leftovers)",
            conclusion.num_ignored
        );
        ExitCode::SUCCESS
    } else {
        eprintln!("\nconformance[{kind}]: FAILED: {}\n", verdict.join("; "));
        ExitCode::FAILURE
    }
}

/// Connects, checks the engine identity, and pulls the test images; with `census`, the
/// real-image cases' too. Those cases pull them and keep them: in before the first count,
/// a first run on an engine that lacks them does not count them as left behind (it did:
/// "5 content, 1 snapshots more", their blobs and their one layer).
async fn setup(name: &str, factory: Factory, census: bool) -> Result<Ctx, String> {
    let ctx = Ctx::connect(name, factory).await?;
    let kept = [crate::ctx::DEBIAN_IMAGE, crate::ctx::DEBIAN_BARE_IMAGE]
        .into_iter()
        .filter(|_| census)
        .map(str::to_string);
    for image in [ctx.image().to_string(), ctx.user_image().to_string()]
        .into_iter()
        .chain(kept)
    {
        ctx.manager()
            .pull(&image, &PullOptions::default())
            .await
            .map_err(|e| format!("cannot pull the test image {image}: {}", describe(&e)))?;
    }
    Ok(ctx)
}

/// Lists everything still labelled with a session of the run, then removes it.
async fn leak_check(ctx: &Ctx) -> (Vec<String>, Option<String>) {
    let mut leaks = Vec::new();
    let mut error = None;
    for m in ctx.all_managers() {
        let selector = m.ownership().selector(CleanupScope::Session);
        let session = m.ownership().session().to_string();
        match m.list(&selector).await {
            Ok(list) => leaks.extend(list.into_iter().map(|c| {
                format!(
                    "container {} ({}, {:?}) of session {session}",
                    c.name, c.id, c.state
                )
            })),
            Err(e) => error = Some(describe(&e)),
        }
        match m.list_volumes(&selector).await {
            Ok(list) => leaks.extend(
                list.into_iter()
                    .map(|v| format!("volume {} of session {session}", v.name)),
            ),
            Err(e) => error = Some(describe(&e)),
        }
        if let Err(e) = m.cleanup(CleanupScope::Session).await {
            error = Some(format!("cleanup of session {session}: {}", describe(&e)));
        }
    }
    (leaks, error)
}

/// The kinds of which `after` counts more than `before`, described.
fn grown(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> Vec<String> {
    after
        .iter()
        .filter_map(|(kind, &n)| {
            let was = before.get(kind).copied().unwrap_or(0);
            (n > was).then(|| format!("{} {kind} more than before the run ({was} → {n})", n - was))
        })
        .collect()
}

/// Whether a trial runs a case or the negative check of a `[feature]` case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Case,
    Check,
}

/// One trial to register.
#[derive(Debug, Clone)]
struct Plan {
    case: &'static Case,
    role: Role,
    name: String,
    /// `unsupported:<capability>` when the backend lacks the case's capability.
    unsupported: Option<String>,
}

impl Plan {
    fn run_fn(&self) -> CaseFn {
        match (self.role, &self.case.feature) {
            (Role::Check, Some(f)) => f.check,
            _ => self.case.run,
        }
    }

    fn trial<R>(&self, runner: R) -> Trial
    where
        R: FnOnce() -> Result<Completion, Failed> + Send + 'static,
    {
        let trial = Trial::ignorable_test(self.name.clone(), runner);
        match &self.unsupported {
            Some(reason) => trial.with_ignored_flag(true).with_kind(reason.clone()),
            None => trial,
        }
    }
}

/// Every trial: each case once, and each `[feature]` case's check. `caps` is `None` when
/// the engine could not be reached (listing only).
fn plan(caps: Option<Capabilities>, select: fn(&Case) -> bool) -> Vec<Plan> {
    let mut plans = Vec::new();
    for case in CASES.iter().filter(|c| select(c)) {
        let unsupported = match (&case.feature, caps) {
            (Some(f), Some(c)) if !(f.supported)(&c) => {
                Some(format!("unsupported:{}", f.capability))
            }
            _ => None,
        };
        plans.push(Plan {
            case,
            role: Role::Case,
            name: case.trial_name(),
            unsupported,
        });
        if case.feature.is_some() {
            plans.push(Plan {
                case,
                role: Role::Check,
                name: format!("{}::check", case.trial_name()),
                unsupported: None,
            });
        }
    }
    plans
}

/// What one executed trial did.
#[derive(Debug, Clone, Serialize)]
struct Record {
    outcome: &'static str,
    duration_ms: u128,
    message: Option<String>,
}

type Records = Arc<Mutex<BTreeMap<String, Record>>>;

fn runner(
    plan: &Plan,
    ctx: &Ctx,
    handle: tokio::runtime::Handle,
    records: Records,
) -> impl FnOnce() -> Result<Completion, Failed> + Send + 'static {
    let (ctx, name, f, unsupported) = (
        ctx.clone(),
        plan.name.clone(),
        plan.run_fn(),
        plan.unsupported.clone(),
    );
    move || {
        let started = Instant::now();
        let outcome: Result<Option<String>, Failure> = match unsupported {
            // Run on request (`--include-ignored`): still nothing to exercise.
            Some(reason) => Ok(Some(reason)),
            None => handle
                .block_on(async move {
                    let task =
                        tokio::spawn(
                            async move { tokio::time::timeout(CASE_TIMEOUT, f(&ctx)).await },
                        );
                    match task.await {
                        Ok(Ok(result)) => result,
                        Ok(Err(_)) => Err(Failure::new(format!(
                            "the case did not finish within {CASE_TIMEOUT:?}"
                        ))),
                        Err(e) if e.is_panic() => Err(Failure::new(format!(
                            "the case panicked: {}",
                            panic_text(e)
                        ))),
                        Err(e) => Err(Failure::new(format!("the case task failed: {e}"))),
                    }
                })
                .map(|()| None),
        };
        let record = |outcome: &'static str, message: Option<String>| Record {
            outcome,
            duration_ms: started.elapsed().as_millis(),
            message,
        };
        let (record, result) = match outcome {
            Ok(None) => (record("passed", None), Ok(Completion::Completed)),
            Ok(Some(reason)) => (
                record("ignored", Some(reason.clone())),
                Ok(Completion::ignored_with(reason)),
            ),
            Err(f) => (
                record("failed", Some(f.message().to_string())),
                Err(Failed::from(f.message())),
            ),
        };
        records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name, record);
        result
    }
}

fn panic_text(e: tokio::task::JoinError) -> String {
    let payload = e.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// A run that selects trials (a filter, `--skip`, `--ignored`) is partial: its results
/// must not replace those of a full run, which docs and benchmarks are made from.
fn is_partial(args: &Arguments) -> bool {
    args.filter.is_some() || !args.skip.is_empty() || args.ignored
}

/// `<target>/conformance/<backend>.json` for a full run (`<backend>.partial.json` for a
/// run that selects trials), where `<target>` is `CARGO_TARGET_DIR` (when absolute), else
/// the target directory this test binary was built into, else the workspace's `target/`.
pub fn results_path(name: &str, partial: bool) -> PathBuf {
    let suffix = if partial { ".partial" } else { "" };
    target_dir()
        .join("conformance")
        .join(format!("{name}{suffix}.json"))
}

pub(crate) fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        if dir.is_absolute() {
            return dir;
        }
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.ancestors().find(|a| a.join("CACHEDIR.TAG").is_file()) {
            return dir.to_path_buf();
        }
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map_or_else(|| manifest.join("target"), |root| root.join("target"))
}

/// The JSON results of a run.
#[derive(Debug, Serialize)]
struct Report {
    backend: String,
    kind: Option<BackendKind>,
    outcome: &'static str,
    failures: Vec<String>,
    setup_error: Option<String>,
    engine: Option<container::EngineInfo>,
    capabilities: Option<Capabilities>,
    owner: Option<String>,
    session: Option<String>,
    slack_ms: u128,
    case_timeout_ms: u128,
    started_unix: u64,
    duration_ms: u128,
    totals: serde_json::Value,
    leaks: Vec<String>,
    leak_check_error: Option<String>,
    cases: Vec<serde_json::Value>,
}

impl Report {
    fn base(name: &str, started: Instant) -> Report {
        let started_unix = SystemTime::now()
            .checked_sub(started.elapsed())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        Report {
            backend: name.to_string(),
            kind: None,
            outcome: "failed",
            failures: Vec::new(),
            setup_error: None,
            engine: None,
            capabilities: None,
            owner: None,
            session: None,
            slack_ms: SLACK.as_millis(),
            case_timeout_ms: CASE_TIMEOUT.as_millis(),
            started_unix,
            duration_ms: started.elapsed().as_millis(),
            totals: json!({}),
            leaks: Vec::new(),
            leak_check_error: None,
            cases: Vec::new(),
        }
    }

    fn setup_failed(name: &str, message: String, started: Instant) -> Report {
        let mut r = Report::base(name, started);
        r.failures.push(message.clone());
        r.setup_error = Some(message);
        r.totals = json!({"passed": 0, "failed": 0, "ignored": 0, "filtered": 0, "executed": 0});
        r
    }

    fn finished(
        ctx: &Ctx,
        started: Instant,
        statuses: &[(Plan, bool, bool)],
        records: &BTreeMap<String, Record>,
        leaks: &[String],
        leak_error: Option<&str>,
        verdict: &[String],
    ) -> Report {
        let mut r = Report::base(ctx.run_name(), started);
        r.kind = Some(ctx.kind());
        r.outcome = if verdict.is_empty() {
            "passed"
        } else {
            "failed"
        };
        r.failures = verdict.to_vec();
        r.engine = Some(ctx.engine().clone());
        r.capabilities = Some(ctx.capabilities());
        r.owner = Some(ctx.ownership().owner().to_string());
        r.session = Some(ctx.ownership().session().to_string());
        r.leaks = leaks.to_vec();
        r.leak_check_error = leak_error.map(str::to_string);
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for (plan, filtered, ignored) in statuses {
            let (outcome, duration_ms, message) = match records.get(&plan.name) {
                Some(rec) => (rec.outcome, rec.duration_ms, rec.message.clone()),
                None if *filtered => ("filtered", 0, None),
                None if *ignored => ("ignored", 0, plan.unsupported.clone()),
                None => ("not-run", 0, None),
            };
            *counts.entry(outcome).or_default() += 1;
            r.cases.push(json!({
                "number": plan.case.number,
                "name": plan.case.name,
                "trial": plan.name,
                "section": plan.case.section.as_str(),
                "role": match plan.role { Role::Case => "case", Role::Check => "check" },
                "capability": plan.case.feature.map(|f| f.capability),
                "outcome": outcome,
                "duration_ms": duration_ms,
                "message": message,
            }));
        }
        let count = |k: &str| counts.get(k).copied().unwrap_or(0);
        r.totals = json!({
            "passed": count("passed"),
            "failed": count("failed"),
            "ignored": count("ignored"),
            "filtered": count("filtered"),
            "not_run": count("not-run"),
            "executed": count("passed") + count("failed"),
        });
        r
    }
}

fn write_results(report: &Report, partial: bool) {
    write_json(
        &results_path(&report.backend, partial),
        report,
        "conformance",
    );
}

/// Writes `value` as pretty JSON to `path` (folders made), saying where as `what`; a
/// failure is reported, never fatal: the run's outcome is its exit code.
pub(crate) fn write_json(path: &std::path::Path, value: &impl serde::Serialize, what: &str) {
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
            std::fs::write(path, text + "\n")
        });
    match written {
        Ok(()) => println!("{what} results: {}", path.display()),
        Err(e) => eprintln!("{what}: cannot write {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_is_planned_and_features_get_a_check() {
        let none = Capabilities::default();
        let plans = plan(Some(none), |_| true);
        assert_eq!(plans.len(), 91 + 6);
        let ignored: Vec<_> = plans.iter().filter_map(|p| p.unsupported.clone()).collect();
        assert_eq!(
            ignored,
            vec![
                "unsupported:init",
                "unsupported:resource_limits",
                "unsupported:userns_keep_id",
                "unsupported:tty_exec",
                "unsupported:resource_limits",
                "unsupported:attach_stdin"
            ]
        );
        assert!(plans
            .iter()
            .filter(|p| p.role == Role::Check)
            .all(|p| p.unsupported.is_none()));
        let all = Capabilities::oci_engine()
            .with_userns_keep_id(true)
            .with_attach_stdin(true);
        assert!(plan(Some(all), |_| true)
            .iter()
            .all(|p| p.unsupported.is_none()));
    }
}

#[cfg(test)]
mod census_tests {
    use super::*;

    #[test]
    fn only_kinds_that_grew_are_leaks() {
        let before = BTreeMap::from([("snapshots".to_string(), 3), ("leases".to_string(), 1)]);
        let after = BTreeMap::from([
            ("snapshots".to_string(), 3),
            ("leases".to_string(), 0),
            ("tasks".to_string(), 2),
        ]);
        assert_eq!(
            grown(&before, &after),
            ["2 tasks more than before the run (0 → 2)"]
        );
    }
}
