//! `run` and `exec`, attached: output live on our stdout and stderr, the command's exit
//! code as ours, Ctrl-C (SIGINT or SIGTERM) ends the command within its grace and a
//! second one kills it at once, a closed stdout ends the run cleanly.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use container::{
    ContainerConfig, ContainerManager, Error, ErrorKind, ExecEvent, ExecSpec, LogOptions, Mount,
    Signal, StdinStream, StreamKind, User,
};
use futures::StreamExt;
use tokio::signal::unix::{signal, SignalKind};

use crate::fail::Failure;

/// Exit code when `--timeout` ends the command (as timeout(1)).
pub(crate) const TIMED_OUT: u8 = 124;
/// Exit code when our stdout is closed (128 + SIGPIPE, as a shell reports it).
pub(crate) const CLOSED_STDOUT: u8 = 141;

/// When `run` pulls the image first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PullPolicy {
    /// Always pull.
    Always,
    /// Pull when the image is not present (default).
    Missing,
    /// Never pull.
    Never,
}

/// `containerctl run`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Container name (create is idempotent by name).
    #[arg(long)]
    name: Option<String>,
    /// Print the id and leave the container running.
    #[arg(long, short = 'd')]
    detach: bool,
    /// Keep the container after the command ends (default: removed).
    #[arg(long)]
    keep: bool,
    /// Remove the container when the command ends: the default, accepted as `docker run
    /// --rm` spells it.
    #[arg(long, conflicts_with = "keep")]
    rm: bool,
    /// Pass our stdin to the command as it comes (its end is the command's EOF).
    #[arg(long, short = 'i')]
    interactive: bool,
    /// Give the command a terminal; with -i on a terminal ours is put in raw mode, so
    /// keys (Ctrl-C too) go to the command (ctrl-p ctrl-q, the engines' detach keys,
    /// ends the input on Docker and Podman).
    #[arg(long, short = 't')]
    tty: bool,
    /// Bind mount `HOST:CONTAINER[:ro|rw]` (the host path must exist).
    #[arg(long = "volume", short = 'v', value_parser = parse_bind)]
    binds: Vec<Mount>,
    /// Named volume mount `NAME:CONTAINER[:ro|rw]`.
    #[arg(long = "volume-name", value_parser = parse_named)]
    volumes: Vec<Mount>,
    /// Environment `KEY=VALUE`.
    #[arg(long = "env", short = 'e')]
    env: Vec<String>,
    /// File of `KEY=VALUE` lines (`#` comments and blank lines skipped).
    #[arg(long = "env-file")]
    env_files: Vec<PathBuf>,
    /// `UID[:GID]` to run as.
    #[arg(long, short = 'u', value_parser = parse_user)]
    user: Option<User>,
    /// Working directory.
    #[arg(long, short = 'w')]
    workdir: Option<String>,
    /// Run an init process as PID 1.
    #[arg(long)]
    init: bool,
    /// Memory limit: bytes, or with a unit (512m, 2g, 1GiB).
    #[arg(long, short = 'm', value_parser = parse_bytes)]
    memory: Option<i64>,
    /// CPU limit in cores (1.5).
    #[arg(long)]
    cpus: Option<f64>,
    /// End the command after this long (30s, 5m, 1h 30m): exit 124.
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Seconds between the stop signal and SIGKILL when the run is interrupted.
    #[arg(long, default_value_t = 10)]
    stop_timeout: u64,
    /// When to pull the image first.
    #[arg(long, value_enum, default_value_t = PullPolicy::Missing)]
    pull: PullPolicy,
    /// Image reference.
    image: String,
    /// Command and arguments (the image's default when empty).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    cmd: Vec<String>,
}

/// `containerctl exec`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExecArgs {
    /// Pass our stdin to the command as it comes (its end is the command's EOF).
    #[arg(long, short = 'i')]
    interactive: bool,
    /// End the command after this long (30s, 5m): exit 124.
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// `UID[:GID]` to run as.
    #[arg(long, short = 'u', value_parser = parse_user)]
    user: Option<User>,
    /// Working directory.
    #[arg(long, short = 'w')]
    workdir: Option<String>,
    /// Environment `KEY=VALUE`.
    #[arg(long = "env", short = 'e')]
    env: Vec<String>,
    /// Seconds between SIGTERM and SIGKILL when the exec is interrupted or times out.
    #[arg(long, default_value_t = 2)]
    kill_grace: u64,
    /// Container id or name.
    id: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    cmd: Vec<String>,
}

