//! The leak checks after each part: exec processes (`ps` inside the containers that still
//! exist), the session's containers and volumes (`list` after `cleanup`), containerd's own
//! objects and FIFO folders, panics (in the caller), open file descriptors and live tokio
//! tasks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use container::exec::DEFAULT_KILL_GRACE;
use container::{BackendKind, CleanupScope, ContainerManager};
use serde::Serialize;

use crate::ctx::{env_or, Ctx, DEFAULT_CONTAINERD_NAMESPACE, SLACK};
use crate::failure::describe;
use crate::support::{eventually, sh};

/// The main process of every container the harness makes ([`crate::support::sleeper`]).
pub(crate) const MAIN_CMD: &str = "sleep 3600";

/// Tasks an HTTP client's connection pool may add besides one per connection (hyper's
/// idle-connection reaper, started with the first idle connection).
const POOL_TASKS: usize = 2;

/// Where the containerd backend keeps a namespace's FIFO folders and its log folders
/// (one per container).
const CONTAINERD_RUN_ROOT: &str = "/run/container-rs/containerd";
const CONTAINERD_DATA_ROOT: &str = "/var/lib/container-rs/containerd";
/// Where containerd (state `/run/containerd`, as `cargo xtask engines up` runs it) keeps
/// the runc shim's bundle of each task, per namespace.
const SHIM_BUNDLES: &str = "/run/containerd/io.containerd.runtime.v2.task";

/// How long leftovers of a drop or a timeout may take to go: the kill grace (TERM, then
/// KILL) plus the suite's slack.
pub(crate) fn settle_time() -> Duration {
    DEFAULT_KILL_GRACE + SLACK
}

/// The figures the checks measured, for the results.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Figures {
    /// Containers of the session that existed when the body ended.
    containers_before_cleanup: usize,
    /// Of those, the running ones whose processes were checked with `ps`.
    containers_checked_with_ps: usize,
    /// Volumes of the session that existed when the body ended.
    volumes_before_cleanup: usize,
    /// What `cleanup(Session)` removed.
    cleanup_removed_containers: usize,
    cleanup_removed_volumes: usize,
    /// Open file descriptors before the manager was connected, and after it was dropped.
    fds_before: usize,
    fds_after: usize,
    /// Live tokio tasks before the manager was connected, and after it was dropped.
    tasks_before: usize,
    tasks_after: usize,
    /// Live tokio tasks with the manager: after connecting, and after cleanup.
    tasks_with_manager_start: usize,
    tasks_with_manager_after_cleanup: usize,
    /// Open sockets (engine connections, pooled) at the same two points.
    sockets_with_manager_start: usize,
    sockets_with_manager_after_cleanup: usize,
    /// Other open descriptors (files, FIFOs, pipes) at the same two points.
    other_fds_with_manager_start: usize,
    other_fds_with_manager_after_cleanup: usize,
    /// containerd: objects in the namespace by kind, before the body and after cleanup.
    containerd: Option<BTreeMap<String, [usize; 2]>>,
    /// How long the checks took.
    checks_ms: u128,
}

