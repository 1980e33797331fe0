//! Core types to libpod requests, libpod responses to core types. Pure functions.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use container_core::{
    BackendKind, ContainerConfig, ContainerInfo, ContainerState, EngineInfo, Error, ErrorKind,
    IdRange, Labels, LayerPhase, Mount, MountInfo, NetworkMode, PullProgress, Result, Ulimit,
    VolumeInfo,
};
use podman_api::models::{InspectContainerData, ListContainer, Volume, VolumeConfigResponse};
use serde_json::{json, Map, Value};

/// The libpod `SpecGenerator` for a validated `config` named `name` carrying `labels`
/// (user + ownership). Sent as raw JSON: podman-api's builder has no field for named
/// volumes. A mount or network kind this backend does not know is `Unsupported`.
///
/// `defaults` are the service's default ulimits ([`default_ulimits`]): libpod 4.3 drops
/// all of them as soon as a container names one, so the ones the caller does not name are
/// sent along.
pub(crate) fn create_spec(
    name: &str,
    config: &ContainerConfig,
    labels: &Labels,
    defaults: &[Ulimit],
) -> Result<Value> {
    let mut s = Map::new();
    let mut put = |k: &str, v: Value| {
        s.insert(k.to_string(), v);
    };
    put("image", json!(config.image));
    put("name", json!(name));
    if let Some(cmd) = &config.cmd {
        put("command", json!(cmd));
    }
    if let Some(ep) = &config.entrypoint {
        put("entrypoint", json!(ep));
    }
    if !config.env.is_empty() {
        let env: HashMap<&str, &str> = config
            .env
            .iter()
            .filter_map(|e| e.split_once('='))
            .collect();
        put("env", json!(env));
    }
    if let Some(dir) = &config.working_dir {
        put("work_dir", json!(dir));
    }
    if let Some(user) = &config.user {
        put("user", json!(user.to_string()));
    }
    put("labels", json!(labels));
    if let Some(h) = &config.hostname {
        put("hostname", json!(h));
    }
    if config.init {
        put("init", json!(true));
    }
    if config.keep_id {
        put("userns", json!({"nsmode": "keep-id"}));
    }
    if config.stdin_open {
        put("stdin", json!(true));
    }
    if config.tty {
        put("terminal", json!(true));
    }
    if let Some(sig) = config.stop_signal {
        put("stop_signal", json!(sig.number()));
    }
    if let Some(grace) = config.stop_grace {
        put("stop_timeout", json!(container_core::raw::ceil_secs(grace)));
    }
    match &config.network {
        NetworkMode::None => put("netns", json!({"nsmode": "none"})),
        NetworkMode::Host => put("netns", json!({"nsmode": "host"})),
        NetworkMode::Named(n) => {
            put("netns", json!({"nsmode": "bridge"}));
            put("Networks", json!({ n.as_str(): {} }));
        }
        other => return Err(Error::unsupported(&format!("network-{other:?}"))),
    }
    let (mounts, volumes) = mounts(&config.mounts)?;
    if !mounts.is_empty() {
        put("mounts", Value::Array(mounts));
    }
    if !volumes.is_empty() {
        put("volumes", Value::Array(volumes));
    }
    let r = &config.resources;
    let mut limits = Map::new();
    if let Some(m) = r.memory_bytes {
        // swap = memory: no swap on top, so the limit is really enforced (OOM kill).
        limits.insert("memory".into(), json!({"limit": m, "swap": m}));
    }
    if let Some(c) = r.cpus {
        let period: u64 = 100_000;
        limits.insert(
            "cpu".into(),
            json!({"period": period, "quota": (c * period as f64).round() as i64}),
        );
    }
    if let Some(p) = r.pids_limit {
        limits.insert("pids".into(), json!({"limit": p}));
    }
    if !limits.is_empty() {
        put("resource_limits", Value::Object(limits));
    }
    if !r.ulimits.is_empty() {
        let named = |d: &&Ulimit| {
            !r.ulimits
                .iter()
                .any(|u| u.name.eq_ignore_ascii_case(&d.name))
        };
        let rl: Vec<Value> = r
            .ulimits
            .iter()
            .chain(defaults.iter().filter(named))
            .map(|u| {
                json!({
                    // libpod prefixes `RLIMIT_` itself on some paths (init): the bare name.
                    "type": u.name.to_ascii_lowercase(),
                    "soft": u.soft,
                    "hard": u.hard,
                })
            })
            .collect();
        put("r_limits", Value::Array(rl));
    }
    Ok(Value::Object(s))
}

