//! Main-process logs. containerd keeps none: the shim writes the process's stdout and
//! stderr into FIFOs, and a pump of this library copies each into a bounded, rotated file
//! set (`stdout.log`, `stdout.log.1` … `stdout.log.N`) under the backend's state root.
//!
//! A pump is a task of whichever program of this library holds its lock (`<stream>.lock`,
//! an `flock`), so two programs never copy the same stream. When that program exits the
//! lock goes with it; the shim keeps its own read end of the FIFO open, so the process's
//! output waits in the pipe (and then the process blocks on write) until the next program
//! that connects to the namespace takes the lock and resumes the copy: nothing is lost
//! while the process runs. Bytes go from the pipe to the file by `splice(2)`, never
//! through a buffer of ours, so a program that exits mid-copy loses none of them either.
//! ADR 0009 has the trade-off against a logging binary.

use std::collections::VecDeque;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use container_core::raw::OutputStream;
use container_core::{Error, ErrorKind, OutputChunk, Result, StreamKind};
use futures::future::BoxFuture;
use futures::StreamExt;
use nix::fcntl::{Flock, FlockArg, SpliceFFlags};
use std::os::fd::{AsFd, BorrowedFd};
use tokio::io::AsyncReadExt;

/// How large one log file grows before it is rotated.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// How many rotated files are kept beside the current one: a stream's logs take at most
/// `MAX_FILE_BYTES * (ROTATED_FILES + 1)` bytes.
pub const ROTATED_FILES: usize = 3;

/// How log files are bounded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub max_file: u64,
    pub rotated: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            max_file: MAX_FILE_BYTES,
            rotated: ROTATED_FILES,
        }
    }
}

/// The current log file of `stream` in a container's log folder.
pub(crate) fn log_path(dir: &Path, stream: StreamKind) -> PathBuf {
    dir.join(match stream {
        StreamKind::Stdout => "stdout.log",
        StreamKind::Stderr => "stderr.log",
    })
}

/// Rotated file `n` (1 is the newest) of the log `log`.
fn rotated(log: &Path, n: usize) -> PathBuf {
    let mut name = log.as_os_str().to_os_string();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Where a pump says it has copied everything the process wrote into `log`.
pub(crate) fn done_marker(log: &Path) -> PathBuf {
    log.with_extension("done")
}

/// Says that a logging binary writes the logs in `dir` (it holds its pid).
fn logger_marker(dir: &Path) -> PathBuf {
    dir.join("logger")
}

fn lock_path(log: &Path) -> PathBuf {
    log.with_extension("lock")
}

fn io_err(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |e| Error::new(ErrorKind::from_io(&e), what).with_source(e)
}

/// A pump that runs; dropping this handle leaves it running (detached).
#[derive(Debug)]
pub(crate) struct Pump(tokio::task::AbortHandle);

impl Pump {
    /// Stops the pump: its FIFO read end and its lock are released. For a pump whose
    /// task was never created (no writer will ever come).
    pub(crate) fn abort(&self) {
        self.0.abort();
    }
}

/// Starts copying `fifo` into `log` in a task of this program, unless another pump holds
/// the stream's lock (then `Ok(None)`). The FIFO's read end is open when this returns,
/// as the shim needs before it opens the write end.
pub(crate) fn start_pump(fifo: &Path, log: &Path, bounds: Bounds) -> Result<Option<Pump>> {
    let Some(lock) = lock_stream(log).map_err(io_err("cannot lock the log"))? else {
        return Ok(None);
    };
    // Non-blocking, polled by the runtime: the read end is open before the shim opens
    // the write end, and no readiness is reported until a writer has come.
    let reader = tokio::net::unix::pipe::OpenOptions::new()
        .open_receiver(fifo)
        .map_err(io_err("cannot open a FIFO"))?;
    let log = log.to_path_buf();
    let task = tokio::spawn(async move {
        let _lock = lock;
        let mut out = match Rotating::open(&log, bounds) {
            Ok(out) => out,
            Err(e) => {
                tracing::warn!(log = %log.display(), error = %e, "cannot open the log file");
                return;
            }
        };
        loop {
            if let Err(e) = reader.readable().await {
                tracing::warn!(log = %log.display(), error = %e, "polling the output failed");
                return;
            }
            // No await between taking bytes from the pipe and their landing in the file:
            // the kernel moves them (splice), so a program that exits or drops this task
            // at any point loses nothing; the next pump resumes where this one stopped.
            match reader.try_io(|| out.splice_from(reader.as_fd(), true)) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    tracing::warn!(log = %log.display(), error = %e, "copying the output failed");
                    return;
                }
            }
        }
        // Every writer closed its end and everything it wrote is in the files.
        let _ = std::fs::write(done_marker(&log), b"");
    });
    Ok(Some(Pump(task.abort_handle())))
}