fn parse_user(s: &str) -> Result<User, String> {
    let (u, g) = s.split_once(':').unwrap_or((s, s));
    Ok(User::new(
        u.parse()
            .map_err(|_| format!("{u:?} is not a numeric uid"))?,
        g.parse()
            .map_err(|_| format!("{g:?} is not a numeric gid"))?,
    ))
}

/// `A:B[:ro|rw]` into its two paths and whether it is read-only.
fn split_mount(s: &str) -> Result<(&str, &str, bool), String> {
    match s.split(':').collect::<Vec<_>>().as_slice() {
        [a, b] => Ok((a, b, false)),
        [a, b, "ro"] => Ok((a, b, true)),
        [a, b, "rw"] => Ok((a, b, false)),
        _ => Err("expected SOURCE:CONTAINER[:ro|rw]".into()),
    }
}

fn parse_bind(s: &str) -> Result<Mount, String> {
    let (host, target, ro) = split_mount(s)?;
    let m = Mount::bind(PathBuf::from(host), target);
    Ok(if ro { m.read_only() } else { m })
}

fn parse_named(s: &str) -> Result<Mount, String> {
    let (name, target, ro) = split_mount(s)?;
    let m = Mount::volume(name, target);
    Ok(if ro { m.read_only() } else { m })
}

fn parse_bytes(s: &str) -> Result<i64, String> {
    let bytes = parse_size::Config::new()
        .with_binary()
        .parse_size(s)
        .map_err(|e| format!("{s:?}: {e}"))?;
    i64::try_from(bytes).map_err(|_| format!("{s:?} is too large"))
}

/// `KEY=VALUE` lines of an env file.
fn read_env_file(path: &PathBuf) -> Result<Vec<String>, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("cannot read the env file {}", path.display()),
        )
        .with_source(e)
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

/// Writes output to our stdout and stderr as it comes; remembers a closed stdout.
#[derive(Debug, Default)]
pub(crate) struct Sink;

impl Sink {
    /// Writes and flushes `data`; `Err` only when stdout is closed (a closed stderr is
    /// ignored: nobody is there to tell).
    pub(crate) fn write(&mut self, stream: StreamKind, data: &[u8]) -> std::io::Result<()> {
        match stream {
            StreamKind::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(data)?;
                out.flush()
            }
            StreamKind::Stderr => {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(data);
                let _ = err.flush();
                Ok(())
            }
        }
    }
}

/// SIGINT and SIGTERM, as one stream of signal numbers.
struct Interrupts {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Interrupts {
    fn new() -> Result<Self, Failure> {
        let listen = |kind| {
            signal(kind).map_err(|e| {
                Failure::Engine(
                    Error::new(ErrorKind::Internal, "cannot listen for Ctrl-C").with_source(e),
                )
            })
        };
        Ok(Self {
            int: listen(SignalKind::interrupt())?,
            term: listen(SignalKind::terminate())?,
        })
    }