/// Binds and tmpfs become OCI mounts; named volumes become libpod named volumes (so the
/// engine knows the volume is in use).
fn mounts(ms: &[Mount]) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut mounts = Vec::new();
    let mut volumes = Vec::new();
    for m in ms {
        match m {
            Mount::Bind {
                source,
                target,
                read_only,
                relabel,
                ..
            } => {
                let mut options = vec!["rbind", if *read_only { "ro" } else { "rw" }];
                options.extend(relabel.map(|r| r.option()));
                mounts.push(json!({
                    "type": "bind",
                    "source": source.display().to_string(),
                    "destination": target,
                    "options": options,
                }));
            }
            Mount::Volume {
                name,
                target,
                read_only,
            } => volumes.push(json!({
                "Name": name,
                "Dest": target,
                "Options": [if *read_only { "ro" } else { "rw" }],
            })),
            Mount::Tmpfs { target, size_bytes } => {
                let mut options = vec!["rw".to_string(), "nosuid".into(), "nodev".into()];
                if let Some(size) = size_bytes {
                    options.push(format!("size={size}"));
                }
                mounts.push(json!({
                    "type": "tmpfs",
                    "source": "tmpfs",
                    "destination": target,
                    "options": options,
                }));
            }
            other => return Err(Error::unsupported(&format!("mount-{other:?}"))),
        }
    }
    Ok((mounts, volumes))
}

fn state(status: Option<&str>, exit: i64) -> ContainerState {
    match status.unwrap_or_default() {
        "created" | "configured" | "initialized" => ContainerState::Created,
        "running" => ContainerState::Running,
        "paused" => ContainerState::Paused,
        "restarting" => ContainerState::Restarting,
        "removing" => ContainerState::Removing,
        "exited" | "stopped" => ContainerState::Exited(exit),
        "dead" => ContainerState::Dead,
        other => ContainerState::Unknown(other.to_string()),
    }
}

/// A libpod time as (seconds, nanoseconds) since the epoch; its zero time
/// (`0001-01-01`, negative seconds) is none.
fn time(t: Option<(i64, u32)>) -> Option<SystemTime> {
    let (secs, nanos) = t?;
    let secs = u64::try_from(secs).ok().filter(|s| *s > 0)?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Inspect response to core info.
pub(crate) fn container_info(r: InspectContainerData) -> ContainerInfo {
    let (image, labels) = match r.config {
        Some(c) => (c.image, c.labels.unwrap_or_default()),
        None => (None, HashMap::new()),
    };
    let st = r.state.as_ref();
    // (seconds, nanoseconds): the times are chrono's, read through their own methods.
    let started = st
        .and_then(|s| s.started_at.as_ref())
        .map(|t| (t.timestamp(), t.timestamp_subsec_nanos()));
    let finished = st
        .and_then(|s| s.finished_at.as_ref())
        .map(|t| (t.timestamp(), t.timestamp_subsec_nanos()));
    let mounts = r
        .mounts
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| {
            let (kind, name) = (m.type_.as_deref(), m.name.as_deref());
            MountInfo::from_engine(kind, name, m.source.as_deref(), m.destination.as_deref())
        })
        .collect();
    let status = state(
        st.and_then(|s| s.status.as_deref()),
        i64::from(st.and_then(|s| s.exit_code).unwrap_or(0)),
    );
    // Podman 5 keeps OOMKilled when the container starts again (4.3 clears it): a flag
    // that outlived its run (the container runs again, or its last exit was no SIGKILL)
    // is not this run's.
    let oom_killed =
        st.and_then(|s| s.oom_killed).unwrap_or(false) && status == ContainerState::Exited(137);
    ContainerInfo::new(
        r.id.unwrap_or_default(),
        r.name.unwrap_or_default(),
        r.image_name.or(image).unwrap_or_default(),
        status,
    )
    .with_labels(labels.into_iter().collect())
    .with_oom_killed(oom_killed)
    .with_pid(st.and_then(|s| s.pid).and_then(|p| u32::try_from(p).ok()))
    .with_times(time(started), time(finished))
    .with_restart_count(
        r.restart_count
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0),
    )
    .with_mounts(mounts)
}

/// List entry to core info.
pub(crate) fn summary_info(c: ListContainer) -> ContainerInfo {
    let name = c
        .names
        .and_then(|n| n.into_iter().next())
        .unwrap_or_default();
    ContainerInfo::new(
        c.id.unwrap_or_default(),
        name,
        c.image.unwrap_or_default(),
        state(c.state.as_deref(), i64::from(c.exit_code.unwrap_or(0))),
    )
    .with_labels(c.labels.unwrap_or_default().into_iter().collect())
}

