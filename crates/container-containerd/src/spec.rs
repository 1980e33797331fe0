//! The OCI runtime spec of a container: oci-spec's default (accepted by runc 1.1), with
//! the image config and our `ContainerConfig` laid over it. Edited as JSON: the default's
//! many fields stay as oci-spec made them, and only what the config names changes.

use std::path::{Path, PathBuf};

use container_core::{ContainerConfig, Error, ErrorKind, Mount, NetworkMode, Result};
use serde_json::{json, Value};

/// The host's static tini, bind-mounted as PID 1 for `init: true` (containerd has no init
/// of its own).
pub(crate) const HOST_INIT: &str = "/usr/bin/tini-static";
/// Where the init is mounted inside.
const INIT_TARGET: &str = "/.container-rs-init";
/// Spec annotations this backend keeps its own settings in.
pub(crate) const STOP_SIGNAL: &str = "io.container-rs.stop-signal";
/// The container's labels as given (JSON): containerd drops empty-valued labels.
pub(crate) const LABELS: &str = "io.container-rs.labels";
/// The stop grace in milliseconds.
pub(crate) const STOP_GRACE_MS: &str = "io.container-rs.stop-grace-ms";
/// `"true"` when the main process's stdin is kept open for an attach (`stdin_open`).
pub(crate) const STDIN_OPEN: &str = "io.container-rs.stdin-open";

/// Whether `spec` (a container's OCI spec) gives the main process a terminal.
pub(crate) fn has_terminal(spec: &Value) -> bool {
    spec["process"]["terminal"].as_bool().unwrap_or(false)
}

/// Whether `spec` keeps the main process's stdin open for an attach.
pub(crate) fn has_open_stdin(spec: &Value) -> bool {
    spec["annotations"][STDIN_OPEN].as_str() == Some("true")
}

/// What the image says about how to run it (its config's `config` section).
#[derive(Debug, Default)]
pub(crate) struct ImageDefaults {
    pub(crate) env: Vec<String>,
    pub(crate) entrypoint: Vec<String>,
    pub(crate) cmd: Vec<String>,
    pub(crate) working_dir: String,
    pub(crate) user: String,
}

impl ImageDefaults {
    pub(crate) fn from_config(config: &Value) -> ImageDefaults {
        let c = &config["config"];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        ImageDefaults {
            env: strings(&c["Env"]),
            entrypoint: strings(&c["Entrypoint"]),
            cmd: strings(&c["Cmd"]),
            working_dir: c["WorkingDir"].as_str().unwrap_or_default().to_string(),
            user: c["User"].as_str().unwrap_or_default().to_string(),
        }
    }
}

/// Docker's default capabilities (moby's `oci/caps/defaults.go`), which containerd's
/// own default spec gives too.
const DOCKER_DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// `PATH` when neither the image nor the config sets one (an image made by `docker
/// import` has no `Env`): the one Docker, Podman and containerd's own clients give.
pub(crate) const DEFAULT_PATH: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A process's environment: `base` with `over`'s entries replacing the same keys, and
/// [`DEFAULT_PATH`] first when neither has a `PATH`.
pub(crate) fn process_env(base: &[String], over: &[String]) -> Vec<String> {
    let mut env = merge_env(base, over);
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    env
}

/// `key=value` entries of `base` with those of `over` replacing the same keys.
fn merge_env(base: &[String], over: &[String]) -> Vec<String> {
    let key = |e: &String| e.split_once('=').map_or(e.clone(), |(k, _)| k.to_string());
    let mut out: Vec<String> = base
        .iter()
        .filter(|b| !over.iter().any(|o| key(o) == key(b)))
        .cloned()
        .collect();
    out.extend(over.iter().cloned());
    out
}

/// A numeric `uid[:gid]`; names need the image's /etc/passwd, which this backend does
/// not read yet.
fn numeric_user(user: &str) -> Result<(u32, u32)> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = user.split_once(':').unwrap_or((user, user));
    match (u.parse(), g.parse()) {
        (Ok(u), Ok(g)) => Ok((u, g)),
        _ => Err(Error::new(
            ErrorKind::Unsupported,
            format!("the image's user {user:?} is not numeric (uid:gid)"),
        )),
    }
}

