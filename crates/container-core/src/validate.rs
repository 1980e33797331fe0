//! Validation of every input before any engine call: bad input is an `InvalidInput` error
//! here, never an engine error, a panic, or a silently created host directory.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::exec::ExecSpec;
use crate::labels::check_user_labels;
use crate::reference::ImageRef;
use crate::types::{
    Account, ContainerConfig, Mount, NetworkMode, Relabel, Resources, User, VolumeConfig,
};

/// Docker's rule for container and volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, here also
/// capped at 128 characters so every engine accepts it.
fn is_object_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && s.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A container name as every engine accepts it.
pub fn container_name(name: &str) -> Result<()> {
    if is_object_name(name) {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "invalid container name {name:?}: use 1-128 characters of [a-zA-Z0-9_.-], \
             starting with a letter or digit"
        ))
        .with_resource(name))
    }
}

/// A volume name as every engine accepts it.
pub fn volume_name(name: &str) -> Result<()> {
    if is_object_name(name) {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "invalid volume name {name:?}: use 1-128 characters of [a-zA-Z0-9_.-], \
             starting with a letter or digit"
        ))
        .with_resource(name))
    }
}

/// A container id or name passed to an operation: a name, or a hex id.
pub fn container_ref(id: &str) -> Result<()> {
    container_name(id)
}

fn env_entries(env: &[String]) -> Result<()> {
    for entry in env {
        match entry.split_once('=') {
            Some((key, _)) if !key.is_empty() && !key.contains('\0') => {}
            // Never echo the entry: without `=` it may be a secret given whole.
            Some(_) => {
                return Err(Error::invalid_input(
                    "an environment entry has an empty name: entries have the form KEY=VALUE",
                ));
            }
            None => {
                return Err(Error::invalid_input(format!(
                    "an environment entry ({} bytes) has no '=': entries have the form \
                     KEY=VALUE (its text is not shown: it may be a secret)",
                    entry.len()
                )));
            }
        }
        if entry.contains('\0') {
            return Err(Error::invalid_input(
                "environment entries must not contain NUL bytes",
            ));
        }
        if entry
            .split_once('=')
            .is_some_and(|(key, _)| key == crate::raw::EXEC_MARK)
        {
            return Err(Error::invalid_input(format!(
                "environment variable {} is reserved: it marks an exec's processes",
                crate::raw::EXEC_MARK
            )));
        }
    }
    Ok(())
}

fn argv(what: &str, args: &[String]) -> Result<()> {
    if args.is_empty() || args[0].is_empty() {
        return Err(Error::invalid_input(format!("{what} must not be empty")));
    }
    if args.iter().any(|a| a.contains('\0')) {
        return Err(Error::invalid_input(format!(
            "{what} arguments must not contain NUL bytes"
        )));
    }
    Ok(())
}

fn container_path(what: &str, path: &str) -> Result<()> {
    if !path.starts_with('/') || path.contains('\0') {
        return Err(Error::invalid_input(format!(
            "{what} {path:?} must be an absolute path inside the container"
        )));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(Error::invalid_input(format!(
            "{what} {path:?} must not contain '..'"
        )));
    }
    Ok(())
}

/// Normalises a container path for duplicate detection: `/a//b/` is `/a/b`.
fn normalise(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

fn mounts(mounts: &[Mount]) -> Result<()> {
    let mut targets = HashSet::new();
    for m in mounts {
        container_path("mount target", m.target())?;
        if normalise(m.target()) == "/" {
            return Err(Error::invalid_input("a mount target must not be /"));
        }
        if !targets.insert(normalise(m.target())) {
            return Err(Error::invalid_input(format!(
                "two mounts have the same target {:?}",
                m.target()
            )));
        }
        match m {
            Mount::Bind {
                source,
                relabel,
                sensitive,
                ..
            } => {
                host_path(source)?;
                if !sensitive {
                    bind_source_not_sensitive(source, *relabel)?;
                }
            }
            Mount::Volume { name, .. } => volume_name(name)?,
            Mount::Tmpfs { size_bytes, .. } => {
                if matches!(size_bytes, Some(n) if *n <= 0) {
                    return Err(Error::invalid_input("tmpfs size must be positive"));
                }
            }
        }
    }
    Ok(())
}

/// Host paths whose contents control the host or an engine: a bind mount of one of them,
/// of anything below it or of a folder that holds it needs [`Mount::allow_sensitive`].
const SENSITIVE: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/etc",
    "/boot",
    "/root/.ssh",
    "/var/lib/docker",
    "/var/lib/containers",
    "/var/lib/containerd",
    "/var/lib/container-rs",
    "/run/docker",
    "/run/docker.sock",
    "/run/podman",
    "/run/containerd",
    "/run/container-rs",
    "/run/user",
];

