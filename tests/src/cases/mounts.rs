//! Cases 40-46: bind mounts, tmpfs, mount validation.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use container::{ContainerConfig, ErrorKind, ExecSpec, Mount, Relabel};

use crate::ctx::Ctx;
use crate::failure::{expect_kind, Failure};
use crate::support::{exec_ok, run_config, sh, sleeper};
use crate::{ensure, ensure_eq};

/// Case 40: A read-write bind mount: writes are visible both ways.
pub async fn case_40_bind_rw(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let dir = tempfile::tempdir()?;
    fs::write(dir.path().join("from-host"), "hello from the host\n")?;
    let name = ctx.name(40);
    let config = sleeper(ctx, &name).mount(Mount::bind(dir.path(), "/data"));
    let id = run_config(ctx, &mut t, &config).await?;

    ensure_eq!(
        sh(m, &id, "cat /data/from-host").await?,
        "hello from the host\n",
        "host file seen in the container"
    );
    sh(
        m,
        &id,
        "echo 'hello from the container' > /data/from-container",
    )
    .await?;
    ensure_eq!(
        fs::read_to_string(dir.path().join("from-container"))?,
        "hello from the container\n",
        "container file seen on the host"
    );
    fs::write(dir.path().join("from-host"), "changed on the host\n")?;
    ensure_eq!(
        sh(m, &id, "cat /data/from-host").await?,
        "changed on the host\n",
        "a later host change seen in the container"
    );

    // With SELinux relabelling asked for (a no-op where SELinux is off), the bind works
    // the same both ways.
    let relabelled = sleeper(ctx, &ctx.name(40))
        .mount(Mount::bind(dir.path(), "/data").relabel(Relabel::Shared));
    let id = run_config(ctx, &mut t, &relabelled).await?;
    ensure_eq!(
        sh(
            m,
            &id,
            "cat /data/from-host; echo relabelled > /data/relabelled"
        )
        .await?,
        "changed on the host\n",
        "host file seen through a relabelled bind"
    );
    ensure_eq!(
        fs::read_to_string(dir.path().join("relabelled"))?,
        "relabelled\n",
        "container file seen on the host through a relabelled bind"
    );
    Ok(())
}

/// Case 41: A read-only bind mount: a write fails (EROFS); the host file is unchanged.
pub async fn case_41_bind_ro(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let dir = tempfile::tempdir()?;
    fs::write(dir.path().join("keep"), "original\n")?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777))?;
    let name = ctx.name(41);
    let config = sleeper(ctx, &name).mount(Mount::bind(dir.path(), "/data").read_only());
    let id = run_config(ctx, &mut t, &config).await?;

    ensure_eq!(
        sh(m, &id, "cat /data/keep").await?,
        "original\n",
        "read through the ro mount"
    );
    for script in [
        "echo changed > /data/keep",
        "touch /data/new",
        "rm /data/keep",
    ] {
        let out = m.exec(&id, &ExecSpec::shell(script)).await?;
        ensure!(
            out.exit_code != 0,
            "`{script}` succeeded on a read-only bind mount"
        );
        ensure!(
            out.stderr_lossy().contains("Read-only file system"),
            "`{script}` failed without EROFS: {:?}",
            out.stderr_lossy()
        );
    }
    ensure_eq!(
        fs::read_to_string(dir.path().join("keep"))?,
        "original\n",
        "host file after the refused writes"
    );
    ensure!(
        !dir.path().join("new").exists(),
        "a file appeared on the host"
    );
    Ok(())
}

/// Case 42: A host path that is a symlink (to a directory or to a file) works.
pub async fn case_42_bind_symlink(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let dir = tempfile::tempdir()?;
    let real = dir.path().join("real");
    fs::create_dir(&real)?;
    fs::write(real.join("inside"), "through a symlinked dir\n")?;
    fs::write(dir.path().join("file"), "through a symlinked file\n")?;
    std::os::unix::fs::symlink(&real, dir.path().join("dir-link"))?;
    std::os::unix::fs::symlink(dir.path().join("file"), dir.path().join("file-link"))?;

    let name = ctx.name(42);
    let config = sleeper(ctx, &name)
        .mount(Mount::bind(dir.path().join("dir-link"), "/data"))
        .mount(Mount::bind(dir.path().join("file-link"), "/single.txt"));
    let id = run_config(ctx, &mut t, &config).await?;
    ensure_eq!(
        sh(m, &id, "cat /data/inside").await?,
        "through a symlinked dir\n",
        "file under a symlinked bind source"
    );
    ensure_eq!(
        sh(m, &id, "cat /single.txt").await?,
        "through a symlinked file\n",
        "symlinked file bind source"
    );
    sh(m, &id, "echo written > /data/back").await?;
    ensure_eq!(
        fs::read_to_string(real.join("back"))?,
        "written\n",
        "write through the symlinked mount lands in the real directory"
    );
    Ok(())
}

