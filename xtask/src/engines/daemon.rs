//! Daemons started by hand: detached, in a process group of their own, stdout and
//! stderr appended to a log file, pid file in the state folder.
//!
//! A daemon is "managed" when xtask's pid file names a live process with the
//! daemon's process name; a zombie or a reused pid counts as dead. A dead daemon's
//! leftovers (pid files, sockets) are removed before the next start.

use std::{
    fs::{self, OpenOptions},
    io::{ErrorKind, Write},
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{anyhow, Context};
use xshell::{cmd, Shell};

use super::{config, search_path, service::Service, StateDir};

/// How long a daemon may take to answer after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for a daemon to go away after SIGKILL.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of the log shown when a daemon does not start.
const LOG_TAIL_LINES: usize = 20;

/// Starts `service` unless it runs already, then waits until it answers.
pub(super) fn ensure_running(sh: &Shell, state: &StateDir, service: Service) -> anyhow::Result<()> {
    let name = service.name();
    let endpoint = service.endpoint();
    if let Some(pid) = managed_pid(state, service) {
        wait_ready(sh, state, service, pid, None)?;
        println!("{name:<10} running (pid {pid}) at {endpoint}");
        if config::changed_since(state, service, &state.pid_file(service)) {
            println!(
                "{:<10} its configuration changed since it started: `cargo xtask engines down && cargo xtask engines up` applies it",
                ""
            );
        }
        return Ok(());
    }
    if service.check(sh).is_ok() {
        println!("{name:<10} answers at {endpoint}, not started by xtask: left as it is");
        return Ok(());
    }
    clear_leftovers(state, service, true)?;
    if let Some(dir) = service
        .socket()
        .and_then(|socket| Path::new(socket).parent())
    {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let started = Instant::now();
    let mut child = spawn(sh, state, service)?;
    let pid = child.id();
    let pid_file = state.pid_file(service);
    fs::write(&pid_file, format!("{pid}\n"))
        .with_context(|| format!("writing {}", pid_file.display()))?;
    wait_ready(sh, state, service, pid, Some(&mut child))?;
    println!(
        "{name:<10} started (pid {pid}) in {:.1} s at {endpoint}; log {}",
        started.elapsed().as_secs_f64(),
        state.log_file(service).display()
    );
    Ok(())
}

/// Stops `service` if xtask started it: SIGTERM, then SIGKILL after its grace.
pub(super) fn stop(sh: &Shell, state: &StateDir, service: Service) -> anyhow::Result<()> {
    let name = service.name();
    let Some(pid) = managed_pid(state, service) else {
        if service.check(sh).is_ok() {
            println!(
                "{name:<10} answers at {}, not started by xtask: not stopped",
                service.endpoint()
            );
        } else {
            clear_leftovers(state, service, true)?;
            unmount_leftovers(sh, state, service);
            println!("{name:<10} not running");
        }
        return Ok(());
    };
    let started = Instant::now();
    signal(sh, pid, "TERM");
    if !wait_exit(service, pid, service.stop_grace()) {
        println!(
            "{name:<10} still running {} s after SIGTERM: SIGKILL",
            service.stop_grace().as_secs()
        );
        signal(sh, pid, "KILL");
        if !wait_exit(service, pid, KILL_TIMEOUT) {
            anyhow::bail!("{name} (pid {pid}) survived SIGKILL");
        }
    }
    clear_leftovers(state, service, false)?;
    unmount_leftovers(sh, state, service);
    println!(
        "{name:<10} stopped (pid {pid}) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Kills `service`'s daemon with SIGKILL, as a crash would (no shutdown of its own), and
/// waits until it is gone. Fails unless xtask started it.
pub(super) fn crash(sh: &Shell, state: &StateDir, service: Service) -> anyhow::Result<()> {
    let name = service.name();
    let Some(pid) = managed_pid(state, service) else {
        anyhow::bail!("{name} was not started by xtask: not crashed");
    };
    signal(sh, pid, "KILL");
    if !wait_exit(service, pid, KILL_TIMEOUT) {
        anyhow::bail!("{name} (pid {pid}) survived SIGKILL");
    }
    clear_leftovers(state, service, false)?;
    println!("{name:<10} killed (pid {pid})");
    Ok(())
}

/// Prints one status line: running or not, pid, version, endpoint.
pub(super) fn print_status(sh: &Shell, state: &StateDir, service: Service) {
    let name = service.name();
    let endpoint = service.endpoint();
    let pid = managed_pid(state, service);
    let (running, version) = match service.check(sh) {
        Ok(()) => (
            "running",
            service
                .version(sh)
                .unwrap_or_else(|err| format!("version unknown: {err:#}")),
        ),
        Err(_) if pid.is_some() => ("starting", "-".to_owned()),
        Err(_) => ("stopped", "-".to_owned()),
    };
    let owner = match (pid, running) {
        (Some(pid), _) => format!("pid {pid}"),
        (None, "running") => "not started by xtask".to_owned(),
        (None, _) => "-".to_owned(),
    };
    println!("{name:<10} {running:<8} {owner:<20} {version:<34} {endpoint}");
}

/// The pid in xtask's pid file for `service`, if that process is alive and is the
/// daemon.
fn managed_pid(state: &StateDir, service: Service) -> Option<u32> {
    let text = fs::read_to_string(state.pid_file(service)).ok()?;
    let pid = text.trim().parse().ok()?;
    is_alive(pid, service.process_name()).then_some(pid)
}

/// Whether process `pid` exists, is not a zombie, and is named `process_name`.
fn is_alive(pid: u32, process_name: &str) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    parse_stat(&stat)
        .is_some_and(|(name, state)| name == process_name && !matches!(state, 'Z' | 'X' | 'x'))
}

/// Name and state letter from the text of `/proc/<pid>/stat`: `pid (name) S ...`.
/// The name may itself contain spaces and parentheses.
fn parse_stat(stat: &str) -> Option<(&str, char)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?;
    let state = stat.get(close + 1..)?.trim_start().chars().next()?;
    Some((name, state))
}

/// Removes xtask's pid file and whatever a dead instance of `service` left behind;
/// with `report`, prints what it finds of the latter.
fn clear_leftovers(state: &StateDir, service: Service, report: bool) -> anyhow::Result<()> {
    remove_file(&state.pid_file(service))?;
    for file in service.leftovers(state) {
        if remove_file(&file)? && report {
            println!("{:<10} removed leftover {}", service.name(), file.display());
        }
    }
    Ok(())
}

/// Unmounts the bind mounts a stopped `service` left on its data folders, so that
/// the state folder can be deleted. `umount` without `-l` refuses a mount with
/// mounts below it (containers still running), which then stays, with a note.
fn unmount_leftovers(sh: &Shell, state: &StateDir, service: Service) {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for dir in service.self_mounts() {
        let path = state.join(dir);
        // Field 5 of each line is the mount point, with spaces written as \040.
        let escaped = path.display().to_string().replace(' ', "\\040");
        let mounted = mountinfo
            .lines()
            .any(|line| line.split(' ').nth(4) == Some(escaped.as_str()));
        if !mounted {
            continue;
        }
        match cmd!(sh, "umount {path}").quiet().ignore_stderr().run() {
            Ok(()) => println!("{:<10} unmounted {}", service.name(), path.display()),
            Err(_) => println!(
                "{:<10} left {} mounted: busy (containers still running?)",
                service.name(),
                path.display()
            ),
        }
    }
}

/// Removes `file`; returns whether there was one.
fn remove_file(file: &Path) -> anyhow::Result<bool> {
    match fs::remove_file(file) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err).with_context(|| format!("removing {}", file.display())),
    }
}

