//! What `ps`, `volume`, `info`, `stop`, `rm` print: tables for people, JSON for scripts.

use comfy_table::{presets::NOTHING, Table};
use container::labels::{created_at, OWNER_LABEL, SESSION_LABEL};
use container::{ContainerInfo, ContainerManager, ContainerState, Labels, VolumeInfo};
use serde::Serialize;

use crate::Output;

/// Which objects made with container-rs a listing shows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    owner: Option<String>,
    session: Option<String>,
}

impl Filter {
    pub(crate) fn new(owner: Option<&str>, session: Option<&str>) -> Self {
        Self {
            owner: owner.map(str::to_string),
            session: session.map(str::to_string),
        }
    }

    /// Labels to ask the engine for (narrowed further by [`Filter::keeps`]).
    pub(crate) fn selector(&self) -> Labels {
        let mut l = Labels::new();
        if let Some(owner) = &self.owner {
            l.insert(OWNER_LABEL.to_string(), owner.clone());
        }
        if let Some(session) = &self.session {
            l.insert(SESSION_LABEL.to_string(), session.clone());
        }
        l
    }

    /// Whether an object with `labels` was made with container-rs and is in this filter.
    pub(crate) fn keeps(&self, labels: &Labels) -> bool {
        let Some(owner) = labels.get(OWNER_LABEL) else {
            return false;
        };
        self.owner.as_ref().is_none_or(|o| o == owner)
            && self
                .session
                .as_ref()
                .is_none_or(|s| labels.get(SESSION_LABEL) == Some(s))
    }
}

/// A container as `ps` shows it.
#[derive(Debug, Serialize)]
pub(crate) struct ContainerRow {
    pub id: String,
    pub name: String,
    pub image: String,
    pub state: String,
    pub exit_code: Option<i64>,
    pub owner: Option<String>,
    pub session: Option<String>,
    /// Seconds since the Unix epoch.
    pub created: Option<u64>,
}

impl From<&ContainerInfo> for ContainerRow {
    fn from(c: &ContainerInfo) -> Self {
        let (state, exit_code) = state(&c.state);
        Self {
            id: c.id.clone(),
            name: c.name.clone(),
            image: c.image.clone(),
            state,
            exit_code,
            owner: c.labels.get(OWNER_LABEL).cloned(),
            session: c.labels.get(SESSION_LABEL).cloned(),
            created: unix(&c.labels),
        }
    }
}

fn unix(labels: &Labels) -> Option<u64> {
    created_at(labels)?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

fn state(s: &ContainerState) -> (String, Option<i64>) {
    match s {
        ContainerState::Created => ("created".into(), None),
        ContainerState::Running => ("running".into(), None),
        ContainerState::Paused => ("paused".into(), None),
        ContainerState::Restarting => ("restarting".into(), None),
        ContainerState::Exited(code) => ("exited".into(), Some(*code)),
        ContainerState::Removing => ("removing".into(), None),
        other => (format!("{other:?}").to_lowercase(), None),
    }
}

/// The first `n` characters (never a cut through one).
fn short(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// How long ago, for people ("3m ago").
fn ago(created: Option<u64>) -> String {
    let Some(created) = created else {
        return "-".into();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let secs = now.saturating_sub(created);
    let rounded = match secs {
        0..=59 => secs,
        60..=3599 => secs / 60 * 60,
        _ => secs / 3600 * 3600,
    };
    format!(
        "{} ago",
        humantime::format_duration(std::time::Duration::from_secs(rounded))
    )
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(NOTHING).set_header(header.to_vec());
    t
}

fn json<T: Serialize + ?Sized>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("containerctl: cannot encode the output: {e}"),
    }
}

/// `containerctl ps`.
pub(crate) async fn ps(
    engine: &dyn ContainerManager,
    filter: &Filter,
    out: Output,
) -> container::Result<()> {
    let rows: Vec<ContainerRow> = engine
        .list(&filter.selector())
        .await?
        .iter()
        .filter(|c| filter.keeps(&c.labels))
        .map(ContainerRow::from)
        .collect();
    match out {
        Output::Json => json(&rows),
        Output::Text => {
            let mut t = table(&["ID", "NAME", "IMAGE", "STATE", "CREATED", "OWNER"]);
            for r in &rows {
                let state = match r.exit_code {
                    Some(code) => format!("{} ({code})", r.state),
                    None => r.state.clone(),
                };
                t.add_row(vec![
                    short(&r.id, 12),
                    r.name.clone(),
                    r.image.clone(),
                    state,
                    ago(r.created),
                    r.owner.clone().unwrap_or_default(),
                ]);
            }
            println!("{t}");
        }
    }
    Ok(())
}

/// A volume as `volume ls` shows it.
#[derive(Debug, Serialize)]
struct VolumeRow<'a> {
    name: &'a str,
    mountpoint: Option<&'a str>,
    owner: Option<&'a str>,
    session: Option<&'a str>,
    created: Option<u64>,
    labels: &'a Labels,
}

