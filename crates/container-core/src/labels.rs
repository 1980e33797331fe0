//! Ownership labels: every object the library makes carries them, and cleanup touches
//! only objects that carry this manager's owner label.

use std::future::Future;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind, Result};
use crate::reference::ImageRef;
use crate::types::{
    CleanupScope, ContainerConfig, ContainerInfo, Labels, Mount, MountInfo, VolumeConfig,
};

/// Prefix reserved for the library's own labels; user labels under it are refused.
pub const LABEL_PREFIX: &str = "io.container-rs.";
/// Who made the object: a tool's name (by default the running program's, see
/// [`default_owner`]).
pub const OWNER_LABEL: &str = "io.container-rs.owner";
/// The session (one manager's lifetime, or a name the caller picks) that made the object.
pub const SESSION_LABEL: &str = "io.container-rs.session";
/// When the object was made, in seconds since the Unix epoch: what a cleanup by age
/// reads (engines do not all report a creation time).
pub const CREATED_LABEL: &str = "io.container-rs.created";

/// When the object labelled `labels` was made, from [`CREATED_LABEL`].
pub fn created_at(labels: &Labels) -> Option<std::time::SystemTime> {
    let secs: u64 = labels.get(CREATED_LABEL)?.parse().ok()?;
    std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(secs))
}

fn now_unix() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .to_string()
}

/// sha256 of the container config, for idempotent create by name.
pub const CONFIG_HASH_LABEL: &str = "io.container-rs.config-hash";

/// The [`Account`](crate::types::Account) a container runs as, `uid:gid:name:home`:
/// each start makes it in the container (ADR 0013).
pub const ACCOUNT_LABEL: &str = "io.container-rs.account";
/// The owner [`default_owner`] falls back to when the program's name cannot be a label
/// value.
pub const DEFAULT_OWNER: &str = "container-rs";

/// The owner a manager uses when the caller names none: the running program's file name
/// and the caller's uid (`smidr.u1000`, `containerctl.u0`), so two tools on one engine
/// never share an owner, nor two users of one tool on a shared build host: one's cleanup
/// never takes another's objects. Characters a label value cannot hold become `-`;
/// [`DEFAULT_OWNER`] stands for the program when no name is known. A tool whose binary
/// may be renamed should name its owner itself ([`Ownership::new`]). An owner label is
/// not a permission: anyone with access to the engine can copy it (docs/security.md).
pub fn default_owner() -> String {
    per_user(&program_owner(), rustix::process::getuid().as_raw())
}

/// `owner` for the user `uid`: `<owner>.u<uid>`, the owner cut so the whole stays a
/// label value of at most 128 characters.
fn per_user(owner: &str, uid: u32) -> String {
    let suffix = format!(".u{uid}");
    let keep = 128 - suffix.len();
    let cut: String = owner.chars().take(keep).collect();
    format!("{}{suffix}", cut.trim_end_matches(['-', '.']))
}

/// The running program's file name as an owner label value.
fn program_owner() -> String {
    let name = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| {
            std::env::args_os().next().and_then(|a| {
                std::path::Path::new(&a)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
        });
    name.map(|n| owner_from_program(&n))
        .unwrap_or_else(|| DEFAULT_OWNER.to_string())
}

/// `program` as an owner label value: `[A-Za-z0-9._-]`, at most 128 characters.
fn owner_from_program(program: &str) -> String {
    let cleaned: String = program
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(128)
        .collect();
    let cleaned = cleaned.trim_matches(|c| c == '-' || c == '.').to_string();
    if cleaned.is_empty() {
        DEFAULT_OWNER.to_string()
    } else {
        cleaned
    }
}

/// The owner and session a manager stamps on everything it creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    owner: String,
    session: String,
}

impl Default for Ownership {
    /// Owner [`default_owner`] (the running program's name and the caller's uid) with a
    /// fresh random session id: unique to this manager, so a session cleanup takes only
    /// what it made.
    fn default() -> Self {
        Ownership {
            owner: default_owner(),
            session: uuid::Uuid::new_v4().simple().to_string(),
        }
    }
}

fn check_label_value(what: &str, v: &str) -> Result<()> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "{what} {v:?} must be 1-128 characters of [A-Za-z0-9._-]"
        )))
    }
}

