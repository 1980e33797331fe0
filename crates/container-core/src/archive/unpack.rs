//! Unpacking an archive that a container made into a host folder, treating it as hostile
//! (issue 14; `docs/adr/0012-host-safe-copies.md`):
//!
//! - every path is resolved by the kernel beneath the destination with no symlink
//!   followed (`openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`), one directory at a
//!   time, and every name is created with `O_EXCL`/`mkdirat`: nothing that existed
//!   before the copy is written, chmodded or chowned, and no link leads a write out;
//! - entries must lie under the requested name (the last component of the container
//!   path), hard links may only name files this copy created, symlinks are created as
//!   they are (never followed here);
//! - modes lose setuid, setgid and sticky, and group/other write unless asked;
//! - devices and FIFOs are refused; totals of bytes and entries are capped;
//! - a destination that is a symlink is refused, and an archive without its end block
//!   is an error.
//!
//! Written by hand on rustix's `openat2` and `*at` calls: the `tar` crate's `unpack_in`
//! follows symlinks beneath the destination and overwrites, and cap-std's sandbox still
//! follows symlinks that stay inside it; neither refuses to touch what already exists.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid, CWD};
use rustix::io::Errno;

use crate::error::{Error, ErrorKind, Result};
use crate::types::User;

use super::{Tail, BLOCK};

/// The default cap on the bytes a copy writes to the host: 64 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 30;
/// The default cap on the entries of a copy: one million.
pub const DEFAULT_MAX_ENTRIES: u64 = 1_000_000;
/// The longest entry path taken (Linux's `PATH_MAX`).
const MAX_PATH: usize = 4096;

/// How one archive is unpacked; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpack {
    /// The one name every entry must be under (`None`: any).
    pub root: Option<String>,
    /// uid:gid for everything created (`None`: the caller's).
    pub owner: Option<User>,
    /// Keep group and other write permission (setuid, setgid and sticky never are).
    pub shared_write: bool,
    /// Bytes of file content written, at most.
    pub max_bytes: u64,
    /// Entries, at most.
    pub max_entries: u64,
}

