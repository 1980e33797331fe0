//! `containerctl cleanup`, the force-cleanup: an explicit scope, only labelled objects.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use container::labels::created_at;
use container::{ContainerManager, Labels};
use serde::Serialize;

use crate::fail::Failure;
use crate::show::Filter;
use crate::Output;

/// `containerctl cleanup`.
#[derive(Debug, clap::Args)]
pub(crate) struct CleanupArgs {
    /// Every owner: all objects carrying container-rs's owner label (other tools' too).
    #[arg(long)]
    all_owners: bool,
    /// Only objects made longer ago than this (1h, 2days, 30m); objects without a
    /// creation label are left alone.
    #[arg(long, value_parser = humantime::parse_duration)]
    older_than: Option<Duration>,
    /// Say what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
}

impl CleanupArgs {
    /// Refuses a cleanup without a scope, before any engine is asked.
    pub(crate) fn check(&self, owner: Option<&str>, session: Option<&str>) -> Result<(), Failure> {
        const HINT: &str = "pass --owner NAME (with --session ID to narrow it), or --all-owners \
                            for everything carrying container-rs's labels; --dry-run shows what \
                            would go";
        match (self.all_owners, owner, session) {
            (false, None, None) => Err(Failure::usage("cleanup needs a scope", HINT)),
            (false, None, Some(_)) => Err(Failure::usage(
                "--session narrows an --owner; it needs one",
                HINT,
            )),
            (true, Some(_), _) | (true, _, Some(_)) => Err(Failure::usage(
                "--all-owners takes every owner; it cannot be combined with --owner or --session",
                HINT,
            )),
            _ => Ok(()),
        }
    }
}

/// What happened to one object.
#[derive(Debug, Serialize)]
struct Outcome {
    kind: &'static str,
    name: String,
    id: String,
    /// `removed`, `would remove`, or `failed`.
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Whether an object with `labels` is old enough (always, without `--older-than`).
fn old_enough(labels: &Labels, older_than: Option<Duration>, now: SystemTime) -> Option<bool> {
    let Some(limit) = older_than else {
        return Some(true);
    };
    let created = created_at(labels)?;
    Some(now.duration_since(created).unwrap_or_default() >= limit)
}

/// Runs the cleanup; exit 0 when nothing failed.
pub(crate) async fn run(
    engine: &dyn ContainerManager,
    args: &CleanupArgs,
    filter: &Filter,
    out: Output,
) -> Result<ExitCode, Failure> {
    let now = SystemTime::now();
    // Containers first, then the volumes they may use.
    let mut candidates: Vec<(&'static str, String, String, Labels)> = Vec::new();
    for c in engine.list(&filter.selector()).await? {
        candidates.push(("container", c.name, c.id, c.labels));
    }
    for v in engine.list_volumes(&filter.selector()).await? {
        candidates.push(("volume", v.name.clone(), v.name, v.labels));
    }
    let mut outcomes = Vec::new();
    let mut unknown_age = 0usize;
    for (kind, name, id, labels) in candidates {
        if !filter.keeps(&labels) {
            continue;
        }
        match old_enough(&labels, args.older_than, now) {
            None => unknown_age += 1,
            Some(false) => {}
            Some(true) => {
                let removed = match (args.dry_run, kind) {
                    (true, _) => Ok(()),
                    (false, "container") => engine.remove(&id, true).await,
                    (false, _) => engine.remove_volume(&id, true).await,
                };
                let (result, error) = match removed {
                    Err(e) => ("failed", Some(e.to_string())),
                    Ok(()) if args.dry_run => ("would remove", None),
                    Ok(()) => ("removed", None),
                };
                outcomes.push(Outcome {
                    kind,
                    name,
                    id,
                    result,
                    error,
                });
            }
        }
    }

    let failed = outcomes.iter().filter(|o| o.result == "failed").count();
    match out {
        Output::Json => {
            let doc = serde_json::json!({
                "dry_run": args.dry_run,
                "objects": outcomes,
                "skipped_unknown_age": unknown_age,
                "failed": failed,
            });
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        Output::Text => {
            for o in &outcomes {
                match &o.error {
                    Some(e) => eprintln!("failed to remove {} {}: {e}", o.kind, o.name),
                    None => println!("{} {} {}", o.result, o.kind, o.name),
                }
            }
            if unknown_age > 0 {
                eprintln!("left {unknown_age} object(s) whose creation time is not labelled");
            }
            if outcomes.is_empty() {
                println!("nothing to remove");
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::fail::OWN_ERROR)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(all_owners: bool) -> CleanupArgs {
        CleanupArgs {
            all_owners,
            older_than: None,
            dry_run: false,
        }
    }

    #[test]
    fn a_scope_is_required_and_cannot_be_mixed() {
        assert!(args(false).check(None, None).is_err());
        assert!(args(false).check(None, Some("s")).is_err());
        assert!(args(true).check(Some("o"), None).is_err());
        assert!(args(false).check(Some("o"), Some("s")).is_ok());
        assert!(args(true).check(None, None).is_ok());
    }

    #[test]
    fn age_comes_from_the_creation_label_only() {
        let now = SystemTime::now();
        let mut labels = Labels::new();
        assert_eq!(old_enough(&labels, None, now), Some(true));
        assert_eq!(
            old_enough(&labels, Some(Duration::from_secs(60)), now),
            None
        );
        let made = now - Duration::from_secs(120);
        let secs = made
            .duration_since(std::time::UNIX_EPOCH)
            .expect("epoch")
            .as_secs();
        labels.insert(container::labels::CREATED_LABEL.into(), secs.to_string());
        assert_eq!(
            old_enough(&labels, Some(Duration::from_secs(60)), now),
            Some(true)
        );
        assert_eq!(
            old_enough(&labels, Some(Duration::from_secs(600)), now),
            Some(false)
        );
    }
}
