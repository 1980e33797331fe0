//! `containerctl`: run, exec, pull, ps, logs, stop, rm, volume, cleanup, info, on any
//! compiled-in backend. `cleanup` is the force-cleanup command: it removes every container
//! and volume carrying the owner label (and the session label, when given), and nothing else.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use container::{
    BackendKind, CleanupScope, ConnectOptions, ContainerConfig, ContainerManager, Error, ErrorKind,
    ExecEvent, ExecSpec, LogOptions, Mount, Ownership, PullOptions, PullProgress, StreamKind, User,
    VolumeConfig,
};
use futures::StreamExt;

/// Container lifecycle from the command line, on container-rs.
#[derive(Debug, Parser)]
#[command(name = "containerctl", version)]
struct Cli {
    /// Backend: docker, podman or containerd (default: CONTAINER_BACKEND, else detected).
    #[arg(long, global = true)]
    backend: Option<BackendKind>,
    /// Engine endpoint (default: the backend's environment or default socket).
    #[arg(long, global = true)]
    endpoint: Option<String>,
    /// Owner label stamped on created objects; rm and cleanup only touch this owner's.
    #[arg(long, global = true, default_value = container::labels::DEFAULT_OWNER)]
    owner: String,
    /// Session label stamped on created objects; selects objects for `cleanup --session`.
    #[arg(long, global = true, default_value = "containerctl")]
    session: String,
    /// What to do.
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Engine identity and version.
    Info,
    /// Pull an image, with progress.
    Pull {
        /// Image reference.
        image: String,
    },
    /// Create (idempotent by name) and start a container; prints its id.
    Run(RunArgs),
    /// Run a command in a running container; streams output, exits with its code.
    Exec(ExecArgs),
    /// List this owner's containers (`--session-only` for this session's).
    Ps {
        /// Only this session's containers.
        #[arg(long)]
        session_only: bool,
    },
    /// Print a container's logs.
    Logs {
        /// Container id or name.
        id: String,
        /// Keep following.
        #[arg(long, short)]
        follow: bool,
    },
    /// Stop a container gracefully.
    Stop {
        /// Container id or name.
        id: String,
        /// Seconds between the stop signal and SIGKILL.
        #[arg(long)]
        grace: Option<u64>,
    },
    /// Remove a container this owner made.
    Rm {
        /// Container id or name.
        id: String,
        /// Remove even when running.
        #[arg(long, short)]
        force: bool,
    },
    /// Named volumes.
    #[command(subcommand)]
    Volume(VolumeCmd),
    /// Force-remove every container and volume this owner made (only `--session`'s with
    /// `--session-only`). Objects without the owner label are never touched.
    Cleanup {
        /// Only the objects of `--session`.
        #[arg(long)]
        session_only: bool,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Container name (create is idempotent by name).
    #[arg(long)]
    name: Option<String>,
    /// `uid:gid` to run as.
    #[arg(long, value_parser = parse_user)]
    user: Option<User>,
    /// Bind mount `HOST:CONTAINER[:ro]` (the host path must exist).
    #[arg(long = "mount", short = 'v', value_parser = parse_mount)]
    mounts: Vec<Mount>,
    /// Environment `KEY=VALUE`.
    #[arg(long = "env", short = 'e')]
    env: Vec<String>,
    /// Working directory.
    #[arg(long, short = 'w')]
    workdir: Option<String>,
    /// Run an init process as PID 1.
    #[arg(long)]
    init: bool,
    /// Pull the image first.
    #[arg(long)]
    pull: bool,
    /// Image reference.
    image: String,
    /// Command (the image's default when empty).
    #[arg(trailing_var_arg = true)]
    cmd: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct ExecArgs {
    /// Seconds before the command is terminated (SIGTERM, then SIGKILL).
    #[arg(long)]
    timeout: Option<u64>,
    /// `uid:gid` to run as.
    #[arg(long, value_parser = parse_user)]
    user: Option<User>,
    /// Working directory.
    #[arg(long, short = 'w')]
    workdir: Option<String>,
    /// Environment `KEY=VALUE`.
    #[arg(long = "env", short = 'e')]
    env: Vec<String>,
    /// Container id or name.
    id: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, required = true)]
    cmd: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum VolumeCmd {
    /// Create a volume (idempotent).
    Create {
        /// Volume name.
        name: String,
    },
    /// List this owner's volumes.
    Ls,
    /// Remove a volume this owner made.
    Rm {
        /// Volume name.
        name: String,
    },
}

fn parse_user(s: &str) -> Result<User, String> {
    let (u, g) = s.split_once(':').ok_or("expected uid:gid")?;
    Ok(User::new(
        u.parse().map_err(|_| format!("bad uid {u:?}"))?,
        g.parse().map_err(|_| format!("bad gid {g:?}"))?,
    ))
}

fn parse_mount(s: &str) -> Result<Mount, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let mount = |host: &str, target: &str| Mount::bind(PathBuf::from(host), target);
    match parts.as_slice() {
        [host, target] => Ok(mount(host, target)),
        [host, target, "ro"] => Ok(mount(host, target).read_only()),
        [host, target, "rw"] => Ok(mount(host, target)),
        _ => Err("expected HOST:CONTAINER[:ro|rw]".into()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("containerctl: {e}");
            // 124 like timeout(1); 75 (EX_TEMPFAIL) when trying again may help.
            ExitCode::from(match e.kind() {
                ErrorKind::Timeout => 124,
                _ if e.is_retryable() => 75,
                _ => 1,
            })
        }
    }
}