impl Default for Unpack {
    fn default() -> Self {
        Unpack {
            root: None,
            owner: None,
            shared_write: false,
            max_bytes: DEFAULT_MAX_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

impl Unpack {
    /// The mode a host file gets for an archive mode.
    fn mask(&self, mode: u32) -> u32 {
        let strip = if self.shared_write { 0o7000 } else { 0o7022 };
        mode & 0o7777 & !strip
    }
}

/// The write buffer of a file's content.
const WRITE_BUFFER: usize = 256 << 10;

/// Unpacks `archive` into the existing directory `dest`; see the module docs.
pub fn unpack(archive: impl Read, dest: &Path, how: &Unpack) -> Result<()> {
    let root = open_destination(dest)?;
    let mut tree = Tree {
        root,
        dest: dest.to_path_buf(),
        how,
        created_dirs: HashSet::new(),
        created_files: HashSet::new(),
        dir_fixups: Vec::new(),
        bytes: 0,
        entries: 0,
    };
    let mut tail = Tail::new(archive);
    let mut ar = tar::Archive::new(&mut tail);
    let mut end = 0u64;
    for entry in ar.entries().map_err(io_error)? {
        let mut entry = entry.map_err(io_error)?;
        let stored = entry.header().entry_size().map_err(io_error)?;
        end = entry.raw_file_position() + stored.div_ceil(BLOCK) * BLOCK;
        tree.entry(&mut entry)?;
    }
    // A stream cut off between two entries reads like a shorter archive: only the
    // end-of-archive block after the last entry says that everything arrived.
    if !tail.ends_with_zero_block_at(end) {
        return Err(Error::new(
            ErrorKind::Unavailable,
            "the archive is truncated: it ends without its end-of-archive block",
        ));
    }
    tree.finish()
}

/// `dest`, opened as a directory without following a symlink.
fn open_destination(dest: &Path) -> Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(CWD, dest, flags, Mode::empty()) {
        Ok(fd) => Ok(fd),
        // O_NOFOLLOW with O_DIRECTORY says ENOTDIR for a symlink: look at what it is.
        Err(Errno::LOOP | Errno::NOTDIR)
            if std::fs::symlink_metadata(dest).is_ok_and(|m| m.file_type().is_symlink()) =>
        {
            Err(Error::invalid_input(format!(
                "destination {} is a symlink: copies go into a real folder only",
                dest.display()
            )))
        }
        Err(Errno::NOTDIR) => Err(Error::invalid_input(format!(
            "destination {} is not a directory",
            dest.display()
        ))),
        Err(e) => Err(Error::invalid_input(format!(
            "destination {} is not usable",
            dest.display()
        ))
        .with_source(e)),
    }
}

/// What one unpacking made so far.
struct Tree<'a> {
    root: OwnedFd,
    dest: PathBuf,
    how: &'a Unpack,
    /// Directories this copy created (relative paths).
    created_dirs: HashSet<PathBuf>,
    /// Regular files this copy created: the only targets a hard link may name.
    created_files: HashSet<PathBuf>,
    /// Directories' final modes and mtimes, set once their contents are in.
    dir_fixups: Vec<(PathBuf, u32, Option<u64>)>,
    bytes: u64,
    entries: u64,
}

impl Tree<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        self.entries += 1;
        if self.entries > self.how.max_entries {
            return Err(Error::invalid_input(format!(
                "the archive has more than {} entries (CopyOptions::with_max_entries raises the cap)",
                self.how.max_entries
            )));
        }
        let raw = entry.path().map_err(io_error)?.into_owned();
        let Some(path) = self.relative(&raw)? else {
            return Ok(()); // `.`: the destination itself, which is never changed
        };
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().map_err(io_error)?;
        let mtime = header.mtime().ok();
        let (parent, name) = split(&path)?;
        let parent_fd = self.dir_for(&parent)?;
        match kind {
            tar::EntryType::Directory => {
                if !self.created_dirs.contains(&path) {
                    self.mkdir(&parent_fd, &name, &path)?;
                }
                self.dir_fixups.retain(|(p, _, _)| p != &path);
                self.dir_fixups.push((path, mode, mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let file = self.create_file(&parent_fd, &name, &path)?;
                self.write_file(entry, file, mode, mtime, &path)?;
                self.created_files.insert(path);
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(io_error)?
                    .ok_or_else(|| bad(&path, "is a symlink without a target"))?;
                rustix::fs::symlinkat(target.as_ref(), &parent_fd, &name)
                    .map_err(|e| self.exists_or(e, &path, "cannot create the symlink"))?;
                if let Some(t) = mtime {
                    let t = timespec(t);
                    let times = Timestamps {
                        last_access: t,
                        last_modification: t,
                    };
                    rustix::fs::utimensat(&parent_fd, &name, &times, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| self.failed(e, &path, "cannot set the symlink's time"))?;
                }
                self.chown_at(&parent_fd, &name, &path)?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(io_error)?
                    .ok_or_else(|| bad(&path, "is a hard link without a target"))?;
                let target = self
                    .relative(&target)?
                    .filter(|t| self.created_files.contains(t))
                    .ok_or_else(|| {
                        bad(
                            &path,
                            &format!(
                                "is a hard link to {}, which is not a file this copy made",
                                target.display()
                            ),
                        )
                    })?;
                let (target_parent, target_name) = split(&target)?;
                let target_fd = self.dir_for(&target_parent)?;
                rustix::fs::linkat(
                    &target_fd,
                    &target_name,
                    &parent_fd,
                    &name,
                    AtFlags::empty(),
                )
                .map_err(|e| self.exists_or(e, &path, "cannot create the hard link"))?;
            }
            // Extended headers are folded into the entries by the `tar` crate; a stray
            // one carries nothing to write.
            tar::EntryType::XHeader | tar::EntryType::XGlobalHeader => {}
            other => {
                return Err(bad(
                    &path,
                    &format!(
                    "is a {other:?} entry: only files, folders and links are copied to the host"
                ),
                ))
            }
        }
        Ok(())
    }

    /// `raw` as a path relative to the destination: no absolute path, no `..`, under
    /// the requested name; `None` for the destination itself.
    fn relative(&self, raw: &Path) -> Result<Option<PathBuf>> {
        if raw.as_os_str().len() > MAX_PATH {
            return Err(Error::invalid_input(format!(
                "an archive entry's path is longer than {MAX_PATH} bytes"
            )));
        }
        let mut out = PathBuf::new();
        for c in raw.components() {
            match c {
                Component::Normal(part) => out.push(part),
                Component::CurDir => {}
                Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                    return Err(Error::invalid_input(format!(
                        "archive entry {} escapes the destination (absolute or '..')",
                        raw.display()
                    )))
                }
            }
        }
        if out.as_os_str().is_empty() {
            return Ok(None);
        }
        if let Some(root) = &self.how.root {
            let first = out.components().next().map(|c| c.as_os_str().to_owned());
            if first.as_deref() != Some(std::ffi::OsStr::new(root)) {
                return Err(Error::invalid_input(format!(
                    "archive entry {} is not under the requested name {root}",
                    raw.display()
                )));
            }
        }
        Ok(Some(out))
    }

