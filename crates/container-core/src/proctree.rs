//! Finding and signalling an exec's processes on this host, for engines without an
//! exec-kill API (Docker, Podman; see `docs/adr/0003-exec-kill.md`).
//!
//! Only processes proven to be the exec's are ever signalled:
//! - candidates come from the container's own cgroup (`cgroup.procs`, v1 or v2), found
//!   from the container's main process, never from a scan of the host;
//! - the container's main process is never a candidate;
//! - the exec is the tree under the PID the engine reports for it, within the cgroup;
//! - each process is pinned with a pidfd (`pidfd_open`) before its facts are read and
//!   signalled through it (`pidfd_send_signal`), so a PID reused by another process is
//!   never signalled. On a kernel without pidfds the PID and its start time are checked
//!   right before `kill`, which narrows the reuse window to microseconds.
//!
//! Everything here reads `/proc` and `/sys/fs/cgroup` synchronously: call it from
//! `spawn_blocking`. The parsing is the `procfs` crate's; pidfds are `rustix`'s.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use procfs::process::Process;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags};

use crate::signal::Signal;

/// A host process pinned for signalling: PID, start time, and a pidfd where the kernel
/// has them.
pub struct Pinned {
    pid: i32,
    start: u64,
    fd: Option<OwnedFd>,
}

impl fmt::Debug for Pinned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pinned")
            .field("pid", &self.pid)
            .field("start", &self.start)
            .field("pidfd", &self.fd.is_some())
            .finish()
    }
}

impl Pinned {
    /// Pins `pid`; `None` when it is gone (or not ours to see).
    fn open(pid: i32) -> Option<(Pinned, i32)> {
        let fd = match Pid::from_raw(pid).map(|p| pidfd_open(p, PidfdFlags::empty())) {
            Some(Ok(fd)) => Some(fd),
            // No pidfds on this kernel: fall back to PID + start time.
            Some(Err(Errno::NOSYS)) => None,
            _ => return None,
        };
        let stat = Process::new(pid).ok()?.stat().ok()?;
        let pinned = Pinned {
            pid,
            start: stat.starttime,
            fd,
        };
        // The facts read above are this process's only if it had not exited before the
        // read (a PID is reused only after its process is gone).
        (stat.state != 'Z' && pinned.alive()).then_some((pinned, stat.ppid))
    }

    /// The PID.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether the process still runs (a zombie does not).
    pub fn alive(&self) -> bool {
        match &self.fd {
            // A pidfd becomes readable when its process exits.
            Some(fd) => {
                let mut fds = [PollFd::new(fd, PollFlags::IN)];
                let now = Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                matches!(poll(&mut fds, Some(&now)), Ok(0))
            }
            None => Process::new(self.pid)
                .and_then(|p| p.stat())
                .is_ok_and(|s| s.starttime == self.start && s.state != 'Z'),
        }
    }

    /// Sends `signal`; `Err(EPERM)` when the host refuses.
    fn signal(&self, signal: Signal) -> Result<(), Errno> {
        if !self.alive() {
            return Ok(());
        }
        let named = rustix::process::Signal::from_named_raw(signal.number());
        let sent = match (&self.fd, named) {
            (Some(fd), Some(sig)) => pidfd_send_signal(fd, sig),
            // No pidfd, or a signal rustix has no name for: plain kill right after the
            // liveness check above.
            _ => nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::try_from(signal.number()).ok(),
            )
            .map_err(|e| Errno::from_raw_os_error(e as i32)),
        };
        match sent {
            Err(Errno::SRCH) => Ok(()),
            other => other,
        }
    }
}

/// The cgroup directory of a container on this host, found from its main process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCgroup {
    dir: PathBuf,
    main_pid: i32,
}

