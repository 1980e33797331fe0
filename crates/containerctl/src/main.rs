#![doc = include_str!("../README.md")]

mod attach;
mod cleanup;
mod fail;
mod progress;
mod show;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgAction, Parser, Subcommand, ValueEnum};
use container::{
    BackendKind, ConnectOptions, ContainerManager, LogOptions, Ownership, VolumeConfig,
};
use futures::StreamExt;

use crate::fail::Failure;

/// Container lifecycle from the command line, on container-rs.
#[derive(Debug, Parser)]
#[command(name = "containerctl", version, about, max_term_width = 100)]
struct Cli {
    /// Backend: docker, podman or containerd (default: detected from the sockets).
    #[arg(long, global = true, env = "CONTAINER_BACKEND")]
    backend: Option<BackendKind>,
    /// Engine endpoint (default: the backend's environment or its default socket).
    #[arg(long, global = true)]
    endpoint: Option<String>,
    /// Output format: text tables for people, json for scripts.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// More log output (-v debug, -vv trace); RUST_LOG overrides. Before the subcommand.
    #[arg(short, long, action = ArgAction::Count)]
    verbose: u8,
    /// Only errors in the log output. Before the subcommand.
    #[arg(short, long, conflicts_with = "verbose")]
    quiet: bool,
    /// Owner label of the objects made (default: `containerctl.u<uid>`); selects in ps and
    /// cleanup.
    #[arg(long, global = true)]
    owner: Option<String>,
    /// Session label of the objects made (default: unique to this run); selects in ps
    /// and cleanup.
    #[arg(long, global = true)]
    session: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// Tables and plain lines.
    Text,
    /// One JSON document on stdout.
    Json,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Backend, engine version, socket and capabilities.
    Info,
    /// Pull an image: a progress bar per layer on a terminal, plain lines otherwise.
    Pull {
        /// Image reference.
        image: String,
    },
    /// Run a command in a new container, attached; removed at the end unless --keep.
    Run(attach::RunArgs),
    /// Run a command in a running container, attached; its exit code becomes ours.
    Exec(attach::ExecArgs),
    /// List containers made with container-rs (any owner, or --owner's / --session's).
    Ps,
    /// Print a container's logs.
    Logs {
        /// Container id or name.
        id: String,
        /// Keep following new output until the container stops.
        #[arg(long, short)]
        follow: bool,
    },
    /// Stop containers gracefully: the stop signal, SIGKILL after the grace.
    Stop {
        /// Container ids or names.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Seconds between the stop signal and SIGKILL.
        #[arg(long, short = 't')]
        time: Option<u64>,
    },
    /// Remove containers made with container-rs (never one without its owner label).
    Rm {
        /// Container ids or names.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Remove even when running.
        #[arg(long, short)]
        force: bool,
    },
    /// Named volumes.
    #[command(subcommand)]
    Volume(VolumeCmd),
    /// Force-remove the containers and volumes of one owner (or session, or every owner),
    /// and nothing else: objects without container-rs's owner label are never touched.
    Cleanup(cleanup::CleanupArgs),
}

#[derive(Debug, Subcommand)]
enum VolumeCmd {
    /// Create a volume (idempotent; a same-named volume not made by container-rs is a
    /// conflict, never adopted).
    Create {
        /// Volume name.
        name: String,
    },
    /// List volumes made with container-rs (any owner, or --owner's / --session's).
    Ls,
    /// Show one volume.
    Inspect {
        /// Volume name.
        name: String,
    },
    /// Remove volumes made with container-rs.
    Rm {
        /// Volume names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Remove even when a container uses it.
        #[arg(long, short)]
        force: bool,
    },
}

fn main() -> ExitCode {
    // containerd's shim runs this program as the writer of a container's log files
    // (ADR 0009): that invocation is not a command line of ours.
    #[cfg(feature = "containerd")]
    {
        use container::containerd::logger;
        if let Some(code) = logger::run_if_invoked() {
            return code;
        }
        // Containers this run starts on containerd log through this same binary, so their
        // output flows after containerctl exits. Set before any thread exists.
        if std::env::var_os(logger::LOGGER_ENV).is_none() {
            if let Ok(program) = std::env::current_exe() {
                std::env::set_var(logger::LOGGER_ENV, program);
            }
        }
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and version are not errors; a usage error is ours: 125, as docker's.
            return if e.use_stderr() {
                ExitCode::from(fail::OWN_ERROR)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_tracing(cli.verbose, cli.quiet);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("containerctl: cannot start the async runtime: {e}");
            return ExitCode::from(fail::OWN_ERROR);
        }
    };
    let result = runtime.block_on(dispatch(cli));
    // Background work (a dropped stream's kill) gets a moment, not forever.
    runtime.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}