/// The stream's pump lock, or `None` when another pump holds it.
fn lock_stream(log: &Path) -> std::io::Result<Option<Flock<std::fs::File>>> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path(log))?;
    match Flock::lock(lock, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(std::io::Error::from_raw_os_error(e as i32)),
    }
}

/// The environment variable that names a logging binary for containerd's `binary://`
/// log URI: an absolute path to a program that calls [`run_if_invoked`] first (as
/// `containerctl` does). When it is set, the shim starts that program beside the
/// container's process and it writes the log files, so output flows whether or not any
/// program of this library runs; when it is not, a pump of the program that started the
/// container does (see the module docs).
pub const LOGGER_ENV: &str = "CONTAINER_RS_CONTAINERD_LOGGER";
/// The mode of log files: the owner's (root's) alone.
const LOG_MODE: u32 = 0o600;
/// The argument that marks a logger invocation.
const LOGGER_FLAG: &str = "--container-rs-logger";

/// The `binary://` log URI for a container whose logs go to `dir`, when [`LOGGER_ENV`]
/// names an executable.
pub(crate) fn logger_uri(dir: &Path, bounds: Bounds) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::fs::PermissionsExt;
    let program = PathBuf::from(std::env::var_os(LOGGER_ENV)?);
    let executable = program.is_absolute()
        && std::fs::metadata(&program)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if !executable {
        tracing::warn!(program = %program.display(), "{LOGGER_ENV} is not an absolute path to an executable: logs are pumped by this program");
        return None;
    }
    // The shim runs it as root: only a program (and folders above it) that root owns
    // and nobody else may write is run.
    // A sticky folder (/tmp) may be writable by all: nobody else can replace root's
    // entries in it.
    let safe = program.ancestors().all(|p| {
        std::fs::metadata(p).is_ok_and(|m| {
            m.uid() == 0 && (m.mode() & 0o022 == 0 || (m.is_dir() && m.mode() & 0o1000 != 0))
        })
    });
    if !safe {
        tracing::warn!(program = %program.display(), "{LOGGER_ENV} names a program that is not root's alone (it or a folder above it is another user's, or group/other-writable): logs are pumped by this program");
        return None;
    }
    let mut uri = url::Url::parse("binary:///").ok()?;
    uri.set_path(&program.to_string_lossy());
    uri.query_pairs_mut()
        .append_pair(LOGGER_FLAG, "1")
        .append_pair("--dir", &dir.to_string_lossy())
        .append_pair("--max-file", &bounds.max_file.to_string())
        .append_pair("--rotated", &bounds.rotated.to_string());
    Some(uri.to_string())
}

/// Runs this process as containerd's logging binary when the shim started it as one
/// (its arguments carry the logger flag): copies the container's stdout (fd 3) and stderr
/// (fd 4) into the bounded, rotated log files until the process ends, and returns the
/// exit code; `None` for any other invocation. Call it first in `main`, before anything
/// else reads the arguments or starts threads.
pub fn run_if_invoked() -> Option<std::process::ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == LOGGER_FLAG) {
        return None;
    }
    Some(match logger_main(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("container-rs logger: {e}");
            std::process::ExitCode::FAILURE
        }
    })
}

