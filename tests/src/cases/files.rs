//! Cases 61-63: copying files and directories out of and into containers.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use container::{ContainerConfig, CopyOptions, ErrorKind, Result as CResult};

use crate::ctx::{Ctx, SLACK};
use crate::failure::{describe, expect_kind, Failure};
use crate::support::{run_config, running, sh};
use crate::{ensure, ensure_eq, fail};

/// What a listing records for one entry: kind, mode, mtime, link target.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    /// Octal permission bits, e.g. `750`.
    mode: Option<String>,
    mtime: Option<i64>,
    link: Option<String>,
}

/// Lists `root` on the host like `list_inside` does in the container: modes and mtimes
/// for files and directories, link targets for symlinks.
fn list_host(root: &Path) -> Result<BTreeMap<String, Entry>, Failure> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Entry>) -> Result<(), Failure> {
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let meta = fs::symlink_metadata(&path)?;
            let rel = path
                .strip_prefix(root)
                .map_err(|e| Failure::new(e.to_string()))?
                .display()
                .to_string();
            let e = if meta.file_type().is_symlink() {
                Entry {
                    kind: "symlink",
                    mode: None,
                    mtime: None,
                    link: Some(fs::read_link(&path)?.display().to_string()),
                }
            } else {
                Entry {
                    kind: if meta.is_dir() { "dir" } else { "file" },
                    mode: Some(format!("{:o}", meta.permissions().mode() & 0o7777)),
                    mtime: Some(meta.mtime()),
                    link: None,
                }
            };
            out.insert(rel, e);
            if meta.is_dir() {
                walk(root, &path, out)?;
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out)?;
    Ok(out)
}

/// Lists `dir` inside the container with busybox `find` and `stat` (lstat).
async fn list_inside(ctx: &Ctx, id: &str, dir: &str) -> Result<BTreeMap<String, Entry>, Failure> {
    let text = sh(
        ctx.manager(),
        id,
        &format!(
            "cd {dir} && find . -mindepth 1 -exec stat -c '%n|%a|%Y|%F' {{}} \\; && \
             find . -mindepth 1 -type l -exec sh -c 'echo \"$1|$(readlink \"$1\")\"' _ {{}} \\;"
        ),
    )
    .await?;
    let mut out = BTreeMap::new();
    let mut links = BTreeMap::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split('|').collect();
        let name = parts[0].trim_start_matches("./").to_string();
        match parts.len() {
            4 => {
                let kind = match parts[3] {
                    "directory" => "dir",
                    "symbolic link" => "symlink",
                    _ => "file",
                };
                let entry = if kind == "symlink" {
                    Entry {
                        kind,
                        mode: None,
                        mtime: None,
                        link: None,
                    }
                } else {
                    Entry {
                        kind,
                        mode: Some(parts[1].to_string()),
                        mtime: parts[2].parse().ok(),
                        link: None,
                    }
                };
                out.insert(name, entry);
            }
            2 => {
                links.insert(name, parts[1].to_string());
            }
            _ => fail!("odd listing line {line:?}"),
        }
    }
    for (name, target) in links {
        if let Some(e) = out.get_mut(&name) {
            e.link = Some(target);
        }
    }
    Ok(out)
}

fn entries_of(dir: &Path) -> Result<Vec<String>, Failure> {
    let mut names: Vec<String> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    Ok(names)
}

