//! The test images: a busybox-static root filesystem built without internet, and a
//! Debian build image from the machine's apt sources (`debian.rs`), pushed to the local
//! registry as Docker schema 2 images (pullable by tag and by digest with docker,
//! podman and ctr).
//!
//! The busybox layer is reproducible (sorted tar, fixed mtime and owners, `gzip -n`),
//! so the same fixtures and Debian packages give the same digests on every machine.

use std::{
    fs,
    os::unix::fs::{chown, symlink, PermissionsExt},
    path::Path,
};

use anyhow::{bail, Context};
use serde_json::json;
use xshell::{cmd, Shell};

use super::{
    http::Request, StateDir, BUSYBOX_IMAGE, BUSYBOX_USER_IMAGE, DEBIAN_BARE_IMAGE, DEBIAN_IMAGE,
    LAYERS_IMAGE, REGISTRY_ADDR,
};

/// busybox from Debian's busybox-static.
pub(super) const BUSYBOX: &str = "/bin/busybox";
/// tini from Debian's tini package (bookworm has no tini-static package).
pub(super) const TINI_STATIC: &str = "/usr/bin/tini-static";
/// Docker schema 2 manifest.
const MANIFEST_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image configuration.
const CONFIG_TYPE: &str = "application/vnd.docker.container.image.v1+json";
/// gzip-compressed tar layer.
const LAYER_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Timestamp of the layer's files and of the image: the epoch, for reproducibility.
const EPOCH: &str = "1970-01-01T00:00:00Z";
/// PATH inside the images (all applets are in /bin).
const IMAGE_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The root filesystem an image is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    /// busybox-static and tini-static (`build_rootfs`).
    Busybox,
    /// Debian 12 with build tools (`debian.rs`).
    Debian,
}

/// A test image in the local registry.
#[derive(Debug)]
struct TestImage {
    /// Full reference, `127.0.0.1:5000/<repository>:<tag>`.
    reference: &'static str,
    /// Its root filesystem layer.
    base: Base,
    /// Default user; empty for root.
    user: &'static str,
    /// The config's `Env`; empty: no `Env` at all, as `docker import` makes an image.
    env: &'static [&'static str],
    /// The config's `Cmd`; empty: none.
    cmd: &'static [&'static str],
    /// Layers of its own after the base (incompressible payloads, by index: the same
    /// index is the same layer), so that pulling this image downloads and extracts
    /// something even while the shared base layer is present.
    payloads: &'static [u64],
}

/// Every test image.
const TEST_IMAGES: &[TestImage] = &[
    TestImage {
        reference: BUSYBOX_IMAGE,
        base: Base::Busybox,
        user: "",
        env: &[IMAGE_PATH],
        cmd: &["/bin/sh"],
        payloads: &[],
    },
    TestImage {
        reference: BUSYBOX_USER_IMAGE,
        base: Base::Busybox,
        user: "1000:1000",
        env: &[IMAGE_PATH],
        cmd: &["/bin/sh"],
        payloads: &[0],
    },
    // What the benchmark pulls: 8 layers of 4 MiB its own (issue 16).
    TestImage {
        reference: LAYERS_IMAGE,
        base: Base::Busybox,
        user: "",
        env: &[IMAGE_PATH],
        cmd: &["/bin/sh"],
        payloads: &[1, 2, 3, 4, 5, 6, 7, 8],
    },
    TestImage {
        reference: DEBIAN_IMAGE,
        base: Base::Debian,
        user: "",
        env: &[IMAGE_PATH, "LANG=en_US.UTF-8"],
        cmd: &["/bin/bash"],
        payloads: &[],
    },
    TestImage {
        reference: DEBIAN_BARE_IMAGE,
        base: Base::Debian,
        user: "",
        env: &[],
        cmd: &[],
        payloads: &[],
    },
];

/// Size of a payload layer's one file, `/opt/container-rs/payload.bin`.
const PAYLOAD_BYTES: usize = 4 << 20;

