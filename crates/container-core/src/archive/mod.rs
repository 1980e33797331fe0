//! Tar streams for copying files into and out of containers: packing a host path, and
//! unpacking an engine's archive into a host folder without ever writing outside it.
//!
//! Blocking code (the `tar` crate is synchronous): call it from `spawn_blocking`.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::io::StreamReader;

use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::error::{Error, ErrorKind, Result};
use crate::types::User;

mod unpack;

pub use unpack::{unpack, Unpack, DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES};

/// Unpacks `archive` into the existing directory `dest` as [`unpack()`] does with the
/// defaults: modes (less setuid, setgid, sticky and group/other write) and mtimes kept,
/// symlinks created as links and never followed, nothing outside `dest` and nothing that
/// existed before touched, an entry with an absolute path or a `..` component refused
/// with `InvalidInput` before anything of it is written. Ownership is not restored:
/// files belong to the caller, which is what a build tool copying artifacts out wants.
pub fn unpack_safely(archive: impl Read, dest: &Path) -> Result<()> {
    unpack(archive, dest, &Unpack::default())
}

/// [`unpack_safely`], then every file, directory and link the unpacking created gets
/// `owner` (uid:gid) when one is given. What existed in `dest` before keeps its owner:
/// the copy never chowns what it did not make (`dest` itself included).
pub fn unpack_safely_as(archive: impl Read, dest: &Path, owner: Option<User>) -> Result<()> {
    let how = Unpack {
        owner,
        ..Unpack::default()
    };
    unpack(archive, dest, &how)
}

/// A tar block.
pub(crate) const BLOCK: u64 = 512;

/// A reader that remembers how much was read and the last block's worth of bytes, to
/// check after the `tar` crate is done that the archive had its end-of-archive block
/// (the crate takes a plain end of input for the end of the archive). Written by hand:
/// a few lines no crate offers.
pub(crate) struct Tail<R> {
    inner: R,
    read: u64,
    last: Vec<u8>,
}

impl<R: Read> Tail<R> {
    pub(crate) fn new(inner: R) -> Self {
        Tail {
            inner,
            read: 0,
            last: Vec::with_capacity(BLOCK as usize * 2),
        }
    }