/// Case 61: Copy a directory out: contents, modes and mtimes kept, symlinks kept as links,
/// nothing written outside the target folder.
pub async fn case_61_copy_from(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 61).await?;
    let escape = format!("/tmp/crs-escape-{}", uuid::Uuid::new_v4().simple());
    sh(
        m,
        &id,
        &format!(
            "set -e; mkdir -p /src/dir/sub /src/dir/empty; cd /src/dir; \
             printf 'hello\\n' > file.txt; printf '#!/bin/sh\\n' > script.sh; \
             chmod 0750 script.sh; printf 's' > secret; chmod 0604 secret; \
             head -c 300000 /dev/urandom > sub/blob.bin; printf deep > sub/deep.txt; \
             ln -s file.txt link-rel; ln -s /etc/passwd link-abs; \
             ln -s ../../../../../../../..{escape} link-out; ln -s sub link-dir; \
             touch -d '2001-02-03 04:05:06' file.txt secret sub/deep.txt; \
             chmod 0711 sub; chmod 0700 empty; \
             touch -d '2002-03-04 05:06:07' sub empty ."
        ),
    )
    .await?;
    let inside = list_inside(ctx, &id, "/src/dir").await?;
    ensure_eq!(
        inside.get("file.txt").and_then(|e| e.mtime),
        Some(981_173_106),
        "test setup: touch -d inside the container"
    );

    let parent = tempfile::tempdir()?;
    let target = parent.path().join("out");
    fs::create_dir(&target)?;
    m.copy_from(&id, "/src/dir", &target).await?;
    let copied = target.join("dir");
    ensure!(
        copied.is_dir(),
        "copy_from did not create {}",
        copied.display()
    );
    let outside = list_host(&copied)?;
    ensure_eq!(
        outside.keys().collect::<Vec<_>>(),
        inside.keys().collect::<Vec<_>>(),
        "entries copied out"
    );
    let mismatches: Vec<String> = inside
        .iter()
        .filter(|(name, want)| outside.get(*name) != Some(*want))
        .map(|(name, want)| format!("{name}: container {want:?}, host {:?}", outside.get(name)))
        .collect();
    ensure!(
        mismatches.is_empty(),
        "kind, mode, mtime or link target not kept:\n  {}",
        mismatches.join("\n  ")
    );
    ensure_eq!(
        fs::read_to_string(copied.join("file.txt"))?,
        "hello\n",
        "content of file.txt"
    );
    let blob = sh(m, &id, "sha256sum /src/dir/sub/blob.bin").await?;
    let host_blob = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(fs::read(copied.join("sub/blob.bin"))?))
    };
    ensure_eq!(
        blob.split_whitespace().next().unwrap_or_default(),
        host_blob,
        "sha256 of a 300 kB binary file"
    );
    ensure!(
        !Path::new(&escape).exists(),
        "{escape} was written through an outward symlink"
    );
    ensure_eq!(
        entries_of(parent.path())?,
        vec!["out".to_string()],
        "entries next to the target"
    );
    ensure_eq!(
        entries_of(&target)?,
        vec!["dir".to_string()],
        "entries of the target"
    );

    // A single file.
    let single = parent.path().join("out").join("single");
    fs::create_dir(&single)?;
    m.copy_from(&id, "/src/dir/secret", &single).await?;
    let meta = fs::metadata(single.join("secret"))?;
    ensure_eq!(
        format!("{:o}", meta.permissions().mode() & 0o7777),
        "604",
        "mode of a single file"
    );
    ensure_eq!(meta.mtime(), 981_173_106, "mtime of a single file");
    ensure_eq!(
        fs::read_to_string(single.join("secret"))?,
        "s",
        "content of a single file"
    );

    // The caller picks the owner of what the copy creates (root gives files away);
    // the target directory itself, which the caller made, keeps its owner.
    let owned = parent.path().join("out").join("owned");
    fs::create_dir(&owned)?;
    let own_before = fs::metadata(&owned)?;
    let as_user = CopyOptions::owned_by(1000, 1000);
    let copied = m.copy_from_with(&id, "/src/dir", &owned, &as_user).await;
    if nix::unistd::geteuid().is_root() {
        copied?;
        for p in ["dir", "dir/secret"] {
            let meta = fs::symlink_metadata(owned.join(p))?;
            ensure_eq!(
                (meta.uid(), meta.gid()),
                (1000, 1000),
                "owner of copied {p}"
            );
        }
        let meta = fs::metadata(&owned)?;
        ensure_eq!(
            (meta.uid(), meta.gid()),
            (own_before.uid(), own_before.gid()),
            "owner of the target directory after an owned copy"
        );
    } else {
        expect_kind(
            copied,
            ErrorKind::PermissionDenied,
            "copy_from_with an owner, not root",
        )?;
    }

    // A symlink already in the target must not lead the copy outside of it.
    let trap_parent = tempfile::tempdir()?;
    let trap_target = trap_parent.path().join("out");
    let elsewhere = trap_parent.path().join("elsewhere");
    fs::create_dir(&trap_target)?;
    fs::create_dir(&elsewhere)?;
    std::os::unix::fs::symlink(&elsewhere, trap_target.join("dir"))?;
    let result: CResult<()> = m.copy_from(&id, "/src/dir", &trap_target).await;
    ensure!(
        entries_of(&elsewhere)?.is_empty(),
        "copy_from wrote through a symlink in the target into {} (result {:?})",
        elsewhere.display(),
        result.as_ref().map_err(describe)
    );
    ensure_eq!(
        entries_of(trap_parent.path())?,
        vec!["elsewhere".to_string(), "out".to_string()],
        "entries next to the target"
    );

    hostile_archives()
}

