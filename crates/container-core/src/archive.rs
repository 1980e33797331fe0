//! Tar streams for copying files into and out of containers: packing a host path, and
//! unpacking an engine's archive into a host folder without ever writing outside it.
//!
//! Blocking code (the `tar` crate is synchronous): call it from `spawn_blocking`.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::error::{Error, ErrorKind, Result};
use crate::types::User;

/// Unpacks `archive` into the existing directory `dest`, keeping modes, mtimes and symlinks
/// (as links). An entry with an absolute path or a `..` component is refused with
/// `InvalidInput` before anything of it is written; `tar` itself also refuses to write
/// through a symlink that leads outside `dest`. Ownership is not restored: files belong to
/// the caller, which is what a build tool copying artifacts out wants.
pub fn unpack_safely(archive: impl Read, dest: &Path) -> Result<()> {
    unpack_safely_as(archive, dest, None)
}

/// [`unpack_safely`], then every file, directory and link the unpacking created gets
/// `owner` (uid:gid) when one is given. What existed in `dest` before keeps its owner:
/// the copy never chowns what it did not make (`dest` itself included).
pub fn unpack_safely_as(archive: impl Read, dest: &Path, owner: Option<User>) -> Result<()> {
    let meta = std::fs::metadata(dest).map_err(|e| {
        Error::invalid_input(format!("destination {} is not usable", dest.display())).with_source(e)
    })?;
    if !meta.is_dir() {
        return Err(Error::invalid_input(format!(
            "destination {} is not a directory",
            dest.display()
        )));
    }
    let mut tail = Tail::new(archive);
    let mut ar = tar::Archive::new(&mut tail);
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    ar.set_preserve_ownerships(false);
    ar.set_unpack_xattrs(false);
    ar.set_overwrite(true);
    let entries = ar.entries().map_err(io_error)?;
    // Where the archive's last entry ends: its end-of-archive block must follow there.
    let mut end = 0u64;
    // `tar` sets a directory's mtime before its contents are written, which then change
    // it again: restore directory mtimes once everything is in place.
    let mut dir_times = Vec::new();
    for entry in entries {
        let mut entry = entry.map_err(io_error)?;
        let stored = entry.header().entry_size().map_err(io_error)?;
        end = entry.raw_file_position() + stored.div_ceil(BLOCK) * BLOCK;
        let path = entry.path().map_err(io_error)?.into_owned();
        check_entry_path(&path)?;
        if let Some(link) = entry.link_name().map_err(io_error)? {
            if entry.header().entry_type().is_hard_link() {
                check_entry_path(&link)?;
            }
        }
        // What this entry will create (itself and missing parents), to give to `owner`.
        let created: Vec<PathBuf> = match owner {
            Some(_) => missing_paths(dest, &path),
            None => Vec::new(),
        };
        let written = entry.unpack_in(dest).map_err(io_error)?;
        if !written {
            return Err(Error::invalid_input(format!(
                "archive entry {} would be written outside {}",
                path.display(),
                dest.display()
            )));
        }
        if let Some(user) = owner {
            for p in &created {
                chown(p, user)?;
            }
        }
        if entry.header().entry_type().is_dir() {
            if let Ok(mtime) = entry.header().mtime() {
                dir_times.push((dest.join(&path), mtime));
            }
        }
    }
    // A stream cut off between two entries reads like a shorter archive: only the
    // end-of-archive block after the last entry says that everything arrived.
    if !tail.ends_with_zero_block_at(end) {
        return Err(Error::new(
            ErrorKind::Unavailable,
            "the archive is truncated: it ends without its end-of-archive block",
        ));
    }
    // Deepest first, so setting a parent's time comes after its children are done.
    dir_times.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (dir, mtime) in dir_times {
        let t = filetime::FileTime::from_unix_time(i64::try_from(mtime).unwrap_or(0), 0);
        filetime::set_symlink_file_times(&dir, t, t).map_err(io_error)?;
    }
    Ok(())
}

/// A tar block.
const BLOCK: u64 = 512;

/// A reader that remembers how much was read and the last block's worth of bytes, to
/// check after the `tar` crate is done that the archive had its end-of-archive block
/// (the crate takes a plain end of input for the end of the archive). Written by hand:
/// a few lines no crate offers.
struct Tail<R> {
    inner: R,
    read: u64,
    last: Vec<u8>,
}

