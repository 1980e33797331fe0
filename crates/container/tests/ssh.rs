//! Engines over `ssh://` (ADR 0016), against the harness's sshd on 127.0.0.1:2222
//! (`cargo xtask engines up` starts it; `CONTAINER_RS_SSHD_DIR` names its keys when the
//! state folder is not the default one): a refused key, an unknown host key and a
//! dropped tunnel each give their error kind, and a dropped tunnel comes back; a good key
//! reaches Docker and runs an exec; bind sources are checked with the remote host in
//! mind; a remote socket with no engine is `Unavailable` with ssh's words.

use std::path::PathBuf;
use std::time::Duration;

use container::{BackendKind, ConnectOptions, ErrorKind, ExecSpec};

const ENDPOINT: &str = "ssh://root@127.0.0.1:2222";

/// The harness's sshd folder: keys and `known_hosts`.
fn sshd_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CONTAINER_RS_SSHD_DIR") {
        return PathBuf::from(dir);
    }
    std::env::var_os("CONTAINER_RS_ENGINES_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(
            || PathBuf::from("/var/lib/container-rs-engines"),
            PathBuf::from,
        )
        .join("sshd")
}

/// The environment variables of the tunnel are process-wide: one test at a time.
static ENV: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Every backend: each reaches its engine's default socket on the ssh host.
const KINDS: [BackendKind; 3] = [
    BackendKind::Docker,
    BackendKind::Podman,
    BackendKind::Containerd,
];

async fn connect_with(
    key: &str,
    known_hosts: PathBuf,
) -> container::Result<std::sync::Arc<dyn container::ContainerManager>> {
    let dir = sshd_dir();
    assert!(
        dir.join("client_key").exists(),
        "no sshd keys in {} (run `cargo xtask engines up`)",
        dir.display()
    );
    std::env::set_var("CONTAINER_SSHKEY", dir.join(key));
    std::env::set_var("CONTAINER_SSH_KNOWN_HOSTS", known_hosts);
    let options = ConnectOptions::endpoint(ENDPOINT).with_connect_timeout(Duration::from_secs(20));
    connect_kind(BackendKind::Docker, options).await
}

async fn connect_kind(
    kind: BackendKind,
    options: ConnectOptions,
) -> container::Result<std::sync::Arc<dyn container::ContainerManager>> {
    if kind == BackendKind::Containerd {
        // The namespace the harness's engines serve; the socket is the default one.
        std::env::set_var("CONTAINERD_NAMESPACE", "container-rs-ssh-test");
    }
    container::connect_with(kind, options).await
}

/// Connects `kind` through the harness's sshd with `key` and `known_hosts`.
async fn connect_through(
    kind: BackendKind,
    key: &str,
    known_hosts: PathBuf,
) -> container::Result<std::sync::Arc<dyn container::ContainerManager>> {
    std::env::set_var("CONTAINER_SSHKEY", sshd_dir().join(key));
    std::env::set_var("CONTAINER_SSH_KNOWN_HOSTS", known_hosts);
    let options = ConnectOptions::endpoint(ENDPOINT).with_connect_timeout(Duration::from_secs(20));
    connect_kind(kind, options).await
}

#[tokio::test]
async fn a_good_key_reaches_the_engine_and_runs_an_exec() {
    let _env = ENV.lock().await;
    let m = connect_with("client_key", sshd_dir().join("known_hosts"))
        .await
        .expect("connect through ssh");
    let info = m.info().await.expect("info");
    assert_eq!(info.engine, BackendKind::Docker);
    let image = "127.0.0.1:5000/container-rs/busybox:1";
    m.pull(image, &Default::default()).await.expect("pull");
    let config = container::ContainerConfig::new(image)
        .name(format!("crs-ssh-{}", std::process::id()))
        .cmd(["sleep", "infinity"])
        .init(true);
    let id = m.create(&config).await.expect("create");
    m.start(&id).await.expect("start");
    let out = m
        .exec(&id, &ExecSpec::shell("echo through ssh; exit 3"))
        .await
        .expect("exec");
    assert_eq!(
        (out.exit_code, out.stdout_lossy().as_str()),
        (3, "through ssh\n")
    );
    m.remove(&id, true).await.expect("remove");
}