    /// Whether a whole block of zeros was read starting at `offset`, and nothing but
    /// zeros after it.
    pub(crate) fn ends_with_zero_block_at(&self, offset: u64) -> bool {
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

fn io_error(e: std::io::Error) -> Error {
    Error::new(ErrorKind::Internal, "cannot read or write the archive").with_source(e)
}

/// Unpacks an engine's archive stream into `dest` with [`unpack()`] on a blocking thread
/// as it arrives (bounded memory: one chunk in hand; a chunk that takes longer than
/// `stall` is a `Timeout`; more than the caps allow is `InvalidInput`). The stream is
/// read to its end even after the archive's end blocks, so an error the engine reports
/// last (a `tar` that exited non-zero) fails the copy. Stream errors pass through
/// unchanged.
///
/// It used to be spooled whole into a temporary file first: the unpacking never needed
/// that (it checks entry by entry and a failed copy leaves what it made), and the
/// spool cost a copy out 1.36x the time of `ctr` + `tar` (256 MiB, 2026-12-07).
pub async fn receive_and_unpack<S>(
    body: S,
    dest: &Path,
    stall: Duration,
    how: &Unpack,
) -> Result<()>
where
    S: Stream<Item = Result<Bytes>> + Send + 'static,
{
    // The archive holds its content, capped, plus a header block and padding per entry
    // and the end blocks (PAX headers and long names included).
    let cap = how
        .max_bytes
        .saturating_add(how.max_entries.saturating_mul(4 * BLOCK))
        .saturating_add(1 << 20);
    // What failed the stream, as it failed: the tar reader only sees an io::Error.
    let failure = Arc::new(Mutex::new(None::<Error>));
    let guarded = {
        let failure = failure.clone();
        let fail = move |e: Error| {
            let text = e.to_string();
            *failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
            std::io::Error::other(text)
        };
        futures::stream::unfold(
            (Box::pin(body), 0u64, fail),
            move |(mut body, received, fail)| async move {
                let next = match tokio::time::timeout(stall, body.next()).await {
                    Ok(next) => next?,
                    Err(_) => {
                        let e = Error::new(ErrorKind::Timeout, "the archive download stalled");
                        return Some((Err(fail(e)), (body, received, fail)));
                    }
                };
                let item = match next {
                    Ok(chunk) if received + chunk.len() as u64 > cap => {
                        Err(fail(Error::invalid_input(format!(
                            "the archive is larger than {cap} bytes, past what its caps allow \
                         (CopyOptions::with_max_bytes, with_max_entries)"
                        ))))
                    }
                    Ok(chunk) => Ok(chunk),
                    Err(e) => Err(fail(e)),
                };
                let received = received + item.as_ref().map_or(0, |c| c.len() as u64);
                Some((item, (body, received, fail)))
            },
        )
    };
    // Buffered: the tar reader asks for 512 bytes to 8 KiB at a time, and each read of
    // the bridge blocks on the runtime once.
    let mut reader = std::io::BufReader::with_capacity(
        256 << 10,
        GatheringBridge::new(StreamReader::new(Box::pin(guarded))),
    );
    let (dest, how) = (dest.to_path_buf(), how.clone());
    let unpacked = tokio::task::spawn_blocking(move || {
        unpack(&mut reader, &dest, &how)?;
        // Past the end blocks: the rest of the stream (and its last word) still counts.
        std::io::copy(&mut reader, &mut std::io::sink()).map_err(io_error)?;
        Ok::<(), Error>(())
    })
    .await
    .map_err(|e| Error::new(ErrorKind::Internal, "the unpack task failed").with_source(e))?;
    let failed = failure
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    match failed {
        Some(e) if unpacked.is_err() => Err(e),
        _ => unpacked,
    }
}

/// A blocking reader over an async one, for the unpacking thread: a read waits for the
/// first bytes, then also takes what else has already arrived, without waiting. The
/// blocking thread is woken once per burst the engine sent rather than once per chunk.
/// Written here because tokio-util's `SyncIoBridge` blocks once per read, and a read of a
/// `StreamReader` ends at its chunk's end: with Docker's archive, in chunks of a few KiB,
/// the unpacking thread slept and was woken for each of them.
struct GatheringBridge<R> {
    inner: R,
    handle: tokio::runtime::Handle,
    /// An error met while taking what had arrived, returned by the next read.
    failed: Option<std::io::Error>,
    /// The end was read: never polled again.
    ended: bool,
}

impl<R> GatheringBridge<R> {
    /// Must be called inside the runtime that drives `inner`.
    fn new(inner: R) -> Self {
        GatheringBridge {
            inner,
            handle: tokio::runtime::Handle::current(),
            failed: None,
            ended: false,
        }
    }
}

impl<R: AsyncRead + Unpin> Read for GatheringBridge<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.ended || buf.is_empty() {
            return Ok(0);
        }
        let GatheringBridge {
            inner,
            handle,
            failed,
            ended,
        } = self;
        handle.block_on(async {
            let mut n = inner.read(buf).await?;
            *ended = n == 0;
            while n > 0 && n < buf.len() {
                // A read is cancel-safe: a pending one dropped has taken nothing.
                let read = std::pin::pin!(inner.read(&mut buf[n..]));
                match futures::poll!(read) {
                    std::task::Poll::Pending => break,
                    std::task::Poll::Ready(Ok(0)) => {
                        *ended = true;
                        break;
                    }
                    std::task::Poll::Ready(Ok(m)) => n += m,
                    std::task::Poll::Ready(Err(e)) => {
                        *failed = Some(e);
                        break;
                    }
                }
            }
            Ok(n)
        })
    }
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

    /// A bridge over `items`, made inside a runtime and read from this (blocking) thread.
    fn bridge_over(
        runtime: &tokio::runtime::Runtime,
        items: Vec<std::io::Result<Bytes>>,
    ) -> GatheringBridge<impl AsyncRead + Unpin> {
        let _in = runtime.enter();
        // Fused by hand: a stream polled after its end panics here, as an unfold does.
        let mut done = false;
        let mut items = items.into_iter();
        let stream = futures::stream::poll_fn(move |_| {
            assert!(!done, "polled after its end");
            let next = items.next();
            done = next.is_none();
            std::task::Poll::Ready(next)
        });
        GatheringBridge::new(StreamReader::new(stream))
    }

    #[test]
    fn a_read_takes_every_chunk_already_there_and_never_polls_past_the_end() {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let chunks = ["abc", "defg", "hi"].map(|c| Ok(Bytes::from_static(c.as_bytes())));
        let mut bridge = bridge_over(&runtime, chunks.into());
        let mut buf = [0u8; 64];
        // One read, one wake-up: all three chunks (a SyncIoBridge read gave "abc").
        let n = bridge.read(&mut buf).expect("read");
        assert_eq!(&buf[..n], b"abcdefghi");
        assert_eq!(bridge.read(&mut buf).expect("end"), 0);
        assert_eq!(bridge.read(&mut buf).expect("still the end"), 0);
        // A small buffer is filled, the rest waits for the next read.
        let chunks = ["abc", "defg"].map(|c| Ok(Bytes::from_static(c.as_bytes())));
        let mut bridge = bridge_over(&runtime, chunks.into());
        let mut small = [0u8; 5];
        assert_eq!(bridge.read(&mut small).expect("read"), 5);
        assert_eq!(&small, b"abcde");
        let n = bridge.read(&mut buf).expect("read");
        assert_eq!(&buf[..n], b"fg");
    }

