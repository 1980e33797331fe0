//! Engines over ssh (ADR 0016): an `ssh://[user@]host[:port][/socket/path]` endpoint is
//! reached through the system's OpenSSH client, which forwards a Unix socket of ours
//! (in a 0700 folder of the library's own) to the engine's socket on that host. Every
//! backend then speaks to a local socket as it always does. The host key is checked
//! against `known_hosts` and never accepted silently; no prompt is ever shown.
//!
//! Written by hand over `ssh` rather than with an ssh crate: the user's own ssh
//! (its config, agent, `known_hosts` with hashed names and CA markers, `ProxyJump`)
//! is what a build host's owner has set up and trusts, as the Docker CLI relies on it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::AsyncBufReadExt;

use crate::error::{Error, ErrorKind, Result};
use crate::types::BackendKind;

/// The environment variable naming the private key to use (Podman's name for it).
pub const SSH_KEY_ENV: &str = "CONTAINER_SSHKEY";
/// The environment variable naming a `known_hosts` file to check host keys against
/// instead of the user's own.
pub const KNOWN_HOSTS_ENV: &str = "CONTAINER_SSH_KNOWN_HOSTS";

/// A parsed `ssh://` endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// The login name, when given.
    pub user: Option<String>,
    /// The host (name or address), as ssh takes it.
    pub host: String,
    /// The port, when given.
    pub port: Option<u16>,
    /// The engine's socket on that host, when given.
    pub socket: Option<String>,
}

/// The engine's socket on a remote host when the endpoint names none: each engine's
/// default for root.
pub fn default_remote_socket(backend: BackendKind) -> &'static str {
    match backend {
        BackendKind::Docker => "/var/run/docker.sock",
        BackendKind::Podman => "/run/podman/podman.sock",
        BackendKind::Containerd => "/run/containerd/containerd.sock",
    }
}

impl SshTarget {
    /// `Some` for an `ssh://` endpoint, `None` for any other; `InvalidInput` for an ssh
    /// endpoint that cannot be used as it is.
    pub fn parse(endpoint: &str) -> Result<Option<SshTarget>> {
        let Some(rest) = endpoint.strip_prefix("ssh://") else {
            return Ok(None);
        };
        let bad = |why: &str| {
            Err(Error::invalid_input(format!(
                "ssh endpoint {endpoint:?}: {why}"
            )))
        };
        let (authority, socket) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(rest[i..].to_string())),
            None => (rest, None),
        };
        if rest.contains(['?', '#']) {
            return bad("no query or fragment is taken");
        }
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if let Some(u) = user {
            if u.contains(':') {
                return bad("a password in the endpoint is not taken: use a key or the ssh agent");
            }
            if u.is_empty() || u.starts_with('-') || u.contains(char::is_whitespace) {
                return bad("the user name is not one ssh takes");
            }
        }
        let (host, port) = match hostport.strip_prefix('[') {
            // [v6]:port
            Some(v6) => match v6.split_once(']') {
                Some((h, "")) => (h, None),
                Some((h, p)) => match p.strip_prefix(':') {
                    Some(p) => (h, Some(p)),
                    None => return bad("expected [address]:port"),
                },
                None => return bad("an unclosed ["),
            },
            None => match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            },
        };
        // A host that starts with '-' would be read by ssh as an option.
        if host.is_empty() || host.starts_with('-') || host.contains(char::is_whitespace) {
            return bad("no host, or a host ssh would read as an option");
        }
        let port = match port {
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => return bad("the port is not a number from 1 to 65535"),
            },
            None => None,
        };
        if let Some(s) = &socket {
            if s.len() < 2 || s.contains(char::is_whitespace) {
                return bad("the socket path is empty or has blanks");
            }
        }
        Ok(Some(SshTarget {
            user: user.map(str::to_string),
            host: host.to_string(),
            port,
            socket,
        }))
    }
}

/// A running `ssh -L` forward: a local socket that reaches the engine's socket on the
/// remote host. When ssh ends while the tunnel is in use (a dropped connection, sshd
/// restarted), it is started again, with a growing pause between tries; calls meanwhile
/// fail `Unavailable`, as with a local engine that restarts. The ssh process ends (and
/// its folder goes) when the tunnel is dropped.
#[derive(Debug)]
pub struct Tunnel {
    socket: PathBuf,
    /// The engine's socket on the remote host.
    remote_socket: String,
    stderr: Arc<Mutex<Vec<String>>>,
    /// Watches ssh and starts it again; aborted (ssh killed with it) on drop.
    _supervisor: tokio_util::task::AbortOnDropHandle<()>,
    _dir: tempfile::TempDir,
}