    /// The directory `rel` (relative, made by this copy or the destination itself),
    /// opened beneath the destination with no symlink followed; missing parents are
    /// created (an archive need not list them).
    fn dir_for(&mut self, rel: &Path) -> Result<OwnedFd> {
        if rel.as_os_str().is_empty() {
            return self.root.try_clone().map_err(io_error);
        }
        match open_beneath(&self.root, rel) {
            Ok(fd) => Ok(fd),
            Err(Errno::NOENT) => {
                let (parent, name) = split(rel)?;
                let parent_fd = self.dir_for(&parent)?;
                self.mkdir(&parent_fd, &name, rel)?;
                self.dir_fixups.push((rel.to_path_buf(), 0o755, None));
                open_beneath(&self.root, rel).map_err(|e| self.failed(e, rel, "cannot open"))
            }
            Err(e) => Err(self.failed(e, rel, "cannot open the folder")),
        }
    }

    fn mkdir(&mut self, parent: &OwnedFd, name: &Path, rel: &Path) -> Result<()> {
        rustix::fs::mkdirat(parent, name, Mode::from_bits_truncate(0o700))
            .map_err(|e| self.exists_or(e, rel, "cannot create the folder"))?;
        self.created_dirs.insert(rel.to_path_buf());
        Ok(())
    }

