//! Test certificates for dockerd's TLS listener: a CA, a server certificate for
//! 127.0.0.1 and a client certificate, made with `openssl` once and kept in
//! `<state>/docker/tls` (the layout `DOCKER_CERT_PATH` expects: ca.pem, cert.pem, key.pem).

use anyhow::Context;
use xshell::{cmd, Shell};

use super::StateDir;

/// The files a TLS client needs, relative to the state folder.
pub(crate) const TLS_DIR: &str = "docker/tls";

/// Makes the CA, server and client certificates unless they exist.
pub(super) fn ensure(sh: &Shell, state: &StateDir) -> anyhow::Result<()> {
    let dir = state.join(TLS_DIR);
    let files = [
        "ca.pem",
        "server-cert.pem",
        "server-key.pem",
        "cert.pem",
        "key.pem",
    ];
    if files.iter().all(|f| dir.join(f).exists()) {
        return Ok(());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let server_ext = dir.join("server.ext");
    let client_ext = dir.join("client.ext");
    std::fs::write(
        &server_ext,
        include_str!("../../fixtures/docker/tls-server.ext"),
    )?;
    std::fs::write(
        &client_ext,
        include_str!("../../fixtures/docker/tls-client.ext"),
    )?;
    let _dir = sh.push_dir(&dir);
    let q = |c: xshell::Cmd<'_>| c.quiet().ignore_stderr().run();
    q(cmd!(sh, "openssl genrsa -out ca-key.pem 2048"))?;
    q(cmd!(
        sh,
        "openssl req -x509 -new -key ca-key.pem -sha256 -days 3650 -subj /CN=container-rs-test-ca -out ca.pem"
    ))?;
    for (name, subject, ext) in [
        ("server", "/CN=127.0.0.1", &server_ext),
        ("client", "/CN=container-rs-test-client", &client_ext),
    ] {
        let (cert, key) = if name == "server" {
            ("server-cert.pem", "server-key.pem")
        } else {
            ("cert.pem", "key.pem")
        };
        let csr = format!("{name}.csr");
        q(cmd!(sh, "openssl genrsa -out {key} 2048"))?;
        q(cmd!(
            sh,
            "openssl req -new -key {key} -subj {subject} -out {csr}"
        ))?;
        q(cmd!(
            sh,
            "openssl x509 -req -in {csr} -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 3650 -sha256 -extfile {ext} -out {cert}"
        ))?;
    }
    println!("docker     made TLS test certificates in {}", dir.display());
    Ok(())
}