/// Volume (list, inspect) to core info.
pub(crate) fn volume_info(v: Volume) -> VolumeInfo {
    VolumeInfo::new(v.name, v.labels.into_iter().collect()).with_mountpoint(v.mountpoint)
}

/// Volume create response to core info.
pub(crate) fn created_volume_info(v: VolumeConfigResponse) -> VolumeInfo {
    VolumeInfo::new(
        v.name.unwrap_or_default(),
        v.labels.unwrap_or_default().into_iter().collect(),
    )
    .with_mountpoint(v.mountpoint.unwrap_or_default())
}

/// The ulimits libpod gave a container created without any (its service's defaults):
/// `RLIMIT_NOFILE` becomes `nofile`.
pub(crate) fn default_ulimits(r: &InspectContainerData) -> Vec<Ulimit> {
    r.host_config
        .as_ref()
        .and_then(|h| h.ulimits.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|u| {
            let name = u.name.as_deref()?;
            let name = name
                .strip_prefix("RLIMIT_")
                .unwrap_or(name)
                .to_ascii_lowercase();
            Some(Ulimit::new(name, u.soft?, u.hard?))
        })
        .collect()
}

/// The id in libpod's create response; a response without one is an error, never an
/// empty id.
pub(crate) fn created_id(body: &[u8]) -> Result<String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        Error::new(ErrorKind::Internal, "unreadable create response").with_source(e)
    })?;
    match v["Id"].as_str() {
        Some(id) if !id.is_empty() => Ok(id.to_string()),
        _ => Err(Error::new(
            ErrorKind::Internal,
            "the create response carries no container id",
        )),
    }
}

/// The info response to core engine facts.
pub(crate) fn engine_info(info: podman_api::models::Info, endpoint: &str) -> EngineInfo {
    let (version, api_version) = match info.version {
        Some(v) => (v.version, v.api_version),
        None => (None, None),
    };
    let (os, arch, cpus, memory) = match &info.host {
        Some(h) => (h.os.clone(), h.arch.clone(), h.cpus, h.mem_total),
        None => (None, None, None, None),
    };
    // A rootless service's user namespace (a rootful one reports the host's ids).
    let rootless = info
        .host
        .as_ref()
        .and_then(|h| h.security.as_ref())
        .and_then(|s| s.rootless)
        .unwrap_or(false);
    let maps = info.host.and_then(|h| h.id_mappings).filter(|_| rootless);
    let ranges = |map: Option<Vec<podman_api::models::IdMap>>| -> Vec<IdRange> {
        map.unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                Some(IdRange {
                    container_id: u32::try_from(m.container_id?).ok()?,
                    host_id: u32::try_from(m.host_id?).ok()?,
                    size: u32::try_from(m.size?).ok()?,
                })
            })
            .collect()
    };
    let (uid_map, gid_map) = match maps {
        Some(m) => (ranges(m.uidmap), ranges(m.gidmap)),
        None => (Vec::new(), Vec::new()),
    };
    // The libpod API exists only on Podman.
    EngineInfo::new(
        BackendKind::Podman,
        BackendKind::Podman,
        version.unwrap_or_default(),
        endpoint,
    )
    .with_api_version(api_version)
    .with_platform(os.unwrap_or_default(), arch.unwrap_or_default())
    .with_resources(cpus, memory)
    .with_id_maps(uid_map, gid_map)
}