/// `source` (made absolute and free of symlinks and `..` the way the engine will see
/// it) overlaps none of [`SENSITIVE`]; a private relabel (`Z`) of a home folder also
/// needs the opt-in (it takes the folder from every other user of it).
fn bind_source_not_sensitive(source: &Path, relabel: Option<Relabel>) -> Result<()> {
    let resolved = std::fs::canonicalize(source).unwrap_or_else(|_| source.to_path_buf());
    let shown = source.display().to_string();
    let overlaps = |s: &Path| resolved.starts_with(s) || s.starts_with(&resolved);
    if let Some(hit) = SENSITIVE.iter().map(Path::new).find(|s| overlaps(s)) {
        let via = if resolved == source {
            String::new()
        } else {
            format!(" (it resolves to {})", resolved.display())
        };
        return Err(Error::invalid_input(format!(
            "bind source {shown:?}{via} overlaps {}: the container would reach host or \
             engine internals; Mount::allow_sensitive() is the explicit opt-in",
            hit.display()
        ))
        .with_resource(shown));
    }
    let home = resolved.starts_with("/home") || resolved.starts_with("/root");
    if relabel == Some(Relabel::Private) && home && resolved.components().count() <= 3 {
        return Err(Error::invalid_input(format!(
            "bind source {shown:?} is a home folder: a private relabel (Z) takes it from \
             every other process; use Relabel::Shared, a subfolder, or \
             Mount::allow_sensitive()"
        ))
        .with_resource(shown));
    }
    Ok(())
}

/// No bind mount of `config` overlaps the Unix socket of `endpoint` (the engine this
/// manager talks to, wherever its socket is: the fixed list of sensitive paths knows
/// only the engines' default places) unless it opted in with [`Mount::allow_sensitive`].
pub fn engine_socket_not_bound(config: &ContainerConfig, endpoint: &str) -> Result<()> {
    let socket = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if !socket.starts_with('/') {
        return Ok(());
    }
    let socket = std::fs::canonicalize(socket).unwrap_or_else(|_| PathBuf::from(socket));
    for m in &config.mounts {
        let Mount::Bind {
            source,
            sensitive: false,
            ..
        } = m
        else {
            continue;
        };
        let resolved = std::fs::canonicalize(source).unwrap_or_else(|_| source.clone());
        if resolved.starts_with(&socket) || socket.starts_with(&resolved) {
            let shown = source.display().to_string();
            return Err(Error::invalid_input(format!(
                "bind source {shown:?} holds the socket of the engine this manager uses ({}): \
                 the container would control the engine; Mount::allow_sensitive() is the \
                 explicit opt-in",
                socket.display()
            ))
            .with_resource(shown));
        }
    }
    Ok(())
}

/// The bind sources of `config` for an engine on another host, reached at `endpoint`
/// (`ssh://`), whose socket there is `engine_socket`. Bind sources name paths on the
/// engine's host, but are checked on this one (the engine must never create a missing
/// one as root): a source missing here is refused with words that say so. A source that
/// holds the remote engine's socket (compared as paths, since it cannot be resolved from
/// here) needs [`Mount::allow_sensitive`], as a local one does.
pub fn remote_bind_sources(
    config: &ContainerConfig,
    endpoint: &str,
    engine_socket: &str,
) -> Result<()> {
    let socket = Path::new(engine_socket);
    for m in &config.mounts {
        let Mount::Bind {
            source, sensitive, ..
        } = m
        else {
            continue;
        };
        let shown = source.display().to_string();
        if !sensitive && (source.starts_with(socket) || socket.starts_with(source)) {
            return Err(Error::invalid_input(format!(
                "bind source {shown:?} holds the socket of the engine at {endpoint} \
                 ({engine_socket} on its host): the container would control the engine; \
                 Mount::allow_sensitive() is the explicit opt-in"
            ))
            .with_resource(shown));
        }
        if source.is_absolute() && matches!(source.try_exists(), Ok(false)) {
            return Err(Error::invalid_input(format!(
                "bind source {shown:?} does not exist on this host, where bind sources are \
                 checked; the engine at {endpoint} runs on another host and binds its own \
                 {shown:?}: the path must exist on both (a shared mount, or made on each)"
            ))
            .with_resource(shown));
        }
    }
    Ok(())
}

