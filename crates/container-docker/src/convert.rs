//! Core types to Docker requests, Docker responses to core types. Pure functions.

use std::collections::HashMap;
use std::time::SystemTime;

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerSummary, CreateImageInfo, HostConfig,
    HostConfigLogConfig, Mount as DMount, MountTmpfsOptions, MountType, ResourcesUlimits, Volume,
};
use container_core::{
    BackendKind, ContainerConfig, ContainerInfo, ContainerState, EngineInfo, Error, ErrorKind,
    Labels, LayerPhase, Mount, MountInfo, NetworkMode, OutputChunk, PullProgress, Result,
    StreamKind, VolumeInfo,
};

/// The create request for a validated `config` carrying `labels` (user + ownership).
/// A mount or network kind this backend does not know is `Unsupported`.
pub(crate) fn create_body(config: &ContainerConfig, labels: Labels) -> Result<ContainerCreateBody> {
    let r = &config.resources;
    // Relabelled binds go the `Binds` way: the Mounts API has no SELinux option.
    let (relabelled, plain): (Vec<&Mount>, Vec<&Mount>) = config.mounts.iter().partition(|m| {
        matches!(
            m,
            Mount::Bind {
                relabel: Some(_),
                ..
            }
        )
    });
    let mounts = plain.into_iter().map(mount).collect::<Result<Vec<_>>>()?;
    let binds = relabelled
        .into_iter()
        .map(bind)
        .collect::<Result<Vec<_>>>()?;
    let network = match &config.network {
        NetworkMode::None => "none".to_string(),
        NetworkMode::Host => "host".to_string(),
        NetworkMode::Named(n) => n.clone(),
        other => return Err(Error::unsupported(&format!("network-{other:?}"))),
    };
    let host = HostConfig {
        mounts: Some(mounts),
        binds: (!binds.is_empty()).then_some(binds),
        init: Some(config.init),
        memory: r.memory_bytes,
        // Docker wants the CPU quota in units of 1e-9 CPUs.
        nano_cpus: r.cpus.map(|c| (c * 1e9).round() as i64),
        pids_limit: r.pids_limit,
        ulimits: (!r.ulimits.is_empty()).then(|| {
            r.ulimits
                .iter()
                .map(|u| ResourcesUlimits {
                    name: Some(u.name.clone()),
                    soft: Some(u.soft),
                    hard: Some(u.hard),
                })
                .collect()
        }),
        network_mode: Some(network),
        auto_remove: Some(false),
        // `local`: binary-safe (json-file replaces invalid UTF-8) and rotated, so hours
        // of build output cannot fill the engine's disk. See docs/adr/0006.
        log_config: Some(HostConfigLogConfig {
            typ: Some("local".to_string()),
            config: None,
        }),
        ..HostConfig::default()
    };
    Ok(ContainerCreateBody {
        image: Some(config.image.clone()),
        cmd: config.cmd.clone(),
        entrypoint: config.entrypoint.clone(),
        env: (!config.env.is_empty()).then(|| config.env.clone()),
        working_dir: config.working_dir.clone(),
        user: config.user.map(|u| u.to_string()),
        labels: Some(labels.into_iter().collect::<HashMap<_, _>>()),
        stop_signal: config.stop_signal.map(|s| s.name()),
        stop_timeout: config.stop_grace.map(ceil_secs),
        hostname: config.hostname.clone(),
        host_config: Some(host),
        // `docker run -i`: stdin open until the first attach's input ends.
        open_stdin: config.stdin_open.then_some(true),
        stdin_once: config.stdin_open.then_some(true),
        tty: config.tty.then_some(true),
        ..ContainerCreateBody::default()
    })
}

/// Docker counts grace periods in whole seconds: round up, never down.
pub(crate) fn ceil_secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs())
        .unwrap_or(i64::MAX)
        .saturating_add(i64::from(d.subsec_nanos() > 0))
}

/// A relabelled bind in the `Binds` form: `source:target:mode,z`.
fn bind(m: &Mount) -> Result<String> {
    let Mount::Bind {
        source,
        target,
        read_only,
        relabel: Some(relabel),
        ..
    } = m
    else {
        return Err(Error::new(
            ErrorKind::Internal,
            "not a relabelled bind mount",
        ));
    };
    let source = source.display().to_string();
    if source.contains(':') || target.contains(':') {
        return Err(Error::invalid_input(format!(
            "a relabelled bind mount cannot have ':' in its paths ({source}, {target})"
        )));
    }
    let mode = if *read_only { "ro" } else { "rw" };
    Ok(format!("{source}:{target}:{mode},{}", relabel.option()))
}