    #[test]
    fn an_error_met_while_gathering_comes_with_the_next_read() {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let items = vec![
            Ok(Bytes::from_static(b"abc")),
            Err(std::io::Error::other("the engine broke off")),
        ];
        let mut bridge = bridge_over(&runtime, items);
        let mut buf = [0u8; 64];
        let n = bridge.read(&mut buf).expect("the bytes before the error");
        assert_eq!(&buf[..n], b"abc");
        let e = bridge.read(&mut buf).expect_err("the error, not lost");
        assert_eq!(e.to_string(), "the engine broke off");
    }

    /// The archive of a one-file folder `f` holding `data`.
    fn packed(data: &[u8]) -> Vec<u8> {
        let src = tempfile::tempdir().expect("tmp");
        std::fs::write(src.path().join("f"), data).expect("write");
        let mut tar = pack(&src.path().join("f")).expect("pack");
        let mut bytes = Vec::new();
        tar.read_to_end(&mut bytes).expect("read");
        bytes
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_archive_streams_into_the_folder() {
        let bytes = packed(&[7u8; 100_000]);
        // In small chunks, as an engine sends it.
        let chunks: Vec<Result<Bytes>> = bytes
            .chunks(1000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let dest = tempfile::tempdir().expect("tmp");
        let how = Unpack::default();
        receive_and_unpack(
            futures::stream::iter(chunks),
            dest.path(),
            Duration::from_secs(5),
            &how,
        )
        .await
        .expect("unpacked");
        assert_eq!(
            std::fs::read(dest.path().join("f")).expect("f"),
            vec![7u8; 100_000]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_error_after_the_end_of_the_archive_fails_the_copy() {
        // A whole archive, then the engine's last word: the container's tar failed
        // (it writes the end blocks even when it could not read some files).
        let body = futures::stream::iter([
            Ok(Bytes::from(packed(b"data"))),
            Err(Error::new(
                ErrorKind::PermissionDenied,
                "tar exited 1: cannot read x",
            )),
        ]);
        let dest = tempfile::tempdir().expect("tmp");
        let e = receive_and_unpack(
            body,
            dest.path(),
            Duration::from_secs(5),
            &Unpack::default(),
        )
        .await
        .expect_err("the engine's error counts");
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    }

    // On a current-thread runtime: its timer is driven while the unpacking blocks.
    #[tokio::test]
    async fn a_stream_that_stalls_midway_is_a_timeout() {
        let bytes = packed(&[1u8; 10_000]);
        let first = Ok(Bytes::copy_from_slice(&bytes[..1024]));
        let body = futures::stream::iter([first]).chain(futures::stream::pending());
        let dest = tempfile::tempdir().expect("tmp");
        let e = receive_and_unpack(
            body,
            dest.path(),
            Duration::from_millis(200),
            &Unpack::default(),
        )
        .await
        .expect_err("stalled");
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_archive_past_its_caps_is_invalid_input() {
        let body = futures::stream::iter([Ok(Bytes::from(packed(&[2u8; 200_000])))]);
        let how = Unpack {
            max_bytes: 1000,
            max_entries: 1,
            ..Unpack::default()
        };
        let dest = tempfile::tempdir().expect("tmp");
        let e = receive_and_unpack(body, dest.path(), Duration::from_secs(5), &how)
            .await
            .expect_err("too large");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
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
        // Already there before the copy (the destination): must keep its owner.
        let before = std::fs::metadata(dest.path()).expect("meta");
        // As root any owner works; otherwise only one's own.
        let me = nix::unistd::geteuid().as_raw();
        let user = if me == 0 {
            User::new(4242, 4343)
        } else {
            User::new(me, nix::unistd::getegid().as_raw())
        };
        unpack_safely_as(tar, dest.path(), Some(user)).expect("unpack");

        for p in [
            "out",
            "out/deep",
            "out/deep/er",
            "out/deep/er/image.wic",
            "out/deep/link",
        ] {
            let m = std::fs::symlink_metadata(dest.path().join(p)).expect(p);
            assert_eq!((m.uid(), m.gid()), (user.uid, user.gid), "{p}");
        }
        let after = std::fs::metadata(dest.path()).expect("meta");
        assert_eq!(
            (after.uid(), after.gid()),
            (before.uid(), before.gid()),
            "a directory the copy did not create keeps its owner"
        );
    }

    /// One raw entry of any kind, written as a hostile archive would.
    fn raw(
        b: &mut tar::Builder<Vec<u8>>,
        path: &str,
        kind: tar::EntryType,
        mode: u32,
        link: &str,
        data: &[u8],
    ) {
        let mut h = tar::Header::new_gnu();
        let gnu = h.as_gnu_mut().expect("gnu");
        gnu.name[..path.len()].copy_from_slice(path.as_bytes());
        gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(981_173_106);
        h.set_cksum();
        b.append(&h, data).expect("append");
    }

    fn under(root: &str) -> Unpack {
        Unpack {
            root: Some(root.to_string()),
            ..Unpack::default()
        }
    }

    #[test]
    fn setuid_setgid_sticky_and_shared_write_never_land_on_the_host() {
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "data", tar::EntryType::Directory, 0o1777, "", b"");
        raw(
            &mut b,
            "data/sh",
            tar::EntryType::Regular,
            0o4755,
            "",
            b"#!",
        );
        raw(&mut b, "data/g", tar::EntryType::Regular, 0o2775, "", b"g");
        raw(
            &mut b,
            "data/open",
            tar::EntryType::Directory,
            0o777,
            "",
            b"",
        );
        let tar = b.into_inner().expect("tar");
        let dest = tempfile::tempdir().expect("tmp");
        unpack(&tar[..], dest.path(), &under("data")).expect("unpack");
        let mode = |p: &str| {
            std::fs::symlink_metadata(dest.path().join(p))
                .expect(p)
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("data"), 0o755);
        assert_eq!(mode("data/sh"), 0o755);
        assert_eq!(mode("data/g"), 0o755);
        assert_eq!(mode("data/open"), 0o755);
        // Asked for: group/other write kept, the special bits still not.
        let dest = tempfile::tempdir().expect("tmp");
        let how = Unpack {
            shared_write: true,
            ..under("data")
        };
        unpack(&tar[..], dest.path(), &how).expect("unpack");
        let mode = |p: &str| {
            std::fs::symlink_metadata(dest.path().join(p))
                .expect(p)
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("data"), 0o777);
        assert_eq!(mode("data/sh"), 0o755);
        assert_eq!(mode("data/g"), 0o775);
    }

    #[test]
    fn entries_outside_the_requested_name_are_refused() {
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "data", tar::EntryType::Directory, 0o755, "", b"");
        raw(&mut b, "git", tar::EntryType::Regular, 0o755, "", b"evil");
        let tar = b.into_inner().expect("tar");
        let dest = tempfile::tempdir().expect("tmp");
        let e = unpack(&tar[..], dest.path(), &under("data")).expect_err("git is not under data");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(!dest.path().join("git").exists());
    }

    #[test]
    fn nothing_that_existed_is_replaced_chmodded_or_chowned() {
        let dest = tempfile::tempdir().expect("tmp");
        let keep = dest.path().join("data");
        std::fs::create_dir(&keep).expect("mkdir");
        std::fs::set_permissions(&keep, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        std::fs::write(keep.join("f"), b"mine").expect("write");
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "data", tar::EntryType::Directory, 0o777, "", b"");
        raw(
            &mut b,
            "data/f",
            tar::EntryType::Regular,
            0o666,
            "",
            b"theirs",
        );
        let tar = b.into_inner().expect("tar");
        let e = unpack(&tar[..], dest.path(), &under("data")).expect_err("data exists");
        assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
        assert_eq!(std::fs::read(keep.join("f")).expect("f"), b"mine");
        let mode = std::fs::metadata(&keep).expect("meta").permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700, "an existing folder's mode is never changed");
        // A single file that exists already.
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "f", tar::EntryType::Regular, 0o644, "", b"theirs");
        let tar = b.into_inner().expect("tar");
        let e = unpack(&tar[..], &keep, &under("f")).expect_err("f exists");
        assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
        assert_eq!(std::fs::read(keep.join("f")).expect("f"), b"mine");
    }

    #[test]
    fn a_hard_link_may_only_name_a_file_of_this_copy() {
        let root = tempfile::tempdir().expect("tmp");
        let host_file = root.path().join("host-secret");
        std::fs::write(&host_file, b"host").expect("write");
        let dest = root.path().join("dest");
        std::fs::create_dir(&dest).expect("mkdir");
        for target in ["../host-secret", "/etc/passwd", "data/missing"] {
            let mut b = tar::Builder::new(Vec::new());
            raw(&mut b, "data", tar::EntryType::Directory, 0o755, "", b"");
            raw(&mut b, "data/l", tar::EntryType::Link, 0o644, target, b"");
            let tar = b.into_inner().expect("tar");
            let _ = std::fs::remove_dir_all(dest.join("data"));
            let e = unpack(&tar[..], &dest, &under("data")).expect_err(target);
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{target}: {e}");
            assert!(!dest.join("data/l").exists(), "{target}");
        }
        assert_eq!(std::fs::metadata(&host_file).expect("meta").nlink(), 1);
        // A link to a file the copy made works.
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "data", tar::EntryType::Directory, 0o755, "", b"");
        raw(
            &mut b,
            "data/f",
            tar::EntryType::Regular,
            0o644,
            "",
            b"ours",
        );
        raw(&mut b, "data/l", tar::EntryType::Link, 0o644, "data/f", b"");
        let tar = b.into_inner().expect("tar");
        let _ = std::fs::remove_dir_all(dest.join("data"));
        unpack(&tar[..], &dest, &under("data")).expect("a link inside the copy");
        assert_eq!(std::fs::read(dest.join("data/l")).expect("l"), b"ours");
    }