/// The spec for container `id` in `namespace` from `config` and `image`; volumes are
/// bind mounts of `volume_dir(name)`.
pub(crate) fn build(
    id: &str,
    namespace: &str,
    config: &ContainerConfig,
    image: &ImageDefaults,
    volume_dir: &dyn Fn(&str) -> PathBuf,
) -> Result<Value> {
    let mut spec = serde_json::to_value(oci_spec::runtime::Spec::default()).map_err(|e| {
        Error::new(ErrorKind::Internal, "cannot encode the OCI spec").with_source(e)
    })?;
    let entrypoint = config
        .entrypoint
        .clone()
        .unwrap_or_else(|| image.entrypoint.clone());
    let cmd = match (&config.cmd, &config.entrypoint) {
        (Some(cmd), _) => cmd.clone(),
        // A new entrypoint drops the image's command, as with Docker.
        (None, Some(_)) => Vec::new(),
        (None, None) => image.cmd.clone(),
    };
    let mut args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(Error::invalid_input(
            "neither the image nor the config gives a command",
        ));
    }
    if config.init {
        let mut with_init = vec![INIT_TARGET.to_string(), "--".to_string()];
        with_init.append(&mut args);
        args = with_init;
    }
    let (uid, gid) = match config.user {
        Some(u) => (u.uid, u.gid),
        None => numeric_user(&image.user)?,
    };
    let process = &mut spec["process"];
    process["args"] = json!(args);
    process["env"] = json!(process_env(&image.env, &config.env));
    let cwd = config
        .working_dir
        .clone()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| {
            Some(image.working_dir.clone())
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "/".into())
        });
    process["cwd"] = json!(cwd);
    process["user"] = json!({"uid": uid, "gid": gid});
    process["terminal"] = json!(config.tty);
    if !config.resources.ulimits.is_empty() {
        let mut rlimits: Vec<Value> = process["rlimits"].as_array().cloned().unwrap_or_default();
        for u in &config.resources.ulimits {
            let kind = format!("RLIMIT_{}", u.name.to_ascii_uppercase());
            rlimits.retain(|r| r["type"] != kind.as_str());
            rlimits.push(json!({"type": kind, "soft": u.soft, "hard": u.hard}));
        }
        process["rlimits"] = json!(rlimits);
    }
    spec["root"] = json!({"path": "rootfs", "readonly": false});
    let hostname: String = config
        .hostname
        .clone()
        .unwrap_or_else(|| id.chars().take(63).collect());
    spec["hostname"] = json!(hostname);

    let mut mounts: Vec<Value> = spec["mounts"].as_array().cloned().unwrap_or_default();
    for m in &config.mounts {
        let mode = |ro: bool| if ro { "ro" } else { "rw" };
        mounts.push(match m {
            Mount::Bind {
                source,
                target,
                read_only,
                ..
            } => json!({"destination": target, "type": "bind",
                        "source": source, "options": ["rbind", mode(*read_only)]}),
            Mount::Volume {
                name,
                target,
                read_only,
            } => json!({"destination": target, "type": "bind",
                        "source": volume_dir(name), "options": ["rbind", mode(*read_only)]}),
            Mount::Tmpfs { target, size_bytes } => {
                let mut options = vec!["nosuid".to_string(), "nodev".into(), "mode=1777".into()];
                if let Some(size) = size_bytes {
                    options.push(format!("size={size}"));
                }
                json!({"destination": target, "type": "tmpfs", "source": "tmpfs", "options": options})
            }
            other => return Err(Error::unsupported(&format!("mount-{other:?}"))),
        });
    }
    if config.init {
        mounts.push(json!({"destination": INIT_TARGET, "type": "bind",
                           "source": HOST_INIT, "options": ["rbind", "ro"]}));
    }
    spec["mounts"] = json!(mounts);

    // Docker's default capability set, as containerd's own clients give it (oci-spec's
    // default is runc's three, so root in the container could not even chown, where
    // Docker's and Podman's root can). No capability outlives an exec into a non-root
    // user: nothing inheritable or ambient (oci-spec's default puts AUDIT_WRITE, KILL
    // and NET_BIND_SERVICE in the ambient set, so a non-root step held CAP_KILL).
    let caps = &mut spec["process"]["capabilities"];
    if caps.is_object() {
        for set in ["bounding", "effective", "permitted"] {
            caps[set] = json!(DOCKER_DEFAULT_CAPS);
        }
        caps["inheritable"] = json!([]);
        caps["ambient"] = json!([]);
    }
    let linux = &mut spec["linux"];
    linux["cgroupsPath"] = json!(format!("/container-rs/{namespace}/{id}"));
    harden(linux);
    match &config.network {
        NetworkMode::None => {}
        NetworkMode::Host => {
            if let Some(ns) = linux["namespaces"].as_array_mut() {
                ns.retain(|n| n["type"] != "network");
            }
        }
        other => return Err(Error::unsupported(&format!("network-{other:?}"))),
    }
    let r = &config.resources;
    let mut resources = linux["resources"].clone();
    if !resources.is_object() {
        resources = json!({});
    }
    if let Some(m) = r.memory_bytes {
        // swap = memory: no swap on top, so the limit is enforced.
        resources["memory"] = json!({"limit": m, "swap": m});
    }
    if let Some(c) = r.cpus {
        let period: u64 = 100_000;
        resources["cpu"] = json!({"quota": (c * period as f64).round() as i64, "period": period});
    }
    if let Some(p) = r.pids_limit {
        resources["pids"] = json!({"limit": p});
    }
    linux["resources"] = resources;

    let mut annotations = serde_json::Map::new();
    if let Some(sig) = config.stop_signal {
        annotations.insert(STOP_SIGNAL.into(), json!(sig.name()));
    }
    if let Some(grace) = config.stop_grace {
        annotations.insert(STOP_GRACE_MS.into(), json!(grace.as_millis().to_string()));
    }
    if config.stdin_open {
        annotations.insert(STDIN_OPEN.into(), json!("true"));
    }
    spec["annotations"] = Value::Object(annotations);
    Ok(spec)
}