fn logger_main(args: &[String]) -> std::io::Result<()> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_string());
    // containerd passes the URI's query as key, value pairs, in no fixed order.
    let (mut dir, mut bounds) = (None, Bounds::default());
    for pair in args.chunks(2) {
        match (pair[0].as_str(), pair.get(1)) {
            ("--dir", Some(v)) => dir = Some(PathBuf::from(v)),
            ("--max-file", Some(v)) => {
                bounds.max_file = v.parse().map_err(|_| invalid("--max-file"))?
            }
            ("--rotated", Some(v)) => {
                bounds.rotated = v.parse().map_err(|_| invalid("--rotated"))?
            }
            _ => {}
        }
    }
    let dir = dir.ok_or_else(|| invalid("no --dir"))?;
    // The shim sends SIGTERM when the task is deleted, right after closing the pipes:
    // caught (not fatal), so the copies run to the pipes' end and mark it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let _term = runtime.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    })?;
    std::fs::write(logger_marker(&dir), std::process::id().to_string())?;
    let mut workers = Vec::new();
    for (fd, kind) in [(3, StreamKind::Stdout), (4, StreamKind::Stderr)] {
        // The shim hands the pipes over as fds 3 and 4; reopened by path (no unsafe fd
        // adoption), then the inherited descriptors are closed.
        let pipe = std::fs::File::open(format!("/proc/self/fd/{fd}"))?;
        let _ = nix::unistd::close(fd);
        let log = log_path(&dir, kind);
        let lock = lock_stream(&log)?;
        let _ = std::fs::remove_file(done_marker(&log));
        let mut out = Rotating::open(&log, bounds)?;
        workers.push(std::thread::spawn(move || {
            let _lock = lock;
            loop {
                match out.splice_from(pipe.as_fd(), false) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        eprintln!("container-rs logger: {}: {e}", log.display());
                        return;
                    }
                }
            }
            let _ = std::fs::write(done_marker(&log), b"");
        }));
    }
    // Ready: the shim waits for fd 5 to close before it starts the container's process.
    let _ = nix::unistd::close(5);
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}

/// The most one splice moves.
const SPLICE_MAX: usize = 1 << 20;

/// A log file that is renamed to `.1` (and older ones shifted, the oldest dropped) once it
/// has reached its bound; written by splicing from the output's pipe.
struct Rotating {
    path: PathBuf,
    file: std::fs::File,
    written: u64,
    bounds: Bounds,
}

impl Rotating {
    fn open(path: &Path, bounds: Bounds) -> std::io::Result<Self> {
        // Not O_APPEND: splice refuses append-only files; the offset is ours. Never
        // through a symlink, and readable by root only (logs echo secrets).
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(LOG_MODE)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)?;
        let written = file.metadata()?.len();
        let mut log = Self {
            path: path.to_path_buf(),
            file,
            written,
            bounds,
        };
        // Already full (a bound lowered since, a crash between a write and its
        // rotation): rotated now, so the room left is never negative.
        if log.written >= log.bounds.max_file {
            log.rotate()?;
        }
        Ok(log)
    }

    /// Moves what `pipe` holds (up to the room left in the current file) into the file;
    /// `Ok(0)` when every writer of the pipe is gone, `WouldBlock` when it is empty.
    fn splice_from(&mut self, pipe: BorrowedFd<'_>, nonblocking: bool) -> std::io::Result<usize> {
        let room = usize::try_from(self.bounds.max_file.saturating_sub(self.written))
            .unwrap_or(SPLICE_MAX);
        let mut offset = i64::try_from(self.written).map_err(std::io::Error::other)?;
        let moved = nix::fcntl::splice(
            pipe,
            None,
            &self.file,
            Some(&mut offset),
            room.min(SPLICE_MAX),
            if nonblocking {
                SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE
            } else {
                SpliceFFlags::SPLICE_F_MOVE
            },
        )
        .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
        self.written += moved as u64;
        // Rotated once full, not before the next write: an empty pipe never rotates.
        if self.written >= self.bounds.max_file {
            self.rotate()?;
        }
        Ok(moved)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.bounds.rotated == 0 {
            self.file.set_len(0)?;
        } else {
            for n in (1..self.bounds.rotated).rev() {
                match std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
            self.file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(LOG_MODE)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&self.path)?;
        }
        self.written = 0;
        Ok(())
    }
}

/// Whether the process behind a log still runs (asked only while a follower waits).
pub(crate) type Running = Box<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