/// The last lines ssh wrote to its stderr that are kept for errors.
const STDERR_LINES: usize = 20;
/// The first pause before ssh is started again; it doubles up to [`RESTART_MAX`].
const RESTART_FIRST: Duration = Duration::from_millis(200);
/// The longest pause between two starts of ssh.
const RESTART_MAX: Duration = Duration::from_secs(5);
/// A run of ssh this long resets the pause to [`RESTART_FIRST`].
const RESTART_RESET: Duration = Duration::from_secs(30);

/// How to run ssh for one tunnel, kept to start it again.
#[derive(Debug, Clone)]
struct SshCommand {
    args: Vec<std::ffi::OsString>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl SshCommand {
    /// Starts ssh; its stderr lines go to the debug log and the kept lines.
    fn spawn(&self) -> Result<tokio::process::Child> {
        let mut child = tokio::process::Command::new("ssh")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                let kind = if e.kind() == std::io::ErrorKind::NotFound {
                    ErrorKind::Unsupported
                } else {
                    ErrorKind::Internal
                };
                Error::new(kind, "cannot run ssh (Debian's package: openssh-client)").with_source(e)
            })?;
        if let Some(pipe) = child.stderr.take() {
            let lines = self.stderr.clone();
            tokio::spawn(async move {
                let mut reader = tokio::io::BufReader::new(pipe).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    tracing::debug!(target: "container::ssh", "ssh: {line}");
                    let mut kept = lines.lock().unwrap_or_else(PoisonError::into_inner);
                    if kept.len() == STDERR_LINES {
                        kept.remove(0);
                    }
                    kept.push(line);
                }
            });
        }
        Ok(child)
    }
}

/// Waits for ssh to end, then starts it again after a pause that grows while it keeps
/// ending (reset by a long run); forever, until aborted with its tunnel.
async fn supervise(mut child: tokio::process::Child, ssh: SshCommand, socket: PathBuf) {
    use backon::BackoffBuilder as _;
    let backoff = || {
        backon::ExponentialBuilder::default()
            .with_min_delay(RESTART_FIRST)
            .with_max_delay(RESTART_MAX)
            .without_max_times()
            .build()
    };
    let mut pauses = backoff();
    loop {
        let started = std::time::Instant::now();
        let status = child.wait().await;
        if started.elapsed() >= RESTART_RESET {
            pauses = backoff();
        }
        tracing::warn!(
            target: "container::ssh",
            ?status,
            "the ssh tunnel ended; starting it again"
        );
        // The stale socket would make a connect look like an engine that refuses.
        let _ = std::fs::remove_file(&socket);
        // A failure to start ssh (to fork) is waited out the same way.
        child = loop {
            tokio::time::sleep(pauses.next().unwrap_or(RESTART_MAX)).await;
            match ssh.spawn() {
                Ok(next) => break next,
                Err(e) => {
                    tracing::warn!(target: "container::ssh", error = %e, "cannot start ssh again");
                }
            }
        };
    }
}

impl Tunnel {
    /// Starts ssh for `target` and waits (at most `limit`) until its local socket
    /// accepts connections. Errors by what ssh said: a host key it refused is
    /// `PermissionDenied`, a refused login `Unauthenticated`, a host it cannot reach
    /// `Unavailable`.
    pub async fn open(target: &SshTarget, remote_socket: &str, limit: Duration) -> Result<Tunnel> {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|d| d.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        // tempfile makes the folder 0700: only this user reaches the forwarded socket.
        let dir = tempfile::Builder::new()
            .prefix("container-rs-ssh-")
            .tempdir_in(&base)
            .map_err(|e| {
                Error::new(
                    ErrorKind::Internal,
                    "cannot make a folder for the ssh tunnel",
                )
                .with_source(e)
            })?;
        let socket = dir.path().join("engine.sock");
        let mut args: Vec<std::ffi::OsString> = [
            "-N",
            "-T",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "ServerAliveCountMax=3",
            // INFO: ssh says why a forwarded connection failed ("open failed"), which
            // ERROR keeps to itself.
            "-o",
            "LogLevel=INFO",
        ]
        .iter()
        .map(Into::into)
        .collect();
        if let Some(known) = std::env::var_os(KNOWN_HOSTS_ENV).filter(|v| !v.is_empty()) {
            let mut opt = std::ffi::OsString::from("UserKnownHostsFile=");
            opt.push(known);
            args.extend(["-o".into(), opt]);
            args.extend(["-o".into(), "GlobalKnownHostsFile=/dev/null".into()]);
        }
        if let Some(key) = std::env::var_os(SSH_KEY_ENV).filter(|v| !v.is_empty()) {
            args.extend(["-i".into(), key]);
            args.extend(["-o".into(), "IdentitiesOnly=yes".into()]);
        }
        if let Some(port) = target.port {
            args.extend(["-p".into(), port.to_string().into()]);
        }
        if let Some(user) = &target.user {
            args.extend(["-l".into(), user.into()]);
        }
        let mut forward = socket.clone().into_os_string();
        forward.push(":");
        forward.push(remote_socket);
        args.extend([
            "-L".into(),
            forward,
            "--".into(),
            target.host.clone().into(),
        ]);
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let ssh = SshCommand {
            args,
            stderr: stderr.clone(),
        };
        let mut child = ssh.spawn()?;
        let failure = |what: &str| failure(&stderr, what);
        let ready = async {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        // Let the reader take ssh's last words.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        return Err(failure(&format!("ssh ended ({status})")));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        return Err(
                            Error::new(ErrorKind::Internal, "cannot wait for ssh").with_source(e)
                        )
                    }
                }
                if tokio::net::UnixStream::connect(&socket).await.is_ok() {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        match tokio::time::timeout(limit, ready).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(failure(&format!(
                    "ssh did not open its forward to {} within {limit:?}",
                    target.host
                )))
            }
        }
        let supervisor = tokio::spawn(supervise(child, ssh, socket.clone()));
        Ok(Tunnel {
            socket,
            remote_socket: remote_socket.to_string(),
            stderr,
            _supervisor: tokio_util::task::AbortOnDropHandle::new(supervisor),
            _dir: dir,
        })
    }

    /// The local socket that reaches the engine.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The engine's socket on the remote host (bind sources are checked against it).
    pub fn remote_socket(&self) -> &str {
        &self.remote_socket
    }

    /// The local endpoint a backend connects to.
    pub fn local_endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// An error for the tunnel failing, its kind from what ssh said.
    pub fn failure(&self, what: &str) -> Error {
        failure(&self.stderr, what)
    }
}

