//! Reading `/proc` to find and signal an exec's process tree, for backends whose engine
//! has no exec-kill API (Docker, Podman; see `docs/adr/0003-exec-kill.md`). Written by
//! hand: no maintained crate offers "descendants of a PID with start times" and the reads
//! are small. Linux only in effect: elsewhere `/proc` is missing and nothing is found.

use std::collections::HashMap;
use std::sync::Mutex;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal as NixSignal};
use nix::unistd::Pid;

use crate::signal::Signal;

/// A host process: PID and start time (to tell a reused PID apart).
pub type Proc = (i32, u64);

/// `(ppid, starttime)` of a PID from `/proc/<pid>/stat`; `None` for a zombie.
fn stat(pid: i32) -> Option<(i32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    // A zombie has already exited: nothing left to signal.
    if fields.first() == Some(&"Z") {
        return None;
    }
    Some((ppid, start))
}

/// True while the process still exists and is the same one (same start time).
pub fn alive((pid, start): Proc) -> bool {
    stat(pid).is_some_and(|(_, s)| s == start)
}

/// The command name (`/proc/<pid>/comm`) of `pid`'s parent, if both are visible.
pub fn parent_comm(pid: i32) -> Option<String> {
    let (ppid, _) = stat(pid)?;
    let comm = std::fs::read_to_string(format!("/proc/{ppid}/comm")).ok()?;
    Some(comm.trim_end().to_string())
}

/// Whether `pid` is visible here and its cgroup names `container_id` (so a reused PID
/// outside the container is never taken for one of the container's processes).
pub fn in_container(pid: i32, container_id: &str) -> bool {
    !container_id.is_empty()
        && std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .is_ok_and(|cgroup| cgroup.contains(container_id))
}

/// Every visible process whose environment holds exactly the entry `marker`
/// (`KEY=VALUE`), with start times. A backend that puts a unique marker into an exec's
/// environment finds the exec's processes this way even when the engine has lost track
/// of them (children inherit the environment). Needs permission to read
/// `/proc/<pid>/environ` (root, or the processes' own user).
pub fn with_env_marker(marker: &str) -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let needle = marker.as_bytes();
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|e| e == needle))
        })
        .filter_map(|pid| stat(pid).map(|(_, start)| (pid, start)))
        .collect()
}

/// `root` and all its descendants, if `root` is visible and its cgroup names
/// `container_id` (see [`in_container`]).
pub fn tree_in_container(root: i32, container_id: &str) -> Option<Vec<Proc>> {
    if !in_container(root, container_id) {
        return None;
    }
    tree(root)
}

/// `root` and all its descendants (ppid links from `/proc/*/stat`), with start times;
/// `None` if `root` is not visible. The caller checks that `root` is the right process.
pub fn tree(root: i32) -> Option<Vec<Proc>> {
    let (_, root_start) = stat(root)?;
    let mut children: HashMap<i32, Vec<Proc>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some((ppid, start)) = stat(pid) {
            children.entry(ppid).or_default().push((pid, start));
        }
    }
    let mut out = vec![(root, root_start)];
    let mut i = 0;
    while i < out.len() {
        if let Some(kids) = children.get(&out[i].0) {
            out.extend(kids.iter().copied());
        }
        i += 1;
    }
    Some(out)
}

/// Signals each process that is still alive; returns those the host refused (EPERM).
pub fn signal_all(procs: &[Proc], signal: Signal) -> Vec<Proc> {
    let Ok(sig) = NixSignal::try_from(signal.number()) else {
        return Vec::new();
    };
    let mut refused = Vec::new();
    for &p in procs {
        if !alive(p) {
            continue;
        }
        match kill(Pid::from_raw(p.0), sig) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(Errno::EPERM) => refused.push(p),
            Err(e) => tracing::debug!(pid = p.0, error = %e, "signal failed"),
        }
    }
    refused
}

/// The processes of one exec signalled so far, with start times, so that later rounds
/// (SIGKILL after the grace, "is anything still running?") also cover children that were
/// re-parented to the container's PID 1 after their parent died.
#[derive(Debug, Default)]
pub struct Signalled(Mutex<Vec<Proc>>);

impl Signalled {
    /// The remembered processes that still run (same PID and start time).
    pub fn alive(&self) -> Vec<Proc> {
        self.0
            .lock()
            .map(|s| s.iter().copied().filter(|p| alive(*p)).collect())
            .unwrap_or_default()
    }

    /// Sends `signal` to the remembered processes that still run plus `found`, and
    /// remembers them all. `None` when there was nothing to signal; otherwise the
    /// processes the host refused to signal (EPERM).
    pub fn signal(
        &self,
        found: impl IntoIterator<Item = Proc>,
        signal: Signal,
    ) -> Option<Vec<Proc>> {
        let mut procs = self.alive();
        for p in found {
            if !procs.contains(&p) {
                procs.push(p);
            }
        }
        if procs.is_empty() {
            return None;
        }
        let refused = signal_all(&procs, signal);
        if let Ok(mut seen) = self.0.lock() {
            *seen = procs;
        }
        Some(refused)
    }
}

/// The argv of a `kill` that, run inside the container as root, sends `signal` to `procs`
/// under their in-container PIDs (`NSpid`); `None` when none of them is visible. Backends
/// use it when the host may not signal the processes itself (EPERM).
pub fn kill_argv(procs: &[Proc], signal: Signal) -> Option<Vec<String>> {
    let pids: Vec<String> = procs
        .iter()
        .filter_map(|(pid, _)| ns_pid(*pid))
        .map(|p| p.to_string())
        .collect();
    if pids.is_empty() {
        return None;
    }
    let mut argv = vec![
        "kill".to_string(),
        "-s".to_string(),
        signal.name().trim_start_matches("SIG").to_string(),
    ];
    argv.extend(pids);
    Some(argv)
}

/// The PID of a host process inside its own (innermost) PID namespace.
pub fn ns_pid(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_child_by_its_environment_marker() {
        let marker = format!("CONTAINER_RS_TEST_MARKER={}", std::process::id());
        let (key, value) = marker.split_once('=').expect("marker");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env(key, value)
            .spawn()
            .expect("spawn sleep");
        // Between fork and exec the child still shows the parent's environment: poll.
        let mut found = Vec::new();
        for _ in 0..200 {
            found = with_env_marker(&marker);
            if !found.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            found.iter().map(|p| p.0).collect::<Vec<_>>(),
            [child.id() as i32]
        );
    }

    #[test]
    fn own_process_is_alive_and_has_an_ns_pid() {
        let me = std::process::id() as i32;
        let (_, start) = stat(me).expect("stat self");
        assert!(alive((me, start)));
        assert!(
            !alive((me, start + 1)),
            "a different start time is another process"
        );
        assert!(ns_pid(me).is_some());
        assert!(parent_comm(me).is_some());
    }

    #[test]
    fn processes_outside_the_container_are_not_touched() {
        let me = std::process::id() as i32;
        assert!(tree_in_container(me, "0123456789abcdef").is_none());
        assert!(tree_in_container(me, "").is_none());
        assert!(!in_container(me, ""));
    }

    #[test]
    fn tree_contains_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn sleep");
        let me = std::process::id() as i32;
        let pid = child.id() as i32;
        let t = tree(me).expect("own tree");
        assert!(t.iter().any(|(p, _)| *p == pid), "{t:?}");
        let _ = child.kill();
        let _ = child.wait();
    }
}