/// A bind source: absolute, and existing on this host (a symlink to something existing is
/// fine). The engine is never left to create it: Docker would make a root-owned directory.
pub fn host_path(source: &Path) -> Result<()> {
    let shown = source.display().to_string();
    if !source.is_absolute() {
        return Err(Error::invalid_input(format!(
            "bind source {shown:?} must be an absolute host path"
        ))
        .with_resource(shown));
    }
    match source.try_exists() {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::invalid_input(format!(
            "bind source {shown:?} does not exist on the host; create it first"
        ))
        .with_resource(shown)),
        Err(e) => Err(
            Error::invalid_input(format!("bind source {shown:?} cannot be checked"))
                .with_resource(shown)
                .with_source(e),
        ),
    }
}

/// The ulimit names Docker, Podman and the OCI runtime know (`RLIMIT_<NAME>`).
const ULIMITS: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

fn resources(r: &Resources) -> Result<()> {
    if matches!(r.memory_bytes, Some(n) if n <= 0) {
        return Err(Error::invalid_input("memory limit must be positive"));
    }
    if let Some(c) = r.cpus {
        if !(c.is_finite() && (0.01..=1024.0).contains(&c)) {
            return Err(Error::invalid_input(format!(
                "cpu limit {c} must be a number from 0.01 to 1024"
            )));
        }
    }
    if matches!(r.pids_limit, Some(n) if n <= 0) {
        return Err(Error::invalid_input("pids limit must be positive"));
    }
    let mut names = HashSet::new();
    for u in &r.ulimits {
        if !ULIMITS.contains(&u.name.as_str()) || !names.insert(u.name.as_str()) {
            return Err(Error::invalid_input(format!(
                "ulimit name {:?} must be one of {} and given once",
                u.name,
                ULIMITS.join(", ")
            )));
        }
        if u.soft < 0 || u.hard < 0 || u.soft > u.hard {
            return Err(Error::invalid_input(format!(
                "ulimit {}: need 0 <= soft ({}) <= hard ({})",
                u.name, u.soft, u.hard
            )));
        }
    }
    Ok(())
}

/// Everything in a [`ContainerConfig`]; the first problem found is returned.
pub fn container_config(c: &ContainerConfig) -> Result<()> {
    check(c).map_err(|e| match &c.name {
        Some(name) => e.with_resource(name.clone()),
        None => e.with_resource(c.image.clone()),
    })
}

/// An [`Account`]: a name the shell script that makes it can take as it is, a plain
/// absolute home, root only as `root`, and the config's user the account's own.
fn account(a: &Account, user: Option<User>) -> Result<()> {
    let name_ok = !a.name.is_empty()
        && a.name.len() <= 32
        && !a.name.starts_with('-')
        && a.name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !name_ok {
        return Err(Error::invalid_input(format!(
            "account name {:?}: 1 to 32 letters, digits, '.', '_' or '-', not starting with '-'",
            a.name.chars().take(40).collect::<String>()
        )));
    }
    if (a.uid == 0) != (a.name == "root") {
        return Err(Error::invalid_input(format!(
            "account {:?} with uid {}: uid 0 is `root` and `root` is uid 0 (the image's root \
             entry is never renamed)",
            a.name, a.uid
        )));
    }
    let home_ok = a.home.len() > 1
        && a.home.starts_with('/')
        && !a.home.split('/').any(|part| part == ".." || part == ".")
        && a.home
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
    if !home_ok {
        return Err(Error::invalid_input(format!(
            "account home {:?}: an absolute path other than / of letters, digits, '.', '_', \
             '-' and '/', without '.' or '..' parts",
            a.home.chars().take(80).collect::<String>()
        )));
    }
    if user.is_some_and(|u| u != a.user()) {
        return Err(Error::invalid_input(format!(
            "the config's user {} is not its account's {}: set one, or both the same",
            user.map(|u| u.to_string()).unwrap_or_default(),
            a.user()
        )));
    }
    Ok(())
}