/// An error for a tunnel failing, its kind from what ssh said (`stderr`'s kept lines).
fn failure(stderr: &Mutex<Vec<String>>, what: &str) -> Error {
    let said = stderr
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .join(" / ");
    let kind = kind_for_ssh(&said);
    let message = if said.is_empty() {
        what.to_string()
    } else {
        format!("{what}: ssh said: {said}")
    };
    Error::new(kind, message)
}

/// The error kind for what ssh wrote to its stderr.
fn kind_for_ssh(said: &str) -> ErrorKind {
    let s = said.to_ascii_lowercase();
    if s.contains("host key verification failed")
        || s.contains("remote host identification has changed")
        || s.contains("no matching host key")
    {
        ErrorKind::PermissionDenied
    } else if s.contains("permission denied") || s.contains("too many authentication failures") {
        ErrorKind::Unauthenticated
    } else if s.contains("no such file") {
        ErrorKind::NotFound
    } else {
        ErrorKind::Unavailable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(
        user: Option<&str>,
        host: &str,
        port: Option<u16>,
        socket: Option<&str>,
    ) -> SshTarget {
        SshTarget {
            user: user.map(str::to_string),
            host: host.to_string(),
            port,
            socket: socket.map(str::to_string),
        }
    }

    #[test]
    fn endpoints_parse_as_docker_and_podman_write_them() {
        assert_eq!(SshTarget::parse("unix:///run/docker.sock").ok(), Some(None));
        assert_eq!(
            SshTarget::parse("ssh://build1").ok().flatten(),
            Some(target(None, "build1", None, None))
        );
        assert_eq!(
            SshTarget::parse("ssh://me@127.0.0.1:2222/run/podman/podman.sock")
                .ok()
                .flatten(),
            Some(target(
                Some("me"),
                "127.0.0.1",
                Some(2222),
                Some("/run/podman/podman.sock")
            ))
        );
        assert_eq!(
            SshTarget::parse("ssh://[::1]:22").ok().flatten(),
            Some(target(None, "::1", Some(22), None))
        );
    }

    #[test]
    fn what_ssh_would_misread_is_invalid_input() {
        for bad in [
            "ssh://",
            "ssh://-oProxyCommand=sh",
            "ssh://-oProxyCommand=sh@host",
            "ssh://me:secret@host",
            "ssh://host:0",
            "ssh://host:99999",
            "ssh://host:x",
            "ssh://host/",
            "ssh://host?x=1",
            "ssh://[::1",
            "ssh://ho st",
        ] {
            let e = SshTarget::parse(bad).expect_err(bad);
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn what_ssh_says_gives_the_kind() {
        assert_eq!(
            kind_for_ssh("Host key verification failed."),
            ErrorKind::PermissionDenied
        );
        assert_eq!(
            kind_for_ssh("me@127.0.0.1: Permission denied (publickey)."),
            ErrorKind::Unauthenticated
        );
        assert_eq!(
            kind_for_ssh("ssh: connect to host 127.0.0.1 port 2: Connection refused"),
            ErrorKind::Unavailable
        );
    }
}
