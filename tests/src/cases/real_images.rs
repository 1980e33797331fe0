//! Cases 84-: real build images (issue 15). The Debian build image of `cargo xtask
//! engines up` (python3, git, openssh-client, gcc, make, procps, tar, en_US.UTF-8) and
//! the same root filesystem with no `Env` in its config, as `docker import` makes it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use container::exec::DEFAULT_KILL_GRACE;
use container::{
    Account, ContainerConfig, ContainerState, ErrorKind, ExecSpec, Mount, PullOptions,
};

use crate::ctx::{Ctx, DEBIAN_BARE_IMAGE, DEBIAN_IMAGE, SLACK};
use crate::failure::{expect_kind, Failure};
use crate::support::{run_config, sh};
use crate::{ensure, ensure_eq};

/// A running container `case` of `image` (pulled first) whose main process is
/// `sleep infinity`.
async fn running_on(
    ctx: &Ctx,
    t: &mut crate::ctx::Tracker,
    case: u32,
    image: &str,
) -> Result<String, Failure> {
    ctx.manager().pull(image, &PullOptions::default()).await?;
    let config = ContainerConfig::new(image)
        .name(ctx.name(case))
        .cmd(["sleep", "infinity"]);
    run_config(ctx, t, &config).await
}

/// Case 84: on an image whose config has no `Env`, the main process, execs and the
/// library's own copies find `/bin` and `/usr/bin` tools (the default `PATH` Docker,
/// Podman and containerd's own clients give).
pub async fn case_84_image_without_env(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let id = running_on(ctx, &mut t, 84, DEBIAN_BARE_IMAGE).await?;
    let path = sh(m, &id, "echo \"$PATH\"").await?;
    for dir in ["/usr/bin", "/bin", "/usr/sbin"] {
        ensure!(
            path.trim().split(':').any(|d| d == dir),
            "PATH of an exec on an image with no Env lacks {dir}: {path:?}"
        );
    }
    let out = m.exec(&id, &ExecSpec::new(["tar", "--version"])).await?;
    ensure_eq!(out.exit_code, 0, "`tar --version` found by PATH");
    let dir = tempfile::tempdir()?;
    m.copy_from(&id, "/etc/debian_version", dir.path()).await?;
    let copied = std::fs::read_to_string(dir.path().join("debian_version"))?;
    ensure!(
        copied.starts_with("12"),
        "copy_from of /etc/debian_version gave {copied:?}"
    );
    let archive = tempfile::tempdir()?;
    std::fs::write(archive.path().join("in.txt"), b"in\n")?;
    m.copy_to(&id, &archive.path().join("in.txt"), "/tmp")
        .await?;
    ensure_eq!(sh(m, &id, "cat /tmp/in.txt").await?, "in\n", "copy_to");
    Ok(())
}

/// The account the account cases run as: the caller's own, or `builder` (1000:1000)
/// when the suite runs as root (as in CI), so the checks are about a user that is not
/// root and not in the image.
fn test_account() -> Account {
    let host = Account::host();
    if host.uid == 0 {
        Account::new(1000, 1000, "builder")
    } else {
        host
    }
}

/// A host folder the account may write into (made here, then given to it).
fn folder_for(account: &Account) -> Result<tempfile::TempDir, Failure> {
    let dir = tempfile::tempdir()?;
    std::os::unix::fs::chown(dir.path(), Some(account.uid), Some(account.gid))?;
    Ok(dir)
}