fn mount(m: &Mount) -> Result<DMount> {
    Ok(match m {
        Mount::Bind {
            source,
            target,
            read_only,
            ..
        } => DMount {
            typ: Some(MountType::BIND),
            source: Some(source.display().to_string()),
            target: Some(target.clone()),
            read_only: Some(*read_only),
            ..DMount::default()
        },
        Mount::Volume {
            name,
            target,
            read_only,
        } => DMount {
            typ: Some(MountType::VOLUME),
            source: Some(name.clone()),
            target: Some(target.clone()),
            read_only: Some(*read_only),
            ..DMount::default()
        },
        Mount::Tmpfs { target, size_bytes } => DMount {
            typ: Some(MountType::TMPFS),
            target: Some(target.clone()),
            tmpfs_options: size_bytes.map(|s| MountTmpfsOptions {
                size_bytes: Some(s),
                ..MountTmpfsOptions::default()
            }),
            ..DMount::default()
        },
        other => return Err(Error::unsupported(&format!("mount-{other:?}"))),
    })
}

/// Docker's state text (`created`, `running`, ... as both inspect and list spell it).
fn state(status: Option<String>, exit: i64) -> ContainerState {
    match status.as_deref().unwrap_or_default() {
        "created" => ContainerState::Created,
        "running" => ContainerState::Running,
        "paused" => ContainerState::Paused,
        "restarting" => ContainerState::Restarting,
        "removing" => ContainerState::Removing,
        "exited" => ContainerState::Exited(exit),
        "dead" => ContainerState::Dead,
        other => ContainerState::Unknown(other.to_string()),
    }
}

/// An RFC 3339 time from inspect; Docker's zero time (`0001-01-01T00:00:00Z`) is none.
fn time(text: Option<&str>) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text?).ok()
}

/// Inspect response to core info.
pub(crate) fn container_info(r: ContainerInspectResponse) -> ContainerInfo {
    let st = r.state.unwrap_or_default();
    let status = state(st.status.map(|s| s.to_string()), st.exit_code.unwrap_or(0));
    // Docker before 23 never clears OOMKilled when the container starts again: a flag
    // that outlived its run (the container runs again, or its last exit was no SIGKILL)
    // is not this run's.
    let oom_killed = st.oom_killed.unwrap_or(false) && status == ContainerState::Exited(137);
    let config = r.config.unwrap_or_default();
    let name = r.name.unwrap_or_default();
    let mounts = r
        .mounts
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| {
            let (kind, name) = (m.typ.as_deref(), m.name.as_deref());
            MountInfo::from_engine(kind, name, m.source.as_deref(), m.destination.as_deref())
        })
        .collect();
    ContainerInfo::new(
        r.id.unwrap_or_default(),
        name.trim_start_matches('/'),
        config.image.unwrap_or_default(),
        status,
    )
    .with_labels(config.labels.unwrap_or_default().into_iter().collect())
    .with_oom_killed(oom_killed)
    .with_pid(st.pid.and_then(|p| u32::try_from(p).ok()))
    .with_times(
        time(st.started_at.as_deref()),
        time(st.finished_at.as_deref()),
    )
    .with_restart_count(
        r.restart_count
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0),
    )
    .with_mounts(mounts)
}

