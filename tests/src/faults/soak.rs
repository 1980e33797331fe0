//! The cancellation soak: operations started and dropped at a random point (raced with
//! `tokio::select!` against a random short sleep from the seeded RNG). An operation that
//! finishes first must succeed; one that is dropped must leave nothing the checks find.
//!
//! Two running containers (`hosts`) take the execs and copies; the lifecycle operations
//! work on a small pool of containers made by the soak itself, whose state after a drop
//! is unknown (and every later operation on them must cope: start, stop and a forced
//! remove are idempotent). Each exec runs one of three scripts that write to stdout and
//! stderr for about a second: a plain loop, one that ignores SIGTERM, and one with a
//! background child (`sleep 4711`) that it kills itself when it ends normally; a drop
//! must end all of it (checked by `ps` after the soak).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use container::{ContainerManager, ExecEvent, ExecSpec, PullOptions, VolumeConfig};
use futures::StreamExt;

use super::{unique_name, Body, Options, Rng};
use crate::ctx::Ctx;
use crate::failure::describe;
use crate::support::{sh, sleeper};

/// Execs and copies run in this many long-lived containers.
const HOSTS: usize = 2;
/// The most lifecycle containers (and volumes) alive at once.
const POOL: usize = 8;
/// Size of the file copied out of and into the hosts.
const BLOB: u64 = 4 << 20;
/// A drop that takes longer than this is reported (case 36 allows the same).
const SLOW_DROP: Duration = Duration::from_millis(500);
/// The grace `stop` gives (PID 1 `sleep` ignores SIGTERM, so stop takes all of it).
const STOP_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Start,
    ExecBuffered,
    ExecStreamed,
    Stop,
    Remove,
    Pull,
    CopyFrom,
    CopyTo,
    VolumeCreate,
    VolumeRemove,
}

const OPS: [Op; 11] = [
    Op::Create,
    Op::Start,
    Op::ExecBuffered,
    Op::ExecStreamed,
    Op::Stop,
    Op::Remove,
    Op::Pull,
    Op::CopyFrom,
    Op::CopyTo,
    Op::VolumeCreate,
    Op::VolumeRemove,
];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Start => "start",
            Op::ExecBuffered => "exec",
            Op::ExecStreamed => "exec_stream",
            Op::Stop => "stop",
            Op::Remove => "remove",
            Op::Pull => "pull",
            Op::CopyFrom => "copy_from",
            Op::CopyTo => "copy_to",
            Op::VolumeCreate => "volume_create",
            Op::VolumeRemove => "volume_remove",
        }
    }

    /// A first guess of how long the operation takes on a loaded 2-core machine; the
    /// soak then learns it ([`Typical`]).
    fn guess(self) -> Duration {
        Duration::from_millis(match self {
            Op::Create => 100,
            Op::Start => 300,
            Op::ExecBuffered | Op::ExecStreamed => 1000,
            Op::Stop => 1000,
            Op::Remove => 100,
            Op::Pull => 50,
            Op::CopyFrom | Op::CopyTo => 150,
            Op::VolumeCreate | Op::VolumeRemove => 10,
        })
    }
}

/// How long each operation typically takes on this engine, learned as the soak goes:
/// the drop comes after a uniform random delay in `0..=1.5 × typical`, so that about two
/// thirds of the operations are dropped, at any point of their course, and the rest
/// finish (and are checked). The seed fixes the choices and the random fractions; the
/// learned durations, and so the delays, follow the engine's timing.
#[derive(Debug)]
struct Typical([f64; OPS.len()]);

impl Typical {
    fn new() -> Typical {
        Typical(OPS.map(|op| op.guess().as_secs_f64()))
    }

    fn delay(&self, op: Op, rng: &mut Rng) -> Duration {
        let fraction = rng.below(1001) as f64 / 1000.0;
        Duration::from_secs_f64(self.0[op as usize] * 1.5 * fraction)
    }

    /// `op` finished after `took`.
    fn finished(&mut self, op: Op, took: Duration) {
        let t = &mut self.0[op as usize];
        *t = 0.75 * *t + 0.25 * took.as_secs_f64();
    }

    /// `op` was dropped after `delay`: it takes at least that long.
    fn dropped(&mut self, op: Op, delay: Duration) {
        let t = &mut self.0[op as usize];
        *t = t.max(delay.as_secs_f64());
    }

    fn millis(&self, ops: &[Op]) -> std::collections::BTreeMap<&'static str, u64> {
        ops.iter()
            .map(|op| (op.name(), (self.0[*op as usize] * 1000.0) as u64))
            .collect()
    }
}