async fn connect(cli: &Cli) -> container::Result<std::sync::Arc<dyn ContainerManager>> {
    let ownership = Ownership::with_session(&cli.owner, &cli.session)?;
    let kind = match cli.backend {
        Some(kind) => kind,
        None => match std::env::var(container::BACKEND_ENV) {
            Ok(name) => name.parse()?,
            Err(_) if cli.endpoint.is_none() => {
                // Detect, then reconnect with our ownership.
                container::from_env().await?.backend()
            }
            Err(_) => BackendKind::Docker,
        },
    };
    let mut options = ConnectOptions::default().with_ownership(ownership);
    options.endpoint = cli.endpoint.clone();
    container::connect_with(kind, options).await
}

/// Refuses to touch an object that lacks this owner's label.
fn ensure_owned(
    engine: &dyn ContainerManager,
    what: &str,
    labels: &container::Labels,
) -> container::Result<()> {
    if engine.ownership().owns(labels) {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::PermissionDenied,
            format!(
                "{what} was not made by owner {:?}; containerctl never removes it",
                engine.ownership().owner()
            ),
        ))
    }
}

async fn run(cli: Cli) -> container::Result<ExitCode> {
    let engine = connect(&cli).await?;
    let engine = engine.as_ref();
    match cli.command {
        Cmd::Info => {
            let info = engine.info().await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&info).unwrap_or_default()
            );
        }
        Cmd::Pull { image } => pull(engine, &image).await?,
        Cmd::Run(args) => {
            if args.pull {
                pull(engine, &args.image).await?;
            }
            let mut config = ContainerConfig::new(&args.image);
            config.name = args.name;
            config.cmd = (!args.cmd.is_empty()).then_some(args.cmd);
            config.user = args.user;
            config.mounts = args.mounts;
            config.env = args.env;
            config.working_dir = args.workdir;
            config.init = args.init;
            let id = engine.create(&config).await?;
            engine.start(&id).await?;
            println!("{id}");
        }
        Cmd::Exec(args) => return exec(engine, args).await,
        Cmd::Ps { session_only } => {
            let scope = if session_only {
                CleanupScope::Session
            } else {
                CleanupScope::Owner
            };
            let selector = engine.ownership().selector(scope);
            println!("{:<14} {:<30} {:<14} IMAGE", "ID", "NAME", "STATE");
            for c in engine.list(&selector).await? {
                let state = format!("{:?}", c.state);
                println!(
                    "{:<14} {:<30} {:<14} {}",
                    &c.id[..12.min(c.id.len())],
                    c.name,
                    state,
                    c.image
                );
            }
        }
        Cmd::Logs { id, follow } => {
            let mut options = LogOptions::default();
            options.follow = follow;
            let mut logs = engine.logs(&id, &options).await?;
            while let Some(chunk) = logs.next().await {
                let chunk = chunk?;
                write_chunk(chunk.stream, &chunk.data);
            }
        }
        Cmd::Stop { id, grace } => {
            engine.stop(&id, grace.map(Duration::from_secs)).await?;
        }
        Cmd::Rm { id, force } => {
            match engine.inspect(&id).await {
                Ok(info) => ensure_owned(engine, &format!("container {id}"), &info.labels)?,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(ExitCode::SUCCESS),
                Err(e) => return Err(e),
            }
            engine.remove(&id, force).await?;
        }
        Cmd::Volume(VolumeCmd::Create { name }) => {
            let v = engine.create_volume(&VolumeConfig::new(name)).await?;
            println!("{}", v.name);
        }
        Cmd::Volume(VolumeCmd::Ls) => {
            let selector = engine.ownership().selector(CleanupScope::Owner);
            for v in engine.list_volumes(&selector).await? {
                println!("{}", v.name);
            }
        }
        Cmd::Volume(VolumeCmd::Rm { name }) => {
            match engine.inspect_volume(&name).await {
                Ok(info) => ensure_owned(engine, &format!("volume {name}"), &info.labels)?,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(ExitCode::SUCCESS),
                Err(e) => return Err(e),
            }
            engine.remove_volume(&name, false).await?;
        }
        Cmd::Cleanup { session_only } => {
            let scope = if session_only {
                CleanupScope::Session
            } else {
                CleanupScope::Owner
            };
            let report = engine.cleanup(scope).await?;
            println!(
                "removed {} container(s) and {} volume(s)",
                report.containers.len(),
                report.volumes.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn pull(engine: &dyn ContainerManager, image: &str) -> container::Result<()> {
    let options = PullOptions::default().with_progress(|p: &PullProgress| {
        if let PullProgress::Layer { id, phase, .. } = p {
            eprintln!("{id}: {phase:?}");
        }
    });
    engine.pull(image, &options).await
}

async fn exec(engine: &dyn ContainerManager, args: ExecArgs) -> container::Result<ExitCode> {
    let mut spec = ExecSpec::new(args.cmd);
    spec.timeout = args.timeout.map(Duration::from_secs);
    spec.user = args.user;
    spec.working_dir = args.workdir;
    spec.env = args.env;
    let mut stream = engine.exec_stream(&args.id, &spec).await?;
    loop {
        let event = tokio::select! {
            event = stream.next() => event,
            _ = tokio::signal::ctrl_c() => {
                // Ctrl-C really stops the command: terminate it and wait until it is gone.
                stream.cancel().await;
                return Ok(ExitCode::from(130));
            }
        };
        match event {
            Some(Ok(ExecEvent::Output(chunk))) => write_chunk(chunk.stream, &chunk.data),
            Some(Ok(ExecEvent::Exit(code))) => {
                return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
            }
            Some(Err(e)) => return Err(e),
            None => return Ok(ExitCode::FAILURE),
        }
    }
}

fn write_chunk(stream: StreamKind, data: &[u8]) {
    // A closed pipe (e.g. `| head`) is not an error worth a message.
    let _ = match stream {
        StreamKind::Stdout => std::io::stdout().write_all(data),
        StreamKind::Stderr => std::io::stderr().write_all(data),
    };
}
