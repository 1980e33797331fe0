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

use container::{BackendKind, CopyOptions, ErrorKind, Mount, MountInfo};

use crate::ctx::{Ctx, Foreign};
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

/// Case 81: bind sources that reach host or engine internals (`/`, `/proc`, `/sys`,
/// `/dev`, `/etc`, the engine's own socket, the same through `..` or a symlink) are
/// `InvalidInput` naming the opt-in, before anything is made; with the opt-in the mount
/// works (`/etc` read-only: the container reads the host's file).
pub async fn case_81_sensitive_bind_sources(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let host = tempfile::tempdir()?;
    let link = host.path().join("etc-link");
    std::os::unix::fs::symlink("/etc", &link)?;
    let mut sources: Vec<std::path::PathBuf> =
        ["/", "/proc", "/sys", "/dev", "/etc", "/tmp/../etc"]
            .iter()
            .map(std::path::PathBuf::from)
            .collect();
    sources.push(link);
    if let Some(socket) = ctx.engine().endpoint.strip_prefix("unix://") {
        sources.push(socket.into());
    }
    let name = ctx.name(81);
    t.container(name.clone());
    for source in &sources {
        let config = crate::support::sleeper(ctx, &name).mount(Mount::bind(source, "/host"));
        let e = expect_kind(
            m.create(&config).await,
            ErrorKind::InvalidInput,
            &format!("a bind of {}", source.display()),
        )?;
        ensure!(
            e.to_string().contains("allow_sensitive"),
            "the error names the opt-in: {}",
            describe(&e)
        );
    }
    ensure!(
        m.list(&container::Labels::new())
            .await?
            .iter()
            .all(|c| c.name != name),
        "a refused create made a container"
    );
    let config = crate::support::sleeper(ctx, &name).mount(
        Mount::bind("/etc", "/host-etc")
            .read_only()
            .allow_sensitive(),
    );
    let id = crate::support::run_config(ctx, &mut t, &config).await?;
    let inside = sh(m, &id, "cat /host-etc/passwd").await?;
    ensure_eq!(
        inside,
        fs::read_to_string("/etc/passwd")?,
        "the host's /etc/passwd through an opted-in read-only bind"
    );
    Ok(())
}

/// Case 82: a foreign container (made with the engine's CLI) that mounts one of our
/// volumes survives `cleanup`: the volume stays while it is used (`Conflict` for it is
/// fine), and goes with the next cleanup once the foreign container is gone.
pub async fn case_82_foreign_container_on_our_volume(ctx: &Ctx) -> Result<(), Failure> {
    let cli = ctx.cli();
    let owner = format!("container-rs-conformance-c82-{}", ctx.short_session());
    let m2 = ctx.isolated_manager(Some(&owner)).await?;
    let mut t = ctx.tracker_for(&m2);
    let volume = ctx.name(82);
    t.volume(volume.clone());
    let info = m2
        .create_volume(&container::VolumeConfig::new(volume.clone()))
        .await?;
    let mountpoint = info.mountpoint.clone().unwrap_or_default();
    let foreign = format!("{}-foreign", ctx.name(82));
    let with_volume = Foreign {
        volume: Some((volume.clone(), mountpoint, "/v".into())),
        ..Foreign::default()
    };
    cli.create_foreign(&foreign, ctx.image(), &with_volume)
        .await?;
    let checked = async {
        let cleaned = m2.cleanup(container::CleanupScope::Session).await;
        if let Err(e) = &cleaned {
            ensure_eq!(
                e.kind(),
                ErrorKind::Conflict,
                "cleanup with a foreign user of a volume: {}",
                describe(e)
            );
        }
        ensure!(
            cli.exists(&foreign).await?,
            "cleanup removed the foreign container that uses our volume (result {:?})",
            cleaned.as_ref().map_err(describe)
        );
        ensure!(
            m2.inspect_volume(&volume).await.is_ok(),
            "the volume went while a foreign container uses it"
        );
        Ok::<(), Failure>(())
    }
    .await;
    let removed = cli.remove(&foreign).await;
    checked?;
    removed?;
    let report = m2.cleanup(container::CleanupScope::Session).await?;
    ensure_eq!(
        report.volumes,
        vec![volume.clone()],
        "the volume goes with the cleanup after its foreign user"
    );
    Ok(())
}

