//! Engine configuration: fixtures from `xtask/fixtures`, rendered into the state folder.

use std::{fs, path::Path};

use anyhow::{bail, Context};

use super::{
    service::Service, StateDir, CONTAINERD_SOCKET, DOCKER_SOCKET, DOCKER_TLS_ADDR, REGISTRY_ADDR,
    RUN_DIR,
};

/// The highest RLIMIT_NPROC `podman system service` keeps for itself.
const PODMAN_MAX_NPROC: u64 = 32_768;

/// A fixture file and where its rendered copy goes, relative to the state folder.
#[derive(Debug)]
pub(super) struct Fixture {
    /// The file's text, with `@NAME@` placeholders.
    pub(super) template: &'static str,
    /// Destination, relative to the state folder.
    pub(super) dest: &'static str,
}

/// Renders the fixtures of `service` into the state folder (files whose text is
/// unchanged are left alone) and creates the folders it writes to.
pub(super) fn write(state: &StateDir, service: Service) -> anyhow::Result<()> {
    for dir in ["logs", "pids"] {
        create_dir(&state.join(dir))?;
    }
    for dir in service.data_dirs() {
        create_dir(&state.join(dir))?;
    }
    let vars = variables(state)?;
    for fixture in service.fixtures() {
        let dest = state.join(fixture.dest);
        let text = render(fixture.template, &vars)
            .with_context(|| format!("rendering the fixture for {}", dest.display()))?;
        if fs::read_to_string(&dest).ok().as_deref() == Some(text.as_str()) {
            continue;
        }
        if let Some(parent) = dest.parent() {
            create_dir(parent)?;
        }
        fs::write(&dest, text).with_context(|| format!("writing {}", dest.display()))?;
    }
    Ok(())
}

/// Whether a rendered file of `service` is newer than `started` (the daemon's pid
/// file): the running daemon then still has the old configuration.
pub(super) fn changed_since(state: &StateDir, service: Service, started: &Path) -> bool {
    let modified = |path: &Path| fs::metadata(path).and_then(|meta| meta.modified()).ok();
    let Some(started) = modified(started) else {
        return false;
    };
    service
        .fixtures()
        .iter()
        .filter_map(|fixture| modified(&state.join(fixture.dest)))
        .any(|written| written > started)
}

/// `fs::create_dir_all` with the path in the error.
fn create_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// The placeholder values (see `xtask/fixtures/README.md`).
fn variables(state: &StateDir) -> anyhow::Result<Vec<(&'static str, String)>> {
    let limits = fs::read_to_string("/proc/self/limits").context("reading /proc/self/limits")?;
    Ok(vec![
        ("STATE_DIR", state.path().display().to_string()),
        ("RUN_DIR", RUN_DIR.to_owned()),
        ("ROOTLESS_RUN_DIR", super::rootless::RUN_DIR.to_owned()),
        (
            "ROOTLESS_RUNTIME_DIR",
            super::rootless::RUNTIME_DIR.to_owned(),
        ),
        (
            "ROOTLESS_DOCKER_SOCKET",
            super::rootless::DOCKER_SOCKET.to_owned(),
        ),
        ("CONTAINERD_SOCKET", CONTAINERD_SOCKET.to_owned()),
        ("DOCKER_SOCKET", DOCKER_SOCKET.to_owned()),
        ("DOCKER_TLS_ADDR", DOCKER_TLS_ADDR.to_owned()),
        ("REGISTRY_ADDR", REGISTRY_ADDR.to_owned()),
        // A container's limits cannot exceed the service's own: Podman 4.3 raises its
        // nofile to the hard limit and lowers its nproc to at most 32768 at start
        // (seen here: 32768 under a shell allowing 96365, 30000 under one allowing
        // 30000). Podman's own defaults when the hard limit is unlimited.
        (
            "NOFILE",
            hard_limit(&limits, "Max open files", 1_048_576)?.to_string(),
        ),
        (
            "NPROC",
            hard_limit(&limits, "Max processes", PODMAN_MAX_NPROC)?
                .min(PODMAN_MAX_NPROC)
                .to_string(),
        ),
    ])
}

/// The hard limit named `name` in the text of `/proc/self/limits`, or
/// `if_unlimited` when there is none.
fn hard_limit(limits: &str, name: &str, if_unlimited: u64) -> anyhow::Result<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with(name))
        .with_context(|| format!("no `{name}` line in /proc/self/limits"))?;
    let mut fields = line[name.len()..].split_whitespace();
    let hard = fields
        .nth(1)
        .with_context(|| format!("no hard limit in `{line}`"))?;
    if hard == "unlimited" {
        return Ok(if_unlimited);
    }
    hard.parse()
        .with_context(|| format!("hard limit `{hard}` in `{line}`"))
}

/// Replaces every `@NAME@` in `template` by its value; a placeholder without a
/// value is an error.
fn render(template: &str, vars: &[(&str, String)]) -> anyhow::Result<String> {
    let mut text = template.to_owned();
    for (name, value) in vars {
        text = text.replace(&format!("@{name}@"), value);
    }
    if let Some(placeholder) = leftover_placeholder(&text) {
        bail!("unknown placeholder {placeholder}");
    }
    Ok(text)
}

/// The first `@NAME@` (capitals, digits and `_`) left in `text`.
fn leftover_placeholder(text: &str) -> Option<&str> {
    let mut rest = text;
    while let Some(start) = rest.find('@') {
        let after = &rest[start + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with('@') {
            return Some(&rest[start..start + name_len + 2]);
        }
        rest = after;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str = "\
Limit                     Soft Limit           Hard Limit           Units     
Max processes             96365                96365                processes 
Max open files            1024                 20000                files     
Max locked memory         unlimited            unlimited            bytes     
";

    #[test]
    fn reads_hard_limits() {
        assert_eq!(hard_limit(LIMITS, "Max open files", 7).ok(), Some(20000));
        assert_eq!(hard_limit(LIMITS, "Max processes", 7).ok(), Some(96365));
        assert_eq!(hard_limit(LIMITS, "Max locked memory", 7).ok(), Some(7));
        assert!(hard_limit(LIMITS, "Max pending signals", 7).is_err());
    }

    #[test]
    fn renders_placeholders() {
        let vars = [("A", "1".to_owned()), ("B_2", "two".to_owned())];
        assert_eq!(
            render("x=@A@ y=@B_2@ mail@example.org", &vars)
                .ok()
                .as_deref(),
            Some("x=1 y=two mail@example.org")
        );
        assert!(render("x=@MISSING@", &vars).is_err());
    }

    #[test]
    fn every_fixture_renders() {
        let state = StateDir {
            root: "/state".into(),
        };
        let vars = variables(&state).expect("limits are readable on Linux");
        for service in Service::ALL {
            for fixture in service.fixtures() {
                assert!(render(fixture.template, &vars).is_ok(), "{}", fixture.dest);
            }
        }
    }
}
