//! Host safety (issue 14): what a hostile container sends never reaches the host.
//!
//! On Podman (a running container) and containerd the archive of `copy_from` is made by
//! the container's own `tar`, which a container can replace: the cases plant one that
//! sends a crafted archive, so those engines meet the hostile archive for real. Docker's
//! archive comes from dockerd, which only archives what is there: the same steps run,
//! and the same outcome must hold.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use container::{BackendKind, CopyOptions, ErrorKind};

use crate::ctx::Ctx;
use crate::failure::{describe, expect_kind, Failure};
use crate::support::{running, sh};
use crate::{ensure, ensure_eq};

/// Replaces the container's `tar` with one that sends `/evil.tar` whatever it is asked.
const FAKE_TAR: &str = "rm -f /bin/tar && printf '#!/bin/sh\\ncat /evil.tar\\n' > /bin/tar \
                        && chmod 0755 /bin/tar";

/// Every mode under `root` (itself included), by path relative to `root`'s parent.
fn modes(root: &Path) -> Result<Vec<(String, u32)>, Failure> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let meta = fs::symlink_metadata(&p)?;
        let rel = p
            .strip_prefix(root.parent().unwrap_or(root))
            .map_err(|e| Failure::new(e.to_string()))?
            .display()
            .to_string();
        out.push((rel, meta.permissions().mode() & 0o7777));
        if meta.is_dir() {
            for e in fs::read_dir(&p)? {
                todo.push(e?.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Case 79: `copy_from` of a setuid-root file, a world-writable folder, an entry outside
/// the requested name and a hard link to an existing host file: nothing setuid, setgid
/// or world-writable lands on the host, nothing outside the new tree is written,
/// chmodded or chowned, and nothing that existed is replaced.
pub async fn case_79_hostile_copy_from(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 79).await?;
    let host = tempfile::tempdir()?;

    // 1. Modes: setuid root, setgid, sticky, world-writable.
    sh(
        m,
        &id,
        "set -e; mkdir -p /x/data/open /x/data/sticky; cp /bin/busybox /x/data/sh; \
         chmod 4755 /x/data/sh; echo g > /x/data/g; chmod 2775 /x/data/g; \
         chmod 0777 /x/data/open; chmod 1777 /x/data/sticky; echo w > /x/data/w; \
         chmod 0666 /x/data/w",
    )
    .await?;
    let out = host.path().join("modes");
    fs::create_dir(&out)?;
    m.copy_from(&id, "/x/data", &out).await?;
    let bad: Vec<String> = modes(&out.join("data"))?
        .into_iter()
        .filter(|(_, mode)| mode & 0o7022 != 0)
        .map(|(p, mode)| format!("{p} {mode:o}"))
        .collect();
    ensure!(
        bad.is_empty(),
        "setuid, setgid, sticky or group/other-writable modes landed on the host: {bad:?}"
    );
    ensure!(
        fs::read(out.join("data/sh"))?.len() > 1000,
        "the busybox copy is whole"
    );

    // 2. The existing name is never replaced.
    let before = fs::read_to_string(out.join("data/g"))?;
    let again = m.copy_from(&id, "/x/data", &out).await;
    expect_kind(
        again,
        ErrorKind::Conflict,
        "copy_from over an existing tree",
    )?;
    ensure_eq!(
        fs::read_to_string(out.join("data/g"))?,
        before,
        "a file of the first copy after a second copy to the same place"
    );

    // 3. A crafted archive from the container's own tar: an entry `git` next to the
    // requested `data`, and a hard link from `data/l` to `victim` (a file the host
    // already has next to the copy, which an owned copy would have chowned).
    sh(
        m,
        &id,
        "set -e; mkdir -p /y/data; cd /y; echo hi > data/f; echo evil > git; \
         echo theirs > victim; ln victim data/l; tar -cf /evil.tar git data; \
         tar -cf /evil-link.tar victim data",
    )
    .await?;
    sh(m, &id, FAKE_TAR).await?;
    let out = host.path().join("crafted");
    fs::create_dir(&out)?;
    let copied = m.copy_from(&id, "/y/data", &out).await;
    ensure!(
        !out.join("git").exists(),
        "an entry outside the requested name landed on the host (result {:?})",
        copied.as_ref().map_err(describe)
    );
    // Where the container's tar makes the archive, the crafted one must be refused.
    let crafted = ctx.kind() != BackendKind::Docker;
    if crafted || copied.is_err() {
        expect_kind(
            copied,
            ErrorKind::InvalidInput,
            "a crafted archive with `git` in it",
        )?;
    }

    let out = host.path().join("linked");
    fs::create_dir(&out)?;
    let victim = out.join("victim");
    fs::write(&victim, "mine\n")?;
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600))?;
    let victim_before = fs::metadata(&victim)?;
    sh(m, &id, "cp /evil-link.tar /evil.tar").await?;
    let options = if nix::unistd::geteuid().is_root() {
        CopyOptions::owned_by(4242, 4242)
    } else {
        CopyOptions::default()
    };
    let copied = m.copy_from_with(&id, "/y/data", &out, &options).await;
    let victim_after = fs::metadata(&victim)?;
    let shown = format!("{:?}", copied.as_ref().map_err(describe));
    if crafted {
        expect_kind(
            copied,
            ErrorKind::InvalidInput,
            "a crafted archive with a hard link",
        )?;
    }
    ensure_eq!(
        (
            fs::read_to_string(&victim)?,
            victim_after.uid(),
            victim_after.gid(),
            victim_after.permissions().mode() & 0o7777,
            victim_after.nlink()
        ),
        (
            "mine\n".to_string(),
            victim_before.uid(),
            victim_before.gid(),
            0o600,
            1
        ),
        "the host file next to the copy (content, owner, mode, links) after a copy with a \
         hard link to it (result {shown})"
    );
    Ok(())
}

/// Case 80: a destination folder that is a symlink is refused (`InvalidInput`), and
/// nothing lands where it points.
pub async fn case_80_copy_destination_symlink(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 80).await?;
    sh(m, &id, "mkdir -p /z/data && echo hi > /z/data/f").await?;
    let host = tempfile::tempdir()?;
    let real = host.path().join("real");
    fs::create_dir(&real)?;
    let link = host.path().join("link");
    std::os::unix::fs::symlink(&real, &link)?;
    let copied = m.copy_from(&id, "/z/data", &link).await;
    ensure!(
        fs::read_dir(&real)?.next().is_none(),
        "the copy wrote where the destination symlink points"
    );
    let e = expect_kind(copied, ErrorKind::InvalidInput, "copy_from into a symlink")?;
    ensure!(
        e.to_string().contains("symlink"),
        "the error names the symlink: {}",
        describe(&e)
    );
    Ok(())
}
