//! The rootless engines: `podman system service` and dockerd (through Debian's
//! `dockerd-rootless.sh` and rootlesskit) run by an unprivileged user, `crs-rootless`
//! (uid [`UID`]), with subordinate ids from `/etc/subuid` and `/etc/subgid` (Debian's
//! `uidmap`), the kernel's own rootless overlay, and their sockets where a rootless
//! user's engines have them (`$XDG_RUNTIME_DIR/podman/podman.sock`,
//! `$XDG_RUNTIME_DIR/docker.sock`). The conformance suites run against them as that user
//! (`conformance --backend podman-rootless|docker-rootless`), as a rootless user's build
//! tool would.

use std::{fs, os::unix::fs::PermissionsExt, path::Path};

use anyhow::{bail, Context};
use std::ffi::OsStr;

use xshell::{cmd, Cmd, Shell};

use super::StateDir;

/// The user that runs the service and the suite.
pub(crate) const USER: &str = "crs-rootless";
/// Its uid: fixed, so that the socket path is known before the user exists.
pub(crate) const UID: u32 = 2301;
/// Its `XDG_RUNTIME_DIR`.
pub(crate) const RUNTIME_DIR: &str = "/run/user/2301";
/// The Podman service's socket.
pub(crate) const SOCKET: &str = "/run/user/2301/podman/podman.sock";
/// The rootless dockerd's socket.
pub(crate) const DOCKER_SOCKET: &str = "/run/user/2301/docker.sock";
/// The rootless dockerd's data, in the state folder.
pub(crate) const DOCKER_DATA_DIR: &str = "docker-rootless/data";
/// Runtime state of the service (`@ROOTLESS_RUN_DIR@` in the fixtures).
pub(crate) const RUN_DIR: &str = "/run/user/2301/containers";
/// Its data, in the state folder.
pub(crate) const DATA_DIR: &str = "podman-rootless/storage";
/// Subordinate ids given to the user when it has none.
const SUBORDINATE_IDS: &str = "200000-265535";

/// Makes the user (with subordinate ids) and its folders, unless they exist.
pub(super) fn prepare(sh: &Shell, state: &StateDir) -> anyhow::Result<()> {
    if cmd!(sh, "id -u {USER}")
        .quiet()
        .ignore_stderr()
        .read()
        .is_err()
    {
        let uid = UID.to_string();
        cmd!(
            sh,
            "useradd --create-home --user-group --uid {uid} --shell /bin/sh {USER}"
        )
        .run()
        .with_context(|| format!("making the user {USER}"))?;
    }
    let uid: u32 = cmd!(sh, "id -u {USER}").quiet().read()?.trim().parse()?;
    if uid != UID {
        bail!("the user {USER} exists with uid {uid}, not {UID}: remove it (`userdel -r {USER}`)");
    }
    // Debian's useradd gives new users subordinate ids (SUB_UID_COUNT); an older user
    // may have none.
    for (file, flag) in [
        ("/etc/subuid", "--add-subuids"),
        ("/etc/subgid", "--add-subgids"),
    ] {
        let text = fs::read_to_string(file).unwrap_or_default();
        if !text.lines().any(|l| l.starts_with(&format!("{USER}:"))) {
            cmd!(sh, "usermod {flag} {SUBORDINATE_IDS} {USER}").run()?;
        }
    }
    let gid = gid(sh)?;
    for dir in [
        RUNTIME_DIR.to_string(),
        format!("{RUNTIME_DIR}/podman"),
        RUN_DIR.to_string(),
        state.join(DATA_DIR).display().to_string(),
        state.join("docker-rootless").display().to_string(),
        state.join(DOCKER_DATA_DIR).display().to_string(),
    ] {
        fs::create_dir_all(&dir).with_context(|| format!("creating {dir}"))?;
        std::os::unix::fs::chown(&dir, Some(UID), Some(gid))
            .with_context(|| format!("giving {dir} to {USER}"))?;
    }
    fs::set_permissions(RUNTIME_DIR, fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// `program args…` run as the user through `setpriv`, with the user's `HOME`, `USER`,
/// `LOGNAME` and `XDG_RUNTIME_DIR`. The gid is the one [`prepare`] made; a wrong one only
/// fails the program, which then says why.
pub(crate) fn as_user<'a, A: AsRef<OsStr>>(
    sh: &'a Shell,
    program: impl AsRef<OsStr>,
    args: impl IntoIterator<Item = A>,
) -> Cmd<'a> {
    let (uid, gid) = (UID.to_string(), gid(sh).unwrap_or(UID).to_string());
    cmd!(sh, "setpriv --reuid {uid} --regid {gid} --init-groups")
        .arg(program)
        .args(args)
        .env("HOME", home())
        .env("USER", USER)
        .env("LOGNAME", USER)
        .env("XDG_RUNTIME_DIR", RUNTIME_DIR)
}

/// The user's primary group.
pub(crate) fn gid(sh: &Shell) -> anyhow::Result<u32> {
    Ok(cmd!(sh, "id -g {USER}").quiet().read()?.trim().parse()?)
}

/// The user's home folder.
pub(crate) fn home() -> String {
    format!("/home/{USER}")
}

/// A folder the user may write into (made, or given to it).
pub(crate) fn writable_dir(sh: &Shell, dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::os::unix::fs::chown(dir, Some(UID), Some(gid(sh)?))
        .with_context(|| format!("giving {} to {USER}", dir.display()))
}
