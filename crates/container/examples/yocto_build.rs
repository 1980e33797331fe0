//! The main job: what a Yocto/BitBake build tool does with container-rs, end to end.
//!
//! 1. make the host folders `downloads/`, `sstate-cache/` (read-write) and `layers/`
//!    (read-only) under a work folder;
//! 2. pull the build image (with progress);
//! 3. create a named build container running as the invoking user's uid:gid, with init;
//! 4. exec a build script that streams thousands of log lines live, stdout and stderr kept
//!    apart, and writes artifacts into `sstate-cache/`;
//! 5. show the exit code and prove the artifacts on the host belong to the user;
//! 6. clean everything up — also on Ctrl-C, which stops the build for real.
//!
//! Run it with `cargo xtask demo` (starts the engine), or
//! `cargo run -p container-lifecycle --example yocto_build -- --help`.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use container::{
    CleanupScope, ConnectOptions, ContainerConfig, ContainerManager, ExecSpec, LineEvent, Mount,
    PullOptions, PullProgress, StreamKind,
};
use futures::StreamExt;

/// Runs a Yocto-style build in a container.
#[derive(Debug, Parser)]
struct Args {
    /// Work folder; `downloads/`, `sstate-cache/` and `layers/` are made inside it.
    /// Default: a fresh temporary folder, removed at the end.
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Build image.
    #[arg(long, default_value = "127.0.0.1:5000/container-rs/busybox:1")]
    image: String,
    /// Log lines the build prints.
    #[arg(long, default_value_t = 5000)]
    lines: u32,
    /// Build as this uid (default: the invoking user, `SUDO_UID` under sudo).
    #[arg(long)]
    uid: Option<u32>,
    /// Build as this gid (default: the invoking user's group, `SUDO_GID` under sudo).
    #[arg(long)]
    gid: Option<u32>,
}

/// The build: recipes log to stdout, warnings go to stderr, artifacts go to sstate-cache.
const BUILD_SCRIPT: &str = r#"
set -e
echo "NOTE: layers: $(ls /build/layers | tr '\n' ' ')"
i=1
while [ "$i" -le "$LINES" ]; do
  echo "NOTE: recipe-$((i % 97)): do_compile: step $i of $LINES"
  if [ $((i % 1000)) -eq 0 ]; then echo "WARNING: recipe-$i: QA issue (demo)" >&2; fi
  i=$((i + 1))
done
mkdir -p /build/sstate-cache/demo
echo "artifact built by $(id -u):$(id -g)" > /build/sstate-cache/demo/core-image.manifest
head -c 65536 /dev/urandom > /build/sstate-cache/demo/sstate-demo.tgz
if touch /build/layers/should-fail 2>/dev/null; then echo "layers are writable!" >&2; exit 3; fi
echo "NOTE: Tasks Summary: all succeeded"
"#;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("demo failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn invoking_user(args: &Args) -> (u32, u32) {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse().ok());
    let uid = args
        .uid
        .or_else(|| env("SUDO_UID"))
        .unwrap_or_else(|| nix::unistd::getuid().as_raw());
    let gid = args
        .gid
        .or_else(|| env("SUDO_GID"))
        .unwrap_or_else(|| nix::unistd::getgid().as_raw());
    (uid, gid)
}

async fn run(args: Args) -> Result<u8, Box<dyn std::error::Error>> {
    let (uid, gid) = invoking_user(&args);
    let temp;
    let work = match &args.workdir {
        Some(w) => w.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let dirs = prepare_dirs(&work, uid, gid)?;
    println!("work folder: {}", work.display());

    let engine = container::from_env_with(ConnectOptions::owned_by("container-rs-demo")?).await?;
    let info = engine.info().await?;
    println!(
        "engine: {} {} at {}",
        info.engine, info.version, info.endpoint
    );

    // Everything after this point is cleaned up, also on Ctrl-C.
    let build = build(engine.clone(), &args, &dirs, uid, gid);
    let outcome = tokio::select! {
        r = build => r,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("\ninterrupted: stopping the build");
            Err("interrupted by Ctrl-C".into())
        }
    };
    // Dropping the build future above dropped the exec stream, which kills the build
    // processes; now remove every object of this session.
    let report = engine.cleanup(CleanupScope::Session).await?;
    println!(
        "cleanup: removed {} container(s), {} volume(s)",
        report.containers.len(),
        report.volumes.len()
    );
    let left = engine
        .list(&engine.ownership().selector(CleanupScope::Session))
        .await?;
    if !left.is_empty() {
        return Err(format!("{} container(s) left after cleanup", left.len()).into());
    }
    match outcome {
        Ok(code) => Ok(code),
        Err(e) if e.to_string().contains("Ctrl-C") => Ok(130),
        Err(e) => Err(e),
    }
}

