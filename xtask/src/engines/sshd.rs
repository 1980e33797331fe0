//! An OpenSSH server of the harness's own on 127.0.0.1:2222 (ADR 0016), for the engines
//! over `ssh://`: its host key, a client key pair it authorises, another key it does
//! not, and a `known_hosts` with its host key, all in `<state>/sshd`. Root logs in
//! with the key only, and may forward Unix sockets (the engines' sockets); nothing else
//! is allowed. The system's own sshd is never started.

use std::path::Path;

use anyhow::{bail, Context};
use xshell::{cmd, Shell};

use super::StateDir;

/// The folder of the server's files, relative to the state folder.
pub(crate) const SSHD_DIR: &str = "sshd";
/// Where the server listens.
pub(crate) const SSHD_ADDR: &str = "127.0.0.1:2222";

/// Makes the keys and config unless they exist, and starts the server unless it runs.
pub(super) fn ensure_running(sh: &Shell, state: &StateDir) -> anyhow::Result<()> {
    let dir = state.join(SSHD_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for key in ["host_key", "client_key", "other_key"] {
        let path = dir.join(key);
        if !path.exists() {
            let comment = format!("container-rs-{key}");
            cmd!(sh, "ssh-keygen -q -t ed25519 -N '' -C {comment} -f {path}")
                .quiet()
                .run()?;
        }
    }
    let host_pub = std::fs::read_to_string(dir.join("host_key.pub"))?;
    let host_pub: Vec<&str> = host_pub.split_whitespace().take(2).collect();
    let (host, port) = SSHD_ADDR.split_once(':').unwrap_or((SSHD_ADDR, "22"));
    std::fs::write(
        dir.join("known_hosts"),
        format!("[{host}]:{port} {}\n", host_pub.join(" ")),
    )?;
    std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))?;
    let d = dir.display();
    std::fs::write(
        dir.join("sshd_config"),
        format!(
            "ListenAddress {host}\nPort {port}\nHostKey {d}/host_key\n\
             AuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
             AllowStreamLocalForwarding local\n\
             # OpenSSH 9.2 refuses stream-local forwards unless TCP forwarding is on too.\n\
             AllowTcpForwarding local\nX11Forwarding no\nAllowAgentForwarding no\n\
             PermitTunnel no\nGatewayPorts no\nPermitUserRC no\n"
        ),
    )?;
    if running(&dir) {
        return Ok(());
    }
    // sshd's privilege separation folder.
    std::fs::create_dir_all("/run/sshd")?;
    let config = dir.join("sshd_config");
    let log = dir.join("sshd.log");
    cmd!(sh, "/usr/sbin/sshd -f {config} -E {log}").run()?;
    for _ in 0..50 {
        if std::net::TcpStream::connect(SSHD_ADDR).is_ok() {
            println!("sshd       {SSHD_ADDR} (keys and known_hosts in {d})");
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    bail!(
        "sshd did not listen on {SSHD_ADDR} within 5 s: see {}",
        log.display()
    )
}

/// Whether the server of `dir`'s pid file runs and listens.
fn running(dir: &Path) -> bool {
    let pid = std::fs::read_to_string(dir.join("sshd.pid")).unwrap_or_default();
    let alive = pid
        .trim()
        .parse::<u32>()
        .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
    alive && std::net::TcpStream::connect(SSHD_ADDR).is_ok()
}