impl TestImage {
    /// Repository and tag inside the registry.
    fn repository_and_tag(&self) -> anyhow::Result<(&'static str, &'static str)> {
        self.reference
            .strip_prefix(REGISTRY_ADDR)
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(|rest| rest.rsplit_once(':'))
            .with_context(|| format!("{} is not a {REGISTRY_ADDR} image", self.reference))
    }

    /// The manifest digest the registry serves for the tag, `None` when it has none.
    fn digest(&self) -> anyhow::Result<Option<String>> {
        let (repository, tag) = self.repository_and_tag()?;
        let response = Request::new("HEAD", &format!("/v2/{repository}/manifests/{tag}"))
            .header("Accept", MANIFEST_TYPE)
            .send_tcp(REGISTRY_ADDR)?;
        if response.status == 404 {
            return Ok(None);
        }
        response.expect(200)?;
        let digest = response
            .header("Docker-Content-Digest")
            .context("manifest without Docker-Content-Digest")?;
        Ok(Some(digest.to_owned()))
    }
}

/// A root filesystem layer, compressed, with its digests.
#[derive(Debug)]
pub(super) struct Layer {
    /// The gzip-compressed tar.
    pub(super) gzip: Vec<u8>,
    /// Digest of `gzip`, the blob digest.
    pub(super) digest: String,
    /// Digest of the uncompressed tar, the diff id in the image configuration.
    pub(super) diff_id: String,
}

/// Builds and pushes the test images the registry does not serve yet (all of them
/// with `rebuild`).
pub(super) fn ensure_pushed(sh: &Shell, state: &StateDir, rebuild: bool) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    for image in TEST_IMAGES {
        match image.digest()? {
            Some(digest) if !rebuild => println!("image      {} {digest}", image.reference),
            _ => missing.push(image),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let needs = |base: Base| missing.iter().any(|image| image.base == base);
    let busybox = needs(Base::Busybox)
        .then(|| build_layer(sh, state))
        .transpose()?;
    let debian = needs(Base::Debian)
        .then(|| super::debian::layer(sh, state))
        .transpose()?;
    let mut payloads = std::collections::BTreeMap::new();
    for index in missing.iter().flat_map(|image| image.payloads) {
        if !payloads.contains_key(index) {
            payloads.insert(*index, build_payload_layer(sh, state, *index)?);
        }
    }
    for image in missing {
        let base = match image.base {
            Base::Busybox => busybox.as_ref(),
            Base::Debian => debian.as_ref(),
        }
        .context("the base layer was built")?;
        let mut layers = vec![base];
        for index in image.payloads {
            layers.push(payloads.get(index).context("the payload layer was built")?);
        }
        let digest =
            push(sh, image, &layers).with_context(|| format!("pushing {}", image.reference))?;
        println!("image      {} {digest} (pushed)", image.reference);
    }
    Ok(())
}

/// Prints each test image with its digest, or why there is none.
pub(super) fn print_status() {
    for image in TEST_IMAGES {
        let digest = match image.digest() {
            Ok(Some(digest)) => digest,
            Ok(None) => "missing: run `cargo xtask engines up`".to_owned(),
            Err(err) => format!("unknown: {err:#}"),
        };
        println!("image      {} {digest}", image.reference);
    }
}

/// Builds the root filesystem in the state folder and packs it as a layer.
fn build_layer(sh: &Shell, state: &StateDir) -> anyhow::Result<Layer> {
    let rootfs = state.join("images/rootfs");
    build_rootfs(sh, &rootfs).with_context(|| format!("building {}", rootfs.display()))?;
    pack_layer(sh, &rootfs)
}

/// A layer with one file of deterministic, incompressible bytes (xorshift64, seeded by
/// `index`), so its download is real work the engine reports progress for, and its
/// digest is stable.
fn build_payload_layer(sh: &Shell, state: &StateDir, index: u64) -> anyhow::Result<Layer> {
    let root = state.join("images/payload");
    if root.exists() {
        fs::remove_dir_all(&root)?;
    }
    let dir = root.join("opt/container-rs");
    fs::create_dir_all(&dir)?;
    for d in [root.join("opt"), dir.clone()] {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755))?;
    }
    let mut state_word: u64 = 0x9E37_79B9_7F4A_7C15 ^ index;
    let mut bytes = Vec::with_capacity(PAYLOAD_BYTES);
    while bytes.len() < PAYLOAD_BYTES {
        state_word ^= state_word << 13;
        state_word ^= state_word >> 7;
        state_word ^= state_word << 17;
        bytes.extend_from_slice(&state_word.to_le_bytes());
    }
    let file = dir.join("payload.bin");
    fs::write(&file, &bytes)?;
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644))?;
    pack_layer(sh, &root)
}