impl<R: Read> Tail<R> {
    fn new(inner: R) -> Self {
        Tail {
            inner,
            read: 0,
            last: Vec::with_capacity(BLOCK as usize * 2),
        }
    }

    /// Whether a whole block of zeros was read starting at `offset`, and nothing but
    /// zeros after it.
    fn ends_with_zero_block_at(&self, offset: u64) -> bool {
        let Some(after) = self.read.checked_sub(offset) else {
            return false;
        };
        if after < BLOCK {
            return false;
        }
        // Only the last block's worth is kept: enough, every byte after the last entry
        // is zero in a well-formed archive.
        let kept = (self.last.len() as u64).min(after);
        self.last[self.last.len() - kept as usize..]
            .iter()
            .all(|b| *b == 0)
    }
}

impl<R: Read> Read for Tail<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.last.extend_from_slice(&buf[..n]);
        let excess = self.last.len().saturating_sub(BLOCK as usize);
        self.last.drain(..excess);
        Ok(n)
    }
}

/// `dest/path` and each of its parents below `dest` that does not exist yet.
fn missing_paths(dest: &Path, path: &Path) -> Vec<PathBuf> {
    let mut missing = Vec::new();
    let mut current = dest.to_path_buf();
    for c in path.components() {
        if let Component::Normal(part) = c {
            current.push(part);
            if std::fs::symlink_metadata(&current).is_err() {
                missing.push(current.clone());
            }
        }
    }
    missing
}

/// Gives `path` (not what a link points to) to `user`.
fn chown(path: &Path, user: User) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid)).map_err(|e| {
        Error::new(
            ErrorKind::from_io(&e),
            format!("cannot give {} to {user}", path.display()),
        )
        .with_source(e)
    })
}

fn check_entry_path(path: &Path) -> Result<()> {
    for c in path.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(Error::invalid_input(format!(
                    "archive entry {} escapes the destination (absolute or '..')",
                    path.display()
                )));
            }
        }
    }
    Ok(())
}

fn io_error(e: std::io::Error) -> Error {
    Error::new(ErrorKind::Internal, "cannot read or write the archive").with_source(e)
}

/// Receives an engine's archive stream into a temporary file (bounded memory; a chunk
/// that takes longer than `stall` is a `Timeout`), then unpacks it into `dest` with
/// [`unpack_safely`] on a blocking thread. Stream errors pass through unchanged.
pub async fn receive_and_unpack<S>(
    body: S,
    dest: &Path,
    stall: Duration,
    owner: Option<User>,
) -> Result<()>
where
    S: Stream<Item = Result<Bytes>>,
{
    let spool = tempfile::tempfile().map_err(io_error)?;
    receive_into(body, spool, dest, stall, owner).await
}

/// [`receive_and_unpack`] through the given spool file.
async fn receive_into<S>(
    body: S,
    spool: File,
    dest: &Path,
    stall: Duration,
    owner: Option<User>,
) -> Result<()>
where
    S: Stream<Item = Result<Bytes>>,
{
    let mut spool = tokio::fs::File::from_std(spool);
    let mut body = std::pin::pin!(body);
    loop {
        let next = tokio::time::timeout(stall, body.next())
            .await
            .map_err(|_| Error::new(ErrorKind::Timeout, "the archive download stalled"))?;
        let Some(chunk) = next else { break };
        tokio::io::AsyncWriteExt::write_all(&mut spool, &chunk?)
            .await
            .map_err(io_error)?;
    }
    // The last write's error (a full disk) surfaces here, never as a shorter archive.
    tokio::io::AsyncWriteExt::flush(&mut spool)
        .await
        .map_err(|e| {
            Error::new(ErrorKind::from_io(&e), "cannot spool the archive").with_source(e)
        })?;
    let mut file = spool.into_std().await;
    let dest = dest.to_path_buf();
    tokio::task::spawn_blocking(move || {
        file.rewind().map_err(io_error)?;
        unpack_safely_as(file, &dest, owner)
    })
    .await
    .map_err(|e| Error::new(ErrorKind::Internal, "the unpack task failed").with_source(e))?
}