/// Case 85: as an account (the host's user) on the Debian image and on the same root
/// with no `Env`: `whoami`, `getent passwd`, a writable `$HOME`, `$USER`, `ssh` that
/// knows its user, `git commit` once an identity is set, and a file written into a bind
/// mount owned by the account on the host.
pub async fn case_85_account_on_debian(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let a = test_account();
    for (i, image) in [DEBIAN_IMAGE, DEBIAN_BARE_IMAGE].into_iter().enumerate() {
        let work = folder_for(&a)?;
        m.pull(image, &PullOptions::default()).await?;
        let config = ContainerConfig::new(image)
            .name(format!("{}-{i}", ctx.name(85)))
            .cmd(["sleep", "infinity"])
            .account(a.clone())
            .mount(Mount::bind(work.path(), "/work"));
        let id = run_config(ctx, &mut t, &config).await?;
        let who = sh(
            m,
            &id,
            "whoami; id -u; id -g; echo \"$USER\"; echo \"$HOME\"",
        )
        .await?;
        ensure_eq!(
            who,
            format!("{}\n{}\n{}\n{}\n{}\n", a.name, a.uid, a.gid, a.name, a.home),
            "{image}: whoami, id -u, id -g, $USER, $HOME"
        );
        let entry = sh(m, &id, "getent passwd \"$(id -u)\"").await?;
        ensure!(
            entry.starts_with(&format!("{}:x:{}:{}:", a.name, a.uid, a.gid)),
            "{image}: getent passwd gave {entry:?}"
        );
        sh(
            m,
            &id,
            "touch \"$HOME/written\" && test -O \"$HOME/written\"",
        )
        .await?;
        let ssh = m
            .exec(&id, &ExecSpec::new(["ssh", "-G", "localhost"]))
            .await?;
        ensure!(
            ssh.exit_code == 0 && !ssh.stderr_lossy().contains("No user exists"),
            "{image}: ssh -G exited {}: {}",
            ssh.exit_code,
            ssh.stderr_lossy()
        );
        sh(
            m,
            &id,
            "git config --global user.email builder@example.com \
             && git config --global user.name Builder \
             && git init -q \"$HOME/repo\" && cd \"$HOME/repo\" \
             && echo a > f && git add f && git commit -q -m first",
        )
        .await?;
        sh(m, &id, "echo out > /work/out.txt").await?;
        let meta = std::fs::metadata(work.path().join("out.txt"))?;
        ensure_eq!(
            (meta.uid(), meta.gid()),
            (a.uid, a.gid),
            "{image}: the owner on the host of a file the step wrote into a bind mount"
        );
    }
    Ok(())
}

/// The C program case 86 builds: two objects and a link, so `make -j2` runs jobs in
/// parallel.
const MAKEFILE: &str =
    "hello: main.o greet.o\n\tgcc -o $@ main.o greet.o\n%.o: %.c\n\tgcc -O2 -c $<\n";
const MAIN_C: &str = "void greet(void);\nint main(void) { greet(); return 0; }\n";
const GREET_C: &str = "#include <stdio.h>\nvoid greet(void) { puts(\"hello from make\"); }\n";

/// Case 86: a real C program built with `make -j2` by the account on the Debian image;
/// its output runs in the container and comes back with `copy_from`, the account's.
pub async fn case_86_make_and_copy_out(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let a = test_account();
    m.pull(DEBIAN_IMAGE, &PullOptions::default()).await?;
    let config = ContainerConfig::new(DEBIAN_IMAGE)
        .name(ctx.name(86))
        .cmd(["sleep", "infinity"])
        .account(a.clone());
    let id = run_config(ctx, &mut t, &config).await?;
    sh(m, &id, "mkdir -p \"$HOME/src\"").await?;
    for (file, text) in [
        ("Makefile", MAKEFILE),
        ("main.c", MAIN_C),
        ("greet.c", GREET_C),
    ] {
        let spec = ExecSpec::shell(format!("cat > \"$HOME/src/{file}\"")).stdin(text.to_string());
        crate::support::exec_ok(m, &id, &spec).await?;
    }
    let built = sh(m, &id, "cd \"$HOME/src\" && make -j2 >/dev/null && ./hello").await?;
    ensure_eq!(built, "hello from make\n", "the program make built");
    let out = tempfile::tempdir()?;
    m.copy_from(&id, &format!("{}/src/hello", a.home), out.path())
        .await?;
    let binary = std::fs::read(out.path().join("hello"))?;
    ensure!(
        binary.starts_with(b"\x7fELF"),
        "copy_from gave {} bytes that are not an ELF program",
        binary.len()
    );
    let mode = std::fs::metadata(out.path().join("hello"))?
        .permissions()
        .mode();
    ensure!(
        mode & 0o100 != 0,
        "the program came back without its x bit: {mode:o}"
    );
    Ok(())
}

