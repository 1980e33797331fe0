//! Volumes: folders under the backend's data root.

use super::*;

impl ContainerdEngine {
    pub(super) fn volume_root(&self, name: &str) -> PathBuf {
        self.data.join("volumes").join(name)
    }

    pub(super) fn volume_dir(&self, name: &str) -> PathBuf {
        self.volume_root(name).join("_data")
    }
}

pub(super) async fn create_volume(
    engine: &ContainerdEngine,
    name: &str,
    labels: &Labels,
) -> Result<VolumeInfo> {
    let root = engine.volume_root(name);
    if root.join("labels.json").is_file() {
        return engine.inspect_volume(name).await;
    }
    // Docker's CVE-2021-41091: a container's root could leave a setuid-root file in a
    // volume, and any local user could run it through a world-searchable path. The
    // volumes root and each volume's own folder are root's alone (0700); what is inside
    // `_data` is the container's business.
    secure_dir(&engine.data.join("volumes"))?;
    secure_dir(&root)?;
    std::fs::create_dir_all(engine.volume_dir(name)).map_err(io_err("cannot make the volume"))?;
    let text = serde_json::to_vec(labels)
        .map_err(|e| Error::new(ErrorKind::Internal, "cannot encode labels").with_source(e))?;
    std::fs::write(root.join("labels.json"), text)
        .map_err(io_err("cannot write the volume labels"))?;
    engine.inspect_volume(name).await
}

pub(super) async fn inspect_volume(engine: &ContainerdEngine, name: &str) -> Result<VolumeInfo> {
    let text = std::fs::read(engine.volume_root(name).join("labels.json"))
        .map_err(|_| Error::new(ErrorKind::NotFound, format!("no such volume: {name}")))?;
    let labels: Labels = serde_json::from_slice(&text)
        .map_err(|e| Error::new(ErrorKind::Internal, "unreadable volume labels").with_source(e))?;
    Ok(
        VolumeInfo::new(name, labels)
            .with_mountpoint(engine.volume_dir(name).display().to_string()),
    )
}

pub(super) async fn list_volumes(
    engine: &ContainerdEngine,
    labels: &Labels,
) -> Result<Vec<VolumeInfo>> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(engine.data.join("volumes")) else {
        return Ok(out);
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Ok(v) = engine.inspect_volume(&name).await {
            if labels.iter().all(|(k, val)| v.labels.get(k) == Some(val)) {
                out.push(v);
            }
        }
    }
    Ok(out)
}

pub(super) async fn remove_volume(
    engine: &ContainerdEngine,
    name: &str,
    force: bool,
) -> Result<()> {
    let root = engine.volume_root(name);
    if !root.is_dir() {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("no such volume: {name}"),
        ));
    }
    let data = engine.volume_dir(name).display().to_string();
    let containers = ContainersClient::new(engine.c.channel.clone())
        .list(engine.c.request(ListContainersRequest {
            filters: Vec::new(),
        })?)
        .await
        .map_err(map_status)?
        .into_inner()
        .containers;
    let user = containers.iter().find(|c| {
        ContainerdEngine::spec_of(c)["mounts"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["source"] == data.as_str()))
    });
    if let (Some(user), false) = (user, force) {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!("volume {name} is in use by {}", user.id),
        ));
    }
    if let Some(user) = user {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!("volume {name} is in use by {}", user.id),
        ));
    }
    std::fs::remove_dir_all(root).map_err(io_err("cannot remove the volume"))
}