    fn create_file(&self, parent: &OwnedFd, name: &Path, rel: &Path) -> Result<File> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(parent, name, flags, Mode::from_bits_truncate(0o600))
            .map_err(|e| self.exists_or(e, rel, "cannot create the file"))?;
        Ok(File::from(fd))
    }

    fn write_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        mut file: File,
        mode: u32,
        mtime: Option<u64>,
        rel: &Path,
    ) -> Result<()> {
        let left = self.how.max_bytes.saturating_sub(self.bytes);
        // Through a 256 KiB buffer: `io::copy`'s own 8 KiB made a write per 8 KiB.
        let mut buffered = std::io::BufWriter::with_capacity(WRITE_BUFFER, &mut file);
        let written = std::io::copy(&mut entry.take(left.saturating_add(1)), &mut buffered)
            .and_then(|n| buffered.flush().map(|()| n))
            .map_err(|e| self.io_failed(e, rel, "cannot write the file"))?;
        drop(buffered);
        if written > left {
            return Err(Error::invalid_input(format!(
                "the archive holds more than {} bytes (CopyOptions::with_max_bytes raises the cap)",
                self.how.max_bytes
            )));
        }
        self.bytes += written;
        file.flush()
            .map_err(|e| self.io_failed(e, rel, "cannot write the file"))?;
        file.set_permissions(std::fs::Permissions::from_mode(self.how.mask(mode)))
            .map_err(|e| self.io_failed(e, rel, "cannot set the file's mode"))?;
        if let Some(t) = mtime {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t);
            file.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t))
                .map_err(|e| self.io_failed(e, rel, "cannot set the file's time"))?;
        }
        if let Some(user) = self.how.owner {
            std::os::unix::fs::fchown(&file, Some(user.uid), Some(user.gid))
                .map_err(|e| self.chown_failed(e, rel, user))?;
        }
        Ok(())
    }

    /// Gives `name` in `parent` (not what it links to) to the owner, if one was asked for.
    fn chown_at(&self, parent: &OwnedFd, name: &Path, rel: &Path) -> Result<()> {
        let Some(user) = self.how.owner else {
            return Ok(());
        };
        rustix::fs::chownat(
            parent,
            name,
            Some(Uid::from_raw(user.uid)),
            Some(Gid::from_raw(user.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.chown_failed(std::io::Error::from(e), rel, user))
    }

    /// The folders' modes, times and owner, deepest first (a parent's time is set after
    /// its children change it; a read-only folder is made so only once it is full).
    fn finish(mut self) -> Result<()> {
        let mut fixups = std::mem::take(&mut self.dir_fixups);
        fixups.sort_by_key(|(p, _, _)| std::cmp::Reverse(p.components().count()));
        for (rel, mode, mtime) in fixups {
            let fd = open_beneath(&self.root, &rel)
                .map_err(|e| self.failed(e, &rel, "cannot open the folder"))?;
            let dir = File::from(fd);
            if let Some(user) = self.how.owner {
                std::os::unix::fs::fchown(&dir, Some(user.uid), Some(user.gid))
                    .map_err(|e| self.chown_failed(e, &rel, user))?;
            }
            dir.set_permissions(std::fs::Permissions::from_mode(self.how.mask(mode)))
                .map_err(|e| self.io_failed(e, &rel, "cannot set the folder's mode"))?;
            if let Some(t) = mtime {
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t);
                dir.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t))
                    .map_err(|e| self.io_failed(e, &rel, "cannot set the folder's time"))?;
            }
        }
        Ok(())
    }

    /// An `EEXIST` is the rule that nothing existing is replaced; other errors as they are.
    fn exists_or(&self, e: Errno, rel: &Path, what: &str) -> Error {
        if e == Errno::EXIST {
            Error::new(
                ErrorKind::Conflict,
                format!(
                    "{} already exists on the host: a copy never replaces what it did not create",
                    self.dest.join(rel).display()
                ),
            )
        } else {
            self.failed(e, rel, what)
        }
    }

    fn failed(&self, e: Errno, rel: &Path, what: &str) -> Error {
        if matches!(e, Errno::LOOP | Errno::XDEV | Errno::NOTDIR) {
            // A symlink (or a file) where a folder of this copy should be: the archive's
            // own link, or one swapped in by someone else (the container may share the
            // folder through a bind mount). Never followed.
            return Error::new(
                ErrorKind::Conflict,
                format!(
                    "{} is not a folder this copy made (a symlink or a file stands there): \
                     nothing is written through it",
                    self.dest.join(rel).display()
                ),
            )
            .with_source(e);
        }
        let kind = match ErrorKind::from_io(&std::io::Error::from(e)) {
            ErrorKind::Unavailable => ErrorKind::Internal,
            kind => kind,
        };
        Error::new(kind, format!("{what}: {}", self.dest.join(rel).display())).with_source(e)
    }

    fn io_failed(&self, e: std::io::Error, rel: &Path, what: &str) -> Error {
        Error::new(
            ErrorKind::Internal,
            format!("{what}: {}", self.dest.join(rel).display()),
        )
        .with_source(e)
    }

    fn chown_failed(&self, e: std::io::Error, rel: &Path, user: User) -> Error {
        Error::new(
            ErrorKind::from_io(&e),
            format!("cannot give {} to {user}", self.dest.join(rel).display()),
        )
        .with_source(e)
    }
}

/// `rel` opened as a directory beneath `root`, no symlink followed on the way.
fn open_beneath(root: &OwnedFd, rel: &Path) -> std::result::Result<OwnedFd, Errno> {
    rustix::fs::openat2(
        root,
        rel,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
}

/// `path`'s parent (empty for a top-level name) and last component.
fn split(path: &Path) -> Result<(PathBuf, PathBuf)> {
    let name = path.file_name().ok_or_else(|| bad(path, "has no name"))?;
    let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
    Ok((parent, PathBuf::from(name)))
}

fn timespec(secs: u64) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(secs).unwrap_or(i64::MAX),
        tv_nsec: 0,
    }
}

fn bad(path: &Path, what: &str) -> Error {
    Error::invalid_input(format!("archive entry {} {what}", path.display()))
}

fn io_error(e: std::io::Error) -> Error {
    Error::new(ErrorKind::Internal, "cannot read or write the archive").with_source(e)
}
