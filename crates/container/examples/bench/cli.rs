//! The engine's own CLI (`docker`, `podman --remote`, `ctr`), talking to the same engine
//! (and namespace) as the library: what a user who does not embed the library runs.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use container::BackendKind;

/// A failed command, with what it printed on stderr.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// One engine's CLI.
pub(crate) struct Cli {
    pub(crate) kind: BackendKind,
}

/// The value of the environment variable `key`, or `default` when unset or empty.
fn env_or(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// A name no other command of this process uses.
fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `c` with its output discarded; an error names the command and its stderr.
pub(crate) fn run(mut c: Command) -> Result<(), Error> {
    let out = c.stdout(Stdio::null()).stderr(Stdio::piped()).output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{:?} failed ({}): {}",
        c,
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )
    .into())
}

impl Cli {
    /// The program's name.
    pub(crate) fn program(&self) -> &'static str {
        match self.kind {
            BackendKind::Podman => "podman",
            BackendKind::Containerd => "ctr",
            _ => "docker",
        }
    }

    /// The program with the options that point it at the library's engine.
    pub(crate) fn base(&self) -> Command {
        let mut c = Command::new(self.program());
        match self.kind {
            BackendKind::Podman => {
                c.args(["--remote", "--url"])
                    .arg(env_or("CONTAINER_HOST", "unix:///run/podman/podman.sock"));
            }
            BackendKind::Containerd => {
                c.args(["-n"])
                    .arg(env_or("CONTAINERD_NAMESPACE", "container-rs"));
            }
            _ => {}
        }
        c
    }

    /// `exec` of `cmd` in the container (`name` for docker/podman, `id` for ctr).
    pub(crate) fn exec(&self, name: &str, id: &str, cmd: &[&str]) -> Command {
        let mut c = self.base();
        match self.kind {
            BackendKind::Containerd => {
                c.args(["tasks", "exec", "--exec-id", &unique("bench"), id]);
            }
            _ => {
                c.args(["exec", name]);
            }
        }
        c.args(cmd);
        c
    }

    /// `run --rm` of `true` (containerd: `ctr run --rm` with a name of its own).
    pub(crate) fn run_rm(&self, image: &str) -> Command {
        let mut c = self.base();
        match self.kind {
            BackendKind::Containerd => {
                c.args(["run", "--rm", image, &unique("crs-bench-run"), "true"]);
            }
            _ => {
                c.args(["run", "--rm", "--network", "none", image, "true"]);
            }
        }
        c
    }

    /// A lifecycle as a user of the CLI writes it: run `sleep infinity` detached
    /// (with an init where the CLI has one), exec `true` in it, remove it by force.
    pub(crate) fn lifecycle(&self, image: &str) -> Result<(), Error> {
        let name = unique("crs-bench-cli");
        let mut start = self.base();
        match self.kind {
            BackendKind::Containerd => {
                start.args(["run", "-d", image, &name, "sleep", "infinity"]);
            }
            _ => {
                start.args(["run", "-d", "--init", "--network", "none", "--name", &name]);
                start.args([image, "sleep", "infinity"]);
            }
        }
        run(start)?;
        let exec = run(self.exec(&name, &name, &["true"]));
        let mut remove = self.base();
        match self.kind {
            BackendKind::Containerd => {
                remove.args(["tasks", "delete", "--force", &name]);
                run(remove)?;
                let mut container = self.base();
                container.args(["containers", "delete", &name]);
                run(container)?;
            }
            _ => {
                remove.args(["rm", "--force", &name]);
                run(remove)?;
            }
        }
        exec
    }

    /// Removes `image` from the engine (a missing image is fine).
    pub(crate) fn remove_image(&self, image: &str) -> Result<(), Error> {
        let mut c = self.base();
        match self.kind {
            // --sync: its content is collected before this returns.
            BackendKind::Containerd => c.args(["images", "rm", "--sync", image]),
            _ => c.args(["rmi", "--force", image]),
        };
        let _ = c.stdout(Stdio::null()).stderr(Stdio::null()).status()?;
        Ok(())
    }

    /// Pulls `image` (and unpacks it, as every CLI does by default) from the local
    /// plain-HTTP registry.
    pub(crate) fn pull(&self, image: &str) -> Command {
        let mut c = self.base();
        match self.kind {
            BackendKind::Containerd => c.args(["images", "pull", "--plain-http", image]),
            BackendKind::Podman => c.args(["pull", "--quiet", "--tls-verify=false", image]),
            _ => c.args(["pull", "--quiet", image]),
        };
        c
    }

    /// Copies `path` out of the container into `host_dir`: `cp` where the CLI has one,
    /// else (ctr) a `tar` in the container piped to a `tar` extracting on the host.
    pub(crate) fn copy_out(
        &self,
        name: &str,
        id: &str,
        path: &str,
        host_dir: &Path,
    ) -> Result<(), Error> {
        if self.kind != BackendKind::Containerd {
            let mut c = self.base();
            c.arg("cp").arg(format!("{name}:{path}")).arg(host_dir);
            return run(c);
        }
        let (parent, base) = path.rsplit_once('/').ok_or("copy_out: an absolute path")?;
        let parent = if parent.is_empty() { "/" } else { parent };
        let mut tar_in = self.exec(name, id, &["tar", "-c", "-C", parent, base]);
        let mut producer = tar_in.stdout(Stdio::piped()).spawn()?;
        let stdout = producer.stdout.take().ok_or("no stdout")?;
        let mut extract = Command::new("tar");
        extract.arg("-x").arg("-C").arg(host_dir).stdin(stdout);
        let extracted = run(extract);
        let status = producer.wait()?;
        extracted?;
        if !status.success() {
            return Err(format!("{tar_in:?} failed ({status})").into());
        }
        Ok(())
    }

    /// The CLI's version, as it reports it.
    pub(crate) fn version(&self) -> String {
        let mut c = self.base();
        match self.kind {
            BackendKind::Containerd => c.args(["--version"]),
            _ => c.args(["version", "--format", "{{.Client.Version}}"]),
        };
        c.output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }
}