/// List entry to core info. The exit code is parsed from Docker's status text
/// (`Exited (123) 2 seconds ago`), the only place a list reports it.
pub(crate) fn summary_info(s: ContainerSummary) -> ContainerInfo {
    let exit = s
        .status
        .as_deref()
        .and_then(|t| t.strip_prefix("Exited ("))
        .and_then(|t| t.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let name = s
        .names
        .and_then(|n| n.into_iter().next())
        .unwrap_or_default();
    ContainerInfo::new(
        s.id.unwrap_or_default(),
        name.trim_start_matches('/'),
        s.image.unwrap_or_default(),
        state(s.state.map(|x| x.to_string()), exit),
    )
    .with_labels(s.labels.unwrap_or_default().into_iter().collect())
}

/// Volume to core info.
pub(crate) fn volume_info(v: Volume) -> VolumeInfo {
    VolumeInfo::new(v.name, v.labels.into_iter().collect()).with_mountpoint(v.mountpoint)
}

/// The version response to core engine facts.
pub(crate) fn engine_info(v: bollard::models::SystemVersion, endpoint: &str) -> EngineInfo {
    EngineInfo::new(
        BackendKind::Docker,
        engine_kind(&v),
        v.version.clone().unwrap_or_default(),
        endpoint,
    )
    .with_api_version(v.api_version)
    .with_platform(v.os.unwrap_or_default(), v.arch.unwrap_or_default())
}

/// One frame of an attached or log stream; `None` for stdin echoes and empty frames.
pub(crate) fn output_chunk(log: bollard::container::LogOutput) -> Option<OutputChunk> {
    use bollard::container::LogOutput as L;
    let (stream, data) = match log {
        L::StdOut { message } | L::Console { message } => (StreamKind::Stdout, message),
        L::StdErr { message } => (StreamKind::Stderr, message),
        L::StdIn { .. } => return None,
    };
    (!data.is_empty()).then(|| OutputChunk::new(stream, data))
}

/// Which engine answers a Docker API endpoint: Podman's compatible API names itself in
/// the version components ("Podman Engine").
pub(crate) fn engine_kind(v: &bollard::models::SystemVersion) -> BackendKind {
    let podman = v
        .components
        .iter()
        .flatten()
        .any(|c| c.name.to_ascii_lowercase().contains("podman"));
    if podman {
        BackendKind::Podman
    } else {
        BackendKind::Docker
    }
}

/// Docker label filters: `label=key=value` for each pair.
pub(crate) fn label_filters(labels: &Labels) -> HashMap<String, Vec<String>> {
    let mut f = HashMap::new();
    if !labels.is_empty() {
        f.insert(
            "label".to_string(),
            labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        );
    }
    f
}

/// One pull status line to a progress event; `None` for lines that carry no progress.
pub(crate) fn pull_progress(info: &CreateImageInfo) -> Option<PullProgress> {
    let status = info.status.as_deref()?;
    let id = info.id.clone()?;
    let phase = match status {
        "Pulling fs layer" | "Waiting" => LayerPhase::Waiting,
        "Downloading" => LayerPhase::Downloading,
        "Verifying Checksum" | "Download complete" => LayerPhase::Verifying,
        "Extracting" => LayerPhase::Extracting,
        "Pull complete" => LayerPhase::Complete,
        "Already exists" => LayerPhase::AlreadyExists,
        _ => return None,
    };
    let detail = info.progress_detail.as_ref();
    let to_u64 = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok());
    Some(PullProgress::Layer {
        id,
        phase,
        current: to_u64(detail.and_then(|d| d.current)),
        total: to_u64(detail.and_then(|d| d.total)),
    })
}