/// Reads a log from its oldest kept file on, in pieces of at most 64 KiB; with `follow`,
/// waits for more until the process has ended and its pump has copied everything (or,
/// 5 s after the end, when no pump is left to say so). A rotation while reading is
/// followed as `tail -F` does: the open file is read to its end, then the new one.
pub(crate) fn read(
    log: PathBuf,
    bounds: Bounds,
    kind: StreamKind,
    follow: bool,
    running: Running,
) -> OutputStream {
    struct State {
        log: PathBuf,
        /// Files still to read, oldest first; the last is the current file.
        files: VecDeque<tokio::fs::File>,
        /// Quiet polls after the exit that end a follow without a done marker.
        quiet: u32,
        ended: bool,
    }
    let open = async move {
        // 1 is the newest rotated file. A rotation under way leaves a gap in the numbers
        // (each rename moves a file up by one), never a change of order: read past gaps.
        let mut files = VecDeque::new();
        for n in 1..=bounds.rotated {
            if let Ok(file) = tokio::fs::File::open(rotated(&log, n)).await {
                files.push_front(file);
            }
        }
        if let Ok(file) = tokio::fs::File::open(&log).await {
            files.push_back(file);
        }
        State {
            quiet: quiet_polls(&log),
            log,
            files,
            ended: false,
        }
    };
    let running = std::sync::Arc::new(running);
    futures::stream::once(open)
        .flat_map(move |state| {
            let running = running.clone();
            futures::stream::unfold(state, move |mut st| {
                let running = running.clone();
                async move {
                    if st.ended {
                        return None;
                    }
                    let mut waited = 0u32;
                    let mut finishing = false;
                    loop {
                        if let Some(file) = st.files.front_mut() {
                            let mut buf = vec![0u8; 64 * 1024];
                            match file.read(&mut buf).await {
                                Ok(0) => {}
                                Ok(n) => {
                                    buf.truncate(n);
                                    let chunk = OutputChunk::new(kind, Bytes::from(buf));
                                    return Some((Ok(chunk), st));
                                }
                                Err(e) => {
                                    st.ended = true;
                                    return Some((Err(io_err("reading the log failed")(e)), st));
                                }
                            }
                            if st.files.len() > 1 {
                                st.files.pop_front();
                                continue;
                            }
                        }
                        // At the end of the current file: was it rotated meanwhile?
                        let newer = newer_files(&st.log, bounds, st.files.front()).await;
                        if !newer.is_empty() {
                            // The old file is read once more to its end (the writer may
                            // have written before it rotated), then dropped above.
                            st.files.extend(newer);
                            continue;
                        }
                        if !follow || finishing {
                            // `finishing`: this read came after the end was seen, so the
                            // pump's last bytes were already in the file: nothing is left.
                            return None;
                        }
                        let live = running().await;
                        let drained = done_marker(&st.log).exists()
                            || waited > st.quiet
                            || (!live && st.log.parent().is_some_and(logger_drained));
                        if !live && drained {
                            // The pump may have written its last bytes and the marker
                            // after the read above: read once more before ending.
                            finishing = true;
                            continue;
                        }
                        if !live {
                            waited += 1;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            })
        })
        .boxed()
}

/// How many quiet 100 ms polls after the process ended stand for "everything is in the
/// file" when no pump marked it. A logging binary marks its end only when the task is
/// deleted (the shim keeps the pipes' write ends until then), but it copies in the kernel
/// as the bytes arrive: 300 ms of quiet after the exit. A pump of a program that has gone
/// may never mark it: 5 s.
fn quiet_polls(log: &Path) -> u32 {
    match log.parent() {
        Some(dir) if logger_marker(dir).exists() => 3,
        _ => 50,
    }
}

/// Whether the logging binary that writes the logs in `dir` has taken every byte out of
/// its pipes: with the process gone, what the files hold is then all there will be. The
/// shim keeps the pipes' write ends until the task is deleted, so the logger sees no end
/// of them at the exit; their fill is read here instead (`FIONREAD` on each pipe the
/// logger holds, opened through `/proc` and never read). A splice into the file releases
/// the pipe's buffers only once they are written, so an empty pipe means the bytes are in
/// the file. The pid in the marker counts only while that process's arguments are a
/// logger's for `dir` (a pid reused by another program is not asked). `false` whenever
/// it cannot be told: no marker, the logger gone, its `/proc` not ours to read; the
/// quiet polls decide then.
fn logger_drained(dir: &Path) -> bool {
    let Some(pid) = std::fs::read_to_string(logger_marker(dir))
        .ok()
        .and_then(|pid| pid.trim().parse::<i32>().ok())
    else {
        return false;
    };
    let Ok(process) = procfs::process::Process::new(pid) else {
        return false;
    };
    let ours = process.cmdline().is_ok_and(|args| {
        args.iter().any(|a| a == LOGGER_FLAG)
            && args
                .windows(2)
                .any(|w| w[0] == "--dir" && Path::new(&w[1]) == dir)
    });
    if !ours {
        return false;
    }
    let Ok(fds) = process.fd() else {
        return false;
    };
    let mut pipes = 0;
    for fd in fds {
        let Ok(fd) = fd else { return false };
        if !matches!(fd.target, procfs::process::FDTarget::Pipe(_)) {
            continue;
        }
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(format!("/proc/{pid}/fd/{}", fd.fd));
        match opened.map(|pipe| rustix::io::ioctl_fionread(&pipe)) {
            Ok(Ok(0)) => pipes += 1,
            _ => return false,
        }
    }
    // The logger's pipes were seen, and none held a byte.
    pipes > 0
}

/// The files written after `current`, oldest first, once `current` has been rotated away
/// (empty while it is still the file at `log`): the rotated files newer than it, then the
/// current one. A file made and rotated away between two polls is read too; if `current`
/// fell out of the kept set, every kept file is newer.
async fn newer_files(
    log: &Path,
    bounds: Bounds,
    current: Option<&tokio::fs::File>,
) -> Vec<tokio::fs::File> {
    let Ok(now) = tokio::fs::metadata(log).await else {
        return Vec::new();
    };
    let identity = |m: &std::fs::Metadata| (m.dev(), m.ino());
    let current = match current {
        Some(file) => match file.metadata().await {
            Ok(m) => Some(identity(&m)),
            Err(_) => return Vec::new(),
        },
        None => None,
    };
    if current == Some(identity(&now)) {
        return Vec::new();
    }
    let mut newer = Vec::new();
    for n in 1..=bounds.rotated {
        let Ok(file) = tokio::fs::File::open(rotated(log, n)).await else {
            continue;
        };
        let Ok(meta) = file.metadata().await else {
            continue;
        };
        if Some(identity(&meta)) == current {
            break;
        }
        newer.push(file);
    }
    newer.reverse();
    if let Ok(file) = tokio::fs::File::open(log).await {
        newer.push(file);
    }
    newer
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    /// A stand-in logger: a shell whose arguments are a logger's for `dir`, holding a
    /// pipe on its stdin that it reads (`cat`) or leaves alone.
    fn fake_logger(dir: &Path, reads: bool) -> std::process::Child {
        let script = if reads {
            "cat >/dev/null; sleep 30"
        } else {
            "sleep 30; true"
        };
        let dir = dir.to_string_lossy();
        let child = std::process::Command::new("sh")
            .args(["-c", script, "sh", LOGGER_FLAG, "1", "--dir", &dir])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn the stand-in logger");
        std::fs::write(logger_marker(Path::new(&*dir)), child.id().to_string())
            .expect("write the marker");
        child
    }

    #[test]
    fn a_logger_is_drained_once_its_pipes_hold_nothing() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("tempdir");
        // Bytes the logger has not taken: not drained.
        let mut idle = fake_logger(dir.path(), false);
        idle.stdin
            .as_mut()
            .expect("stdin")
            .write_all(b"unread")
            .expect("write");
        assert!(!logger_drained(dir.path()), "bytes wait in the pipe");
        // The same process for another folder is not this folder's logger.
        let other = tempfile::tempdir().expect("tempdir");
        std::fs::write(logger_marker(other.path()), idle.id().to_string()).expect("marker");
        assert!(
            !logger_drained(other.path()),
            "another folder's logger tells nothing"
        );
        idle.kill().expect("kill");
        idle.wait().expect("wait");
        assert!(!logger_drained(dir.path()), "a gone logger tells nothing");
        // A logger that took every byte (its pipe still open for writing): drained.
        let mut reader = fake_logger(dir.path(), true);
        reader
            .stdin
            .as_mut()
            .expect("stdin")
            .write_all(b"read")
            .expect("write");
        let mut drained = false;
        for _ in 0..100 {
            drained = logger_drained(dir.path());
            if drained {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(drained, "cat took the bytes, the pipe is empty");
        // No marker: nothing can be told.
        std::fs::remove_file(logger_marker(dir.path())).expect("remove the marker");
        assert!(!logger_drained(dir.path()));
        reader.kill().expect("kill");
        reader.wait().expect("wait");
    }

    /// Feeds `data` through a pipe into `out`, as the pump does.
    fn feed(out: &mut Rotating, data: &[u8]) {
        use std::io::Write;
        let (r, w) = nix::unistd::pipe().expect("pipe");
        let mut w = std::fs::File::from(w);
        w.write_all(data).expect("write the pipe");
        drop(w);
        while out.splice_from(r.as_fd(), true).expect("splice") > 0 {}
    }

    fn never() -> Running {
        Box::new(|| Box::pin(async { false }))
    }

    async fn all(log: &Path) -> Vec<u8> {
        let chunks: Vec<OutputChunk> = read(
            log.to_path_buf(),
            Bounds {
                max_file: 10,
                rotated: 2,
            },
            StreamKind::Stdout,
            false,
            never(),
        )
        .try_collect()
        .await
        .expect("test step");
        chunks.iter().flat_map(|c| c.data.to_vec()).collect()
    }

    /// Fuzz target (bolero; see container-core's `fuzz` module): whatever a process
    /// writes, in whatever pieces, under whatever bounds, the reader gives back the
    /// newest bytes in order (a suffix of what was written), never more than the bounds
    /// keep, and everything while it fits in one file.
    #[test]
    fn fuzz_any_output_under_any_bounds_reads_back_in_order() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        bolero::check!()
            .with_type::<(u8, u8, Vec<Vec<u8>>)>()
            .for_each(|(max_file, rotated, pieces)| {
                let bounds = Bounds {
                    max_file: u64::from(*max_file % 64 + 1),
                    rotated: usize::from(*rotated % 4),
                };
                let dir = tempfile::tempdir().expect("tmp");
                let log = dir.path().join("stdout.log");
                let mut out = Rotating::open(&log, bounds).expect("open");
                for piece in pieces {
                    feed(&mut out, piece);
                }
                let written: Vec<u8> = pieces.concat();
                let chunks: Vec<OutputChunk> = rt
                    .block_on(
                        read(log.clone(), bounds, StreamKind::Stdout, false, never()).try_collect(),
                    )
                    .expect("read");
                let got: Vec<u8> = chunks.iter().flat_map(|c| c.data.to_vec()).collect();
                assert!(written.ends_with(&got), "not the newest bytes in order");
                let kept = bounds.max_file * (bounds.rotated as u64 + 1);
                assert!(got.len() as u64 <= kept, "{} bytes kept", got.len());
                if written.len() as u64 <= bounds.max_file {
                    assert_eq!(got, written);
                }
            });
    }

    #[test]
    fn a_file_already_over_the_bound_is_rotated_not_underflowed() {
        let dir = tempfile::tempdir().expect("test step");
        let log = dir.path().join("stdout.log");
        std::fs::write(&log, [b'o'; 25]).expect("an oversized log");
        let bounds = Bounds {
            max_file: 10,
            rotated: 2,
        };
        let mut out = Rotating::open(&log, bounds).expect("open");
        feed(&mut out, b"new");
        assert_eq!(std::fs::read(&log).expect("read"), b"new");
        assert_eq!(
            std::fs::metadata(rotated(&log, 1)).expect("rotated").len(),
            25,
            "the oversized file was rotated away whole"
        );
    }

    #[tokio::test]
    async fn rotation_keeps_the_newest_bytes_within_the_bound() {
        let dir = tempfile::tempdir().expect("test step");
        let log = dir.path().join("stdout.log");
        let bounds = Bounds {
            max_file: 10,
            rotated: 2,
        };
        let mut out = Rotating::open(&log, bounds).expect("test step");
        let data: Vec<u8> = (0..45u8).collect();
        for piece in data.chunks(7) {
            feed(&mut out, piece);
        }
        assert_eq!(std::fs::metadata(&log).expect("test step").len(), 5);
        assert_eq!(
            std::fs::metadata(rotated(&log, 1))
                .expect("test step")
                .len(),
            10
        );
        assert_eq!(
            std::fs::metadata(rotated(&log, 2))
                .expect("test step")
                .len(),
            10
        );
        assert!(!rotated(&log, 3).exists(), "more files than the bound");
        // The oldest 20 bytes are gone; the newest 25 read back in order.
        assert_eq!(all(&log).await, data[20..].to_vec());
    }

    #[tokio::test]
    async fn a_follower_reads_across_a_rotation() {
        let dir = tempfile::tempdir().expect("test step");
        let log = dir.path().join("stdout.log");
        let bounds = Bounds {
            max_file: 8,
            rotated: 1,
        };
        let mut out = Rotating::open(&log, bounds).expect("test step");
        feed(&mut out, b"abcdef");
        let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let live = running.clone();
        let follower = read(
            log.clone(),
            bounds,
            StreamKind::Stdout,
            true,
            Box::new(move || {
                let live = live.clone();
                Box::pin(async move { live.load(std::sync::atomic::Ordering::SeqCst) })
            }),
        );
        let reader = tokio::spawn(async move {
            let chunks: Vec<OutputChunk> = follower.try_collect().await.expect("test step");
            chunks
                .iter()
                .flat_map(|c| c.data.to_vec())
                .collect::<Vec<u8>>()
        });
        tokio::time::sleep(Duration::from_millis(250)).await;
        feed(&mut out, b"ghijklmnop");
        tokio::time::sleep(Duration::from_millis(250)).await;
        std::fs::write(done_marker(&log), b"").expect("test step");
        running.store(false, std::sync::atomic::Ordering::SeqCst);
        let got = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("the follower ended")
            .expect("test step");
        assert_eq!(got, b"abcdefghijklmnop".to_vec());
    }

    #[tokio::test]
    async fn a_follower_reads_files_made_and_rotated_away_between_its_polls() {
        let dir = tempfile::tempdir().expect("test step");
        let log = dir.path().join("stdout.log");
        let bounds = Bounds {
            max_file: 4,
            rotated: 3,
        };
        let mut out = Rotating::open(&log, bounds).expect("test step");
        feed(&mut out, b"ab");
        let live = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let running = live.clone();
        let mut follower = read(
            log.clone(),
            bounds,
            StreamKind::Stdout,
            true,
            Box::new(move || {
                let running = running.clone();
                Box::pin(async move { running.load(std::sync::atomic::Ordering::SeqCst) })
            }),
        );
        let first = follower.next().await.expect("a chunk").expect("read");
        assert_eq!(&first.data[..], b"ab");
        // Three files filled and rotated before the follower looks again.
        feed(&mut out, b"cdefghijkl");
        std::fs::write(done_marker(&log), b"").expect("test step");
        live.store(false, std::sync::atomic::Ordering::SeqCst);
        let rest: Vec<OutputChunk> =
            tokio::time::timeout(Duration::from_secs(5), follower.try_collect())
                .await
                .expect("the follower ended")
                .expect("read");
        let rest: Vec<u8> = rest.iter().flat_map(|c| c.data.to_vec()).collect();
        assert_eq!(rest, b"cdefghijkl".to_vec());
    }

    #[tokio::test]
    async fn a_second_pump_of_a_stream_is_refused() {
        let dir = tempfile::tempdir().expect("test step");
        let fifo = dir.path().join("stdout");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("test step");
        let log = dir.path().join("stdout.log");
        assert!(start_pump(&fifo, &log, Bounds::default())
            .expect("test step")
            .is_some());
        assert!(start_pump(&fifo, &log, Bounds::default())
            .expect("test step")
            .is_none());
    }
}