struct Dirs {
    downloads: PathBuf,
    sstate: PathBuf,
    layers: PathBuf,
}

fn prepare_dirs(work: &Path, uid: u32, gid: u32) -> std::io::Result<Dirs> {
    let dirs = Dirs {
        downloads: work.join("downloads"),
        sstate: work.join("sstate-cache"),
        layers: work.join("layers"),
    };
    for d in [&dirs.downloads, &dirs.sstate, &dirs.layers] {
        std::fs::create_dir_all(d)?;
    }
    std::fs::create_dir_all(dirs.layers.join("meta-demo/conf"))?;
    std::fs::write(
        dirs.layers.join("meta-demo/conf/layer.conf"),
        "BBFILE_COLLECTIONS += \"demo\"\n",
    )?;
    // The folders were made here, for this build: hand the writable ones to the build user.
    for d in [&dirs.downloads, &dirs.sstate] {
        nix::unistd::chown(
            d.as_path(),
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .or_else(|e| {
            // Not root: the folders already belong to the invoking user.
            if nix::unistd::getuid().as_raw() == uid {
                Ok(())
            } else {
                Err(std::io::Error::from(e))
            }
        })?;
    }
    Ok(dirs)
}

async fn build(
    engine: Arc<dyn ContainerManager>,
    args: &Args,
    dirs: &Dirs,
    uid: u32,
    gid: u32,
) -> Result<u8, Box<dyn std::error::Error>> {
    let progress = PullOptions::default().with_progress(|p: &PullProgress| match p {
        PullProgress::Layer { id, phase, .. } => println!("pull: layer {id}: {phase:?}"),
        PullProgress::AlreadyPresent { reference } => println!("pull: {reference} is current"),
        PullProgress::Completed {
            reference, digest, ..
        } => {
            println!(
                "pull: {reference} ready ({})",
                digest.as_deref().unwrap_or("-")
            )
        }
        PullProgress::Resolving { reference } => println!("pull: resolving {reference}"),
        _ => {}
    });
    engine.pull(&args.image, &progress).await?;

    let name = format!("crs-demo-build-{}", std::process::id());
    let config = ContainerConfig::new(&args.image)
        .name(&name)
        .cmd(["sleep", "infinity"])
        .user(uid, gid)
        .init(true)
        .working_dir("/build")
        .mount(Mount::bind(&dirs.downloads, "/build/downloads"))
        .mount(Mount::bind(&dirs.sstate, "/build/sstate-cache"))
        .mount(Mount::bind(&dirs.layers, "/build/layers").read_only())
        .label("app", "yocto-build-demo");
    let id = engine.create(&config).await?;
    engine.start(&id).await?;
    println!(
        "container {name} ({}) running as {uid}:{gid}",
        &id[..12.min(id.len())]
    );

    let spec = ExecSpec::shell(BUILD_SCRIPT).env("LINES", &args.lines.to_string());
    let started = Instant::now();
    let mut lines = engine.exec_stream(&id, &spec).await?.lines(64 * 1024);
    let (mut out_lines, mut err_lines, mut code) = (0u64, 0u64, None);
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    while let Some(event) = lines.next().await {
        match event? {
            LineEvent::Line(l) => match l.stream {
                StreamKind::Stdout => {
                    out_lines += 1;
                    let mut o = stdout.lock();
                    o.write_all(&l.data)?;
                    o.write_all(b"\n")?;
                }
                StreamKind::Stderr => {
                    err_lines += 1;
                    let mut e = stderr.lock();
                    e.write_all(b"[stderr] ")?;
                    e.write_all(&l.data)?;
                    e.write_all(b"\n")?;
                }
            },
            LineEvent::Exit(c) => code = Some(c),
        }
    }
    let code = code.ok_or("the build ended without an exit code")?;
    println!(
        "build exited with {code} after {:.1} s: {out_lines} stdout lines, {err_lines} stderr lines",
        started.elapsed().as_secs_f64()
    );

    for artifact in ["demo/core-image.manifest", "demo/sstate-demo.tgz"] {
        let path = dirs.sstate.join(artifact);
        let meta = std::fs::metadata(&path)
            .map_err(|e| format!("artifact {} missing: {e}", path.display()))?;
        if (meta.uid(), meta.gid()) != (uid, gid) {
            return Err(format!(
                "artifact {} belongs to {}:{}, not {uid}:{gid}",
                path.display(),
                meta.uid(),
                meta.gid()
            )
            .into());
        }
        println!(
            "artifact {} ({} bytes) owned by {uid}:{gid}",
            path.display(),
            meta.len()
        );
    }
    engine
        .stop(&id, Some(std::time::Duration::from_secs(5)))
        .await?;
    engine.remove(&id, false).await?;
    Ok(u8::try_from(code).unwrap_or(1))
}