/// One line of a pull report's `stream` text to a progress event. libpod reports layers
/// only as `Copying blob sha256:...` (with `skipped: already exists` for a cached one).
pub(crate) fn pull_progress(line: &str) -> Option<PullProgress> {
    let rest = line.trim().strip_prefix("Copying blob ")?;
    let (id, tail) = rest.split_once(' ').unwrap_or((rest, ""));
    let phase = if tail.contains("already exists") || tail.contains("skipped") {
        LayerPhase::AlreadyExists
    } else if tail.contains("done") {
        LayerPhase::Complete
    } else {
        LayerPhase::Downloading
    };
    Some(PullProgress::Layer {
        id: id.trim_start_matches("sha256:").to_string(),
        phase,
        current: None,
        total: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use container_core::Ulimit;
    use std::time::Duration;

    #[test]
    fn a_create_response_without_an_id_is_an_error() {
        assert_eq!(
            created_id(br#"{"Id":"abc","Warnings":[]}"#).expect("id"),
            "abc"
        );
        for body in [&br#"{"Id":""}"#[..], br#"{"Warnings":[]}"#, b"not json"] {
            let e = created_id(body).expect_err("no id");
            assert_eq!(e.kind(), ErrorKind::Internal);
        }
    }

    #[test]
    fn create_spec_carries_every_field() {
        let c = ContainerConfig::new("img:1")
            .name("n")
            .cmd(["sleep", "1"])
            .env("A", "1=2")
            .user(1000, 1000)
            .working_dir("/w")
            .init(true)
            .stop_signal(container_core::Signal::INT)
            .stop_grace(Duration::from_millis(1500))
            .mount(
                Mount::bind("/h", "/c")
                    .read_only()
                    .relabel(container_core::Relabel::Private),
            )
            .mount(Mount::volume("v", "/v"))
            .mount(Mount::tmpfs("/t"))
            .cpus(1.5)
            .memory(1 << 20)
            .pids_limit(10)
            .ulimit(Ulimit::new("nofile", 1, 2));
        let mut labels = Labels::new();
        labels.insert("k".into(), "v".into());
        let defaults = [Ulimit::new("nproc", 5, 6), Ulimit::new("nofile", 7, 8)];
        let s = create_spec("n", &c, &labels, &defaults).expect("spec");
        assert_eq!(s["name"], "n");
        assert_eq!(s["user"], "1000:1000");
        assert_eq!(s["env"]["A"], "1=2");
        assert_eq!(s["work_dir"], "/w");
        assert_eq!(s["stop_signal"], 2);
        assert_eq!(s["stop_timeout"], 2);
        assert_eq!(s["init"], true);
        assert_eq!(s["netns"]["nsmode"], "none");
        assert_eq!(s["labels"]["k"], "v");
        assert_eq!(s["mounts"][0]["type"], "bind");
        assert_eq!(s["mounts"][0]["options"][1], "ro");
        assert_eq!(s["mounts"][0]["options"][2], "Z");
        assert_eq!(s["mounts"][1]["type"], "tmpfs");
        assert_eq!(s["volumes"][0]["Name"], "v");
        assert_eq!(s["volumes"][0]["Dest"], "/v");
        assert_eq!(s["resource_limits"]["cpu"]["quota"], 150_000);
        assert_eq!(s["resource_limits"]["memory"]["limit"], 1 << 20);
        assert_eq!(s["resource_limits"]["pids"]["limit"], 10);
        assert_eq!(s["r_limits"][0]["type"], "nofile");
        assert_eq!(s["r_limits"][0]["hard"], 2, "the caller's limit wins");
        assert_eq!(
            s["r_limits"][1]["type"], "nproc",
            "a default the caller did not name"
        );
        assert_eq!(s["r_limits"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn states_map_with_exit_codes() {
        assert_eq!(state(Some("exited"), 123), ContainerState::Exited(123));
        assert_eq!(state(Some("stopped"), 0), ContainerState::Exited(0));
        assert_eq!(state(Some("configured"), 0), ContainerState::Created);
        assert_eq!(state(Some("running"), 0), ContainerState::Running);
    }

    #[test]
    fn pull_stream_lines_map_to_layer_events() {
        assert_eq!(
            pull_progress("Copying blob sha256:abc\n"),
            Some(PullProgress::Layer {
                id: "abc".into(),
                phase: LayerPhase::Downloading,
                current: None,
                total: None
            })
        );
        assert!(matches!(
            pull_progress("Copying blob abc skipped: already exists\n"),
            Some(PullProgress::Layer {
                phase: LayerPhase::AlreadyExists,
                ..
            })
        ));
        assert!(pull_progress("Copying config sha256:abc\n").is_none());
        assert!(pull_progress("Writing manifest to image destination\n").is_none());
    }

    #[test]
    fn an_oom_flag_podman_kept_from_an_earlier_run_is_dropped() {
        let with = |status: &str, exit_code: i32| -> InspectContainerData {
            serde_json::from_value(json!({
                "State": {"Status": status, "ExitCode": exit_code, "OOMKilled": true}
            }))
            .expect("an inspect")
        };
        assert!(container_info(with("exited", 137)).oom_killed, "this run's");
        assert!(!container_info(with("running", 0)).oom_killed, "runs again");
        assert!(
            !container_info(with("exited", 0)).oom_killed,
            "a later run ended by itself"
        );
    }
}
