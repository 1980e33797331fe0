//! What differs between the daemons: command line, fixtures, health check, version.

use std::{ffi::OsStr, path::PathBuf, time::Duration};

use anyhow::{bail, Context};
use xshell::{cmd, Cmd, Shell};

use super::{
    config::Fixture, http::Request, rootless, sid, StateDir, CONTAINERD_SOCKET, DOCKER_SOCKET,
    PODMAN_SOCKET, REGISTRY_ADDR,
};

/// Rendered containerd configuration, relative to the state folder.
const CONTAINERD_CONFIG: &str = "containerd/config.toml";
/// Rendered dockerd configuration.
const DOCKER_CONFIG: &str = "docker/daemon.json";
/// dockerd's own pid file (named in `daemon.json`): a dead daemon's copy stops the
/// next one from starting ("pid file found").
const DOCKER_PID_FILE: &str = "docker/dockerd.pid";
/// Rendered containers.conf of the Podman service.
const PODMAN_CONTAINERS_CONF: &str = "podman/containers.conf";
/// Rendered storage.conf of the Podman service.
const PODMAN_STORAGE_CONF: &str = "podman/storage.conf";
/// Rendered registries.conf of the Podman service.
const PODMAN_REGISTRIES_CONF: &str = "podman/registries.conf";
/// Rendered containers.conf of the rootless Podman service.
const ROOTLESS_CONTAINERS_CONF: &str = "podman-rootless/containers.conf";
/// Rendered storage.conf of the rootless Podman service.
const ROOTLESS_STORAGE_CONF: &str = "podman-rootless/storage.conf";
/// Rendered daemon.json of the rootless dockerd.
const ROOTLESS_DOCKER_CONFIG: &str = "docker-rootless/daemon.json";
/// Debian's script that runs dockerd in rootlesskit's user namespace.
const DOCKERD_ROOTLESS: &str = "/usr/share/docker.io/contrib/dockerd-rootless.sh";
/// Rendered daemon.json of sid's dockerd.
const SID_DOCKER_CONFIG: &str = "sid/docker/daemon.json";
/// dockerd's pid file in the sid state.
const SID_DOCKER_PID_FILE: &str = "sid/docker/dockerd.pid";
/// Rendered containers.conf of sid's Podman service.
const SID_CONTAINERS_CONF: &str = "sid/podman/containers.conf";
/// Rendered storage.conf of sid's Podman service.
const SID_STORAGE_CONF: &str = "sid/podman/storage.conf";
/// Rendered configuration of sid's containerd.
const SID_CONTAINERD_CONFIG: &str = "sid/containerd/config.toml";
/// Rendered registry configuration.
const REGISTRY_CONFIG: &str = "registry/config.yml";

/// A daemon that `engines up` starts and `engines down` stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Service {
    /// containerd, shared by the containerd backend and dockerd.
    Containerd,
    /// dockerd.
    Docker,
    /// `podman system service`.
    Podman,
    /// `podman system service` run by the unprivileged user `crs-rootless`.
    PodmanRootless,
    /// dockerd run by `crs-rootless`, in rootlesskit's user namespace.
    DockerRootless,
    /// containerd from the sid root, in a mount namespace of its own ([`sid`]).
    ContainerdSid,
    /// dockerd from the sid root (with the containerd it starts itself).
    DockerSid,
    /// `podman system service` from the sid root.
    PodmanSid,
    /// Debian's `docker-registry` (distribution 2.8).
    Registry,
}

/// A Podman service's fixtures: its own `containers.conf` and `storage.conf`
/// (templates and destinations: each service has its paths and engine generation)
/// and the registries file they share.
const fn podman_fixtures(containers: Fixture, storage: Fixture) -> [Fixture; 3] {
    let registries = Fixture {
        template: include_str!("../../fixtures/podman/registries.conf"),
        dest: PODMAN_REGISTRIES_CONF,
    };
    [containers, storage, registries]
}

/// Debian 12's rootful Podman service.
const PODMAN_FIXTURES: [Fixture; 3] = podman_fixtures(
    Fixture {
        template: include_str!("../../fixtures/podman/containers.conf.in"),
        dest: PODMAN_CONTAINERS_CONF,
    },
    Fixture {
        template: include_str!("../../fixtures/podman/storage.conf.in"),
        dest: PODMAN_STORAGE_CONF,
    },
);