/// Case 43: A missing host path → `InvalidInput`, never created; relative paths → `InvalidInput`.
pub async fn case_43_bind_bad_paths(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("missing");
    let bad = [
        ("missing host path", Mount::bind(&missing, "/data")),
        ("relative host path", Mount::bind("relative/dir", "/data")),
        ("relative container path", Mount::bind(dir.path(), "data")),
        (
            "relative volume target",
            Mount::volume(ctx.name(43), "data"),
        ),
        ("relative tmpfs target", Mount::tmpfs("scratch")),
        (
            "'..' in the target",
            Mount::bind(dir.path(), "/data/../etc"),
        ),
    ];
    for (what, mount) in bad {
        let name = ctx.name(43);
        t.container(name.clone());
        expect_kind(
            m.create(&sleeper(ctx, &name).mount(mount)).await,
            ErrorKind::InvalidInput,
            what,
        )?;
        expect_kind(
            m.inspect(&name).await,
            ErrorKind::NotFound,
            &format!("container after the refused create ({what})"),
        )?;
    }
    ensure!(
        !missing.exists(),
        "the missing bind source {} was created",
        missing.display()
    );
    Ok(())
}

/// Case 44: Files written as 1000:1000 into a bind mount are owned by 1000:1000 on the host
/// (by what the engine maps 1000 to, for an engine in a user namespace of its own).
pub async fn case_44_bind_ownership(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let dir = tempfile::tempdir()?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777))?;
    let name = ctx.name(44);
    let config = ContainerConfig::new(ctx.image())
        .name(&name)
        .cmd(["sleep", "3600"])
        .user(1000, 1000)
        .mount(Mount::bind(dir.path(), "/out"));
    let id = run_config(ctx, &mut t, &config).await?;
    let who = sh(
        m,
        &id,
        "echo data > /out/file; mkdir /out/dir; id -u; id -g",
    )
    .await?;
    ensure_eq!(who, "1000\n1000\n", "uid and gid inside");
    // The host's own ids, unless the engine maps them (a rootless engine's user
    // namespace: its `EngineInfo` says how).
    let info = m.info().await?;
    let on_host = |uid: u32, gid: u32| (info.host_uid(uid), info.host_gid(gid));
    for entry in ["file", "dir"] {
        let meta = fs::metadata(dir.path().join(entry))?;
        ensure_eq!(
            (Some(meta.uid()), Some(meta.gid())),
            on_host(1000, 1000),
            "host owner of {entry} written as 1000:1000"
        );
    }
    // An exec with another user writes as that user.
    exec_ok(
        m,
        &id,
        &ExecSpec::shell("echo root > /out/root-file").user(0, 0),
    )
    .await?;
    let meta = fs::metadata(dir.path().join("root-file"))?;
    ensure_eq!(
        (Some(meta.uid()), Some(meta.gid())),
        on_host(0, 0),
        "host owner of a file written as 0:0"
    );
    Ok(())
}

/// Case 45: A tmpfs mount works and is empty on each start.
pub async fn case_45_tmpfs(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let name = ctx.name(45);
    let config = sleeper(ctx, &name)
        .mount(Mount::tmpfs("/scratch"))
        .mount(Mount::Tmpfs {
            target: "/sized".into(),
            size_bytes: Some(8 << 20),
        });
    let id = run_config(ctx, &mut t, &config).await?;
    let mounts = sh(m, &id, "grep -E ' /(scratch|sized) ' /proc/mounts").await?;
    ensure!(
        mounts.lines().filter(|l| l.starts_with("tmpfs ")).count() == 2,
        "no tmpfs at /scratch and /sized: {mounts:?}"
    );
    ensure!(
        mounts
            .lines()
            .any(|l| l.contains(" /sized ") && l.contains("size=8192k")),
        "/sized is not limited to 8 MiB: {mounts:?}"
    );
    ensure_eq!(sh(m, &id, "ls -A /scratch").await?, "", "fresh tmpfs");
    sh(m, &id, "echo x > /scratch/f").await?;
    ensure_eq!(
        sh(m, &id, "ls -A /scratch").await?,
        "f\n",
        "tmpfs after a write"
    );
    m.stop(&id, Some(Duration::from_secs(1))).await?;
    m.start(&id).await?;
    ensure_eq!(
        sh(m, &id, "ls -A /scratch").await?,
        "",
        "tmpfs after a restart"
    );
    Ok(())
}

/// Case 46: Two mounts to the same target → `InvalidInput`.
pub async fn case_46_duplicate_target(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let dir = tempfile::tempdir()?;
    let pairs = [
        (Mount::bind(dir.path(), "/data"), Mount::tmpfs("/data")),
        (
            Mount::bind(dir.path(), "/data"),
            Mount::bind(dir.path(), "/data/"),
        ),
        (Mount::volume(ctx.name(46), "/v"), Mount::tmpfs("//v")),
    ];
    for (a, b) in pairs {
        let what = format!("mounts {a:?} and {b:?}");
        let name = ctx.name(46);
        t.container(name.clone());
        expect_kind(
            m.create(&sleeper(ctx, &name).mount(a).mount(b)).await,
            ErrorKind::InvalidInput,
            &what,
        )?;
        expect_kind(
            m.inspect(&name).await,
            ErrorKind::NotFound,
            &format!("container after the refused create ({what})"),
        )?;
    }
    Ok(())
}