    #[test]
    fn nothing_is_written_through_a_symlink() {
        let root = tempfile::tempdir().expect("tmp");
        let outside = root.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");
        let dest = root.path().join("dest");
        std::fs::create_dir(&dest).expect("mkdir");
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "data", tar::EntryType::Directory, 0o755, "", b"");
        raw(
            &mut b,
            "data/up",
            tar::EntryType::Symlink,
            0o777,
            "../../outside",
            b"",
        );
        raw(
            &mut b,
            "data/up/x",
            tar::EntryType::Regular,
            0o644,
            "",
            b"evil",
        );
        let tar = b.into_inner().expect("tar");
        let e = unpack(&tar[..], &dest, &under("data")).expect_err("through a link");
        assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
        assert_eq!(std::fs::read_dir(&outside).expect("ls").count(), 0);
        // The link itself is kept as it is (never followed here).
        assert_eq!(
            std::fs::read_link(dest.join("data/up")).expect("link"),
            Path::new("../../outside")
        );
    }

    #[test]
    fn a_destination_that_is_a_symlink_is_refused() {
        let root = tempfile::tempdir().expect("tmp");
        let real = root.path().join("real");
        std::fs::create_dir(&real).expect("mkdir");
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        let e = unpack_safely(&archive_with("f", b"x")[..], &link).expect_err("symlink dest");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains("symlink"), "{e}");
        assert_eq!(std::fs::read_dir(&real).expect("ls").count(), 0);
    }

    #[test]
    fn devices_and_fifos_are_refused() {
        for kind in [
            tar::EntryType::Char,
            tar::EntryType::Block,
            tar::EntryType::Fifo,
        ] {
            let mut b = tar::Builder::new(Vec::new());
            raw(&mut b, "data", tar::EntryType::Directory, 0o755, "", b"");
            raw(&mut b, "data/dev", kind, 0o666, "", b"");
            let tar = b.into_inner().expect("tar");
            let dest = tempfile::tempdir().expect("tmp");
            let e = unpack(&tar[..], dest.path(), &under("data")).expect_err("device");
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{kind:?}: {e}");
            assert!(!dest.path().join("data/dev").exists());
        }
    }

    #[test]
    fn bytes_and_entries_are_capped() {
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "data", tar::EntryType::Directory, 0o755, "", b"");
        for i in 0..5 {
            raw(
                &mut b,
                &format!("data/f{i}"),
                tar::EntryType::Regular,
                0o644,
                "",
                &[7u8; 100],
            );
        }
        let tar = b.into_inner().expect("tar");
        let dest = tempfile::tempdir().expect("tmp");
        let how = Unpack {
            max_bytes: 450,
            ..under("data")
        };
        let e = unpack(&tar[..], dest.path(), &how).expect_err("bytes");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains("450 bytes"), "{e}");
        let dest = tempfile::tempdir().expect("tmp");
        let how = Unpack {
            max_entries: 3,
            ..under("data")
        };
        let e = unpack(&tar[..], dest.path(), &how).expect_err("entries");
        assert!(e.to_string().contains("more than 3 entries"), "{e}");
        let dest = tempfile::tempdir().expect("tmp");
        let how = Unpack {
            max_bytes: 500,
            max_entries: 6,
            ..under("data")
        };
        unpack(&tar[..], dest.path(), &how).expect("exactly at the caps");
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