fn check(c: &ContainerConfig) -> Result<()> {
    if c.image.is_empty() {
        return Err(Error::invalid_input("image must not be empty"));
    }
    ImageRef::parse(&c.image)?;
    if let Some(name) = &c.name {
        container_name(name)?;
    }
    if let Some(cmd) = &c.cmd {
        argv("command", cmd)?;
    }
    if let Some(ep) = &c.entrypoint {
        argv("entrypoint", ep)?;
    }
    env_entries(&c.env)?;
    if let Some(dir) = &c.working_dir {
        container_path("working directory", dir)?;
    }
    if let Some(a) = &c.account {
        account(a, c.user)?;
    }
    mounts(&c.mounts)?;
    check_user_labels(&c.labels)?;
    resources(&c.resources)?;
    if let NetworkMode::Named(n) = &c.network {
        if !is_object_name(n) {
            return Err(Error::invalid_input(format!("invalid network name {n:?}")));
        }
    }
    if let Some(h) = &c.hostname {
        // RFC 1123: dot-separated labels of 1-63 letters, digits and hyphens, none
        // starting or ending with a hyphen; 253 bytes in all.
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if h.is_empty() || h.len() > 253 || !h.split('.').all(label_ok) {
            return Err(Error::invalid_input(format!(
                "invalid hostname {h:?}: dot-separated labels of letters, digits and \
                 inner hyphens (RFC 1123)"
            )));
        }
    }
    optional_duration("stop grace", c.stop_grace)?;
    Ok(())
}

/// The longest duration any option takes: past it an `Instant` would overflow
/// (`Duration::MAX` panicked), and no engine call or grace needs more than a year.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// `d`, the option `what`, is at most [`MAX_DURATION`].
pub fn duration(what: &str, d: Duration) -> Result<()> {
    if d > MAX_DURATION {
        return Err(Error::invalid_input(format!(
            "{what} {d:?} is longer than a year (at most {} s); no deadline is `None`",
            MAX_DURATION.as_secs()
        )));
    }
    Ok(())
}

/// The optional `d`, the option `what`: see [`duration`].
pub fn optional_duration(what: &str, d: Option<Duration>) -> Result<()> {
    d.map_or(Ok(()), |d| duration(what, d))
}

/// Everything in an [`ExecSpec`].
pub fn exec_spec(s: &ExecSpec) -> Result<()> {
    argv("exec command", &s.cmd)?;
    env_entries(&s.env)?;
    if let Some(dir) = &s.working_dir {
        container_path("exec working directory", dir)?;
    }
    if s.timeout.is_some_and(|t| t.is_zero()) {
        return Err(Error::invalid_input("exec timeout must be above zero"));
    }
    optional_duration("exec timeout", s.timeout)?;
    duration("exec kill grace", s.kill_grace)?;
    if s.stdin.is_some() && s.stdin_stream.is_some() {
        return Err(Error::invalid_input(
            "an exec takes stdin as bytes or as a stream, not both",
        ));
    }
    Ok(())
}