/// One of the three exec scripts: about a second of output on both streams; plain, deaf
/// to SIGTERM, or with a background child that only a normal end kills.
fn script(rng: &mut Rng) -> String {
    const LOOP: &str = "i=0; while [ $i -lt 40 ]; do echo out$i; echo err$i >&2; \
                        i=$((i+1)); sleep 0.02; done";
    match rng.below(3) {
        0 => LOOP.to_string(),
        1 => format!("trap '' TERM; {LOOP}"),
        _ => format!("sleep 4711 & c=$!; {LOOP}; kill $c"),
    }
}

/// How an operation raced against its drop ended.
enum Raced<T> {
    Finished(container::Result<T>, Duration),
    Dropped { drop_took: Duration },
}

/// Runs `op` until it finishes or `delay` passes; in the second case drops it (and times
/// the drop itself).
async fn race<T, F>(op: F, delay: Duration) -> Raced<T>
where
    F: Future<Output = container::Result<T>>,
{
    let started = Instant::now();
    let mut op = Box::pin(op);
    let result = tokio::select! {
        biased;
        r = &mut op => Some(r),
        () = tokio::time::sleep(delay) => None,
    };
    match result {
        Some(r) => Raced::Finished(r, started.elapsed()),
        None => {
            let dropping = Instant::now();
            drop(op);
            Raced::Dropped {
                drop_took: dropping.elapsed(),
            }
        }
    }
}

/// Containers by what the soak knows of their state.
#[derive(Debug, Default)]
struct Pools {
    created: Vec<String>,
    running: Vec<String>,
    stopped: Vec<String>,
    /// After a dropped start or stop: running or not.
    unknown: Vec<String>,
    volumes: Vec<String>,
}

impl Pools {
    fn containers(&self) -> usize {
        self.created.len() + self.running.len() + self.stopped.len() + self.unknown.len()
    }

    /// Takes a random container from the pools `from` (by index: 0 created, 1 running,
    /// 2 stopped, 3 unknown).
    fn take(&mut self, rng: &mut Rng, from: &[usize]) -> Option<String> {
        let total: usize = from.iter().map(|&i| self.pool(i).len()).sum();
        if total == 0 {
            return None;
        }
        let mut n = rng.index(total);
        for &i in from {
            let pool = self.pool(i);
            if n < pool.len() {
                return Some(pool.swap_remove(n));
            }
            n -= pool.len();
        }
        None
    }

    fn pool(&mut self, i: usize) -> &mut Vec<String> {
        match i {
            0 => &mut self.created,
            1 => &mut self.running,
            2 => &mut self.stopped,
            _ => &mut self.unknown,
        }
    }
}

const CREATED: usize = 0;
const RUNNING: usize = 1;
const STOPPED: usize = 2;
const UNKNOWN: usize = 3;

/// Picks the next operation: uniform over `ops`, moved to one that can run when the
/// pick has nothing to work on or the pool is full.
fn pick(rng: &mut Rng, ops: &[Op], pools: &Pools) -> Op {
    let op = ops[rng.index(ops.len())];
    match op {
        Op::Create if pools.containers() >= POOL => Op::Remove,
        Op::Start if pools.created.is_empty() && pools.stopped.is_empty() => Op::Create,
        Op::Stop if pools.running.is_empty() && pools.unknown.is_empty() => Op::Create,
        Op::Remove if pools.containers() == 0 => Op::Create,
        Op::VolumeCreate if pools.volumes.len() >= POOL => Op::VolumeRemove,
        Op::VolumeRemove if pools.volumes.is_empty() => Op::VolumeCreate,
        other => other,
    }
}