#[tokio::test]
async fn bind_sources_are_checked_here_for_the_engine_over_there() {
    let _env = ENV.lock().await;
    // The remote engine's socket at a path of its own (a link to Docker's, on this
    // machine both hosts): a folder holding it is the engine's, a sensitive bind.
    let dir = std::env::temp_dir().join(format!("crs-ssh-socket-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("socket folder");
    let socket = dir.join("docker.sock");
    let _ = std::fs::remove_file(&socket);
    std::os::unix::fs::symlink("/var/run/docker.sock", &socket).expect("socket link");
    let dir_keys = sshd_dir();
    std::env::set_var("CONTAINER_SSHKEY", dir_keys.join("client_key"));
    std::env::set_var("CONTAINER_SSH_KNOWN_HOSTS", dir_keys.join("known_hosts"));
    let endpoint = format!("{ENDPOINT}{}", socket.display());
    let options = ConnectOptions::endpoint(&endpoint).with_connect_timeout(Duration::from_secs(20));
    let m = container::connect_with(BackendKind::Docker, options)
        .await
        .expect("connect through ssh to the linked socket");
    let image = "127.0.0.1:5000/container-rs/busybox:1";
    let bind = |source: &std::path::Path| {
        container::ContainerConfig::new(image)
            .name(format!("crs-ssh-bind-{}", std::process::id()))
            .mount(container::Mount::bind(source, "/mnt"))
    };
    let e = m
        .create(&bind(&dir))
        .await
        .expect_err("the engine's socket bound in");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.message().contains(&endpoint), "{e}");
    let missing = dir.join("not-here");
    let e = m
        .create(&bind(&missing))
        .await
        .expect_err("a missing source");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(
        e.message().contains("on this host") && e.message().contains("another host"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_missing_remote_socket_is_unavailable_and_says_so() {
    let _env = ENV.lock().await;
    let dir = sshd_dir();
    std::env::set_var("CONTAINER_SSHKEY", dir.join("client_key"));
    std::env::set_var("CONTAINER_SSH_KNOWN_HOSTS", dir.join("known_hosts"));
    // As a missing local socket: no engine runs there (yet), a retry may help.
    let endpoint = format!("{ENDPOINT}/run/container-rs-no-engine.sock");
    let options = ConnectOptions::endpoint(&endpoint).with_connect_timeout(Duration::from_secs(20));
    let e = container::connect_with(BackendKind::Docker, options)
        .await
        .map(drop)
        .expect_err("no engine at that socket");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    let text = format!("{e:#}");
    assert!(
        text.contains("open failed"),
        "ssh's words are in it: {text}"
    );
}

#[tokio::test]
async fn a_key_the_server_refuses_is_unauthenticated() {
    let _env = ENV.lock().await;
    for kind in KINDS {
        let e = connect_through(kind, "other_key", sshd_dir().join("known_hosts"))
            .await
            .err()
            .unwrap_or_else(|| panic!("{kind}: a refused key connected"));
        assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{kind}: {e}");
        assert!(!e.is_retryable(), "{kind}: {e}");
    }
}

#[tokio::test]
async fn an_unknown_host_key_is_refused() {
    let _env = ENV.lock().await;
    for kind in KINDS {
        let empty = tempfile::NamedTempFile::new().expect("temp file");
        let e = connect_through(kind, "client_key", empty.path().to_path_buf())
            .await
            .err()
            .unwrap_or_else(|| panic!("{kind}: an unknown host key was accepted"));
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{kind}: {e}");
        assert!(
            e.to_string().contains("Host key verification failed"),
            "{kind}: {e}"
        );
        // Nothing was added to the file: the key is never accepted silently.
        assert_eq!(std::fs::read(empty.path()).expect("read").len(), 0);
    }
}

/// The pid of this process's tunnel ssh (the one whose forward names a folder of ours).
fn tunnel_ssh() -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        let parent = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().nth(1))
                    .map(str::to_string)
            });
        if cmdline.starts_with("ssh\0")
            && cmdline.contains("container-rs-ssh-")
            && parent.as_deref() == Some(&std::process::id().to_string())
        {
            found.push(pid);
        }
    }
    found
}

#[tokio::test]
async fn a_dropped_tunnel_is_unavailable_until_ssh_is_back() {
    let _env = ENV.lock().await;
    for kind in KINDS {
        // A known_hosts of this test's own: emptied, it keeps ssh from coming back.
        let known = std::env::temp_dir().join(format!("crs-ssh-known-{}", std::process::id()));
        std::fs::copy(sshd_dir().join("known_hosts"), &known).expect("copy known_hosts");
        let m = connect_through(kind, "client_key", known.clone())
            .await
            .unwrap_or_else(|e| panic!("{kind}: connect through ssh: {e}"));
        m.info().await.expect("info");
        let first = tunnel_ssh();
        assert_eq!(first.len(), 1, "the tunnel's ssh process: {first:?}");
        std::fs::write(&known, b"").expect("empty known_hosts");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(first[0]),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill ssh");
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Down (ssh is started again, and refuses the host it no longer knows): Unavailable,
        // after the manager's own retries of an idempotent call.
        let e = m.info().await.expect_err("info through a dead tunnel");
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{kind}: {e}");
        // Back: once ssh may reach the host again, the same manager works, through a new
        // ssh process.
        std::fs::copy(sshd_dir().join("known_hosts"), &known).expect("restore known_hosts");
        let back = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if m.info().await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        assert!(
            back.is_ok(),
            "{kind}: the tunnel did not come back within 30 s"
        );
        let now = tunnel_ssh();
        assert!(
            now.len() == 1 && now != first,
            "{kind}: a new ssh: before {first:?}, now {now:?}"
        );
        let _ = std::fs::remove_file(&known);
        drop(m);
    }
}