impl ContainerCgroup {
    /// The cgroup of `main_pid` (the container's main process, as the engine reports it)
    /// whose `cgroup.procs` lists it; `None` when that process is not visible from here
    /// (a remote engine) or no cgroup directory of it can be read.
    pub fn of_main_process(main_pid: i32) -> Option<ContainerCgroup> {
        let groups = Process::new(main_pid).ok()?.cgroups().ok()?;
        let mounts = Process::myself().ok()?.mountinfo().ok()?;
        // The unified (v2) hierarchy first, then the v1 ones: any directory that lists
        // the main process holds exactly the container's processes.
        let mut groups = groups.0;
        groups.sort_by_key(|g| g.hierarchy != 0);
        groups.into_iter().find_map(|g| {
            let mount = mounts.0.iter().find(|m| {
                if g.hierarchy == 0 {
                    m.fs_type == "cgroup2"
                } else {
                    m.fs_type == "cgroup" && g.controllers.iter().all(|c| has_controller(m, c))
                }
            })?;
            let rel = Path::new(&g.pathname)
                .strip_prefix(&mount.root)
                .ok()?
                .to_path_buf();
            let dir = mount.mount_point.join(rel);
            let cg = ContainerCgroup { dir, main_pid };
            cg.members().contains(&main_pid).then_some(cg)
        })
    }

    /// The directory of `main_pid`'s cgroup in the v1 hierarchy of `controller`
    /// (`memory`, ...); `None` on cgroup v2 (one hierarchy, see
    /// [`of_main_process`](Self::of_main_process)) or when it is not visible here.
    pub fn v1_controller_dir(main_pid: i32, controller: &str) -> Option<PathBuf> {
        let groups = Process::new(main_pid).ok()?.cgroups().ok()?;
        let mounts = Process::myself().ok()?.mountinfo().ok()?;
        let group = groups
            .0
            .into_iter()
            .find(|g| g.hierarchy != 0 && g.controllers.iter().any(|c| c == controller))?;
        let mount = mounts
            .0
            .iter()
            .find(|m| m.fs_type == "cgroup" && has_controller(m, controller))?;
        let rel = Path::new(&group.pathname).strip_prefix(&mount.root).ok()?;
        Some(mount.mount_point.join(rel))
    }

    /// The container's main process, as the engine reported it.
    pub fn main_pid(&self) -> i32 {
        self.main_pid
    }

    /// The cgroup directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The PIDs `cgroup.procs` lists.
    fn members(&self) -> HashSet<i32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// The exec's processes: `exec_pid` and its descendants, among the cgroup's members
    /// only, never the container's main process, each pinned. Empty when `exec_pid` is
    /// not (or no longer) in the container.
    pub fn exec_tree(&self, exec_pid: i32) -> Vec<Pinned> {
        self.exec_processes(Some(exec_pid), None)
    }

    /// Every process one exec started, each pinned: the tree under `root` (its first
    /// process, while it runs) plus every member whose environment carries `cookie`
    /// (`KEY`, `VALUE`: the mark the exec was started with, inherited by every
    /// descendant, daemonized ones included), among the cgroup's members only and never
    /// the container's main process.
    pub fn exec_processes(&self, root: Option<i32>, cookie: Option<(&str, &str)>) -> Vec<Pinned> {
        let root = root.filter(|r| *r != self.main_pid);
        let before = self.members();
        let root = root.filter(|r| before.contains(r));
        if root.is_none() && cookie.is_none() {
            return Vec::new();
        }
        let pinned: Vec<(Pinned, i32, bool)> = before
            .iter()
            .filter(|p| **p != self.main_pid)
            .filter_map(|p| {
                let (pinned, ppid) = Pinned::open(*p)?;
                let marked = cookie.is_some_and(|(key, value)| carries(*p, key, value));
                Some((pinned, ppid, marked))
            })
            .collect();
        // Still in the container and alive after the reads: the facts are the pinned
        // process's own.
        let after = self.members();
        let mut by_pid: HashMap<i32, (Pinned, i32, bool)> = pinned
            .into_iter()
            .filter(|(p, _, _)| after.contains(&p.pid) && p.alive())
            .map(|entry| (entry.0.pid, entry))
            .collect();
        let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
        for (pid, (_, ppid, _)) in &by_pid {
            children.entry(*ppid).or_default().push(*pid);
        }
        let mut found = Vec::new();
        let mut queue: Vec<i32> = root.into_iter().collect();
        while let Some(pid) = queue.pop() {
            if let Some((p, _, _)) = by_pid.remove(&pid) {
                found.push(p);
                queue.extend(children.get(&pid).into_iter().flatten().copied());
            }
        }
        found.extend(
            by_pid
                .into_values()
                .filter(|(_, _, marked)| *marked)
                .map(|(p, _, _)| p),
        );
        found
    }
}