/// The soak; see the module docs.
pub(crate) async fn run(ctx: &Ctx, options: &Options) -> Body {
    let mut body = Body::default();
    let m = ctx.manager();
    let mut rng = Rng::new(options.seed);
    let budget = Duration::from_secs(options.soak_secs);
    let ops: Vec<Op> = OPS
        .into_iter()
        .filter(|op| options.ops.is_empty() || options.ops.iter().any(|o| o == op.name()))
        .collect();
    if ops.len() < options.ops.len() {
        body.error(format!(
            "--ops {:?}: the soak's operations are {:?}",
            options.ops,
            OPS.map(Op::name)
        ));
        return body;
    }

    let tmp = match tempfile::tempdir() {
        Ok(t) => t,
        Err(e) => {
            body.error(format!("setup: no temporary folder: {e}"));
            return body;
        }
    };
    let input = tmp.path().join("input.bin");
    if let Err(e) = std::fs::write(&input, vec![0x5au8; BLOB as usize]) {
        body.error(format!("setup: cannot write {}: {e}", input.display()));
        return body;
    }
    let mut hosts = Vec::new();
    for h in 0..HOSTS {
        let name = unique_name(ctx, "soak-host", h as u64);
        let made = async {
            // An init as PID 1 where the backend has one, as a build container has
            // (cases 68-70): it reaps what the drops kill.
            let config = sleeper(ctx, &name).init(ctx.capabilities().init);
            let id = m.create(&config).await?;
            m.start(&id).await?;
            sh(
                m,
                &id,
                &format!("mkdir -p /data && head -c {BLOB} /dev/urandom > /data/blob"),
            )
            .await?;
            Ok::<_, crate::Failure>(id)
        };
        match made.await {
            Ok(id) => hosts.push(id),
            Err(f) => {
                body.error(format!("setup: exec host {name}: {f}"));
                return body;
            }
        }
    }

    let started = Instant::now();
    let mut pools = Pools::default();
    let mut typical = Typical::new();
    // What the soak did to each lifecycle container: shown with an error about it.
    let mut history = std::collections::BTreeMap::<String, Vec<String>>::new();
    let mut n = 0u64;
    while n < options.iterations {
        if started.elapsed() >= budget {
            body.cut_by_budget = true;
            break;
        }
        let op = pick(&mut rng, &ops, &pools);
        let delay = typical.delay(op, &mut rng);
        let host = hosts[rng.index(hosts.len())].clone();
        let exec_script = script(&mut rng);
        n += 1;
        body.ops.entry(op.name()).or_default().attempts += 1;
        // The lifecycle container the operation works on, for its history.
        let mut subject = None;
        let outcome = match op {
            Op::Create => {
                let name = unique_name(ctx, "soak", n);
                let config = sleeper(ctx, &name);
                settle(race(m.create(&config), delay).await, |id| {
                    subject = Some(id.clone());
                    pools.created.push(id);
                    Ok(())
                })
            }
            Op::Start => {
                let id = pools
                    .take(&mut rng, &[CREATED, STOPPED])
                    .unwrap_or_default();
                subject = Some(id.clone());
                let raced = race(m.start(&id), delay).await;
                let dropped = matches!(raced, Raced::Dropped { .. });
                let o = settle(raced, |()| Ok(()));
                place(&mut pools, id, dropped, &o, RUNNING);
                o
            }
            Op::Stop => {
                let id = pools
                    .take(&mut rng, &[RUNNING, UNKNOWN])
                    .unwrap_or_default();
                subject = Some(id.clone());
                let raced = race(m.stop(&id, Some(STOP_GRACE)), delay).await;
                let dropped = matches!(raced, Raced::Dropped { .. });
                let o = settle(raced, |()| Ok(()));
                place(&mut pools, id, dropped, &o, STOPPED);
                o
            }
            Op::Remove => {
                // Forgotten whatever happens: cleanup finds what a dropped remove left.
                let id = pools
                    .take(&mut rng, &[CREATED, RUNNING, STOPPED, UNKNOWN])
                    .unwrap_or_default();
                subject = Some(id.clone());
                settle(race(m.remove(&id, true), delay).await, |()| Ok(()))
            }
            Op::ExecBuffered => {
                let spec = ExecSpec::shell(exec_script.as_str());
                settle(race(m.exec(&host, &spec), delay).await, |out| {
                    exited_zero(out.exit_code, &out.stdout_lossy(), &out.stderr_lossy())
                })
            }
            Op::ExecStreamed => {
                let seen = AtomicU64::new(0);
                let spec = ExecSpec::shell(exec_script.as_str());
                let raced = race(read_stream(m, &host, &spec, &seen), delay).await;
                if matches!(raced, Raced::Dropped { .. }) && seen.load(Ordering::SeqCst) > 0 {
                    body.ops.entry(op.name()).or_default().dropped_mid_output += 1;
                }
                settle(raced, |code| exited_zero(code, "", ""))
            }
            Op::Pull => settle(
                race(m.pull(ctx.image(), &PullOptions::default()), delay).await,
                |()| Ok(()),
            ),
            Op::CopyFrom => {
                let dir = tmp.path().join(format!("out-{n}"));
                let o = match std::fs::create_dir(&dir) {
                    Ok(()) => settle(race(m.copy_from(&host, "/data", &dir), delay).await, |()| {
                        copied(&dir.join("data").join("blob"))
                    }),
                    Err(e) => Outcome::Failed(format!("cannot make {}: {e}", dir.display())),
                };
                let _ = std::fs::remove_dir_all(&dir);
                o
            }
            Op::CopyTo => settle(race(m.copy_to(&host, &input, "/tmp"), delay).await, |()| {
                Ok(())
            }),
            Op::VolumeCreate => {
                let name = unique_name(ctx, "soak-vol", n);
                let config = VolumeConfig::new(&name);
                settle(race(m.create_volume(&config), delay).await, |v| {
                    pools.volumes.push(v.name);
                    Ok(())
                })
            }
            Op::VolumeRemove => {
                let i = rng.index(pools.volumes.len());
                let name = pools.volumes.swap_remove(i);
                settle(race(m.remove_volume(&name, true), delay).await, |()| Ok(()))
            }
        };
        let mut past = String::new();
        if let Some(id) = subject {
            let h = history.entry(id).or_default();
            past = h.join(", ");
            h.push(format!("#{n} {} {}", op.name(), outcome.short(delay)));
        }
        let stats = body.ops.entry(op.name()).or_default();
        match outcome {
            Outcome::Ok(took) => {
                typical.finished(op, took);
                stats.finished(took, true);
            }
            Outcome::Dropped(drop_took) => {
                typical.dropped(op, delay);
                stats.dropped += 1;
                stats.max_drop_ms = stats.max_drop_ms.max(drop_took.as_millis() as u64);
                if drop_took > SLOW_DROP {
                    body.error(format!(
                        "operation {n} ({}, dropped after {delay:?}): the drop itself took \
                         {drop_took:?}",
                        op.name()
                    ));
                }
            }
            Outcome::Error(took, message) => {
                stats.finished(took, false);
                let past = if past.is_empty() {
                    String::new()
                } else {
                    format!(" [the container's history: {past}]")
                };
                body.error(format!(
                    "operation {n} ({}, drop planned after {delay:?}) failed after {took:?}: \
                     {message}{past}",
                    op.name()
                ));
            }
            Outcome::Failed(message) => {
                stats.errors += 1;
                body.error(format!("operation {n} ({}): {message}", op.name()));
            }
        }
    }
    body.iterations = n;
    body.loop_time = started.elapsed();
    body.typical_ms = typical.millis(&ops);
    body.history = history;
    body
}