/// A reproducible gzip layer of the tree at `root` (sorted, epoch mtimes, numeric owners).
fn pack_layer(sh: &Shell, rootfs: &Path) -> anyhow::Result<Layer> {
    let tar = cmd!(
        sh,
        "tar --sort=name --mtime=@0 --numeric-owner --format=gnu -C {rootfs} -cf - ."
    )
    .quiet()
    .output()?
    .stdout;
    let gzip = cmd!(sh, "gzip -n -9 -c")
        .stdin(&tar)
        .quiet()
        .output()?
        .stdout;
    Ok(Layer {
        digest: sha256(sh, &gzip)?,
        diff_id: sha256(sh, &tar)?,
        gzip,
    })
}

/// A fresh root filesystem: `/bin/busybox` with every applet linked beside it,
/// `/sbin/tini`, `/etc/passwd` and `/etc/group` from the fixtures, `/tmp` (1777),
/// homes for `root` and `builder` (1000:1000).
fn build_rootfs(sh: &Shell, rootfs: &Path) -> anyhow::Result<()> {
    if rootfs.exists() {
        fs::remove_dir_all(rootfs)?;
    }
    for (dir, mode) in [
        ("", 0o755),
        ("bin", 0o755),
        ("sbin", 0o755),
        ("etc", 0o755),
        ("dev", 0o755),
        ("proc", 0o755),
        ("sys", 0o755),
        ("root", 0o700),
        ("home", 0o755),
        ("home/builder", 0o755),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("var", 0o755),
    ] {
        let path = rootfs.join(dir);
        fs::create_dir_all(&path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
    }
    chown(rootfs.join("home/builder"), Some(1000), Some(1000))?;
    install(Path::new(BUSYBOX), &rootfs.join("bin/busybox"), 0o755)?;
    install(Path::new(TINI_STATIC), &rootfs.join("sbin/tini"), 0o755)?;
    // What `busybox --install -s /bin` does inside the image.
    let applets = cmd!(sh, "{BUSYBOX} --list").quiet().read()?;
    for applet in applets.lines().map(str::trim) {
        let link = rootfs.join("bin").join(applet);
        if applet.is_empty() || applet.contains('/') || link.exists() {
            continue;
        }
        symlink("busybox", &link).with_context(|| format!("linking {}", link.display()))?;
    }
    for (name, text) in [
        ("passwd", include_str!("../../fixtures/images/passwd")),
        ("group", include_str!("../../fixtures/images/group")),
    ] {
        let path = rootfs.join("etc").join(name);
        fs::write(&path, text)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

/// Copies `from` to `to` with `mode`.
fn install(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Pushes the layers, the image configuration and the manifest of `image`; returns
/// the manifest digest.
fn push(sh: &Shell, image: &TestImage, layers: &[&Layer]) -> anyhow::Result<String> {
    let (repository, tag) = image.repository_and_tag()?;
    let mut run = json!({ "User": image.user, "WorkingDir": "/" });
    if !image.env.is_empty() {
        run["Env"] = json!(image.env);
    }
    if !image.cmd.is_empty() {
        run["Cmd"] = json!(image.cmd);
    }
    let config = serde_json::to_vec(&json!({
        "architecture": architecture(),
        "os": "linux",
        "created": EPOCH,
        "config": run,
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.diff_id.as_str()).collect::<Vec<_>>(),
        },
        "history": layers.iter().enumerate().map(|(i, _)| json!({
            "created": EPOCH,
            "created_by": if i > 0 {
                "cargo xtask engines up: incompressible payload layer"
            } else if image.base == Base::Debian {
                "cargo xtask engines up: Debian 12 by mmdebstrap (build tools, en_US.UTF-8)"
            } else {
                "cargo xtask engines up: busybox-static and tini-static root filesystem"
            },
        })).collect::<Vec<_>>(),
    }))?;
    let config_digest = sha256(sh, &config)?;
    for layer in layers {
        push_blob(repository, &layer.digest, &layer.gzip)?;
    }
    push_blob(repository, &config_digest, &config)?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": { "mediaType": CONFIG_TYPE, "size": config.len(), "digest": config_digest },
        "layers": layers.iter().map(|l| json!({
            "mediaType": LAYER_TYPE,
            "size": l.gzip.len(),
            "digest": l.digest,
        })).collect::<Vec<_>>(),
    }))?;
    let response = Request::new("PUT", &format!("/v2/{repository}/manifests/{tag}"))
        .header("Content-Type", MANIFEST_TYPE)
        .body(&manifest)
        .send_tcp(REGISTRY_ADDR)?;
    response.expect(201)?;
    match response.header("Docker-Content-Digest") {
        Some(digest) => Ok(digest.to_owned()),
        None => sha256(sh, &manifest),
    }
}

