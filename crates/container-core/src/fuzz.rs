//! Fuzz targets (bolero): under `cargo test` each runs a bounded number of random inputs
//! (a failure prints its `BOLERO_RANDOM_SEED`); `cargo bolero test <name>` runs the same
//! target under libFuzzer for as long as one likes. What they hold, whatever the input:
//! no panic, every refusal is `InvalidInput`, and the unpacker writes nothing outside
//! its destination and no mode the host must not get.

use std::path::Path;
use std::time::Duration;

use crate::archive::{unpack, Unpack};
use crate::error::ErrorKind;
use crate::exec::ExecSpec;
use crate::reference::ImageRef;
use crate::types::{ContainerConfig, Mount};
use crate::validate;

#[test]
fn image_references() {
    bolero::check!().with_type::<String>().for_each(|s| {
        if let Ok(parsed) = ImageRef::parse(s) {
            // What parses prints as a reference that parses to the same.
            let again = ImageRef::parse(&parsed.to_string()).expect("printed reference");
            assert_eq!(again, parsed, "{s:?}");
        } else if let Err(e) = ImageRef::parse(s) {
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{s:?}: {e}");
        }
    });
}

/// The parts of a container config and an exec a caller may get wrong.
type ConfigInput = (
    (String, String, Vec<String>),
    (String, String),
    (String, String, bool),
    (u64, u32, Vec<String>),
);

#[test]
fn container_and_exec_configs() {
    bolero::check!().with_type::<ConfigInput>().for_each(
        |((name, hostname, env), (key, value), (source, target, sensitive), (grace, cpus, cmd))| {
            let mut mount = Mount::bind(source.as_str(), target.as_str());
            if *sensitive {
                mount = mount.allow_sensitive();
            }
            let mut config = ContainerConfig::new("127.0.0.1:5000/x:1")
                .name(name.as_str())
                .hostname(hostname.as_str())
                .label(key.as_str(), value.as_str())
                .mount(mount)
                .stop_grace(Duration::from_millis(*grace));
            config.env.clone_from(env);
            config.resources.cpus = Some(f64::from(*cpus) / 1000.0);
            if let Err(e) = validate::container_config(&config) {
                assert_eq!(e.kind(), ErrorKind::InvalidInput, "{config:?}: {e}");
            }
            let mut spec = ExecSpec::new(cmd.iter().map(String::as_str))
                .timeout(Duration::from_secs(*grace))
                .kill_grace(Duration::from_nanos(*grace));
            spec.env.clone_from(env);
            if let Err(e) = validate::exec_spec(&spec) {
                assert_eq!(e.kind(), ErrorKind::InvalidInput, "{spec:?}: {e}");
            }
        },
    );
}

/// Path pieces a hostile archive would use.
const PIECES: &[&str] = &[
    "root", "/", "..", ".", "a", "b", "root/a", "/etc", "//", "root/..", "c\n", "",
];

fn path_of(tokens: &[u8]) -> Vec<u8> {
    tokens
        .iter()
        .take(8)
        .flat_map(|t| PIECES[usize::from(*t) % PIECES.len()].bytes())
        .collect()
}

/// One entry: type, path tokens, mode, link-name tokens, content.
type Entry = (u8, Vec<u8>, u16, Vec<u8>, Vec<u8>);

/// A tar archive of `entries` written header by header (tar's builder refuses the `..`
/// and absolute names a hostile archive carries).
fn archive(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (kind, path, mode, link, data) in entries {
        let mut header = tar::Header::new_old();
        let (path, link) = (path_of(path), path_of(link));
        let old = header.as_old_mut();
        let n = path.len().min(old.name.len() - 1);
        old.name[..n].copy_from_slice(&path[..n]);
        let n = link.len().min(old.linkname.len() - 1);
        old.linkname[..n].copy_from_slice(&link[..n]);
        let types = b"0125673";
        header.set_entry_type(tar::EntryType::new(types[usize::from(*kind) % types.len()]));
        header.set_mode(u32::from(*mode));
        header.set_size(data.len() as u64);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

/// Everything under `dir` (not following links): path and mode.
fn tree(dir: &Path) -> Vec<(std::path::PathBuf, u32, bool)> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let meta = std::fs::symlink_metadata(e.path()).expect("metadata");
            let t = meta.file_type();
            let special = t.is_block_device() || t.is_char_device() || t.is_fifo() || t.is_socket();
            if t.is_dir() {
                todo.push(e.path());
            }
            out.push((e.path(), meta.permissions().mode(), special));
        }
    }
    out
}

/// Unpacks `bytes` under `parent/dest` (requested name `root`) and checks that the
/// rest of `parent` is as it was and nothing under `dest` has a mode the host must not
/// get.
fn unpack_checked(bytes: &[u8]) {
    let parent = tempfile::tempdir().expect("tmp");
    let dest = parent.path().join("dest");
    std::fs::create_dir(&dest).expect("dest");
    std::fs::write(parent.path().join("sentinel"), b"host file").expect("sentinel");
    let how = Unpack {
        root: Some("root".to_string()),
        max_bytes: 1 << 20,
        max_entries: 64,
        ..Unpack::default()
    };
    if let Err(e) = unpack(bytes, &dest, &how) {
        // A cut-off archive is `Unavailable` (the copy may succeed again), a hostile one
        // `InvalidInput`, an entry over an existing one `Conflict`.
        assert!(
            matches!(
                e.kind(),
                ErrorKind::InvalidInput
                    | ErrorKind::Internal
                    | ErrorKind::Conflict
                    | ErrorKind::Unavailable
            ),
            "{e}"
        );
    }
    let outside: Vec<_> = std::fs::read_dir(parent.path())
        .expect("parent")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        outside.len(),
        2,
        "something landed beside the destination: {outside:?}"
    );
    assert_eq!(
        std::fs::read(parent.path().join("sentinel")).expect("sentinel"),
        b"host file"
    );
    for (path, mode, special) in tree(&dest) {
        assert!(!special, "a device, FIFO or socket: {}", path.display());
        let link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
        assert!(
            link || mode & 0o7022 == 0,
            "{} has mode {mode:o}",
            path.display()
        );
    }
}

#[test]
fn unpacking_hostile_archives() {
    bolero::check!()
        .with_type::<Vec<Entry>>()
        .for_each(|entries| unpack_checked(&archive(entries)));
}

#[test]
fn unpacking_arbitrary_bytes() {
    bolero::check!().for_each(unpack_checked);
}