impl Ownership {
    /// Ownership by `owner` with a fresh random session id.
    pub fn new(owner: impl Into<String>) -> Result<Self> {
        let owner = owner.into();
        check_label_value("owner", &owner)?;
        Ok(Ownership {
            owner,
            ..Ownership::default()
        })
    }

    /// Ownership by `owner` in a session the caller names (for example to clean up the
    /// objects of an earlier run).
    pub fn with_session(owner: impl Into<String>, session: impl Into<String>) -> Result<Self> {
        let (owner, session) = (owner.into(), session.into());
        check_label_value("owner", &owner)?;
        check_label_value("session", &session)?;
        Ok(Ownership { owner, session })
    }

    /// The owner name.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The session id.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// The labels that select objects for `scope`.
    pub fn selector(&self, scope: CleanupScope) -> Labels {
        let mut l = Labels::new();
        l.insert(OWNER_LABEL.to_string(), self.owner.clone());
        if scope == CleanupScope::Session {
            l.insert(SESSION_LABEL.to_string(), self.session.clone());
        }
        l
    }

    /// True when `labels` carry this owner: the only objects cleanup may remove.
    pub fn owns(&self, labels: &Labels) -> bool {
        labels.get(OWNER_LABEL).map(String::as_str) == Some(self.owner.as_str())
    }

    /// The labels to create a container with: the user's, ownership, the creation time
    /// and the config hash.
    pub fn container_labels(&self, config: &ContainerConfig) -> Result<Labels> {
        let mut l = config.labels.clone();
        l.extend(self.selector(CleanupScope::Session));
        l.insert(CREATED_LABEL.to_string(), now_unix());
        l.insert(CONFIG_HASH_LABEL.to_string(), config_hash(config)?);
        if let Some(account) = &config.account {
            l.insert(
                ACCOUNT_LABEL.to_string(),
                crate::raw::account_label(account),
            );
        }
        Ok(l)
    }

    /// The labels to create a volume with: the user's, ownership and the creation time.
    pub fn volume_labels(&self, config: &VolumeConfig) -> Labels {
        let mut l = config.labels.clone();
        l.extend(self.selector(CleanupScope::Session));
        l.insert(CREATED_LABEL.to_string(), now_unix());
        l
    }
}