/// Debian 12's Podman run by the unprivileged user.
const PODMAN_ROOTLESS_FIXTURES: [Fixture; 3] = podman_fixtures(
    Fixture {
        template: include_str!("../../fixtures/podman-rootless/containers.conf.in"),
        dest: ROOTLESS_CONTAINERS_CONF,
    },
    Fixture {
        template: include_str!("../../fixtures/podman-rootless/storage.conf.in"),
        dest: ROOTLESS_STORAGE_CONF,
    },
);

/// Sid's Podman service.
const PODMAN_SID_FIXTURES: [Fixture; 3] = podman_fixtures(
    Fixture {
        template: include_str!("../../fixtures/sid/containers.conf.in"),
        dest: SID_CONTAINERS_CONF,
    },
    Fixture {
        template: include_str!("../../fixtures/sid/storage.conf.in"),
        dest: SID_STORAGE_CONF,
    },
);

impl Service {
    /// Every daemon, in start order.
    #[cfg(test)]
    pub(super) const ALL: [Service; 9] = [
        Service::Containerd,
        Service::Docker,
        Service::Podman,
        Service::PodmanRootless,
        Service::DockerRootless,
        Service::ContainerdSid,
        Service::DockerSid,
        Service::PodmanSid,
        Service::Registry,
    ];

