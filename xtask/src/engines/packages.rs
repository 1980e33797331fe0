//! Debian packages the engines need, installed with apt-get when missing.

use std::path::Path;

use anyhow::{bail, Context};
use xshell::{cmd, Shell};

use super::{
    images::{BUSYBOX, TINI_STATIC},
    search_path,
};

/// The packages `engines up` installs: the engines, the registry, what the test
/// images are built from (mmdebstrap: the Debian build image), protoc
/// (containerd-client's build needs it), uidmap and rootlesskit (the rootless engines)
/// and openssh-client (the ssh agent forwarding test).
const PACKAGES: &[&str] = &[
    "docker.io",
    "podman",
    "containerd",
    "runc",
    "docker-registry",
    "busybox-static",
    "tini",
    "protobuf-compiler",
    "uidmap",
    "rootlesskit",
    "openssl",
    "mmdebstrap",
    "openssh-client",
    "openssh-server",
];

/// Programs xtask runs, which must be on PATH once the packages are installed.
const PROGRAMS: &[&str] = &[
    "containerd",
    "ctr",
    "dockerd",
    "runc",
    "podman",
    "rootlesskit",
    "conmon",
    "docker-registry",
    "protoc",
    "tar",
    "gzip",
    "openssl",
    "sha256sum",
    "kill",
    "mmdebstrap",
    "sshd",
    "ssh-keygen",
];

/// Installs the missing packages (after `apt-get update`; nothing when all are in),
/// then checks the programs and files xtask needs.
pub(super) fn ensure_installed(sh: &Shell) -> anyhow::Result<()> {
    let missing = missing_packages(sh)?;
    if !missing.is_empty() {
        println!("installing {}", missing.join(" "));
        let _env = sh.push_env("DEBIAN_FRONTEND", "noninteractive");
        cmd!(sh, "apt-get update").run()?;
        // No package may start its service (openssh-server would start the system's
        // sshd on every address): the harness starts only its own daemons.
        let policy = Path::new("/usr/sbin/policy-rc.d");
        let own_policy = !policy.exists();
        if own_policy {
            std::fs::write(
                policy,
                "#!/bin/sh\n# container-rs xtask: no service starts\nexit 101\n",
            )?;
            std::fs::set_permissions(policy, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        }
        let installed = cmd!(
            sh,
            "apt-get install -y --no-install-recommends {missing...}"
        )
        .run();
        if own_policy {
            let _ = std::fs::remove_file(policy);
        }
        installed?;
    }
    let mut absent: Vec<String> = PROGRAMS
        .iter()
        .filter(|program| find_program(program).is_none())
        .map(|program| format!("program `{program}`"))
        .collect();
    absent.extend(
        [BUSYBOX, TINI_STATIC]
            .iter()
            .filter(|file| !Path::new(file).exists())
            .map(|file| format!("file {file}")),
    );
    if !absent.is_empty() {
        bail!(
            "still missing after installing {}: {}",
            PACKAGES.join(" "),
            absent.join(", ")
        );
    }
    Ok(())
}

/// The packages of [`PACKAGES`] that dpkg does not list as installed.
fn missing_packages(sh: &Shell) -> anyhow::Result<Vec<&'static str>> {
    let format = "${Package} ${db:Status-Status}\n";
    // dpkg-query exits with 1 when it knows nothing of a package: read stdout anyway.
    let output = cmd!(sh, "dpkg-query --show --showformat {format} {PACKAGES...}")
        .quiet()
        .ignore_status()
        .ignore_stderr()
        .output()
        .context("running dpkg-query: `cargo xtask engines up` needs Debian (dpkg and apt)")?;
    let listing = String::from_utf8_lossy(&output.stdout);
    let installed: Vec<&str> = listing
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(_, status)| *status == "installed")
        .map(|(package, _)| package.split(':').next().unwrap_or(package))
        .collect();
    Ok(PACKAGES
        .iter()
        .copied()
        .filter(|package| !installed.contains(package))
        .collect())
}

/// The path of `program` on [`search_path`], if any.
fn find_program(program: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&search_path())
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}
