//! Today's engines: the newest Docker, Podman and containerd Debian carries (sid), each
//! run from a root filesystem of its own in a mount namespace of its own, beside
//! Debian 12's engines, with their own sockets and state.
//!
//! The root is made once by mmdebstrap from the machine's apt mirror and cached in the
//! state folder (`sid/root`, about 570 MB; 20-60 s on a fresh machine). Each daemon
//! starts through [`enter`]: `unshare --mount`, the root bind-mounted onto itself,
//! `/proc`, `/sys` and `/dev` from the host, a tmpfs on `/run`, then the host folders
//! that clients and engines must see at the same paths ([`binds`]: the host's
//! `/etc/passwd` and `/etc/group`, bind sources under `/tmp`, the sockets under
//! `/run/container-rs-engines`, the containerd backend's FIFOs, logs and volumes, `ctr`'s
//! FIFOs, the state folder, the workspace with the logging binary),
//! and `pivot_root` into it. A chroot is not enough: Podman's execs would then run in
//! the host's root filesystem (ADR 0015).

use std::{ffi::OsStr, fs, path::PathBuf};

use anyhow::Context;
use xshell::{cmd, Cmd, Shell};

use super::{StateDir, RUN_DIR};

/// The suite the engines come from.
const SUITE: &str = "sid";
/// What the root holds beyond Debian's minbase variant. Podman brings conmon and
/// netavark; tini gives Podman's `--init` a static binary; procps
/// gives `docker top` its `ps`.
const PACKAGES: &str = "docker.io,podman,containerd,runc,tini,iptables,procps";
/// The root, relative to the state folder.
const ROOT: &str = "sid/root";
/// Written into the root once mmdebstrap has finished: the versions it holds.
const DONE: &str = "sid/root.versions";
/// The Docker socket of the sid engines.
pub(crate) const DOCKER_SOCKET: &str = "/run/container-rs-engines/sid/docker.sock";
/// The Podman socket.
pub(crate) const PODMAN_SOCKET: &str = "/run/container-rs-engines/sid/podman.sock";
/// The containerd socket.
pub(crate) const CONTAINERD_SOCKET: &str = "/run/container-rs-engines/sid/containerd.sock";
/// The containerd namespace the containerd-sid suite uses: the containerd backend's
/// host folders (`/run/container-rs/containerd/<namespace>`) are shared by both
/// containerds, so each suite keeps to a namespace of its own.
pub(crate) const CONTAINERD_NAMESPACE: &str = "container-rs-sid";

/// Runs in the new mount namespace, then execs the daemon (`"$@"`). Written as shell
/// because it runs between `unshare` and the daemon, where no Rust code of ours runs.
const ENTER: &str = r#"set -eu
r="$SID_ROOT"
mount --bind "$r" "$r"
mount -t proc proc "$r/proc"
mount --rbind /sys "$r/sys"
mount --rbind /dev "$r/dev"
mount -t tmpfs -o mode=755 tmpfs "$r/run"
IFS=:
for p in $SID_BINDS; do
  if [ -d "$p" ]; then mkdir -p "$r$p"; else touch "$r$p"; fi
  mount --bind "$p" "$r$p"
done
unset IFS
cd "$r"
mkdir -p .old
pivot_root . .old
cd /
umount -l /.old
rmdir /.old
exec "$@"
"#;

/// The root, built first when the state folder has none.
pub(super) fn ensure_root(sh: &Shell, state: &StateDir) -> anyhow::Result<PathBuf> {
    let root = state.join(ROOT);
    let done = state.join(DONE);
    if root.is_dir() && done.is_file() {
        return Ok(root);
    }
    let partial = state.join("sid/root.partial");
    if partial.exists() {
        fs::remove_dir_all(&partial)
            .with_context(|| format!("removing the unfinished {}", partial.display()))?;
    }
    if root.exists() {
        fs::remove_dir_all(&root)
            .with_context(|| format!("removing the unfinished {}", root.display()))?;
    }
    fs::create_dir_all(state.join("sid"))?;
    let mirror = format!("deb {} {SUITE} main", mirror()?);
    println!("sid        building the engines' root with mmdebstrap (once per machine)");
    // This mirror's sid Release file is past its Valid-Until date.
    let valid = r#"--aptopt=Acquire::Check-Valid-Until "false""#;
    cmd!(
        sh,
        "mmdebstrap --quiet --variant=minbase --mode=root --format=directory
            {valid}
            --include={PACKAGES}
            --dpkgopt=path-exclude=/usr/share/man/*
            --dpkgopt=path-exclude=/usr/share/doc/*
            {SUITE} {partial} {mirror}"
    )
    .run()
    .context("building the sid root")?;
    let versions = cmd!(
        sh,
        "chroot {partial} dpkg-query -W docker.io podman containerd runc"
    )
    .quiet()
    .read()?;
    fs::rename(&partial, &root)?;
    fs::write(&done, format!("{versions}\n"))?;
    Ok(root)
}

/// The first Debian mirror of the machine's apt sources (deb822 `URIs:` or a
/// one-line `deb` entry).
fn mirror() -> anyhow::Result<String> {
    let deb822 = fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    let one_line = fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    deb822
        .lines()
        .filter_map(|l| l.trim().strip_prefix("URIs:"))
        .flat_map(str::split_whitespace)
        .chain(one_line.lines().filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("deb")).then(|| words.find(|w| !w.starts_with('[')))?
        }))
        .find(|uri| !uri.contains("security"))
        .map(str::to_owned)
        .context("no Debian mirror in /etc/apt/sources.list[.d/debian.sources]")
}

/// The host folders the engines must see at the same paths as their clients.
fn binds(state: &StateDir) -> Vec<PathBuf> {
    let mut binds: Vec<PathBuf> = [
        // The host's users and groups: the engine's host is this one.
        "/etc/passwd",
        "/etc/group",
        "/tmp",
        RUN_DIR,
        "/run/container-rs",
        "/var/lib/container-rs",
        // The FIFOs `ctr run` makes for a task's stdio (the suites run the host's `ctr`).
        "/run/containerd/fifo",
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect();
    binds.push(state.path().to_path_buf());
    // The workspace (the containerd shim runs the logging binary from its target).
    if let Ok(dir) = std::env::current_dir() {
        if !binds.iter().any(|b| dir.starts_with(b)) {
            binds.push(dir);
        }
    }
    binds
}

/// `program args…` started in a new mount namespace whose root is the sid root.
pub(super) fn enter<'a, A: AsRef<OsStr>>(
    sh: &'a Shell,
    state: &StateDir,
    program: &str,
    args: impl IntoIterator<Item = A>,
) -> anyhow::Result<Cmd<'a>> {
    let binds = binds(state);
    for dir in binds.iter().filter(|b| !b.starts_with("/etc")) {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let joined = std::env::join_paths(&binds).context("a bind path holds a `:`")?;
    Ok(cmd!(
        sh,
        "unshare --mount --propagation private -- /bin/sh -c {ENTER} sh"
    )
    .arg(program)
    .args(args)
    .env("SID_ROOT", state.join(ROOT))
    .env("SID_BINDS", joined))
}