/// Library warnings on stderr; `-v`/`-vv`/`-q` or `RUST_LOG` choose the level.
fn init_tracing(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// The ownership stamped on what this run makes: `--owner` (default `containerctl.u<uid>`,
/// the program's name and the caller's uid) and `--session` (default unique to this run).
fn ownership(cli: &Cli) -> container::Result<Ownership> {
    let owner = cli
        .owner
        .clone()
        .unwrap_or_else(container::labels::default_owner);
    match &cli.session {
        Some(session) => Ownership::with_session(owner, session.clone()),
        None => Ownership::new(owner),
    }
}

async fn connect(cli: &Cli) -> Result<Arc<dyn ContainerManager>, Failure> {
    let mut options = ConnectOptions::default().with_ownership(ownership(cli)?);
    options.endpoint = cli.endpoint.clone();
    let manager = match cli.backend {
        Some(kind) => container::connect_with(kind, options).await?,
        None if cli.endpoint.is_some() => {
            container::connect_with(BackendKind::Docker, options).await?
        }
        None => container::from_env_with(options).await?,
    };
    Ok(manager)
}

async fn dispatch(cli: Cli) -> Result<ExitCode, Failure> {
    // Scope checks need no engine: refuse before connecting.
    if let Cmd::Cleanup(args) = &cli.command {
        args.check(cli.owner.as_deref(), cli.session.as_deref())?;
    }
    let engine = connect(&cli).await?;
    let engine = engine.as_ref();
    let out = cli.output;
    let filter = show::Filter::new(cli.owner.as_deref(), cli.session.as_deref());
    match cli.command {
        Cmd::Info => show::info(engine, out).await?,
        Cmd::Pull { image } => progress::pull(engine, &image, out).await?,
        Cmd::Run(args) => return attach::run(engine, args).await,
        Cmd::Exec(args) => return attach::exec(engine, args).await,
        Cmd::Ps => show::ps(engine, &filter, out).await?,
        Cmd::Logs { id, follow } => {
            let options = if follow {
                LogOptions::follow()
            } else {
                LogOptions::default()
            };
            let mut logs = engine.logs(&id, &options).await?;
            let mut sink = attach::Sink;
            while let Some(chunk) = logs.next().await {
                let chunk = chunk?;
                if sink.write(chunk.stream, &chunk.data).is_err() {
                    return Ok(ExitCode::from(attach::CLOSED_STDOUT));
                }
            }
        }
        Cmd::Stop { ids, time } => {
            for id in ids {
                engine.stop(&id, time.map(Duration::from_secs)).await?;
                show::done(out, "stopped", &id);
            }
        }
        Cmd::Rm { ids, force } => {
            for id in ids {
                let info = engine.inspect(&id).await?;
                fail::ensure_made_here(&format!("container {id}"), &info.labels)?;
                engine.remove(&id, force).await?;
                show::done(out, "removed", &id);
            }
        }
        Cmd::Volume(VolumeCmd::Create { name }) => {
            let v = engine.create_volume(&VolumeConfig::new(name)).await?;
            show::volume(&v, out);
        }
        Cmd::Volume(VolumeCmd::Ls) => show::volumes(engine, &filter, out).await?,
        Cmd::Volume(VolumeCmd::Inspect { name }) => {
            let v = engine.inspect_volume(&name).await?;
            show::volume(&v, out);
        }
        Cmd::Volume(VolumeCmd::Rm { names, force }) => {
            for name in names {
                let info = engine.inspect_volume(&name).await?;
                fail::ensure_made_here(&format!("volume {name}"), &info.labels)?;
                engine.remove_volume(&name, force).await?;
                show::done(out, "removed", &name);
            }
        }
        Cmd::Cleanup(args) => return cleanup::run(engine, &args, &filter, out).await,
    }
    Ok(ExitCode::SUCCESS)
}