    /// Short name, used for log and pid files.
    pub(super) fn name(self) -> &'static str {
        match self {
            Service::Containerd => "containerd",
            Service::Docker => "docker",
            Service::Podman => "podman",
            Service::PodmanRootless => "podman-rootless",
            Service::DockerRootless => "docker-rootless",
            Service::ContainerdSid => "containerd-sid",
            Service::DockerSid => "docker-sid",
            Service::PodmanSid => "podman-sid",
            Service::Registry => "registry",
        }
    }

    /// The process name in `/proc/<pid>/stat`, to tell the daemon from a reused pid.
    pub(super) fn process_name(self) -> &'static str {
        match self {
            Service::Containerd | Service::ContainerdSid => "containerd",
            Service::Docker | Service::DockerSid => "dockerd",
            Service::Podman | Service::PodmanRootless | Service::PodmanSid => "podman",
            // setpriv, then the script, exec into rootlesskit, which runs dockerd.
            Service::DockerRootless => "rootlesskit",
            Service::Registry => "docker-registry",
        }
    }

    /// The Unix socket clients use, if it has one.
    pub(super) fn socket(self) -> Option<&'static str> {
        match self {
            Service::Containerd => Some(CONTAINERD_SOCKET),
            Service::Docker => Some(DOCKER_SOCKET),
            Service::Podman => Some(PODMAN_SOCKET),
            Service::PodmanRootless => Some(rootless::SOCKET),
            Service::DockerRootless => Some(rootless::DOCKER_SOCKET),
            Service::ContainerdSid => Some(sid::CONTAINERD_SOCKET),
            Service::DockerSid => Some(sid::DOCKER_SOCKET),
            Service::PodmanSid => Some(sid::PODMAN_SOCKET),
            Service::Registry => None,
        }
    }

    /// Where clients reach the daemon: socket path or URL.
    pub(super) fn endpoint(self) -> String {
        match self.socket() {
            Some(socket) => socket.to_owned(),
            None => format!("http://{REGISTRY_ADDR}"),
        }
    }

    /// The fixtures this daemon reads, rendered into the state folder.
    pub(super) fn fixtures(self) -> &'static [Fixture] {
        match self {
            Service::Containerd => &[Fixture {
                template: include_str!("../../fixtures/containerd/config.toml"),
                dest: CONTAINERD_CONFIG,
            }],
            Service::Docker => &[Fixture {
                template: include_str!("../../fixtures/docker/daemon.json"),
                dest: DOCKER_CONFIG,
            }],
            Service::Podman => &PODMAN_FIXTURES,
            Service::PodmanRootless => &PODMAN_ROOTLESS_FIXTURES,
            Service::DockerRootless => &[Fixture {
                template: include_str!("../../fixtures/docker-rootless/daemon.json"),
                dest: ROOTLESS_DOCKER_CONFIG,
            }],
            Service::ContainerdSid => &[Fixture {
                template: include_str!("../../fixtures/sid/containerd.toml"),
                dest: SID_CONTAINERD_CONFIG,
            }],
            Service::DockerSid => &[Fixture {
                template: include_str!("../../fixtures/sid/daemon.json"),
                dest: SID_DOCKER_CONFIG,
            }],
            Service::PodmanSid => &PODMAN_SID_FIXTURES,
            Service::Registry => &[Fixture {
                template: include_str!("../../fixtures/registry/config.yml"),
                dest: REGISTRY_CONFIG,
            }],
        }
    }

    /// Data folders inside the state folder, created before the daemon starts.
    pub(super) fn data_dirs(self) -> &'static [&'static str] {
        match self {
            Service::Containerd => &["containerd/root"],
            Service::Docker => &["docker/data"],
            Service::Podman => &["podman/storage"],
            Service::PodmanRootless => &[rootless::DATA_DIR],
            Service::DockerRootless => &[rootless::DOCKER_DATA_DIR],
            Service::ContainerdSid => &["sid/containerd/root"],
            Service::DockerSid => &["sid/docker/data"],
            Service::PodmanSid => &["sid/podman/storage"],
            Service::Registry => &["registry/storage"],
        }
    }

    /// The command line that starts the daemon in the foreground.
    pub(super) fn command<'a>(self, sh: &'a Shell, state: &StateDir) -> anyhow::Result<Cmd<'a>> {
        Ok(match self {
            Service::Containerd => {
                let config = state.join(CONTAINERD_CONFIG);
                cmd!(sh, "containerd --config {config}")
            }
            Service::Docker => {
                let config = state.join(DOCKER_CONFIG);
                cmd!(sh, "dockerd --config-file {config}")
            }
            Service::Podman => {
                let url = format!("unix://{PODMAN_SOCKET}");
                cmd!(sh, "podman system service --time=0 {url}")
                    .env("CONTAINERS_CONF", state.join(PODMAN_CONTAINERS_CONF))
                    .env("CONTAINERS_STORAGE_CONF", state.join(PODMAN_STORAGE_CONF))
                    .env(
                        "CONTAINERS_REGISTRIES_CONF",
                        state.join(PODMAN_REGISTRIES_CONF),
                    )
            }
            Service::PodmanRootless => {
                let url = format!("unix://{}", rootless::SOCKET);
                rootless::as_user(sh, "podman", ["system", "service", "--time=0", &url])
                    .env("CONTAINERS_CONF", state.join(ROOTLESS_CONTAINERS_CONF))
                    .env("CONTAINERS_STORAGE_CONF", state.join(ROOTLESS_STORAGE_CONF))
                    .env(
                        "CONTAINERS_REGISTRIES_CONF",
                        state.join(PODMAN_REGISTRIES_CONF),
                    )
            }
            Service::DockerRootless => {
                let config = state.join(ROOTLESS_DOCKER_CONFIG);
                rootless::as_user(
                    sh,
                    DOCKERD_ROOTLESS,
                    [OsStr::new("--config-file"), config.as_os_str()],
                )
                // The host's network (no slirp4netns: containers use network none or
                // host, and the registry is on the host's loopback); so no port driver.
                .env("DOCKERD_ROOTLESS_ROOTLESSKIT_NET", "host")
                .env("DOCKERD_ROOTLESS_ROOTLESSKIT_PORT_DRIVER", "none")
            }
            Service::ContainerdSid => {
                let config = state.join(SID_CONTAINERD_CONFIG);
                sid::enter(
                    sh,
                    state,
                    "containerd",
                    [OsStr::new("--config"), config.as_os_str()],
                )?
            }
            Service::DockerSid => {
                let config = state.join(SID_DOCKER_CONFIG);
                sid::enter(
                    sh,
                    state,
                    "dockerd",
                    [OsStr::new("--config-file"), config.as_os_str()],
                )?
            }
            Service::PodmanSid => {
                let url = format!("unix://{}", sid::PODMAN_SOCKET);
                sid::enter(sh, state, "podman", ["system", "service", "--time=0", &url])?
                    .env("CONTAINERS_CONF", state.join(SID_CONTAINERS_CONF))
                    .env("CONTAINERS_STORAGE_CONF", state.join(SID_STORAGE_CONF))
                    .env(
                        "CONTAINERS_REGISTRIES_CONF",
                        state.join(PODMAN_REGISTRIES_CONF),
                    )
                    // Podman 5 warns at every start that cgroup v1 is deprecated.
                    .env("PODMAN_IGNORE_CGROUPSV1_WARNING", "1")
            }
            Service::Registry => {
                let config = state.join(REGISTRY_CONFIG);
                cmd!(sh, "docker-registry serve {config}")
            }
        })
    }

    /// Files a dead instance leaves behind that can stop the next one from starting.
    pub(super) fn leftovers(self, state: &StateDir) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.socket().map(PathBuf::from).into_iter().collect();
        match self {
            Service::Containerd => files.push(format!("{CONTAINERD_SOCKET}.ttrpc").into()),
            Service::ContainerdSid => {
                files.push(format!("{}.ttrpc", sid::CONTAINERD_SOCKET).into());
            }
            Service::Docker => files.push(state.join(DOCKER_PID_FILE)),
            Service::DockerSid => files.push(state.join(SID_DOCKER_PID_FILE)),
            Service::DockerRootless => {
                files.push(format!("{}/docker.pid", rootless::RUNTIME_DIR).into());
            }
            Service::Podman | Service::PodmanRootless | Service::PodmanSid | Service::Registry => {}
        }
        files
    }

    /// Data folders the daemon bind-mounts on themselves (dockerd's data root, the
    /// overlay folder of Podman's storage) and leaves mounted when it exits.
    pub(super) fn self_mounts(self) -> &'static [&'static str] {
        match self {
            Service::Docker => &["docker/data"],
            Service::Podman => &["podman/storage/overlay"],
            // The rootless and sid services' mounts live in their own mount namespaces.
            Service::Containerd
            | Service::PodmanRootless
            | Service::DockerRootless
            | Service::ContainerdSid
            | Service::DockerSid
            | Service::PodmanSid
            | Service::Registry => &[],
        }
    }

    /// How long `down` waits after SIGTERM before it sends SIGKILL. dockerd stops
    /// its containers first (10 s each by default).
    pub(super) fn stop_grace(self) -> Duration {
        match self {
            Service::Docker | Service::DockerRootless | Service::DockerSid => {
                Duration::from_secs(20)
            }
            Service::Containerd
            | Service::Podman
            | Service::PodmanRootless
            | Service::ContainerdSid
            | Service::PodmanSid
            | Service::Registry => Duration::from_secs(10),
        }
    }

    /// Ok once the daemon answers requests: `ctr version`, `GET /_ping`, `GET /v2/`.
    pub(super) fn check(self, sh: &Shell) -> anyhow::Result<()> {
        match self {
            Service::Containerd | Service::ContainerdSid => ctr_version(sh, self).map(drop),
            Service::Docker
            | Service::Podman
            | Service::PodmanRootless
            | Service::DockerRootless
            | Service::DockerSid
            | Service::PodmanSid => {
                let socket = self.socket().unwrap_or_default();
                let response = Request::get("/_ping").send_unix(socket.as_ref())?;
                response.expect(200).map(drop)
            }
            Service::Registry => {
                let response = Request::get("/v2/").send_tcp(REGISTRY_ADDR)?;
                response.expect(200).map(drop)
            }
        }
    }

    /// The daemon's version, as it reports it.
    pub(super) fn version(self, sh: &Shell) -> anyhow::Result<String> {
        match self {
            Service::Containerd | Service::ContainerdSid => ctr_version(sh, self),
            Service::Docker
            | Service::Podman
            | Service::PodmanRootless
            | Service::DockerRootless
            | Service::DockerSid
            | Service::PodmanSid => {
                let socket = self.socket().unwrap_or_default();
                let response = Request::get("/version").send_unix(socket.as_ref())?;
                let version = response.expect(200)?.json()?;
                let field = |name: &str| version[name].as_str().unwrap_or("?").to_owned();
                Ok(format!(
                    "{} (Docker API {})",
                    field("Version"),
                    field("ApiVersion")
                ))
            }
            Service::Registry => {
                let out = cmd!(sh, "docker-registry --version").quiet().read()?;
                let version = out.split_whitespace().last().unwrap_or("?");
                Ok(version.trim_start_matches('v').to_owned())
            }
        }
    }
}

/// The server version of the containerd `service` from `ctr version`; fails unless it
/// answers.
fn ctr_version(sh: &Shell, service: Service) -> anyhow::Result<String> {
    let socket = service.socket().unwrap_or(CONTAINERD_SOCKET);
    if !std::path::Path::new(socket).exists() {
        bail!("{socket} does not exist");
    }
    let output = cmd!(
        sh,
        "ctr --address {socket} --connect-timeout 2s --timeout 5s version"
    )
    .quiet()
    .ignore_status()
    .output()?;
    if !output.status.success() {
        bail!(
            "ctr version: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    // `Client:` and `Server:` sections, each with a `Version:` line.
    let server = stdout
        .split("Server:")
        .nth(1)
        .context("no `Server:` section in `ctr version`")?;
    let version = server
        .lines()
        .find_map(|line| line.trim().strip_prefix("Version:"))
        .context("no server version in `ctr version`")?;
    Ok(version.trim().to_owned())
}