/// One raw tar entry, written the way a hostile archive would (the `tar` crate's own
/// path setters refuse `..` and absolute names).
fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    link: Option<&str>,
    data: &[u8],
) -> Result<(), Failure> {
    let mut h = tar::Header::new_gnu();
    let gnu = h
        .as_gnu_mut()
        .ok_or_else(|| Failure::new("not a GNU header"))?;
    gnu.name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(l) = link {
        gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(981_173_106);
    h.set_cksum();
    b.append(&h, data)?;
    Ok(())
}

/// The archive half of case 61: engines build their archives from real files, so a hostile
/// entry cannot come out of a container; the shared unpacker that backends use for
/// `copy_from` (`container::raw::archive::unpack_safely`) is fed crafted archives instead.
fn hostile_archives() -> Result<(), Failure> {
    use tar::EntryType;
    type Entries<'a> = Vec<(&'a str, EntryType, Option<&'a str>)>;
    let parent = tempfile::tempdir()?;
    let elsewhere = parent.path().join("elsewhere");
    fs::create_dir(&elsewhere)?;
    let absolute = format!("/tmp/crs-absolute-{}", uuid::Uuid::new_v4().simple());
    let elsewhere_text = elsewhere.display().to_string();
    let archives: Vec<(&str, Entries<'_>, bool)> = vec![
        (
            "a `../` entry",
            vec![("../escaped", EntryType::Regular, None)],
            true,
        ),
        (
            "a nested `..` entry",
            vec![("ok/../../escaped", EntryType::Regular, None)],
            true,
        ),
        (
            "an absolute entry",
            vec![(absolute.as_str(), EntryType::Regular, None)],
            true,
        ),
        (
            "a hard link to outside",
            vec![("hard", EntryType::Link, Some("../../../../etc/passwd"))],
            true,
        ),
        (
            "a write through a symlink to outside",
            vec![
                ("evil", EntryType::Symlink, Some(elsewhere_text.as_str())),
                ("evil/pwned", EntryType::Regular, None),
            ],
            false,
        ),
    ];
    for (i, (what, entries, invalid_input)) in archives.into_iter().enumerate() {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, link) in entries {
            let data: &[u8] = if kind == EntryType::Regular {
                b"pwned\n"
            } else {
                b""
            };
            raw_entry(&mut b, name, kind, link, data)?;
        }
        let bytes = b.into_inner()?;
        let dest = parent.path().join(format!("dest-{i}"));
        fs::create_dir(&dest)?;
        match container::raw::archive::unpack_safely(&bytes[..], &dest) {
            Ok(()) => fail!("{what}: the archive was unpacked"),
            Err(e) if invalid_input && e.kind() != ErrorKind::InvalidInput => {
                fail!("{what}: refused, but not as InvalidInput: {}", describe(&e))
            }
            Err(_) => {}
        }
        ensure!(
            entries_of(&elsewhere)?.is_empty() && !parent.path().join("escaped").exists(),
            "{what}: a file was written outside the destination"
        );
        ensure!(
            !Path::new(&absolute).exists(),
            "{what}: {absolute} was written"
        );
    }
    Ok(())
}

