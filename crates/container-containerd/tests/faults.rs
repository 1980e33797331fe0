//! containerd-specific faults against the real containerd (run by `cargo xtask ci`),
//! issue 13 items 8-10: what a failed, abandoned or stuck task or exec leaves behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use container_core::{
    ConnectOptions, ContainerConfig, ContainerManager, ErrorKind, ExecSpec, PullOptions,
};

const IMAGE: &str = "127.0.0.1:5000/container-rs/busybox:1";
const NAMESPACE: &str = "container-rs-faults-test";
const RUN: &str = "/run/container-rs/containerd/container-rs-faults-test";
const DATA: &str = "/var/lib/container-rs/containerd/container-rs-faults-test";

/// A manager in this binary's namespace (set once, before any connection), with the
/// image pulled.
async fn manager() -> container_containerd::ContainerdManager {
    static NAMESPACE_SET: std::sync::Once = std::sync::Once::new();
    NAMESPACE_SET.call_once(|| std::env::set_var("CONTAINERD_NAMESPACE", NAMESPACE));
    let m = connect().await;
    m.pull(IMAGE, &PullOptions::default()).await.expect("pull");
    m
}

/// A name of its own for this run: what an earlier run left (a failed one, before the
/// fixes) never meets this one.
fn unique(name: &str) -> String {
    format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

async fn connect() -> container_containerd::ContainerdManager {
    let options =
        ConnectOptions::owned_by_session("containerd-faults-test", "faults").expect("labels");
    container_containerd::connect(options)
        .await
        .expect("containerd answers (cargo xtask engines up)")
}

fn config(name: &str, cmd: &[&str]) -> ContainerConfig {
    ContainerConfig::new(IMAGE)
        .name(name)
        .cmd(cmd.iter().copied())
}

/// The exec FIFO folders under a container's state folder.
fn exec_folders(id: &str) -> Vec<PathBuf> {
    std::fs::read_dir(Path::new(RUN).join(id))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("exec-"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The files this process holds open whose path contains `part`.
fn open_files(part: &str) -> Vec<String> {
    std::fs::read_dir("/proc/self/fd")
        .expect("fds")
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.display().to_string())
        .filter(|p| p.contains(part))
        .collect()
}

/// Item 10: an exec whose create fails (the container is not running) leaves no FIFO
/// folder; neither does a finished one.
#[tokio::test]
async fn a_failed_exec_leaves_no_fifo_folder() {
    let m = manager().await;
    let name = unique("faults-created");
    let id = m
        .create(&config(&name, &["sleep", "600"]))
        .await
        .expect("create");
    let e = m
        .exec(&id, &ExecSpec::new(["true"]))
        .await
        .expect_err("exec in a container that never started");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert_eq!(
        exec_folders(&id),
        Vec::<PathBuf>::new(),
        "a failed exec's FIFO folder"
    );
    m.remove(&id, true).await.expect("remove");
}

/// Item 8: a task whose create fails leaves no log pump holding the stream's lock and
/// FIFO (a later start would run with no reader, and block once the pipe filled).
#[tokio::test]
async fn a_failed_start_leaves_no_log_pump() {
    let m = manager().await;
    let name = unique("faults-bad-binary");
    let bad = m
        .create(&config(&name, &["/nonexistent"]))
        .await
        .expect("create");
    m.start(&bad)
        .await
        .expect_err("a task whose binary does not exist");
    // The pumps are stopped as the start fails; their tasks end at the next turn.
    let lock = Path::new(DATA).join("logs").join(&bad).join("stdout.lock");
    let mut free = false;
    for _ in 0..50 {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&lock)
            .expect("the pump's lock file");
        let locked = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock);
        let lockable = locked.is_ok();
        drop(locked);
        free = lockable && open_files(&bad).is_empty();
        if free {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        free,
        "a pump of the failed start still holds {} or its FIFO: {:?}",
        lock.display(),
        open_files(&bad)
    );
    m.remove(&bad, true).await.expect("remove");
}

/// Item 9: stdin that the process never reads: the writer ends with the exec.
#[tokio::test]
async fn an_unread_stdin_ends_with_its_exec() {
    let m = manager().await;
    let name = unique("faults-stdin");
    let id = m
        .create(&config(&name, &["sleep", "600"]))
        .await
        .expect("create");
    m.start(&id).await.expect("start");
    let out = m
        .exec(
            &id,
            &ExecSpec::new(["sleep", "0.5"]).stdin(vec![b'x'; 4 << 20]),
        )
        .await
        .expect("exec that never reads its stdin");
    assert_eq!(out.exit_code, 0);
    // The container's own log pumps hold its log files; an exec's files are its own.
    let exec_files = format!("{id}/exec-");
    let mut held = open_files(&exec_files);
    for _ in 0..50 {
        if held.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        held = open_files(&exec_files);
    }
    assert_eq!(
        held,
        Vec::<String>::new(),
        "the stdin writer outlived its exec"
    );
    assert_eq!(
        exec_folders(&id),
        Vec::<PathBuf>::new(),
        "a finished exec's FIFO folder"
    );
    m.remove(&id, true).await.expect("remove");
}

/// Item 10: a stop never says Ok while the task still runs: a paused container is
/// stopped (runc thaws it to deliver SIGKILL), not taken for stopped.
#[tokio::test]
async fn a_stop_that_cannot_end_the_task_says_so() {
    let m = manager().await;
    let name = unique("faults-frozen");
    let id = m
        .create(&config(&name, &["sleep", "600"]))
        .await
        .expect("create");
    m.start(&id).await.expect("start");
    let ctr = |verb: &str| {
        let status = std::process::Command::new("ctr")
            .args(["-n", NAMESPACE, "task", verb, &id])
            .status()
            .expect("ctr");
        assert!(status.success(), "ctr task {verb}");
    };
    ctr("pause");
    let stopped = m.stop(&id, Some(Duration::from_secs(1))).await;
    let status = std::process::Command::new("ctr")
        .args(["-n", NAMESPACE, "task", "ls"])
        .output()
        .expect("ctr");
    let listed = String::from_utf8_lossy(&status.stdout).to_string();
    let line = listed
        .lines()
        .find(|l| l.starts_with(id.as_str()))
        .unwrap_or_default()
        .to_string();
    if line.contains("PAUSED") {
        ctr("resume");
    }
    stopped.expect("stop of a paused container");
    assert!(
        line.is_empty() || line.contains("STOPPED"),
        "stop said Ok but the task is not stopped: {line}"
    );
    m.remove(&id, true).await.expect("remove");
}

/// Item 10: a create abandoned at any point leaves nothing that makes the next create of
/// the name a `Conflict` (a snapshot whose key is the name, kept by the create's lease).
#[tokio::test]
async fn an_abandoned_create_does_not_block_the_name() {
    let m = manager().await;
    let name = unique("faults-abandoned");
    let cfg = config(&name, &["sleep", "600"]);
    for step in 0..30u64 {
        tokio::select! {
            made = m.create(&cfg) => { made.expect("create"); }
            () = tokio::time::sleep(Duration::from_millis(step * 3)) => {}
        }
        // The abandoned create's clean-up runs in the background: allow it a moment.
        let started = Instant::now();
        let id = loop {
            match m.create(&cfg).await {
                Ok(id) => break id,
                Err(e)
                    if e.kind() == ErrorKind::Conflict
                        && started.elapsed() < Duration::from_secs(5) =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("create after one abandoned {} ms in: {e}", step * 3),
            }
        };
        m.remove(&id, true).await.expect("remove");
    }
}

/// Pulls of the same new layers at once: each unpacks them, one commits the snapshot
/// first, and the others must take it as theirs (they were `Conflict` "snapshot ...
/// already exists").
#[tokio::test]
async fn concurrent_pulls_of_the_same_new_layers_all_succeed() {
    let m = manager().await;
    let image = container_test_registry::UniqueImage::push("container-rs/concurrent-pull")
        .await
        .expect("push to the local registry");
    let reference = image.direct();
    let options = PullOptions::default();
    let (a, b, c, d) = tokio::join!(
        m.pull(&reference, &options),
        m.pull(&reference, &options),
        m.pull(&reference, &options),
        m.pull(&reference, &options),
    );
    for (i, pulled) in [a, b, c, d].into_iter().enumerate() {
        pulled.unwrap_or_else(|e| panic!("concurrent pull {i}: {e}"));
    }
    assert!(m.image_exists(&reference).await.expect("exists"));
    m.remove_image(&reference, true).await.expect("remove");
}