/// Whether process `pid`'s environment holds `key=value` exactly. A process that cannot
/// be read (gone, or not ours to read) does not.
fn carries(pid: i32, key: &str, value: &str) -> bool {
    Process::new(pid)
        .and_then(|p| p.environ())
        .is_ok_and(|env| {
            env.get(std::ffi::OsStr::new(key))
                .is_some_and(|v| v.as_os_str() == std::ffi::OsStr::new(value))
        })
}

/// Whether the v1 cgroup mount `m` carries `controller` (`memory`, or `name=systemd`).
fn has_controller(m: &procfs::process::MountInfo, controller: &str) -> bool {
    match controller.split_once('=') {
        Some((key, value)) => m
            .super_options
            .get(key)
            .is_some_and(|v| v.as_deref() == Some(value)),
        None => m.super_options.contains_key(controller),
    }
}

/// The processes of one exec signalled so far, pinned, so that later rounds (SIGKILL
/// after the grace, "is anything still running?") also cover children that were
/// re-parented to the container's init after their parent died.
#[derive(Debug, Default)]
pub struct Signalled(Mutex<Vec<Pinned>>);

impl Signalled {
    /// Whether any remembered process still runs.
    pub fn any_alive(&self) -> bool {
        let seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        seen.iter().any(Pinned::alive)
    }

    /// Sends `signal` to the remembered processes that still run plus `found`, and
    /// remembers them all. Returns the PIDs the host refused to signal (EPERM).
    pub fn signal(&self, found: Vec<Pinned>, signal: Signal) -> Vec<i32> {
        let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        seen.retain(Pinned::alive);
        for p in found {
            if !seen.iter().any(|s| s.pid == p.pid && s.start == p.start) {
                seen.push(p);
            }
        }
        let mut refused = Vec::new();
        for p in seen.iter() {
            match p.signal(signal) {
                Ok(()) => {}
                Err(Errno::PERM) => refused.push(p.pid),
                Err(e) => tracing::debug!(pid = p.pid, error = %e, "signal failed"),
            }
        }
        refused
    }
}

/// The argv of a `kill` that, run inside the container as root, sends `signal` to the
/// host PIDs `pids` under their PIDs in the container's PID namespace (the one of its
/// main process `main_pid`, read from `NSpid`); `None` when none of them is visible.
/// A process in a PID namespace nested inside the container (bwrap, unshare, nested
/// podman) is named by its PID at the container's level, never by its innermost one
/// (which would name another process of the container, PID 1 included). Used when the
/// host may not signal the processes itself (EPERM).
pub fn kill_argv(pids: &[i32], main_pid: i32, signal: Signal) -> Option<Vec<String>> {
    let level = ns_pids(main_pid)?.len();
    let inner: Vec<String> = pids
        .iter()
        .filter_map(|pid| ns_pids(*pid)?.get(level.checked_sub(1)?).copied())
        .map(|p| p.to_string())
        .collect();
    if inner.is_empty() {
        return None;
    }
    let mut argv = vec![
        "kill".to_string(),
        "-s".to_string(),
        signal.name().trim_start_matches("SIG").to_string(),
    ];
    argv.extend(inner);
    Some(argv)
}