/// What one soak operation came to.
enum Outcome {
    Ok(Duration),
    Dropped(Duration),
    Error(Duration, String),
    Failed(String),
}

impl Outcome {
    /// For a container's history: `ok 40ms`, `dropped after 12ms`, `error`.
    fn short(&self, delay: Duration) -> String {
        match self {
            Outcome::Ok(took) => format!("ok {}ms", took.as_millis()),
            Outcome::Dropped(_) => format!("dropped after {}ms", delay.as_millis()),
            Outcome::Error(..) | Outcome::Failed(_) => "error".to_string(),
        }
    }
}

/// Judges a raced operation: dropped, or finished and then checked by `check`.
fn settle<T>(raced: Raced<T>, check: impl FnOnce(T) -> Result<(), String>) -> Outcome {
    match raced {
        Raced::Dropped { drop_took } => Outcome::Dropped(drop_took),
        Raced::Finished(Ok(v), took) => match check(v) {
            Ok(()) => Outcome::Ok(took),
            Err(message) => Outcome::Error(took, message),
        },
        Raced::Finished(Err(e), took) => Outcome::Error(took, describe(&e)),
    }
}

/// Puts a container back into the pool its last operation left it in.
fn place(pools: &mut Pools, id: String, dropped: bool, outcome: &Outcome, done: usize) {
    if id.is_empty() {
        return;
    }
    let pool = match outcome {
        Outcome::Ok(_) if !dropped => done,
        _ => UNKNOWN,
    };
    pools.pool(pool).push(id);
}

fn exited_zero(code: i64, stdout: &str, stderr: &str) -> Result<(), String> {
    if code == 0 {
        Ok(())
    } else {
        Err(format!(
            "the exec exited {code}: stdout {stdout:?} stderr {stderr:?}"
        ))
    }
}

fn copied(blob: &Path) -> Result<(), String> {
    match std::fs::metadata(blob) {
        Ok(meta) if meta.len() == BLOB => Ok(()),
        Ok(meta) => Err(format!(
            "{} has {} bytes, not {BLOB}",
            blob.display(),
            meta.len()
        )),
        Err(e) => Err(format!(
            "{} after the copy: {e}",
            PathBuf::from(blob).display()
        )),
    }
}

/// Streams an exec to its end, counting output events in `seen`; returns the exit code.
async fn read_stream(
    m: &dyn ContainerManager,
    id: &str,
    spec: &ExecSpec,
    seen: &AtomicU64,
) -> container::Result<i64> {
    let mut stream = m.exec_stream(id, spec).await?;
    while let Some(event) = stream.next().await {
        match event? {
            ExecEvent::Output(_) => {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            ExecEvent::Exit(code) => return Ok(code),
        }
    }
    Err(container::Error::new(
        container::ErrorKind::Internal,
        "the exec stream ended without an exit event",
    ))
}
