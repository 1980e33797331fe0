//! The Debian build image's root filesystem layer: Debian 12 (bookworm) from the
//! machine's own apt sources by mmdebstrap, with what a Yocto-style build step needs
//! (python3, git, openssh-client, gcc, make, procps, tar, locales with en_US.UTF-8).
//!
//! Built once and cached in the engines state folder (`images/debian-12/`): about a
//! minute and 100 MB of packages on a fresh machine, then nothing. The tarball is
//! mmdebstrap's own, sorted with every mtime clamped to `SOURCE_DATE_EPOCH=0`; device
//! nodes are left out (the engines mount their own `/dev`, and a rootless engine
//! cannot make them).

use std::{fs, path::Path};

use anyhow::Context;
use xshell::{cmd, Shell};

use super::{images::Layer, StateDir};

/// What the build image holds beyond Debian's minbase variant.
const PACKAGES: &str =
    "python3,git,openssh-client,gcc,libc6-dev,make,procps,tar,locales,ca-certificates";

/// The suite: the machine's own (Debian 12), whose sources the build reads.
const SUITE: &str = "bookworm";

/// Run in the new root once the packages are in: the en_US.UTF-8 locale.
const LOCALE_HOOK: &str = r#"echo "en_US.UTF-8 UTF-8" > "$1/etc/locale.gen" && chroot "$1" locale-gen && echo LANG=en_US.UTF-8 > "$1/etc/default/locale""#;

/// The cached layer, built first when the cache has none.
pub(super) fn layer(sh: &Shell, state: &StateDir) -> anyhow::Result<Layer> {
    let dir = state.join("images/debian-12");
    let (gzip_path, digests_path) = (dir.join("layer.tar.gz"), dir.join("layer.digests"));
    if !(gzip_path.is_file() && digests_path.is_file()) {
        build(sh, &dir, &gzip_path, &digests_path)
            .with_context(|| format!("building the Debian layer in {}", dir.display()))?;
    }
    let digests = fs::read_to_string(&digests_path)?;
    let mut lines = digests.lines();
    let (Some(digest), Some(diff_id)) = (lines.next(), lines.next()) else {
        anyhow::bail!("{} is not two digests", digests_path.display());
    };
    Ok(Layer {
        gzip: fs::read(&gzip_path)?,
        digest: digest.to_owned(),
        diff_id: diff_id.to_owned(),
    })
}

/// mmdebstrap into a tarball, then gzip; the digests file is written last, so an
/// interrupted build is done again.
fn build(sh: &Shell, dir: &Path, gzip_path: &Path, digests_path: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir)?;
    let tar = dir.join("layer.tar");
    let sources = [
        "/etc/apt/sources.list.d/debian.sources",
        "/etc/apt/sources.list",
    ]
    .into_iter()
    .find(|p| Path::new(p).is_file())
    .context("no apt sources on this machine (/etc/apt/sources.list[.d/debian.sources])")?;
    println!("image      building the Debian {SUITE} layer with mmdebstrap (once per machine)");
    let _epoch = sh.push_env("SOURCE_DATE_EPOCH", "0");
    let hook = format!("--customize-hook={LOCALE_HOOK}");
    cmd!(
        sh,
        "mmdebstrap --variant=minbase --mode=root --format=tar --skip=output/dev
            --include={PACKAGES}
            --dpkgopt=path-exclude=/usr/share/man/*
            --dpkgopt=path-exclude=/usr/share/doc/*
            --dpkgopt=path-exclude=/usr/share/info/*
            {hook} {SUITE} {tar} {sources}"
    )
    .run()?;
    let diff_id = super::images::sha256_file(sh, &tar)?;
    let partial = dir.join("layer.tar.gz.partial");
    // Straight into the file: xshell reads a command's output into memory.
    let status = std::process::Command::new("gzip")
        .args(["-n", "-6", "-c"])
        .arg(&tar)
        .stdout(fs::File::create(&partial)?)
        .status()
        .context("running gzip")?;
    anyhow::ensure!(status.success(), "gzip {}: {status}", tar.display());
    fs::remove_file(&tar)?;
    let digest = super::images::sha256_file(sh, &partial)?;
    fs::rename(&partial, gzip_path)?;
    fs::write(digests_path, format!("{digest}\n{diff_id}\n"))?;
    Ok(())
}