/// A host process's PIDs, from the host's PID namespace inward (`NSpid`).
fn ns_pids(pid: i32) -> Option<Vec<i32>> {
    Process::new(pid).ok()?.status().ok()?.nspid
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper() -> std::process::Child {
        std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep")
    }

    #[test]
    fn a_pinned_process_is_signalled_and_then_dead() {
        let mut child = sleeper();
        let pid = i32::try_from(child.id()).expect("pid");
        let (p, ppid) = Pinned::open(pid).expect("pin");
        assert_eq!(ppid, std::process::id() as i32);
        assert!(p.alive());
        let signalled = Signalled::default();
        assert!(signalled.signal(vec![p], Signal::TERM).is_empty());
        let status = child.wait().expect("wait");
        assert!(!status.success());
        assert!(!signalled.any_alive(), "an exited process is not alive");
    }

    #[test]
    fn a_reaped_pid_is_never_signalled_again() {
        let mut child = sleeper();
        let pid = i32::try_from(child.id()).expect("pid");
        let (p, _) = Pinned::open(pid).expect("pin");
        child.kill().expect("kill");
        child.wait().expect("reap");
        assert!(!p.alive());
        // Whatever has the PID now is not the pinned process: nothing is sent.
        assert_eq!(p.signal(Signal::KILL), Ok(()));
    }

    #[test]
    fn an_exec_tree_is_the_tree_within_the_cgroup_and_never_the_main_process() {
        // This test process stands in for a container's main process, its children for
        // an exec: they share its cgroup.
        let me = std::process::id() as i32;
        let cg = ContainerCgroup::of_main_process(me).expect("this process's cgroup");
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30; wait"])
            .spawn()
            .expect("spawn sh");
        let root = i32::try_from(shell.id()).expect("pid");
        let mut tree = Vec::new();
        for _ in 0..100 {
            tree = cg.exec_tree(root);
            if tree.len() == 3 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let mut pids: Vec<i32> = tree.iter().map(Pinned::pid).collect();
        pids.sort_unstable();
        assert_eq!(pids.len(), 3, "sh and its two sleeps: {pids:?}");
        assert!(pids.contains(&root));
        assert!(
            !pids.contains(&me),
            "the main process is never part of an exec"
        );
        assert!(cg.exec_tree(me).is_empty());
        Signalled::default().signal(tree, Signal::KILL);
        shell.wait().expect("reap");
    }

    #[test]
    fn kill_argv_uses_namespace_pids() {
        let me = std::process::id() as i32;
        let argv = kill_argv(&[me], me, Signal::TERM).expect("visible");
        assert_eq!(&argv[..3], &["kill", "-s", "TERM"]);
        assert_eq!(argv.len(), 4);
        assert!(kill_argv(&[], me, Signal::TERM).is_none());
    }

    #[test]
    fn kill_argv_names_a_nested_namespace_process_at_the_containers_level() {
        // This process stands in for the container's main process; `unshare` puts a
        // `sleep` into a PID namespace nested below it, where it is PID 1.
        let me = std::process::id() as i32;
        let mut nested = std::process::Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child", "sleep", "30"])
            .spawn()
            .expect("spawn unshare");
        let outer = i32::try_from(nested.id()).expect("pid");
        let mut sleeper = None;
        for _ in 0..100 {
            sleeper = procfs::process::all_processes().ok().and_then(|all| {
                all.flatten()
                    .find(|p| p.stat().is_ok_and(|s| s.ppid == outer))
                    .map(|p| p.pid)
            });
            if sleeper.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let sleeper = sleeper.expect("the nested sleep");
        let nspid = ns_pids(sleeper).expect("NSpid");
        assert_eq!(nspid.len(), ns_pids(me).expect("NSpid").len() + 1);
        assert_eq!(nspid.last(), Some(&1), "PID 1 of its own namespace");
        let argv = kill_argv(&[sleeper], me, Signal::TERM).expect("visible");
        assert_eq!(
            argv[3],
            sleeper.to_string(),
            "named at the main process's level"
        );
        let _ = nested.kill();
        let _ = nested.wait();
    }

    #[test]
    fn a_marked_process_is_found_after_it_left_the_tree() {
        // A daemon: double-forked, re-parented away from the exec's tree, but it keeps
        // the mark in its environment.
        let me = std::process::id() as i32;
        let cg = ContainerCgroup::of_main_process(me).expect("this process's cgroup");
        let value = uuid::Uuid::new_v4().simple().to_string();
        let status = std::process::Command::new("sh")
            .args(["-c", "setsid sh -c 'sleep 31 &' </dev/null >/dev/null 2>&1"])
            .env("CONTAINER_RS_TEST_MARK", &value)
            .status()
            .expect("spawn");
        assert!(status.success());
        let mut found = Vec::new();
        for _ in 0..100 {
            found = cg.exec_processes(None, Some(("CONTAINER_RS_TEST_MARK", &value)));
            if !found.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(found.len(), 1, "the daemonized sleep: {found:?}");
        let signalled = Signalled::default();
        signalled.signal(found, Signal::KILL);
        for _ in 0..100 {
            if !signalled.any_alive() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(!signalled.any_alive());
        let other = cg.exec_processes(None, Some(("CONTAINER_RS_TEST_MARK", "another")));
        assert!(other.is_empty(), "nothing carries another mark");
    }
}