impl<'a> From<&'a VolumeInfo> for VolumeRow<'a> {
    fn from(v: &'a VolumeInfo) -> Self {
        Self {
            name: &v.name,
            mountpoint: v.mountpoint.as_deref(),
            owner: v.labels.get(OWNER_LABEL).map(String::as_str),
            session: v.labels.get(SESSION_LABEL).map(String::as_str),
            created: unix(&v.labels),
            labels: &v.labels,
        }
    }
}

/// `containerctl volume ls`.
pub(crate) async fn volumes(
    engine: &dyn ContainerManager,
    filter: &Filter,
    out: Output,
) -> container::Result<()> {
    let list: Vec<VolumeInfo> = engine
        .list_volumes(&filter.selector())
        .await?
        .into_iter()
        .filter(|v| filter.keeps(&v.labels))
        .collect();
    let rows: Vec<VolumeRow<'_>> = list.iter().map(VolumeRow::from).collect();
    match out {
        Output::Json => json(&rows),
        Output::Text => {
            let mut t = table(&["NAME", "CREATED", "OWNER", "MOUNTPOINT"]);
            for r in &rows {
                t.add_row(vec![
                    r.name.to_string(),
                    ago(r.created),
                    r.owner.unwrap_or_default().to_string(),
                    r.mountpoint.unwrap_or("-").to_string(),
                ]);
            }
            println!("{t}");
        }
    }
    Ok(())
}

/// One volume (`volume create`, `volume inspect`).
pub(crate) fn volume(v: &VolumeInfo, out: Output) {
    match out {
        Output::Json => json(&VolumeRow::from(v)),
        Output::Text => println!("{}", v.name),
    }
}

/// `containerctl info`.
pub(crate) async fn info(engine: &dyn ContainerManager, out: Output) -> container::Result<()> {
    let info = engine.info().await?;
    let caps = engine.capabilities();
    match out {
        Output::Json => json(&serde_json::json!({
            "backend": info.backend,
            "engine": info.engine,
            "version": info.version,
            "api_version": info.api_version,
            "os": info.os,
            "arch": info.arch,
            "endpoint": info.endpoint,
            "capabilities": caps,
            "owner": engine.ownership().owner(),
            "session": engine.ownership().session(),
        })),
        Output::Text => {
            let yes = |b: bool| if b { "yes" } else { "no" };
            let mut t = Table::new();
            t.load_preset(NOTHING);
            t.add_row(vec!["Backend".to_string(), info.backend.to_string()]);
            t.add_row(vec!["Engine".to_string(), info.engine.to_string()]);
            t.add_row(vec!["Version".to_string(), info.version.clone()]);
            if let Some(api) = &info.api_version {
                t.add_row(vec!["API version".to_string(), api.clone()]);
            }
            t.add_row(vec![
                "Platform".to_string(),
                format!("{}/{}", info.os, info.arch),
            ]);
            t.add_row(vec!["Endpoint".to_string(), info.endpoint.clone()]);
            for (name, on) in [
                ("init", caps.init),
                ("resource limits", caps.resource_limits),
                ("tty exec", caps.tty_exec),
                ("keep-id user namespace", caps.userns_keep_id),
                ("native exec kill", caps.native_exec_kill),
                ("copy files", caps.copy_files),
            ] {
                t.add_row(vec![format!("Can: {name}"), yes(on).to_string()]);
            }
            println!("{t}");
        }
    }
    Ok(())
}

/// One line per object acted on (`stop`, `rm`): its name, or a JSON object.
pub(crate) fn done(out: Output, action: &str, name: &str) {
    match out {
        Output::Json => json(&serde_json::json!({ "action": action, "name": name })),
        Output::Text => println!("{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_cut_by_characters_and_filters_need_the_owner_label() {
        assert_eq!(short("ab\u{e9}cd", 3), "ab\u{e9}");
        let mut labels = Labels::new();
        assert!(
            !Filter::default().keeps(&labels),
            "no owner label: not ours"
        );
        labels.insert(OWNER_LABEL.into(), "smidr".into());
        assert!(Filter::default().keeps(&labels));
        assert!(!Filter::new(Some("containerctl"), None).keeps(&labels));
        assert!(Filter::new(Some("smidr"), None).keeps(&labels));
        assert!(!Filter::new(Some("smidr"), Some("s1")).keeps(&labels));
    }
}