/// Starts the daemon detached: working directory the state folder (not the
/// checkout), stdin from /dev/null, output appended to its log, its own process
/// group (a Ctrl-C meant for xtask does not reach it).
fn spawn(sh: &Shell, state: &StateDir, service: Service) -> anyhow::Result<Child> {
    let log_path = state.log_file(service);
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let cmd = service.command(sh, state)?.env("PATH", search_path());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    writeln!(
        log,
        "--- cargo xtask engines up, unix time {now}: {cmd} ---"
    )?;
    let mut command = Command::from(cmd);
    command
        .current_dir(state.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    command
        .spawn()
        .with_context(|| format!("starting {} (log {})", service.name(), log_path.display()))
}

/// Waits until `service` answers; fails when the process dies or after
/// [`START_TIMEOUT`], naming the log and showing its last lines.
fn wait_ready(
    sh: &Shell,
    state: &StateDir,
    service: Service,
    pid: u32,
    mut child: Option<&mut Child>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let last_error = match service.check(sh) {
            Ok(()) => return Ok(()),
            Err(err) => err,
        };
        if let Some(child) = child.as_deref_mut() {
            if let Some(status) = child.try_wait()? {
                return Err(startup_failure(
                    state,
                    service,
                    &format!("exited while starting ({status})"),
                ));
            }
        } else if !is_alive(pid, service.process_name()) {
            return Err(startup_failure(
                state,
                service,
                &format!("(pid {pid}) died"),
            ));
        }
        if Instant::now() >= deadline {
            return Err(startup_failure(
                state,
                service,
                &format!(
                    "(pid {pid}) did not answer within {} s; last error: {last_error:#}",
                    START_TIMEOUT.as_secs()
                ),
            ));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The error for a daemon that did not start, with the tail of its log.
fn startup_failure(state: &StateDir, service: Service, what: &str) -> anyhow::Error {
    let log = state.log_file(service);
    let text = fs::read_to_string(&log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
    anyhow!(
        "{} {what}\nlog: {}\nlast {LOG_TAIL_LINES} lines of the log:\n{tail}",
        service.name(),
        log.display()
    )
}

/// Sends `signal` (`TERM`, `KILL`) to `pid`; a process that is already gone is fine.
fn signal(sh: &Shell, pid: u32, signal: &str) {
    let pid = pid.to_string();
    // The outcome is read from /proc afterwards: kill fails only for a process that
    // exited in the meantime.
    let _ = cmd!(sh, "kill -s {signal} {pid}")
        .quiet()
        .ignore_status()
        .ignore_stderr()
        .run();
}

/// Waits up to `timeout` for `pid` to exit; returns whether it did.
fn wait_exit(service: Service, pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while is_alive(pid, service.process_name()) {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(100));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat() {
        assert_eq!(
            parse_stat("42 (dockerd) S 1 42 42 0 -1"),
            Some(("dockerd", 'S'))
        );
        assert_eq!(parse_stat("7 (a (b) c) Z 1"), Some(("a (b) c", 'Z')));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_alive() {
        let pid = std::process::id();
        let stat = fs::read_to_string("/proc/self/stat").expect("Linux");
        let (name, _) = parse_stat(&stat).expect("valid stat");
        assert!(is_alive(pid, name));
        assert!(!is_alive(pid, "not-this-process"));
    }
}