/// Open descriptors of this process: fd number → what it points at.
/// A descriptor closed between the listing and its `readlink` (a pooled connection the
/// pool drops, a blocking thread's file) is not open any more and is left out: counting
/// it made the checks flaky (CI once saw `10 → ?`).
fn open_fds() -> BTreeMap<String, String> {
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| {
                    let target = std::fs::read_link(e.path()).ok()?;
                    Some((
                        e.file_name().to_string_lossy().into_owned(),
                        target.display().to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The open descriptors once `settled` holds for them, or the last look after
/// [`settle_time`]: the verdict is taken on the same sample the wait ended on, so a
/// descriptor that opens and closes in between cannot fail a settled check.
async fn settled_fds(
    settled: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, String> {
    let deadline = Instant::now() + settle_time();
    loop {
        let fds = open_fds();
        if settled(&fds) || Instant::now() >= deadline {
            return fds;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn sockets(fds: &BTreeMap<String, String>) -> usize {
    fds.values().filter(|t| t.starts_with("socket:")).count()
}

/// The descriptors that are not sockets (files, FIFOs, pipes, eventfds, …).
fn non_sockets(fds: BTreeMap<String, String>) -> BTreeMap<String, String> {
    fds.into_iter()
        .filter(|(_, t)| !t.starts_with("socket:"))
        .collect()
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// What the process held before the part's manager existed.
#[derive(Debug)]
pub(crate) struct Baseline {
    fds: BTreeMap<String, String>,
    tasks: usize,
}

impl Baseline {
    /// Takes the baseline. A child process is spawned first, so that tokio's process
    /// and signal plumbing (made once, kept for the process's life) is in it.
    pub(crate) async fn take() -> Baseline {
        let _ = tokio::process::Command::new("true").status().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        Baseline {
            fds: open_fds(),
            tasks: alive_tasks(),
        }
    }
}

/// The checks of one part: started once the manager is connected, finished after the
/// body.
#[derive(Debug)]
pub(crate) struct Probe {
    baseline: Baseline,
    tasks_start: usize,
    sockets_start: usize,
    others_start: BTreeMap<String, String>,
    containerd: Option<Census>,
}

impl Probe {
    pub(crate) async fn start(ctx: &Ctx, baseline: Baseline) -> Probe {
        let containerd = match ctx.kind() {
            BackendKind::Containerd => Some(Census::take(ctx).await),
            _ => None,
        };
        Probe {
            baseline,
            tasks_start: alive_tasks(),
            sockets_start: sockets(&open_fds()),
            others_start: non_sockets(open_fds()),
            containerd,
        }
    }

    /// Every check; consumes the run's context so that the manager is dropped before
    /// descriptors and tasks are counted. Returns the leaks found and the figures.
    pub(crate) async fn finish(&mut self, ctx: Ctx) -> (Vec<String>, Figures) {
        let started = Instant::now();
        let mut leaks = Vec::new();
        let mut f = Figures::default();
        let m = ctx.manager();
        let selector = m.ownership().selector(CleanupScope::Session);
        // What the engine was still doing for requests given up on lands first.
        tokio::time::sleep(Duration::from_secs(1)).await;

        match m.list(&selector).await {
            Ok(list) => {
                f.containers_before_cleanup = list.len();
                for c in list.iter().filter(|c| c.state.is_running()) {
                    f.containers_checked_with_ps += 1;
                    leaks.extend(stray_processes(m, &c.id, &c.name).await);
                }
            }
            Err(e) => leaks.push(format!(
                "cannot list the session's containers: {}",
                describe(&e)
            )),
        }
        if let Ok(v) = m.list_volumes(&selector).await {
            f.volumes_before_cleanup = v.len();
        }

        match m.cleanup(CleanupScope::Session).await {
            Ok(r) => {
                f.cleanup_removed_containers = r.containers.len();
                f.cleanup_removed_volumes = r.volumes.len();
            }
            Err(e) => leaks.push(format!("cleanup(Session) failed: {}", describe(&e))),
        }
        // A create given up on that the engine or the library finishes late shows now.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut late = Vec::new();
        match m.list(&selector).await {
            Ok(list) => late.extend(list.into_iter().map(|c| {
                format!(
                    "container {} ({}, {:?}) of the session after cleanup",
                    c.name, c.id, c.state
                )
            })),
            Err(e) => late.push(format!("cannot list after cleanup: {}", describe(&e))),
        }
        match m.list_volumes(&selector).await {
            Ok(list) => late.extend(
                list.into_iter()
                    .map(|v| format!("volume {} of the session after cleanup", v.name)),
            ),
            Err(e) => late.push(format!(
                "cannot list volumes after cleanup: {}",
                describe(&e)
            )),
        }
        if !late.is_empty() {
            // Leave nothing behind for the next run, but report it.
            let _ = m.cleanup(CleanupScope::Session).await;
            leaks.extend(late);
        }

        if let Some(before) = &self.containerd {
            let mut after = Census::take(&ctx).await;
            let mut grown = before.grown(&after);
            let deadline = Instant::now() + settle_time();
            while !grown.is_empty() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(500)).await;
                after = Census::take(&ctx).await;
                grown = before.grown(&after);
            }
            leaks.extend(grown);
            f.containerd = Some(before.figures(&after));
        }

        // With the manager: tasks back to where they were, give or take one per engine
        // connection the pool keeps (a connection is one task) and the pool's own
        // housekeeping ([`POOL_TASKS`]). A task left per operation would be hundreds.
        f.tasks_with_manager_start = self.tasks_start;
        f.sockets_with_manager_start = self.sockets_start;
        let (tasks_start, sockets_start) = (self.tasks_start, self.sockets_start);
        let settled = eventually(settle_time(), Duration::from_millis(200), || async {
            let pooled = sockets(&open_fds()).saturating_sub(sockets_start);
            alive_tasks() <= tasks_start + pooled + POOL_TASKS
        })
        .await;
        f.tasks_with_manager_after_cleanup = alive_tasks();
        f.sockets_with_manager_after_cleanup = sockets(&open_fds());
        if !settled {
            leaks.push(format!(
                "{} tokio tasks alive {:?} after cleanup, {} when the manager was new \
                 (engine sockets {} then, {} now)",
                f.tasks_with_manager_after_cleanup,
                settle_time(),
                tasks_start,
                sockets_start,
                f.sockets_with_manager_after_cleanup
            ));
        }

        // With the manager: no descriptor but its pooled connections beyond the start
        // (a FIFO, file or pipe of a dropped exec or copy would show here).
        let others_start = self.others_start.len();
        let others = non_sockets(settled_fds(|fds| fds.len() - sockets(fds) <= others_start).await);
        f.other_fds_with_manager_start = others_start;
        f.other_fds_with_manager_after_cleanup = others.len();
        if others.len() > others_start {
            leaks.push(format!(
                "{} descriptors other than sockets open after cleanup, {others_start} when \
                 the manager was new; new: {}",
                others.len(),
                describe_new(&self.others_start, &others)
            ));
        }

        // Without the manager: descriptors and tasks as before it was connected.
        drop(ctx);
        let (fds_before, tasks_before) = (self.baseline.fds.len(), self.baseline.tasks);
        let _ = eventually(settle_time(), Duration::from_millis(200), || async {
            alive_tasks() <= tasks_before
        })
        .await;
        let fds = settled_fds(|fds| fds.len() <= fds_before).await;
        f.fds_before = fds_before;
        f.fds_after = fds.len();
        f.tasks_before = tasks_before;
        f.tasks_after = alive_tasks();
        if fds.len() > fds_before {
            leaks.push(format!(
                "{} file descriptors open after the manager was dropped, {fds_before} before \
                 it was connected; new: {}",
                fds.len(),
                describe_new(&self.baseline.fds, &fds)
            ));
        }
        if f.tasks_after > tasks_before {
            leaks.push(format!(
                "{} tokio tasks alive {:?} after the manager was dropped, {tasks_before} \
                 before it was connected",
                f.tasks_after,
                settle_time()
            ));
        }
        f.checks_ms = started.elapsed().as_millis();
        (leaks, f)
    }
}

/// The descriptors of `now` that were not open (to the same target) in `before`.
fn describe_new(before: &BTreeMap<String, String>, now: &BTreeMap<String, String>) -> String {
    now.iter()
        .filter(|(fd, target)| before.get(*fd) != Some(target))
        .map(|(fd, target)| format!("{fd} → {target}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `ps` the checks run: PID, state and full command line of every process.
pub(crate) const PS: &str = "ps -o pid,stat,args";

/// Processes in [`PS`] output that should not be there: anything but PID 1 (the main
/// process, or the init in front of it), the main process [`MAIN_CMD`] and the `ps`
/// itself. Zombies (`Z`) are not counted: they have ended, and only wait for a PID 1
/// that reaps (a container without an init never does).
pub(crate) fn strays(ps: &str) -> Vec<String> {
    ps.lines()
        .skip(1)
        .filter(|l| {
            let mut cols = l.split_whitespace();
            let (pid, stat) = (cols.next(), cols.next().unwrap_or_default());
            let args = cols.collect::<Vec<_>>().join(" ");
            !(pid == Some("1") || stat.starts_with('Z') || args == MAIN_CMD || args.contains(PS))
        })
        .map(str::to_string)
        .collect()
}

/// Polls `ps` in a running container until only its main process is left; what is still
/// there after [`settle_time`] is a leak.
async fn stray_processes(m: &dyn ContainerManager, id: &str, name: &str) -> Vec<String> {
    let started = Instant::now();
    loop {
        match sh(m, id, PS).await {
            Ok(ps) => {
                let left = strays(&ps);
                if left.is_empty() {
                    return Vec::new();
                }
                if started.elapsed() > settle_time() {
                    return vec![format!(
                        "exec processes left in container {name} {:?} after the body: {}",
                        settle_time(),
                        left.join(" | ")
                    )];
                }
            }
            Err(f) => {
                // Stopped or removed meanwhile: nothing can run in it.
                if let Ok(info) = m.inspect(id).await {
                    if info.state.is_running() {
                        return vec![format!("cannot run ps in container {name}: {f}")];
                    }
                }
                return Vec::new();
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What containerd holds in the namespace (by `ctr`, not through the library), and the
/// backend's FIFO folders.
#[derive(Debug, Default)]
struct Census {
    kinds: BTreeMap<String, BTreeSet<String>>,
    errors: Vec<String>,
}

impl Census {
    const KINDS: [&'static str; 4] = ["tasks", "containers", "snapshots", "leases"];

    async fn take(ctx: &Ctx) -> Census {
        let mut census = Census::default();
        let cli = ctx.cli();
        for kind in Self::KINDS {
            // `snapshots ls` has no `-q`: the first column of its table, header skipped.
            let quiet = kind != "snapshots";
            let args: Vec<&str> = if quiet {
                vec![kind, "ls", "-q"]
            } else {
                vec![kind, "ls"]
            };
            match cli.run(&args).await {
                Ok(out) => {
                    let ids = out
                        .lines()
                        .skip(usize::from(!quiet))
                        .filter_map(|l| l.split_whitespace().next())
                        .map(str::to_string)
                        .collect();
                    census.kinds.insert(kind.to_string(), ids);
                }
                Err(e) => census.errors.push(format!("ctr {kind} ls: {e}")),
            }
        }
        let namespace = env_or("CONTAINERD_NAMESPACE", DEFAULT_CONTAINERD_NAMESPACE);
        let folders = |path: PathBuf| -> BTreeSet<String> {
            std::fs::read_dir(path)
                .map(|d| {
                    d.filter_map(Result::ok)
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        let run = PathBuf::from(CONTAINERD_RUN_ROOT).join(&namespace);
        let logs = PathBuf::from(CONTAINERD_DATA_ROOT)
            .join(&namespace)
            .join("logs");
        let bundles = PathBuf::from(SHIM_BUNDLES).join(&namespace);
        census.kinds.insert("fifo folders".into(), folders(run));
        census.kinds.insert("log folders".into(), folders(logs));
        census.kinds.insert("shim bundles".into(), folders(bundles));
        census
            .kinds
            .insert("shim processes".into(), shims(&namespace));
        census
    }

    /// What is in `after` and was not in `self`, described.
    fn grown(&self, after: &Census) -> Vec<String> {
        let mut out: Vec<String> = after.errors.clone();
        for (kind, ids) in &after.kinds {
            let before = self.kinds.get(kind);
            let new: Vec<&String> = ids
                .iter()
                .filter(|id| !before.is_some_and(|b| b.contains(*id)))
                .collect();
            if !new.is_empty() {
                out.push(format!(
                    "containerd {kind} left after cleanup: {}",
                    new.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        out
    }

    fn figures(&self, after: &Census) -> BTreeMap<String, [usize; 2]> {
        after
            .kinds
            .iter()
            .map(|(kind, ids)| {
                let before = self.kinds.get(kind).map_or(0, BTreeSet::len);
                (kind.clone(), [before, ids.len()])
            })
            .collect()
    }
}

/// The task ids of the runc shims running for `namespace` (host processes, from
/// `/proc/<pid>/cmdline`: `containerd-shim-runc-v2 -namespace <ns> -id <id> …`).
fn shims(namespace: &str) -> BTreeSet<String> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    procs
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter_map(|raw| {
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let value = |flag: &str| {
                args.iter()
                    .position(|a| a == flag)
                    .and_then(|i| args.get(i + 1))
            };
            let is_shim = args.first().is_some_and(|a| a.contains("containerd-shim"));
            (is_shim && value("-namespace").is_some_and(|n| n == namespace))
                .then(|| value("-id").cloned())
                .flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_main_process_and_ps_are_expected() {
        let ps = "PID   STAT COMMAND\n    1 S    /sbin/docker-init -- sleep 3600\n    \
                  7 S    sleep 3600\n   40 S    sleep 4711\n   41 Z    [sleep]\n   \
                  52 R    {ps} sh -c ps -o pid,stat,args\n";
        assert_eq!(strays(ps), ["   40 S    sleep 4711"]);
        let clean = "PID   STAT COMMAND\n    1 S    sleep 3600\n   52 R    ps -o pid,stat,args\n";
        assert!(strays(clean).is_empty());
    }
}