/// Uploads a blob to `repository` unless the registry has it there already.
fn push_blob(repository: &str, digest: &str, data: &[u8]) -> anyhow::Result<()> {
    let head = Request::new("HEAD", &format!("/v2/{repository}/blobs/{digest}"))
        .send_tcp(REGISTRY_ADDR)?;
    if head.status == 200 {
        return Ok(());
    }
    let start = Request::new("POST", &format!("/v2/{repository}/blobs/uploads/"))
        .send_tcp(REGISTRY_ADDR)?;
    start.expect(202)?;
    let location = start
        .header("Location")
        .context("upload started without a Location")?;
    // The registry answers with an absolute URL; keep path and query.
    let target = match location.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |slash| &rest[slash..]),
        None => location,
    };
    let separator = if target.contains('?') { '&' } else { '?' };
    let target = format!("{target}{separator}digest={digest}");
    let response = Request::new("PUT", &target)
        .header("Content-Type", "application/octet-stream")
        .body(data)
        .send_tcp(REGISTRY_ADDR)?;
    response.expect(201)?;
    Ok(())
}

/// `sha256:<hex>` of the file at `path`, by coreutils' sha256sum.
pub(super) fn sha256_file(sh: &Shell, path: &Path) -> anyhow::Result<String> {
    let out = cmd!(sh, "sha256sum {path}").quiet().read()?;
    match out.split_whitespace().next() {
        Some(hex) if hex.len() == 64 => Ok(format!("sha256:{hex}")),
        _ => bail!("unexpected sha256sum output `{out}`"),
    }
}

/// `sha256:<hex>` of `data`, by coreutils' sha256sum.
fn sha256(sh: &Shell, data: &[u8]) -> anyhow::Result<String> {
    let out = cmd!(sh, "sha256sum").stdin(data).quiet().read()?;
    match out.split_whitespace().next() {
        Some(hex) if hex.len() == 64 => Ok(format!("sha256:{hex}")),
        _ => bail!("unexpected sha256sum output `{out}`"),
    }
}

/// This machine's architecture, as OCI names it.
fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_image_references_split() {
        let found: Vec<_> = TEST_IMAGES
            .iter()
            .map(|image| image.repository_and_tag().ok())
            .collect();
        assert_eq!(
            found,
            [
                Some(("container-rs/busybox", "1")),
                Some(("container-rs/busybox-user", "2")),
                Some(("container-rs/layers", "1")),
                Some(("container-rs/debian", "12")),
                Some(("container-rs/debian-bare", "12")),
            ]
        );
    }
}