/// Case 62: Copy a host file or directory into a container path; the container sees it.
pub async fn case_62_copy_to(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 62).await?;
    let host = tempfile::tempdir()?;
    let payload = host.path().join("payload");
    fs::create_dir_all(payload.join("sub"))?;
    fs::write(payload.join("a.txt"), "alpha\n")?;
    fs::set_permissions(payload.join("a.txt"), fs::Permissions::from_mode(0o640))?;
    fs::write(payload.join("sub/b.txt"), "beta\n")?;
    fs::set_permissions(payload.join("sub"), fs::Permissions::from_mode(0o750))?;
    std::os::unix::fs::symlink("a.txt", payload.join("link"))?;
    let blob: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    fs::write(payload.join("blob.bin"), &blob)?;
    let single: PathBuf = host.path().join("single.txt");
    fs::write(&single, "single\n")?;

    sh(m, &id, "mkdir /dst").await?;
    m.copy_to(&id, &payload, "/dst").await?;
    m.copy_to(&id, &single, "/dst").await?;
    let seen = sh(
        m,
        &id,
        "cat /dst/payload/a.txt /dst/payload/sub/b.txt /dst/single.txt; \
         stat -c %a /dst/payload/a.txt /dst/payload/sub; readlink /dst/payload/link; \
         wc -c < /dst/payload/blob.bin",
    )
    .await?;
    ensure_eq!(
        seen,
        "alpha\nbeta\nsingle\n640\n750\na.txt\n200000\n",
        "what the container sees"
    );
    let inside = sh(m, &id, "sha256sum /dst/payload/blob.bin").await?;
    let expected = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(&blob))
    };
    ensure_eq!(
        inside.split_whitespace().next().unwrap_or_default(),
        expected,
        "sha256 of the copied binary file"
    );
    Ok(())
}

/// Case 63: Copy from a missing path → `NotFound`; into a stopped container works where the
/// engine allows it, else `Conflict`.
pub async fn case_63_copy_missing_and_stopped(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 63).await?;
    let host = tempfile::tempdir()?;
    let target = host.path().join("out");
    fs::create_dir(&target)?;
    expect_kind(
        m.copy_from(&id, "/no/such/path", &target).await,
        ErrorKind::NotFound,
        "copy_from of a missing path",
    )?;
    ensure!(
        entries_of(&target)?.is_empty(),
        "a failed copy_from left files"
    );
    expect_kind(
        m.copy_from(&ctx.name(63), "/etc/passwd", &target).await,
        ErrorKind::NotFound,
        "copy_from a missing container",
    )?;

    let name = ctx.name(63);
    let config = ContainerConfig::new(ctx.image()).name(&name).cmd([
        "sh",
        "-c",
        "mkdir -p /data && echo before > /data/before",
    ]);
    let stopped = run_config(ctx, &mut t, &config).await?;
    let code = tokio::time::timeout(Duration::from_secs(10) + SLACK, m.wait(&stopped))
        .await
        .map_err(|_| Failure::new("wait hung"))??;
    ensure_eq!(code, 0, "exit code of the stopped container");

    let file = host.path().join("late.txt");
    fs::write(&file, "late\n")?;
    match m.copy_to(&stopped, &file, "/data").await {
        Ok(()) => {
            let back = host.path().join("back");
            fs::create_dir(&back)?;
            match m.copy_from(&stopped, "/data/late.txt", &back).await {
                Ok(()) => ensure_eq!(
                    fs::read_to_string(back.join("late.txt"))?,
                    "late\n",
                    "file copied into the stopped container"
                ),
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    fail!("copy_to a stopped container worked but copy_from it is a Conflict")
                }
                Err(e) => fail!("copy_from the stopped container: {}", describe(&e)),
            }
        }
        Err(e) if e.kind() == ErrorKind::Conflict => {}
        Err(e) => fail!(
            "copy_to a stopped container: neither Ok nor Conflict: {}",
            describe(&e)
        ),
    }
    Ok(())
}
