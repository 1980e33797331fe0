//! OOM kills on cgroup v1, for engines that do not report them (Podman 4.3 leaves
//! `OOMKilled` false even for its own CLI; containerd has no such field; ADRs 0007, 0009).
//!
//! The truthful signal is the kernel's: the memory cgroup's OOM notification
//! (`cgroup.event_control` + an eventfd on `memory.oom_control`). It must be armed while
//! the container's cgroup exists and before the main process runs, so a container with a
//! memory limit is started in two steps: create (runc create: the cgroup exists, the
//! process waits), arm the watch, then start. A thread per such container waits on
//! the eventfd; the kernel signals it on an OOM in the cgroup and when the cgroup is
//! removed, which tells the two apart by whether the cgroup directory still exists.
//! On cgroup v2 the engine's own report is used as is.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use crate::proctree::ContainerCgroup;
use rustix::event::{eventfd, EventfdFlags};

/// The containers the kernel OOM-killed in, by the id they were armed with: per run of
/// the container, so a restart starts with a clean flag.
#[derive(Debug, Clone, Default)]
pub struct OomWatch {
    runs: Arc<Mutex<HashMap<String, Run>>>,
}

/// The current run of one container: its number, and whether the kernel OOM-killed in
/// it.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    number: u64,
    killed: bool,
}

impl OomWatch {
    /// Whether the kernel reported an OOM kill in container `id`'s current run.
    pub fn killed(&self, id: &str) -> bool {
        self.runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .is_some_and(|r| r.killed)
    }

    /// A new run of `id` begins: its flag is clear. Returns the run's number.
    fn begin(&self, id: &str) -> u64 {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        let run = runs.entry(id.to_string()).or_default();
        *run = Run {
            number: run.number + 1,
            killed: false,
        };
        run.number
    }

    /// The kernel reported an OOM kill in run `number` of `id`; a watch of an earlier
    /// run (woken late, by its cgroup's removal, while a new one already exists at the
    /// same path) changes nothing.
    fn record(&self, id: &str, number: u64) {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(run) = runs.get_mut(id).filter(|r| r.number == number) {
            run.killed = true;
        }
    }

    /// Arms the watch on container `id`, whose (waiting) main process is `pid`. Blocking:
    /// call it from `spawn_blocking`. `false` when there is nothing to arm (cgroup v2, not
    /// visible from here, not root).
    pub fn arm(&self, id: &str, pid: i32) -> bool {
        // A start is a new run, armed or not: an earlier run's OOM is not this one's.
        let number = self.begin(id);
        let Some(dir) = ContainerCgroup::v1_controller_dir(pid, "memory") else {
            return false;
        };
        match arm_at(&dir) {
            Ok(wait) => {
                let (watch, id) = (self.clone(), id.to_string());
                let spawned =
                    std::thread::Builder::new()
                        .name("oom-watch".into())
                        .spawn(move || {
                            if wait() {
                                tracing::debug!(container = %id, "kernel OOM notification");
                                watch.record(&id, number);
                            }
                        });
                spawned.is_ok()
            }
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "cannot arm the OOM watch");
                false
            }
        }
    }
}

/// Registers an eventfd for OOM notifications of the memory cgroup `dir`; the returned
/// function blocks until the kernel signals it and says whether it was an OOM (the
/// cgroup still exists) rather than the cgroup's removal.
fn arm_at(dir: &std::path::Path) -> std::io::Result<impl FnOnce() -> bool + Send + 'static> {
    let control = std::fs::File::open(dir.join("memory.oom_control"))?;
    let efd = eventfd(0, EventfdFlags::CLOEXEC)?;
    let mut event_control = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.event_control"))?;
    // One write: the kernel parses each write to this file as one registration.
    let registration = format!("{} {}", efd.as_raw_fd(), control.as_raw_fd());
    event_control.write_all(registration.as_bytes())?;
    let dir: PathBuf = dir.to_path_buf();
    Ok(move || {
        let mut buf = [0u8; 8];
        let woke = rustix::io::read(&efd, &mut buf).is_ok();
        drop(control);
        woke && dir.exists()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_clears_the_flag_and_a_late_watch_of_the_old_run_changes_nothing() {
        let watch = OomWatch::default();
        let first = watch.begin("c");
        watch.record("c", first);
        assert!(watch.killed("c"));
        let second = watch.begin("c");
        assert!(!watch.killed("c"), "a new run starts clean");
        watch.record("c", first);
        assert!(!watch.killed("c"), "the old run's watch is not this run's");
        watch.record("c", second);
        assert!(watch.killed("c"));
        assert!(!watch.killed("other"));
    }
}