/// Whether `reported` (from inspect) has the bind of `host` at `target`, the host paths
/// compared after resolving symlinks.
fn has_bind(reported: &[MountInfo], host: &Path, target: &str) -> bool {
    let host = fs::canonicalize(host).unwrap_or_else(|_| host.to_path_buf());
    reported.iter().any(|m| {
        matches!(m, MountInfo::Bind { source, target: t }
            if t == target
                && fs::canonicalize(source).unwrap_or_else(|_| source.into()) == host)
    })
}

/// Case 83: inspect reports the bind and volume mounts, and create-by-name never adopts
/// a container whose labels were copied from ours but whose mounts differ: one made with
/// the engine's CLI, our labels and another host folder at the same target is `Conflict`
/// and left untouched; one with our labels and the same mounts is adopted (the check
/// compares, it does not refuse everything made elsewhere).
pub async fn case_83_copied_labels_other_mounts(ctx: &Ctx) -> Result<(), Failure> {
    let (m, cli) = (ctx.manager(), ctx.cli());
    let mut t = ctx.tracker();
    let name = ctx.name(83);
    let volume = format!("{name}-v");
    t.volume(volume.clone());
    let info = m
        .create_volume(&container::VolumeConfig::new(volume.clone()))
        .await?;
    let mountpoint = info.mountpoint.clone().unwrap_or_default();
    let (ours, theirs) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let config = crate::support::sleeper(ctx, &name)
        .mount(Mount::bind(ours.path(), "/work"))
        .mount(Mount::volume(volume.clone(), "/v"));
    t.container(name.clone());
    let id = m.create(&config).await?;
    let seen = m.inspect(&id).await?;
    let reported = seen.mounts.clone().unwrap_or_default();
    ensure!(
        seen.mounts.is_some() && has_bind(&reported, ours.path(), "/work"),
        "inspect does not report the bind of {} at /work: {:?}",
        ours.path().display(),
        seen.mounts
    );
    ensure!(
        reported.iter().any(
            |m| matches!(m, MountInfo::Volume { name, target } if *name == volume && target == "/v")
        ),
        "inspect does not report the volume {volume} at /v: {reported:?}"
    );
    let labels: Vec<(String, String)> = seen.labels.clone().into_iter().collect();
    m.remove(&id, true).await?;

    let forge = |host: &Path| Foreign {
        labels: labels.clone(),
        binds: vec![(host.display().to_string(), "/work".into())],
        volume: Some((volume.clone(), mountpoint.clone(), "/v".into())),
    };
    // The same mounts: adopted.
    cli.create_foreign(&name, ctx.image(), &forge(ours.path()))
        .await?;
    let adopted = m.create(&config).await;
    let foreign_id = m.inspect(&name).await?.id;
    ensure_eq!(
        adopted.as_ref().map_err(describe).ok(),
        Some(&foreign_id),
        "a container with our labels and the same mounts is adopted"
    );
    cli.remove(&name).await?;

    // Another host folder at /work: Conflict, and left as it was.
    cli.create_foreign(&name, ctx.image(), &forge(theirs.path()))
        .await?;
    let refused = m.create(&config).await;
    let still = m.inspect(&name).await;
    let removed = cli.remove(&name).await;
    expect_kind(
        refused,
        ErrorKind::Conflict,
        "create by name over a container with copied labels and another bind",
    )?;
    let still = still?;
    ensure!(
        has_bind(&still.mounts.unwrap_or_default(), theirs.path(), "/work"),
        "the forged container was changed"
    );
    removed?;
    Ok(())
}