impl Ownership {
    /// Create idempotent by name, the same for every backend: `create` tries to make the
    /// container named `name` with `labels` (from [`container_labels`](Self::container_labels))
    /// and returns its id; on `Conflict` (name in use) `find` looks the name up. The same
    /// config hash, this owner, the same `image` and the same bind and volume `mounts` as
    /// the engine reports them (labels can be copied by anyone with engine access; what
    /// the engine ran cannot be faked that way) → the existing id; anything else → `Conflict`, and the
    /// existing container is left untouched. Racing creators all get the winner's id: a
    /// name in use that cannot be inspected yet (the winner is still being created) is
    /// retried for about a second.
    pub async fn create_idempotent<C, CF, F, FF>(
        &self,
        name: &str,
        image: &str,
        mounts: &[Mount],
        labels: &Labels,
        mut create: C,
        mut find: F,
    ) -> Result<String>
    where
        C: FnMut() -> CF,
        CF: Future<Output = Result<String>>,
        F: FnMut() -> FF,
        FF: Future<Output = Result<Option<ContainerInfo>>>,
    {
        for _ in 0..20 {
            match create().await {
                Ok(id) => return Ok(id),
                Err(e) if e.kind() == ErrorKind::Conflict => match find().await? {
                    Some(existing)
                        if self.owns(&existing.labels)
                            && existing.labels.get(CONFIG_HASH_LABEL)
                                == labels.get(CONFIG_HASH_LABEL)
                            && same_image(&existing.image, image)
                            && same_mounts(existing.mounts.as_deref(), mounts) =>
                    {
                        return Ok(existing.id)
                    }
                    Some(existing) => {
                        return Err(Error::new(
                            ErrorKind::Conflict,
                            format!(
                                "a container named {name} ({}) exists with a different \
                                 configuration or owner; it was left untouched",
                                existing.id
                            ),
                        )
                        .with_resource(name))
                    }
                    None => tokio::time::sleep(Duration::from_millis(50)).await,
                },
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(
            ErrorKind::Conflict,
            "the name stayed in use by a container that could not be inspected",
        )
        .with_resource(name))
    }
}

/// Whether the engine's record of a container's image (`existing`) names the image
/// `requested`. An engine that reports only an image id (`sha256:...`) cannot be
/// compared by name: the config hash decides alone.
fn same_image(existing: &str, requested: &str) -> bool {
    if existing.is_empty() || existing.starts_with("sha256:") {
        return true;
    }
    match (ImageRef::parse(existing), ImageRef::parse(requested)) {
        (Ok(a), Ok(b)) => a.engine_name() == b.engine_name(),
        _ => existing == requested,
    }
}

/// Whether the engine's report of a container's mounts (`existing`; `None`: not
/// reported, the config hash decides alone) matches the `requested` ones: every requested
/// bind (the same host path, compared after resolving symlinks where both exist) and
/// volume at its target, and no bind the request does not have. Volumes the request does
/// not name are an image's anonymous ones and do not count.
fn same_mounts(existing: Option<&[MountInfo]>, requested: &[Mount]) -> bool {
    let Some(existing) = existing else {
        return true;
    };
    let same_path = |a: &str, b: &std::path::Path| {
        a == b.to_string_lossy()
            || matches!(
                (std::fs::canonicalize(a), std::fs::canonicalize(b)),
                (Ok(x), Ok(y)) if x == y
            )
    };
    let found = |m: &Mount| {
        existing.iter().any(|e| match (m, e) {
            (
                Mount::Bind { source, target, .. },
                MountInfo::Bind {
                    source: s,
                    target: t,
                },
            ) => target == t && same_path(s, source),
            (Mount::Volume { name, target, .. }, MountInfo::Volume { name: n, target: t }) => {
                name == n && target == t
            }
            (Mount::Tmpfs { .. }, _) => true,
            _ => false,
        })
    };
    let requested_bind = |e: &MountInfo| match e {
        MountInfo::Bind { target, .. } => requested
            .iter()
            .any(|m| matches!(m, Mount::Bind { target: t, .. } if t == target)),
        MountInfo::Volume { .. } => true,
    };
    requested.iter().all(found) && existing.iter().all(requested_bind)
}

/// sha256 (hex) of the config's canonical JSON: equal configs give equal hashes.
///
/// Env values go into the hash (a changed secret is a changed config) but the hash is
/// one-way; the values themselves are never stored in labels.
pub fn config_hash(config: &ContainerConfig) -> Result<String> {
    // Plain data (strings, numbers, string maps): a failure would be a bug, and is an
    // error rather than the hash of nothing.
    let json = serde_json::to_vec(config).map_err(|e| {
        Error::new(ErrorKind::Internal, "cannot encode the container config").with_source(e)
    })?;
    Ok(hex::encode(Sha256::digest(&json)))
}

/// The most bytes of one label, key and value together: containerd's limit (4096), so
/// that one label set means the same on every engine.
pub const MAX_LABEL_BYTES: usize = 4096;

/// `InvalidInput` when any key uses the reserved prefix or is empty, or a label is longer
/// than [`MAX_LABEL_BYTES`].
pub fn check_user_labels(labels: &Labels) -> Result<()> {
    for (key, value) in labels {
        if key.is_empty() {
            return Err(Error::invalid_input("label key must not be empty"));
        }
        if key.len() + value.len() > MAX_LABEL_BYTES {
            return Err(Error::invalid_input(format!(
                "label {:?}: key and value are {} bytes, more than {MAX_LABEL_BYTES}",
                key.chars().take(64).collect::<String>(),
                key.len() + value.len()
            )));
        }
        if key.starts_with(LABEL_PREFIX) {
            return Err(Error::invalid_input(format!(
                "label {key:?} uses the reserved prefix {LABEL_PREFIX:?}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_owner_is_the_program_and_the_user_not_a_shared_constant() {
        assert_eq!(owner_from_program("smidr"), "smidr");
        assert_eq!(owner_from_program("my tool+v2"), "my-tool-v2");
        assert_eq!(owner_from_program("???"), DEFAULT_OWNER);
        assert_eq!(owner_from_program(&"x".repeat(300)).len(), 128);
        // This test binary's own name and this user, usable as a label value.
        let owner = default_owner();
        let uid = rustix::process::getuid().as_raw();
        assert!(owner.ends_with(&format!(".u{uid}")), "{owner}");
        assert_ne!(owner, per_user(DEFAULT_OWNER, uid));
        assert_eq!(per_user("smidr", 1000), "smidr.u1000");
        assert_ne!(per_user("smidr", 1000), per_user("smidr", 1001));
        let long = per_user(&"x".repeat(128), u32::MAX);
        assert_eq!(long.len(), 128);
        assert!(Ownership::new(long).is_ok());
        assert!(Ownership::new(owner.clone()).is_ok(), "{owner}");
        assert_eq!(Ownership::default().owner(), owner);
        assert_ne!(
            Ownership::default().session(),
            Ownership::default().session()
        );
    }

    #[test]
    fn container_labels_carry_owner_session_and_hash() {
        let o = Ownership::with_session("smidr", "s1").expect("ownership");
        let cfg = ContainerConfig::new("busybox").label("app", "build");
        let l = o.container_labels(&cfg).expect("labels");
        assert_eq!(l.get(OWNER_LABEL).map(String::as_str), Some("smidr"));
        assert_eq!(l.get(SESSION_LABEL).map(String::as_str), Some("s1"));
        assert_eq!(l.get("app").map(String::as_str), Some("build"));
        assert_eq!(
            l.get(CONFIG_HASH_LABEL),
            Some(&config_hash(&cfg).expect("hash"))
        );
        assert!(o.owns(&l));
    }

    fn info(id: &str, labels: Labels) -> ContainerInfo {
        ContainerInfo::new(id, "n", "busybox", crate::ContainerState::Created).with_labels(labels)
    }

    #[tokio::test]
    async fn a_container_with_copied_labels_but_another_image_is_not_adopted() {
        let o = Ownership::with_session("me", "s").expect("ownership");
        let cfg = ContainerConfig::new("busybox").name("n");
        let labels = o.container_labels(&cfg).expect("labels");
        let taken = || async { Err(Error::new(ErrorKind::Conflict, "name in use")) };
        // Someone with engine access made `n` from another image with our labels copied.
        let forged = labels.clone();
        let e = o
            .create_idempotent("n", "busybox", &[], &labels, taken, || {
                let forged = forged.clone();
                async move {
                    Ok(Some(
                        ContainerInfo::new(
                            "f",
                            "n",
                            "evil.example/busybox:1",
                            crate::ContainerState::Created,
                        )
                        .with_labels(forged),
                    ))
                }
            })
            .await
            .expect_err("another image");
        assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
        assert!(same_image("docker.io/library/busybox:latest", "busybox"));
        assert!(
            same_image("sha256:abc", "busybox"),
            "an id alone cannot be compared"
        );
        assert!(!same_image("busybox:1", "busybox:2"));
    }

    #[tokio::test]
    async fn a_container_with_copied_labels_but_other_mounts_is_not_adopted() {
        let o = Ownership::with_session("me", "s").expect("ownership");
        let work = std::env::temp_dir();
        let mounts = [
            Mount::bind(&work, "/work"),
            Mount::volume("sstate", "/sstate"),
        ];
        let mut cfg = ContainerConfig::new("busybox").name("n");
        cfg.mounts = mounts.to_vec();
        let labels = o.container_labels(&cfg).expect("labels");
        let taken = || async { Err(Error::new(ErrorKind::Conflict, "name in use")) };
        let bind = |source: &str, target: &str| MountInfo::Bind {
            source: source.into(),
            target: target.into(),
        };
        let volume = |name: &str, target: &str| MountInfo::Volume {
            name: name.into(),
            target: target.into(),
        };
        let work = work.to_string_lossy().into_owned();
        let (o, requested) = (&o, &mounts);
        let adopt = |reported: Vec<MountInfo>| {
            let labels = labels.clone();
            async move {
                o.create_idempotent("n", "busybox", requested, &labels, taken, || {
                    let info = info("old", labels.clone()).with_mounts(reported.clone());
                    async move { Ok(Some(info)) }
                })
                .await
            }
        };
        let same = vec![bind(&work, "/work"), volume("sstate", "/sstate")];
        assert_eq!(adopt(same.clone()).await.expect("same mounts"), "old");
        let mut anonymous = same.clone();
        anonymous.push(volume("3f1e0c", "/var/cache"));
        assert!(
            adopt(anonymous).await.is_ok(),
            "an image's anonymous volume"
        );
        for forged in [
            vec![bind("/etc", "/work"), volume("sstate", "/sstate")],
            vec![bind(&work, "/work"), volume("other", "/sstate")],
            vec![bind(&work, "/work")],
            vec![
                bind(&work, "/work"),
                volume("sstate", "/sstate"),
                bind("/", "/host"),
            ],
        ] {
            let e = adopt(forged.clone()).await.expect_err("other mounts");
            assert_eq!(e.kind(), ErrorKind::Conflict, "{forged:?}: {e}");
        }
        assert!(same_mounts(None, &mounts), "not reported: the hash decides");
    }

    #[tokio::test]
    async fn create_idempotent_returns_the_same_config_and_refuses_others() {
        let o = Ownership::with_session("me", "s").expect("ownership");
        let cfg = ContainerConfig::new("busybox").name("n");
        let labels = o.container_labels(&cfg).expect("labels");
        let taken = || async { Err(Error::new(ErrorKind::Conflict, "name in use")) };

        let same = labels.clone();
        let id = o
            .create_idempotent("n", "busybox", &[], &labels, taken, || {
                let same = same.clone();
                async move { Ok(Some(info("old", same))) }
            })
            .await
            .expect("same config");
        assert_eq!(id, "old");

        let other = o
            .container_labels(&ContainerConfig::new("busybox").name("n").init(true))
            .expect("labels");
        let e = o
            .create_idempotent("n", "busybox", &[], &labels, taken, || {
                let other = other.clone();
                async move { Ok(Some(info("old", other))) }
            })
            .await
            .expect_err("different config");
        assert_eq!(e.kind(), ErrorKind::Conflict);

        let e = o
            .create_idempotent("n", "busybox", &[], &labels, taken, || async {
                Ok(Some(info("f", Labels::new())))
            })
            .await
            .expect_err("foreign");
        assert_eq!(e.kind(), ErrorKind::Conflict);

        let id = o
            .create_idempotent(
                "n",
                "busybox",
                &[],
                &labels,
                || async { Ok("new".to_string()) },
                || async { Ok(None) },
            )
            .await
            .expect("fresh");
        assert_eq!(id, "new");
    }

    #[test]
    fn hash_follows_the_config() {
        let a = ContainerConfig::new("busybox").cmd(["sleep", "1"]);
        let b = ContainerConfig::new("busybox").cmd(["sleep", "1"]);
        let c = ContainerConfig::new("busybox").cmd(["sleep", "2"]);
        let hash = |c| config_hash(c).expect("hash");
        assert_eq!(hash(&a), hash(&b));
        assert_ne!(hash(&a), hash(&c));
        assert_eq!(hash(&a).len(), 64);
    }

    #[test]
    fn selectors_by_scope() {
        let o = Ownership::with_session("o", "s").expect("ownership");
        assert_eq!(o.selector(CleanupScope::Session).len(), 2);
        assert_eq!(o.selector(CleanupScope::Owner).len(), 1);
    }

    #[test]
    fn foreign_or_other_owner_objects_are_not_owned() {
        let o = Ownership::new("mine").expect("ownership");
        assert!(!o.owns(&Labels::new()));
        let mut l = Labels::new();
        l.insert(OWNER_LABEL.into(), "theirs".into());
        assert!(!o.owns(&l));
    }

    #[test]
    fn reserved_prefix_and_bad_names_are_refused() {
        let mut l = Labels::new();
        l.insert("io.container-rs.owner".into(), "x".into());
        assert!(check_user_labels(&l).is_err());
        assert!(Ownership::new("").is_err());
        assert!(Ownership::new("has space").is_err());
        assert!(Ownership::with_session("ok", "a/b").is_err());
        let fresh = (Ownership::default(), Ownership::default());
        assert_ne!(fresh.0.session(), fresh.1.session());
    }
}