/// The manifest digest from the `Digest: sha256:...` status line.
pub(crate) fn pull_digest(info: &CreateImageInfo) -> Option<String> {
    info.status
        .as_deref()?
        .strip_prefix("Digest: ")
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::ProgressDetail;
    use container_core::Ulimit;
    use std::time::Duration;

    #[test]
    fn create_body_carries_every_field() {
        let c = ContainerConfig::new("img:1")
            .cmd(["sleep", "1"])
            .env("A", "1")
            .user(1000, 1000)
            .working_dir("/w")
            .init(true)
            .stop_signal(container_core::Signal::INT)
            .stop_grace(Duration::from_millis(1500))
            .mount(Mount::bind("/h", "/c").read_only())
            .mount(Mount::tmpfs("/t"))
            .cpus(1.5)
            .memory(1 << 20)
            .ulimit(Ulimit::new("nofile", 1, 2));
        let mut labels = Labels::new();
        labels.insert("k".into(), "v".into());
        let b = create_body(&c, labels).expect("body");
        assert_eq!(b.user.as_deref(), Some("1000:1000"));
        assert_eq!(b.stop_timeout, Some(2));
        assert_eq!(b.stop_signal.as_deref(), Some("SIGINT"));
        let h = b.host_config.expect("host");
        assert_eq!(h.nano_cpus, Some(1_500_000_000));
        assert_eq!(h.network_mode.as_deref(), Some("none"));
        assert_eq!(h.init, Some(true));
        let m = h.mounts.expect("mounts");
        assert_eq!(m[0].typ, Some(MountType::BIND));
        assert_eq!(m[0].read_only, Some(true));
        assert_eq!(m[1].typ, Some(MountType::TMPFS));
        assert_eq!(h.binds, None, "no relabelled bind");
        assert_eq!(
            b.labels.expect("labels").get("k").map(String::as_str),
            Some("v")
        );
    }

    #[test]
    fn relabelled_binds_take_the_binds_form() {
        let c = ContainerConfig::new("img:1")
            .mount(Mount::bind("/src/a", "/a").relabel(container_core::Relabel::Private))
            .mount(
                Mount::bind("/src/b", "/b")
                    .read_only()
                    .relabel(container_core::Relabel::Shared),
            )
            .mount(Mount::bind("/src/c", "/c"));
        let h = create_body(&c, Labels::new())
            .expect("body")
            .host_config
            .expect("host");
        assert_eq!(
            h.binds,
            Some(vec![
                "/src/a:/a:rw,Z".to_string(),
                "/src/b:/b:ro,z".to_string()
            ])
        );
        assert_eq!(h.mounts.map(|m| m.len()), Some(1));
        let bad = ContainerConfig::new("img:1")
            .mount(Mount::bind("/a:b", "/a").relabel(container_core::Relabel::Shared));
        let e = create_body(&bad, Labels::new()).expect_err("colon");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn inspect_carries_pid_times_and_restarts() {
        let r = ContainerInspectResponse {
            id: Some("abc".into()),
            name: Some("/build".into()),
            restart_count: Some(2),
            state: Some(bollard::models::ContainerState {
                status: Some(bollard::models::ContainerStateStatusEnum::RUNNING),
                pid: Some(4242),
                started_at: Some("2026-12-01T10:00:00.123456789Z".into()),
                finished_at: Some("0001-01-01T00:00:00Z".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let i = container_info(r);
        assert_eq!(i.name, "build");
        assert_eq!(i.state, ContainerState::Running);
        assert_eq!(i.pid, Some(4242));
        assert_eq!(i.restart_count, 2);
        let started = i.started_at.expect("started");
        let secs = started
            .duration_since(std::time::UNIX_EPOCH)
            .expect("epoch");
        assert_eq!(secs.as_secs(), 1_796_119_200);
        assert_eq!(i.finished_at, None, "Docker's zero time is no time");
    }

    #[test]
    fn an_oom_flag_docker_kept_from_an_earlier_run_is_dropped() {
        let with = |status, exit_code| ContainerInspectResponse {
            state: Some(bollard::models::ContainerState {
                status: Some(status),
                exit_code: Some(exit_code),
                oom_killed: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        use bollard::models::ContainerStateStatusEnum as S;
        assert!(
            container_info(with(S::EXITED, 137)).oom_killed,
            "this run's"
        );
        assert!(
            !container_info(with(S::RUNNING, 0)).oom_killed,
            "runs again"
        );
        assert!(
            !container_info(with(S::EXITED, 0)).oom_killed,
            "exited by itself"
        );
    }

    #[test]
    fn podman_behind_a_docker_endpoint_is_reported_as_podman() {
        let component = |name: &str| bollard::models::SystemVersionComponents {
            name: name.into(),
            version: "1".into(),
            details: None,
        };
        let podman = bollard::models::SystemVersion {
            components: Some(vec![component("Podman Engine")]),
            ..Default::default()
        };
        assert_eq!(engine_kind(&podman), BackendKind::Podman);
        let docker = bollard::models::SystemVersion {
            components: Some(vec![component("Engine"), component("containerd")]),
            ..Default::default()
        };
        assert_eq!(engine_kind(&docker), BackendKind::Docker);
    }

    #[test]
    fn exit_code_is_parsed_from_list_status() {
        let s = ContainerSummary {
            state: Some(bollard::models::ContainerSummaryStateEnum::EXITED),
            status: Some("Exited (123) 2 seconds ago".into()),
            names: Some(vec!["/n".into()]),
            ..ContainerSummary::default()
        };
        let i = summary_info(s);
        assert_eq!(i.state, ContainerState::Exited(123));
        assert_eq!(i.name, "n");
        assert_eq!(i.pid, None, "a list reports no PID");
    }

    #[test]
    fn progress_lines_map_to_phases() {
        let line = |status: &str| CreateImageInfo {
            id: Some("abc".into()),
            status: Some(status.into()),
            progress_detail: Some(ProgressDetail {
                current: Some(5),
                total: Some(10),
            }),
            ..CreateImageInfo::default()
        };
        assert_eq!(
            pull_progress(&line("Downloading")),
            Some(PullProgress::Layer {
                id: "abc".into(),
                phase: LayerPhase::Downloading,
                current: Some(5),
                total: Some(10)
            })
        );
        assert!(pull_progress(&line("Pulling from x")).is_none());
        let d = CreateImageInfo {
            status: Some("Digest: sha256:ab".into()),
            ..CreateImageInfo::default()
        };
        assert_eq!(pull_digest(&d).as_deref(), Some("sha256:ab"));
    }
}