/// Runs `upload` (an engine taking the archive file whose reading offset `progress`
/// shares: a `try_clone` of it) under a progress deadline instead of a total one: it
/// fails with `Timeout` when the engine takes no byte for `stall`, or does not finish
/// within `stall` after it took the last one. A steady large copy never times out.
pub async fn upload_with_progress<F>(upload: F, mut progress: File, stall: Duration) -> Result<()>
where
    F: std::future::Future<Output = Result<()>>,
{
    let len = progress.metadata().map_err(io_error)?.len();
    let poll = (stall / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut upload = std::pin::pin!(upload);
    let mut offset = 0u64;
    let mut moved = tokio::time::Instant::now();
    loop {
        tokio::select! {
            done = &mut upload => return done,
            () = tokio::time::sleep(poll) => {}
        }
        let now = progress.stream_position().map_err(io_error)?;
        if now != offset {
            offset = now;
            moved = tokio::time::Instant::now();
        } else if moved.elapsed() >= stall {
            let message = if offset >= len {
                format!("the engine took the whole archive but did not finish within {stall:?}")
            } else {
                format!("the copy stalled: the engine took no bytes for {stall:?} ({offset} of {len} sent)")
            };
            return Err(Error::new(ErrorKind::Timeout, message));
        }
    }
}

/// Packs the host file or directory `source` into a temporary tar file, named in the
/// archive by its own file name. Symlinks are stored as links, not followed.
pub fn pack(source: &Path) -> Result<File> {
    let name = source.file_name().ok_or_else(|| {
        Error::invalid_input(format!("{} has no file name to copy", source.display()))
    })?;
    let meta = std::fs::symlink_metadata(source).map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::NotFound {
            ErrorKind::NotFound
        } else {
            ErrorKind::InvalidInput
        };
        Error::new(kind, format!("cannot read {}", source.display())).with_source(e)
    })?;
    let file = tempfile::tempfile().map_err(io_error)?;
    let mut builder = tar::Builder::new(file);
    builder.follow_symlinks(false);
    if meta.is_dir() {
        builder.append_dir_all(name, source).map_err(io_error)?;
    } else {
        builder
            .append_path_with_name(source, name)
            .map_err(io_error)?;
    }
    let mut file = builder.into_inner().map_err(io_error)?;
    file.rewind().map_err(io_error)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[tokio::test]
    async fn a_spool_that_cannot_be_written_fails_the_copy() {
        // /dev/full: every write fails with ENOSPC, reads give zeros (an "empty"
        // archive): the copy must fail, never pass as an empty success.
        let spool = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let src = tempfile::tempdir().expect("tmp");
        std::fs::write(src.path().join("f"), b"data").expect("write");
        let mut tar = pack(&src.path().join("f")).expect("pack");
        let mut bytes = Vec::new();
        tar.read_to_end(&mut bytes).expect("read");
        let body = futures::stream::iter([Ok(Bytes::from(bytes))]);
        let dest = tempfile::tempdir().expect("tmp");
        let e = receive_into(body, spool, dest.path(), Duration::from_secs(5), None)
            .await
            .expect_err("a full disk is an error");
        assert_ne!(e.kind(), ErrorKind::InvalidInput, "{e}");
    }

    #[test]
    fn an_archive_cut_between_two_entries_is_an_error() {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in [("a", &b"first"[..]), ("b", &b"second"[..])] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            b.append_data(&mut header, name, data).expect("append");
        }
        let whole = b.into_inner().expect("finish");
        // Header and one data block per entry: cut right after the first one.
        let cut = &whole[..1024];
        let dest = tempfile::tempdir().expect("tmp");
        let e = unpack_safely(cut, dest.path()).expect_err("truncated");
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        // The whole archive unpacks.
        let dest = tempfile::tempdir().expect("tmp");
        unpack_safely(&whole[..], dest.path()).expect("whole");
        assert_eq!(std::fs::read(dest.path().join("b")).expect("b"), b"second");
    }

    fn archive_with(path: &str, data: &[u8]) -> Vec<u8> {
        let mut header = tar::Header::new_gnu();
        // set_path refuses '..', so write the raw name the way a hostile archive would.
        let name = path.as_bytes();
        header.as_gnu_mut().expect("gnu").name[..name.len()].copy_from_slice(name);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&header, data).expect("append");
        b.into_inner().expect("finish")
    }

    #[test]
    fn owner_is_given_to_what_the_copy_creates_and_nothing_else() {
        let src_root = tempfile::tempdir().expect("tmp");
        let src = src_root.path().join("out");
        std::fs::create_dir_all(src.join("deep/er")).expect("mkdir");
        std::fs::write(src.join("deep/er/image.wic"), b"img").expect("write");
        std::os::unix::fs::symlink("er/image.wic", src.join("deep/link")).expect("link");
        let tar = pack(&src).expect("pack");

        let dest = tempfile::tempdir().expect("tmp");
        // Already there before the copy: must keep its owner.
        std::fs::create_dir(dest.path().join("out")).expect("mkdir");
        let before = std::fs::metadata(dest.path().join("out")).expect("meta");
        // As root any owner works; otherwise only one's own.
        let me = nix::unistd::geteuid().as_raw();
        let user = if me == 0 {
            User::new(4242, 4343)
        } else {
            User::new(me, nix::unistd::getegid().as_raw())
        };
        unpack_safely_as(tar, dest.path(), Some(user)).expect("unpack");

        for p in [
            "out/deep",
            "out/deep/er",
            "out/deep/er/image.wic",
            "out/deep/link",
        ] {
            let m = std::fs::symlink_metadata(dest.path().join(p)).expect(p);
            assert_eq!((m.uid(), m.gid()), (user.uid, user.gid), "{p}");
        }
        let after = std::fs::metadata(dest.path().join("out")).expect("meta");
        assert_eq!(
            (after.uid(), after.gid()),
            (before.uid(), before.gid()),
            "a directory the copy did not create keeps its owner"
        );
    }

    #[test]
    fn hostile_entries_are_refused_and_nothing_escapes() {
        let root = tempfile::tempdir().expect("tmp");
        let dest = root.path().join("dest");
        std::fs::create_dir(&dest).expect("mkdir");
        for bad in ["../x", "a/../../x", "/abs-x"] {
            let e = unpack_safely(&archive_with(bad, b"evil")[..], &dest).expect_err(bad);
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}: {e}");
        }
        assert!(!root.path().join("x").exists());
        assert!(!Path::new("/abs-x").exists());
        assert_eq!(std::fs::read_dir(&dest).expect("ls").count(), 0);
    }

    #[test]
    fn pack_then_unpack_keeps_contents_modes_mtimes_and_links() {
        let src_root = tempfile::tempdir().expect("tmp");
        let src = src_root.path().join("art");
        std::fs::create_dir_all(src.join("sub")).expect("mkdir");
        std::fs::write(src.join("sub/run.sh"), b"#!/bin/sh\n").expect("write");
        std::fs::set_permissions(
            src.join("sub/run.sh"),
            std::fs::Permissions::from_mode(0o751),
        )
        .expect("chmod");
        std::os::unix::fs::symlink("sub/run.sh", src.join("link")).expect("symlink");
        let old = filetime::FileTime::from_unix_time(1_600_000_000, 0);
        filetime::set_file_mtime(src.join("sub"), old).expect("dir mtime");
        let mtime = std::fs::metadata(src.join("sub/run.sh"))
            .expect("meta")
            .mtime();

        let file = pack(&src).expect("pack");
        let dest = tempfile::tempdir().expect("tmp");
        unpack_safely(file, dest.path()).expect("unpack");

        let out = dest.path().join("art");
        assert_eq!(
            std::fs::read(out.join("sub/run.sh")).expect("read"),
            b"#!/bin/sh\n"
        );
        let meta = std::fs::metadata(out.join("sub/run.sh")).expect("meta");
        assert_eq!(meta.mode() & 0o777, 0o751);
        assert_eq!(meta.mtime(), mtime);
        let dir_meta = std::fs::metadata(out.join("sub")).expect("dir meta");
        assert_eq!(dir_meta.mtime(), 1_600_000_000, "directory mtime kept");
        assert_eq!(
            std::fs::read_link(out.join("link")).expect("link"),
            Path::new("sub/run.sh")
        );
    }

    #[test]
    fn missing_source_and_bad_destination() {
        let e = pack(Path::new("/nonexistent/container-rs-x")).expect_err("missing");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let e =
            unpack_safely(&b""[..], Path::new("/nonexistent/container-rs-y")).expect_err("dest");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
}