/// Everything in a [`VolumeConfig`].
pub fn volume_config(v: &VolumeConfig) -> Result<()> {
    volume_name(&v.name)?;
    check_user_labels(&v.labels).map_err(|e| e.with_resource(v.name.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Ulimit;
    use crate::ErrorKind;
    use crate::Signal;
    use proptest::prelude::*;

    #[test]
    fn the_exec_mark_is_reserved() {
        let spec = ExecSpec::new(["true"]).env("CONTAINER_RS_EXEC", "forged");
        let e = exec_spec(&spec).expect_err("reserved");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("CONTAINER_RS_EXEC"), "{e}");
        assert!(exec_spec(&ExecSpec::new(["true"]).env("CONTAINER_RS_EXECX", "1")).is_ok());
    }

    const IMG: &str = "127.0.0.1:5000/container-rs/busybox:1";

    #[test]
    fn values_the_engines_would_take_late_or_silently_are_refused_early() {
        let base = || ContainerConfig::new(IMG).cmd(["true"]);
        invalid(&base().label("big", "x".repeat(5000)));
        assert!(container_config(&base().label("fits", "x".repeat(4000))).is_ok());
        let mut tiny = base();
        tiny.resources.cpus = Some(1e-9);
        invalid(&tiny);
        let mut bogus = base();
        bogus.resources.ulimits.push(Ulimit::new("bogus", 1, 1));
        invalid(&bogus);
        let mut nofile = base();
        nofile
            .resources
            .ulimits
            .push(Ulimit::new("nofile", 1024, 1024));
        assert!(container_config(&nofile).is_ok());
        for h in ["-", "-a", "a-", "a..b", ".a", &"a".repeat(64)] {
            invalid(&base().hostname(h));
        }
        assert!(container_config(&base().hostname("build-1.example")).is_ok());
        invalid(&base().stop_grace(Duration::MAX));
        assert!(exec_spec(&ExecSpec::new(["true"]).timeout(Duration::MAX)).is_err());
        assert!(exec_spec(&ExecSpec::new(["true"]).kill_grace(Duration::MAX)).is_err());
    }

    #[test]
    fn the_engines_own_socket_needs_the_opt_in_wherever_it_is() {
        let dir = tempfile::tempdir().expect("tmp");
        let socket = dir.path().join("engine.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
        let endpoint = format!("unix://{}", socket.display());
        let other = tempfile::tempdir().expect("tmp");
        let with = |m: Mount| ContainerConfig::new(IMG).cmd(["true"]).mount(m);
        for source in [socket.as_path(), dir.path()] {
            let e = engine_socket_not_bound(&with(Mount::bind(source, "/s")), &endpoint)
                .expect_err("the engine's socket");
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(e.message().contains("allow_sensitive"), "{e}");
            let opted = Mount::bind(source, "/s").allow_sensitive();
            assert!(engine_socket_not_bound(&with(opted), &endpoint).is_ok());
        }
        assert!(engine_socket_not_bound(&with(Mount::bind(other.path(), "/s")), &endpoint).is_ok());
        // A plain path (containerd's way) is a socket too; a TCP endpoint has none.
        let plain = socket.display().to_string();
        assert!(engine_socket_not_bound(&with(Mount::bind(dir.path(), "/s")), &plain).is_err());
        let tcp = "tcp://127.0.0.1:2376";
        assert!(engine_socket_not_bound(&with(Mount::bind(dir.path(), "/s")), tcp).is_ok());
    }

    #[test]
    fn sensitive_bind_sources_need_the_opt_in() {
        let with = |m: Mount| ContainerConfig::new(IMG).cmd(["true"]).mount(m);
        let link_dir = tempfile::tempdir().expect("tmp");
        let to_etc = link_dir.path().join("etc-link");
        std::os::unix::fs::symlink("/etc", &to_etc).expect("symlink");
        let dotted = std::path::PathBuf::from("/tmp/../etc");
        for source in [
            Path::new("/"),
            Path::new("/proc"),
            Path::new("/sys/fs"),
            Path::new("/dev"),
            Path::new("/etc"),
            Path::new("/var"),
            Path::new("/run"),
            to_etc.as_path(),
            dotted.as_path(),
        ] {
            let e = container_config(&with(Mount::bind(source, "/h"))).expect_err("sensitive");
            assert_eq!(
                e.kind(),
                ErrorKind::InvalidInput,
                "{}: {e}",
                source.display()
            );
            assert!(e.message().contains("allow_sensitive"), "{e}");
            assert!(
                container_config(&with(Mount::bind(source, "/h").allow_sensitive())).is_ok(),
                "{} with the opt-in",
                source.display()
            );
        }
        for socket in [
            "/run/docker.sock",
            "/run/podman/podman.sock",
            "/run/containerd/containerd.sock",
        ] {
            if Path::new(socket).exists() {
                invalid(&with(Mount::bind(socket, "/s")));
            }
        }
        // Ordinary build folders are fine.
        let work = tempfile::tempdir().expect("tmp");
        assert!(container_config(&with(Mount::bind(work.path(), "/w"))).is_ok());
        assert!(container_config(&with(
            Mount::bind(work.path(), "/w").relabel(Relabel::Private)
        ))
        .is_ok());
        // A private relabel of a home folder.
        if Path::new("/root").is_dir() {
            invalid(&with(Mount::bind("/root", "/r").relabel(Relabel::Private)));
        }
    }

    #[test]
    fn an_env_entry_without_equals_is_never_echoed() {
        let secret = "hunter2-very-secret";
        let mut spec = ExecSpec::new(["true"]);
        spec.env.push(secret.to_string());
        let e = exec_spec(&spec).expect_err("no =");
        assert!(!e.to_string().contains(secret), "{e}");
        let mut config = ContainerConfig::new(IMG);
        config.env.push(secret.to_string());
        let e = container_config(&config).expect_err("no =");
        assert!(!format!("{e:?}").contains(secret), "{e:?}");
    }

    fn invalid(c: &ContainerConfig) {
        let e = container_config(c).expect_err("must be invalid");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(!e.is_retryable());
    }

    fn tmp() -> std::path::PathBuf {
        std::env::temp_dir()
    }

    #[test]
    fn a_full_valid_config_passes() {
        let dir = tmp();
        let mut c = ContainerConfig::new(IMG)
            .name("build-1")
            .cmd(["sleep", "infinity"])
            .env("A", "b=c")
            .env("EMPTY", "")
            .user(1000, 1000)
            .working_dir("/work")
            .mount(Mount::bind(&dir, "/downloads"))
            .mount(Mount::bind(&dir, "/layers").read_only())
            .mount(Mount::volume("sstate", "/sstate"))
            .mount(Mount::tmpfs("/tmp"))
            .label("app", "yocto")
            .stop_signal(Signal::INT)
            .init(true);
        c.resources.memory_bytes = Some(1 << 30);
        c.resources.cpus = Some(1.5);
        c.resources.pids_limit = Some(1000);
        c.resources.ulimits.push(Ulimit {
            name: "nofile".into(),
            soft: 1024,
            hard: 4096,
        });
        container_config(&c).expect("valid");
    }

    // conformance case 54
    #[test]
    fn case_54_bad_basics() {
        invalid(&ContainerConfig::new(""));
        invalid(&ContainerConfig::new(IMG).cmd(Vec::<String>::new()));
        invalid(&ContainerConfig::new(IMG).cmd([""]));
        for name in ["", "-x", "a b", "a/b", ".x", &"n".repeat(129)] {
            invalid(&ContainerConfig::new(IMG).name(name));
        }
        let mut c = ContainerConfig::new(IMG);
        c.env.push("NOEQUALS".into());
        invalid(&c);
        let mut c = ContainerConfig::new(IMG);
        c.env.push("=value".into());
        invalid(&c);
        for limit in [0, -1] {
            let mut c = ContainerConfig::new(IMG);
            c.resources.memory_bytes = Some(limit);
            invalid(&c);
            let mut c = ContainerConfig::new(IMG);
            c.resources.pids_limit = Some(limit);
            invalid(&c);
        }
        for cpus in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let mut c = ContainerConfig::new(IMG);
            c.resources.cpus = Some(cpus);
            invalid(&c);
        }
        let mut c = ContainerConfig::new(IMG);
        c.resources.ulimits.push(Ulimit {
            name: "nofile".into(),
            soft: 10,
            hard: 5,
        });
        invalid(&c);
        invalid(&ContainerConfig::new(IMG).working_dir("relative"));
    }

    // conformance case 4
    #[test]
    fn case_4_malformed_image() {
        invalid(&ContainerConfig::new("Not A Ref"));
        invalid(&ContainerConfig::new("busybox:bad tag"));
    }

    // conformance case 43
    #[test]
    fn case_43_missing_and_relative_paths() {
        let missing = tmp().join("container-rs-does-not-exist-9f1c");
        let e = container_config(&ContainerConfig::new(IMG).mount(Mount::bind(&missing, "/x")))
            .expect_err("missing");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("does not exist"), "{e}");
        assert!(!missing.exists(), "validation must not create the path");
        invalid(&ContainerConfig::new(IMG).mount(Mount::bind("relative/dir", "/x")));
        invalid(&ContainerConfig::new(IMG).mount(Mount::bind(tmp(), "relative")));
        invalid(&ContainerConfig::new(IMG).mount(Mount::bind(tmp(), "/a/../b")));
        invalid(&ContainerConfig::new(IMG).mount(Mount::bind(tmp(), "/")));
    }

    #[test]
    fn symlinked_host_path_is_fine() {
        let dir = tmp().join(format!("crs-validate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let link = dir.with_extension("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&dir, &link).expect("symlink");
        let r = container_config(&ContainerConfig::new(IMG).mount(Mount::bind(&link, "/x")));
        let _ = std::fs::remove_file(&link);
        let _ = std::fs::remove_dir(&dir);
        r.expect("symlink ok");
    }

    // conformance case 46
    #[test]
    fn case_46_duplicate_targets() {
        invalid(
            &ContainerConfig::new(IMG)
                .mount(Mount::bind(tmp(), "/data"))
                .mount(Mount::tmpfs("/data/")),
        );
        invalid(
            &ContainerConfig::new(IMG)
                .mount(Mount::volume("v", "/a//b"))
                .mount(Mount::tmpfs("/a/b")),
        );
    }

    // conformance case 50
    #[test]
    fn case_50_reserved_label_prefix() {
        invalid(&ContainerConfig::new(IMG).label("io.container-rs.session", "x"));
        let mut v = VolumeConfig::new("vol");
        v.labels.insert("io.container-rs.owner".into(), "x".into());
        assert_eq!(
            volume_config(&v).expect_err("reserved").kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn volume_and_exec_checks() {
        assert!(volume_config(&VolumeConfig::new("ok-1.v_2")).is_ok());
        for bad in ["", "a b", "../x", "_x"] {
            assert!(volume_config(&VolumeConfig::new(bad)).is_err(), "{bad}");
        }
        assert!(exec_spec(&ExecSpec::new(["true"])).is_ok());
        assert!(exec_spec(&ExecSpec::new(Vec::<String>::new())).is_err());
        assert!(exec_spec(&ExecSpec::new(["true"]).env("", "x")).is_err());
        assert!(exec_spec(&ExecSpec::new(["true"]).working_dir("rel")).is_err());
        assert!(exec_spec(&ExecSpec::new(["true"]).timeout(std::time::Duration::ZERO)).is_err());
        assert!(exec_spec(&ExecSpec::new(["a\0b"])).is_err());
    }

    proptest! {
        #[test]
        fn names_accepted_iff_they_match_the_rule(name in "\\PC{0,20}") {
            let ok = container_name(&name).is_ok();
            let expect = !name.is_empty()
                && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            prop_assert_eq!(ok, expect);
        }

        #[test]
        fn env_needs_a_key_and_equals(key in "[A-Z_]{0,6}", sep in "=?", val in "[ -~]{0,10}") {
            let entry = format!("{key}{sep}{val}");
            let mut c = ContainerConfig::new(IMG);
            c.env.push(entry.clone());
            let ok = container_config(&c).is_ok();
            let expect = match entry.split_once('=') {
                Some((k, _)) => !k.is_empty(),
                None => false,
            };
            prop_assert_eq!(ok, expect);
        }

        #[test]
        fn arbitrary_configs_never_panic(
            image in "\\PC{0,30}",
            name in proptest::option::of("\\PC{0,20}"),
            target in "\\PC{0,20}",
            mem in proptest::option::of(any::<i64>()),
        ) {
            let mut c = ContainerConfig::new(image);
            c.name = name;
            c.mounts.push(Mount::tmpfs(target));
            c.resources.memory_bytes = mem;
            let _ = container_config(&c);
        }
    }

    #[test]
    fn accounts_a_shell_can_take_as_they_are() {
        let with = |a: Account| container_config(&ContainerConfig::new("busybox").account(a));
        assert!(with(Account::new(1000, 1000, "builder")).is_ok());
        assert!(with(Account::new(0, 0, "root")).is_ok());
        assert!(with(Account::new(1000, 100, "j.doe_2-x").with_home("/work/home")).is_ok());
        for bad in [
            Account::new(1000, 1000, ""),
            Account::new(1000, 1000, "-x"),
            Account::new(1000, 1000, "a b"),
            Account::new(1000, 1000, "a:b"),
            Account::new(1000, 1000, "a$(id)"),
            Account::new(1000, 1000, "x".repeat(33)),
            Account::new(0, 0, "alice"),
            Account::new(1000, 1000, "root"),
            Account::new(1000, 1000, "b").with_home("/"),
            Account::new(1000, 1000, "b").with_home("home/b"),
            Account::new(1000, 1000, "b").with_home("/home/../etc"),
            Account::new(1000, 1000, "b").with_home("/home/b c"),
        ] {
            let e = with(bad.clone()).expect_err(&format!("{bad:?}"));
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}: {e}");
        }
        let mut other_user = ContainerConfig::new("busybox").account(Account::new(1, 1, "a"));
        other_user.user = Some(User::new(2, 2));
        let e = container_config(&other_user).expect_err("user and account differ");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    }
}