/// Case 87: a Python `multiprocessing` job (a parent and 4 workers) run by the account
/// on the Debian image with an exec timeout ends completely; the build container still
/// runs.
pub async fn case_87_multiprocessing_timeout(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    m.pull(DEBIAN_IMAGE, &PullOptions::default()).await?;
    let config = ContainerConfig::new(DEBIAN_IMAGE)
        .name(ctx.name(87))
        .cmd(["sleep", "infinity"])
        .account(test_account());
    let id = run_config(ctx, &mut t, &config).await?;
    let job = "import multiprocessing, time\n\
               def work(n):\n    time.sleep(1087)\n\
               if __name__ == '__main__':\n    \
               with multiprocessing.Pool(4) as p:\n        \
               print('started', flush=True)\n        p.map(work, range(4))\n";
    let spec = ExecSpec::new(["python3", "-c", job]).timeout(Duration::from_secs(4));
    let r = m.exec(&id, &spec).await;
    expect_kind(
        r,
        ErrorKind::Timeout,
        "a multiprocessing job past its timeout",
    )?;
    let left = "ps -eo args= | grep -c '[p]ython3 -c' || true";
    let gone = crate::support::eventually(
        DEFAULT_KILL_GRACE + SLACK,
        Duration::from_millis(200),
        || async { sh(m, &id, left).await.is_ok_and(|n| n.trim() == "0") },
    )
    .await;
    ensure!(
        gone,
        "python processes left after the timeout: {}",
        sh(m, &id, "ps -eo pid,args").await?
    );
    let state = m.inspect(&id).await?.state;
    ensure!(
        state == ContainerState::Running,
        "the build container is {state:?} after the step timed out"
    );
    Ok(())
}

/// Case 88: the engine reports its host's CPU count and memory (a runner caps `--cpus`
/// at it). The suite's engines run on this machine: the same figures as its own. Its
/// version is not empty, nor its API version when it says one.
pub async fn case_88_engine_host_resources(ctx: &Ctx) -> Result<(), Failure> {
    let info = ctx.manager().info().await?;
    // No value that lies: a version is said, and an API version only when there is one.
    ensure!(!info.version.trim().is_empty(), "an empty engine version");
    ensure!(
        info.api_version
            .as_deref()
            .is_none_or(|v| !v.trim().is_empty()),
        "an empty API version (None when the engine has none): {info:?}"
    );
    let cpus = std::thread::available_parallelism()?.get();
    ensure_eq!(
        info.cpus.map(|n| n as usize),
        Some(cpus),
        "the engine host's CPUs (this machine's: {cpus})"
    );
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| Failure::new("no MemTotal in /proc/meminfo"))?;
    let memory = info
        .memory_bytes
        .ok_or_else(|| Failure::new("the engine did not say its host's memory"))?;
    ensure!(
        memory.abs_diff(kib * 1024) <= kib * 1024 / 100,
        "the engine host's memory {memory} B is not this machine's {} B",
        kib * 1024
    );
    Ok(())
}

/// Reads `stream` into `stdout` until it holds `want` (or the stream ends).
async fn read_until(
    stream: &mut container::ExecStream,
    stdout: &mut String,
    want: &str,
) -> Result<(), Failure> {
    use container::{ExecEvent, StreamKind};
    use futures::StreamExt;
    let wait = tokio::time::timeout(Duration::from_secs(20), async {
        while !stdout.contains(want) {
            match stream.next().await {
                Some(Ok(ExecEvent::Output(c))) if c.stream == StreamKind::Stdout => {
                    stdout.push_str(&String::from_utf8_lossy(&c.data));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(Failure::from(e)),
                None => return Ok(()),
            }
        }
        Ok(())
    });
    wait.await
        .map_err(|_| Failure::new(format!("no {want:?} on stdout within 20 s: {stdout:?}")))?
}

/// Case 89: an exec's stdin as a stream: the process reads the first line and answers
/// before the second is written, then sees EOF when the writer is dropped.
pub async fn case_89_stdin_stream(ctx: &Ctx) -> Result<(), Failure> {
    use tokio::io::AsyncWriteExt;
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let id = crate::support::running(ctx, &mut t, 89).await?;
    let (mut writer, reader) = tokio::io::duplex(1024);
    let script = "while read -r line; do echo \"got $line\"; done; echo eof";
    let spec = ExecSpec::shell(script).stdin_reader(reader);
    let mut stream = m.exec_stream(&id, &spec).await?;
    let mut stdout = String::new();
    writer.write_all(b"one\n").await?;
    read_until(&mut stream, &mut stdout, "got one\n").await?;
    ensure_eq!(
        stdout,
        "got one\n",
        "the answer to the first line, the second unwritten"
    );
    writer.write_all(b"two\n").await?;
    drop(writer);
    read_until(&mut stream, &mut stdout, "eof\n").await?;
    ensure_eq!(stdout, "got one\ngot two\neof\n", "both lines, then EOF");
    Ok(())
}