    /// The next signal's number.
    async fn next(&mut self) -> u8 {
        tokio::select! {
            _ = self.int.recv() => 2,
            _ = self.term.recv() => 15,
        }
    }
}

/// How an attached run ended.
enum Ended {
    /// The output ended: the process exited.
    Exited,
    /// Signal N asked us to stop.
    Signalled(u8),
    /// Our stdout was closed.
    StdoutClosed,
    /// `--timeout` passed.
    TimedOut,
}

/// The exit code for a process exit status (a status outside 0..=255 is ours to report).
fn exit_code(code: i64) -> ExitCode {
    match u8::try_from(code) {
        Ok(c) => ExitCode::from(c),
        Err(_) => {
            eprintln!("containerctl: the command exited with status {code}, not 0-255");
            ExitCode::from(crate::fail::OWN_ERROR)
        }
    }
}

/// `containerctl run`.
pub(crate) async fn run(engine: &dyn ContainerManager, args: RunArgs) -> Result<ExitCode, Failure> {
    let mut config = ContainerConfig::new(&args.image);
    config.name = args.name.clone();
    config.cmd = (!args.cmd.is_empty()).then(|| args.cmd.clone());
    config.user = args.user;
    config.mounts = args.binds.iter().chain(&args.volumes).cloned().collect();
    config.env = args.env.clone();
    for file in &args.env_files {
        config.env.extend(read_env_file(file)?);
    }
    config.working_dir = args.workdir.clone();
    config.init = args.init;
    config.stdin_open = args.interactive && !args.detach;
    config.tty = args.tty;
    if let Some(memory) = args.memory {
        config = config.memory(memory);
    }
    if let Some(cpus) = args.cpus {
        config = config.cpus(cpus);
    }
    // Checked before any engine call (and before any pull).
    container::validate::container_config(&config)?;
    // Listening from here: a Ctrl-C during the pull ends the run (nothing made yet); one
    // during the create or start is seen by the attached loop, which removes the
    // container, never the default exit that would leak it.
    let mut interrupts = Interrupts::new()?;
    let present = match args.pull {
        PullPolicy::Always => false,
        PullPolicy::Never => true,
        PullPolicy::Missing => engine.image_exists(&args.image).await?,
    };
    if !present {
        tokio::select! {
            pulled = crate::progress::pull(engine, &args.image, crate::Output::Text) => pulled?,
            signo = interrupts.next() => return Ok(ExitCode::from(128 + signo)),
        }
    }

    // An attached run owns its container from create to removal: a container of that
    // name made earlier (say with -d) is not adopted and then removed. Detached, create
    // stays idempotent by name (the same config gives the same container).
    if let (Some(name), false) = (&args.name, args.detach) {
        match engine.inspect(name).await {
            Ok(existing) => {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "a container named {name} already exists ({}); an attached run makes \
                         its own: `containerctl rm -f {name}`, another --name, or exec into it",
                        existing.id
                    ),
                )
                .into())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    let id = engine.create(&config).await?;
    if let Err(e) = engine.start(&id).await {
        // Nobody got its id: a container that never started is not left behind.
        if !args.keep {
            remove(engine, &id).await;
        }
        // The runtime could not invoke the command: 127 / 126, as `docker run`.
        if let Some(code) = e.shell_status().and_then(|c| u8::try_from(c).ok()) {
            eprintln!("containerctl: {e}");
            return Ok(ExitCode::from(code));
        }
        return Err(e.into());
    }
    if args.detach {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    let result = attached_run(engine, &id, &args, &mut interrupts).await;
    if !args.keep {
        remove(engine, &id).await;
    }
    result
}

/// Streams the container's output until it exits or we are told to stop it.
async fn attached_run(
    engine: &dyn ContainerManager,
    id: &str,
    args: &RunArgs,
    interrupts: &mut Interrupts,
) -> Result<ExitCode, Failure> {
    // Our terminal in raw mode while the command's terminal is fed (restored on drop).
    let _raw = (args.interactive && args.tty)
        .then(RawTerminal::enter)
        .flatten();
    let _feed = if args.interactive {
        match engine
            .attach_stdin(id, StdinStream::new(stdin_stream()))
            .await
        {
            Ok(feed) => Some(feed),
            // The command ended before its stdin was attached: its output and exit
            // status still come below.
            Err(e) if e.kind() == ErrorKind::Conflict => None,
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    // The command's terminal takes the size of ours, now and at every change.
    let mut window = if args.tty {
        resize(engine, id).await;
        Some(signal(SignalKind::window_change()).map_err(|e| {
            Error::new(ErrorKind::Internal, "cannot watch the terminal's size").with_source(e)
        })?)
    } else {
        None
    };
    let mut logs = engine.logs(id, &LogOptions::follow()).await?;
    let mut sink = Sink;
    let deadline = async {
        match args.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let ended = loop {
        tokio::select! {
            chunk = logs.next() => match chunk {
                Some(Ok(chunk)) => {
                    if sink.write(chunk.stream, &chunk.data).is_err() {
                        break Ended::StdoutClosed;
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                None => break Ended::Exited,
            },
            signo = interrupts.next() => break Ended::Signalled(signo),
            () = &mut deadline => break Ended::TimedOut,
            Some(()) = async { window.as_mut()?.recv().await } => resize(engine, id).await,
        }
    };
    drop(logs);
    let grace = Duration::from_secs(args.stop_timeout);
    match ended {
        Ended::Exited => Ok(exit_code(engine.wait(id).await?)),
        Ended::Signalled(signo) => {
            eprintln!("containerctl: stopping {id} (again to kill it at once)");
            stop(engine, id, grace, interrupts).await?;
            Ok(ExitCode::from(128 + signo))
        }
        Ended::StdoutClosed => {
            stop(engine, id, grace, interrupts).await?;
            Ok(ExitCode::from(CLOSED_STDOUT))
        }
        Ended::TimedOut => {
            eprintln!("containerctl: the command ran longer than --timeout; stopping {id}");
            stop(engine, id, grace, interrupts).await?;
            Ok(ExitCode::from(TIMED_OUT))
        }
    }
}

/// Stops the container within `grace`; another interrupt meanwhile kills it at once.
async fn stop(
    engine: &dyn ContainerManager,
    id: &str,
    grace: Duration,
    interrupts: &mut Interrupts,
) -> Result<(), Failure> {
    tokio::select! {
        stopped = engine.stop(id, Some(grace)) => stopped?,
        _ = interrupts.next() => {
            match engine.kill(id, Signal::KILL).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Conflict => {} // already stopped
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Removes the container, saying so when it cannot (the run's result stands).
async fn remove(engine: &dyn ContainerManager, id: &str) {
    if let Err(e) = engine.remove(id, true).await {
        eprintln!("containerctl: the container {id} could not be removed: {e}");
    }
}

/// `containerctl exec`.
pub(crate) async fn exec(
    engine: &dyn ContainerManager,
    args: ExecArgs,
) -> Result<ExitCode, Failure> {
    let mut spec = ExecSpec::new(args.cmd);
    spec.timeout = args.timeout;
    spec.user = args.user;
    spec.working_dir = args.workdir;
    spec.env = args.env;
    spec.kill_grace = Duration::from_secs(args.kill_grace);
    if args.interactive {
        spec = spec.stdin_reader(stdin_stream());
    }
    let mut interrupts = Interrupts::new()?;
    let mut stream = engine.exec_stream(&args.id, &spec).await?;
    let mut sink = Sink;
    let end = loop {
        tokio::select! {
            event = stream.next() => match event {
                Some(Ok(ExecEvent::Output(chunk))) => {
                    if sink.write(chunk.stream, &chunk.data).is_err() {
                        break CLOSED_STDOUT;
                    }
                }
                Some(Ok(ExecEvent::Exit(code))) => return Ok(exit_code(code)),
                Some(Err(e)) if e.kind() == ErrorKind::Timeout => {
                    eprintln!("containerctl: {e}");
                    return Ok(ExitCode::from(TIMED_OUT));
                }
                Some(Err(e)) => return Err(e.into()),
                None => {
                    return Err(Error::new(ErrorKind::Internal, "the exec ended without an exit status").into())
                }
            },
            signo = interrupts.next() => break 128 + signo,
        }
    };
    // Interrupted or nobody reads: end the command (TERM, KILL after the grace; a second
    // interrupt kills at once) and wait until it is gone.
    let killer = stream.killer();
    let cancel = stream.cancel();
    tokio::pin!(cancel);
    tokio::select! {
        () = &mut cancel => {}
        _ = interrupts.next() => {
            if let Some(killer) = killer {
                if let Err(e) = killer.kill().await {
                    eprintln!("containerctl: cannot kill the command: {e}");
                }
            }
            cancel.await;
        }
    }
    Ok(ExitCode::from(end))
}

/// Gives the command's terminal the size of ours (stdout's), if we have one. A failure
/// only costs the size: it is said at debug level, the run goes on.
async fn resize(engine: &dyn ContainerManager, id: &str) {
    if let Some((rows, cols)) = console::Term::stdout().size_checked() {
        if let Err(e) = engine.resize_tty(id, rows, cols).await {
            tracing::debug!(error = %e, "the terminal's size was not set");
        }
    }
}

/// Our stdin, a terminal, in raw mode until dropped: every key goes to the command's
/// terminal, which echoes and interprets it (Ctrl-C included), as `docker run -it`.
struct RawTerminal(nix::sys::termios::Termios);

impl RawTerminal {
    /// Raw mode on our stdin; `None` (with a warning) when stdin is no terminal.
    fn enter() -> Option<RawTerminal> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        use std::io::IsTerminal as _;
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            eprintln!("containerctl: stdin is not a terminal: -t gives the command one anyway");
            return None;
        }
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawTerminal(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.0,
        );
    }
}

/// This process's stdin as it comes, for `exec -i` and `run -i`: read by a thread of its own into a
/// pipe the exec reads. Not `tokio::io::stdin()`, whose blocking read cannot be
/// cancelled and would hold the runtime's shutdown until the user pressed enter.
fn stdin_stream() -> tokio::io::DuplexStream {
    use std::io::Read as _;
    use tokio::io::AsyncWriteExt as _;
    let (mut writer, reader) = tokio::io::duplex(64 << 10);
    let handle = tokio::runtime::Handle::current();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0; 16 << 10];
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if handle.block_on(writer.write_all(&buf[..n])).is_err() {
                break;
            }
        }
        // Dropping the writer is the exec's EOF.
    });
    reader
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_users_and_sizes_parse_as_docker_writes_them() {
        assert!(parse_bind("/a:/b:ro").is_ok());
        assert!(parse_bind("/a").is_err());
        assert!(parse_named("cache:/c").is_ok());
        assert_eq!(parse_user("1000").map(|u| (u.uid, u.gid)), Ok((1000, 1000)));
        assert_eq!(parse_user("1:2").map(|u| (u.uid, u.gid)), Ok((1, 2)));
        assert!(parse_user("root").is_err());
        assert_eq!(parse_bytes("512m"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
    }
}