/// Paths of `/proc` and `/sys` hidden from the container (Docker's default list).
const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
/// Paths of `/proc` the container may read but not write (Docker's default list).
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];
/// Docker's default hardening on `linux`: masked and read-only paths, and Docker's
/// default seccomp profile ([`crate::seccomp`]).
fn harden(linux: &mut Value) {
    linux["maskedPaths"] = json!(MASKED_PATHS);
    linux["readonlyPaths"] = json!(READONLY_PATHS);
    linux["seccomp"] = crate::seccomp::profile(std::env::consts::ARCH);
}

/// Whether the host has the init this backend mounts.
pub(crate) fn host_has_init() -> bool {
    Path::new(HOST_INIT).is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_over_image_defaults() {
        let image = ImageDefaults {
            env: vec!["PATH=/bin".into(), "A=image".into()],
            cmd: vec!["sh".into()],
            user: "1000:1000".into(),
            ..ImageDefaults::default()
        };
        let config = ContainerConfig::new("img:1")
            .cmd(["sleep", "1"])
            .env("A", "config")
            .init(true)
            .memory(1 << 20)
            .mount(Mount::bind("/h", "/c").read_only());
        let spec = build("c1", "ns", &config, &image, &|n| {
            PathBuf::from(format!("/v/{n}"))
        })
        .expect("spec");
        assert_eq!(
            spec["process"]["args"],
            json!([INIT_TARGET, "--", "sleep", "1"])
        );
        assert_eq!(spec["process"]["env"], json!(["PATH=/bin", "A=config"]));
        let bare = build("c1", "ns", &config, &ImageDefaults::default(), &|n| {
            PathBuf::from(format!("/v/{n}"))
        })
        .expect("spec");
        assert_eq!(
            bare["process"]["env"],
            json!([DEFAULT_PATH, "A=config"]),
            "an image with no Env gets the default PATH"
        );
        assert_eq!(spec["process"]["user"]["uid"], 1000);
        assert_eq!(spec["root"]["readonly"], false);
        assert_eq!(spec["linux"]["cgroupsPath"], "/container-rs/ns/c1");
        assert_eq!(spec["linux"]["resources"]["memory"]["limit"], 1 << 20);
        let mounts = spec["mounts"].as_array().expect("mounts");
        assert!(mounts
            .iter()
            .any(|m| m["destination"] == "/c" && m["options"][1] == "ro"));
        assert!(mounts.iter().any(|m| m["destination"] == INIT_TARGET));
    }
}
