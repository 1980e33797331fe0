//! Container records: create (snapshot and record under a lease), inspect, list, remove.

use super::*;

impl ContainerdEngine {
    /// Reads a whole blob from the content store.
    pub(super) async fn read_content(&self, digest: &str) -> Result<Vec<u8>> {
        let request = ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        };
        let mut stream = ContentClient::new(self.c.channel.clone())
            .read(self.c.request(request)?)
            .await
            .map_err(map_status)?
            .into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(map_status)? {
            out.extend_from_slice(&chunk.data);
        }
        Ok(out)
    }

    /// The image's run defaults and its top chain id.
    pub(super) async fn image_config(&self, name: &str) -> Result<(ImageDefaults, String)> {
        let image = ImagesClient::new(self.c.channel.clone())
            .get(self.c.request(GetImageRequest {
                name: name.to_string(),
            })?)
            .await
            .map_err(|s| {
                if s.code() == Code::NotFound {
                    Error::new(
                        ErrorKind::NotFound,
                        format!("no such image: {name} (pull it first)"),
                    )
                } else {
                    map_status(s)
                }
            })?
            .into_inner()
            .image
            .ok_or_else(|| Error::new(ErrorKind::Internal, "an image record without an image"))?;
        let target = image
            .target
            .ok_or_else(|| Error::new(ErrorKind::Internal, "an image without a target"))?;
        let manifest: Value = serde_json::from_slice(&self.read_content(&target.digest).await?)
            .map_err(|e| Error::new(ErrorKind::Internal, "unreadable manifest").with_source(e))?;
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let config: Value = serde_json::from_slice(&self.read_content(&config_digest).await?)
            .map_err(|e| {
                Error::new(ErrorKind::Internal, "unreadable image config").with_source(e)
            })?;
        let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let top = crate::pull::chain_ids(&diff_ids).pop().unwrap_or_default();
        Ok((ImageDefaults::from_config(&config), top))
    }

    /// The container record of `id_or_name`: an id, else the container of that name.
    pub(super) async fn container(&self, id_or_name: &str) -> Result<Container> {
        let got = ContainersClient::new(self.c.channel.clone())
            .get(self.c.request(GetContainerRequest {
                id: id_or_name.to_string(),
            })?)
            .await;
        match got {
            Ok(r) => r.into_inner().container.ok_or_else(|| {
                Error::new(
                    ErrorKind::Internal,
                    "a container record without a container",
                )
            }),
            Err(s) if s.code() == Code::NotFound => {
                let named = self.records_named(id_or_name).await?;
                named.into_iter().next().ok_or_else(|| map_status(s))
            }
            Err(s) => Err(map_status(s)),
        }
    }

    /// The bind and volume mounts of a container's spec: a bind of one of this
    /// namespace's volume folders is that volume; the init binary the library binds in is
    /// the runtime's own and left out.
    fn mounts_of(&self, spec: &Value) -> Vec<MountInfo> {
        let volumes = self.data.join("volumes");
        spec["mounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["type"] == "bind" && m["source"] != spec::HOST_INIT)
            .filter_map(|m| {
                let (source, target) = (m["source"].as_str()?, m["destination"].as_str()?);
                let volume = Path::new(source)
                    .strip_prefix(&volumes)
                    .ok()
                    .filter(|rest| rest.ends_with("_data") && rest.components().count() == 2)
                    .and_then(|rest| rest.components().next())
                    .map(|name| name.as_os_str().to_string_lossy().into_owned());
                Some(match volume {
                    Some(name) => MountInfo::Volume {
                        name,
                        target: target.to_string(),
                    },
                    None => MountInfo::Bind {
                        source: source.to_string(),
                        target: target.to_string(),
                    },
                })
            })
            .collect()
    }

    pub(super) fn spec_of(container: &Container) -> Value {
        container
            .spec
            .as_ref()
            .and_then(|a| serde_json::from_slice(&a.value).ok())
            .unwrap_or(Value::Null)
    }

    pub(super) fn info_of(
        &self,
        container: &Container,
        task: Option<&containerd_client::types::v1::Process>,
    ) -> ContainerInfo {
        let (state, pid) = match task {
            None => (ContainerState::Created, None),
            Some(p) => match p.status {
                RUNNING => (ContainerState::Running, Some(p.pid)),
                STOPPED => (ContainerState::Exited(i64::from(p.exit_status)), None),
                CREATED => (ContainerState::Created, None),
                4 | 5 => (ContainerState::Paused, None),
                other => (ContainerState::Unknown(other.to_string()), None),
            },
        };
        let started = std::fs::metadata(self.run.join(&container.id).join("started"))
            .and_then(|m| m.modified())
            .ok();
        let finished = task
            .and_then(|p| p.exited_at.as_ref())
            .and_then(|t| u64::try_from(t.seconds).ok().filter(|s| *s > 0))
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        let spec = Self::spec_of(container);
        // The labels as given (containerd drops labels whose value is empty).
        let labels: Labels = spec["annotations"][spec::LABELS]
            .as_str()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_else(|| container.labels.clone().into_iter().collect());
        let name = container
            .labels
            .get(NAME_LABEL)
            .cloned()
            .unwrap_or_else(|| container.id.clone());
        ContainerInfo::new(container.id.clone(), name, container.image.clone(), state)
            .with_labels(labels)
            .with_mounts(self.mounts_of(&spec))
            .with_oom_killed(self.oom.killed(&container.id))
            .with_pid(pid)
            .with_times(
                started,
                finished.filter(|_| task.is_some_and(|p| p.status == STOPPED)),
            )
    }

    /// The records that carry `name`, oldest first: the oldest holds the name (see
    /// [`create`]).
    pub(super) async fn records_named(&self, name: &str) -> Result<Vec<Container>> {
        let filter = format!("labels.\"{NAME_LABEL}\"==\"{name}\"");
        let mut found = ContainersClient::new(self.c.channel.clone())
            .list(self.c.request(ListContainersRequest {
                filters: vec![filter],
            })?)
            .await
            .map_err(map_status)?
            .into_inner()
            .containers;
        found.sort_by_key(|c| {
            let made = c.created_at.as_ref().map(|t| (t.seconds, t.nanos));
            (made, c.id.clone())
        });
        Ok(found)
    }

    /// Removes `record`'s task, the record, and its snapshot, in that order.
    pub(super) async fn remove_record(&self, record: &Container, force: bool) -> Result<Removal> {
        let id = record.id.as_str();
        if let Some(p) = self.task(id).await? {
            if p.status == RUNNING {
                if !force {
                    return Err(state_conflict(
                        format!("container {id} is running"),
                        "running",
                    ));
                }
                self.signal(id, "", Signal::KILL, true).await?;
                self.wait_task(id, Duration::from_secs(10)).await?;
            }
            // The task first: a container deleted before its task orphans the task.
            match self.delete_task(id).await {
                Ok(()) => {}
                // Another caller's removal closed the task's connection under us.
                Err(e) if e.message().contains("ttrpc: closed") => return Ok(Removal::InProgress),
                Err(e) => return Err(e),
            }
        }
        match ContainersClient::new(self.c.channel.clone())
            .delete(
                self.c
                    .request(DeleteContainerRequest { id: id.to_string() })?,
            )
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == Code::NotFound => return Ok(Removal::Removed),
            Err(s) => return Err(map_status(s)),
        }
        let remove = RemoveSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            key: record.snapshot_key.clone(),
        };
        match SnapshotsClient::new(self.c.channel.clone())
            .remove(self.c.request(remove)?)
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => return Err(map_status(s)),
        }
        let _ = std::fs::remove_dir_all(self.run.join(id));
        let _ = std::fs::remove_dir_all(self.data.join("logs").join(id));
        Ok(Removal::Removed)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn make_container(
        &self,
        name: &str,
        id: &str,
        labels: &Labels,
        image: String,
        top: String,
        spec: Value,
        lease: &str,
    ) -> Result<()> {
        let mut snapshots = SnapshotsClient::new(self.c.channel.clone());
        let prepare = PrepareSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            key: name.to_string(),
            parent: top,
            labels: HashMap::new(),
        };
        snapshots
            .prepare(self.c.leased(prepare, Some(lease))?)
            .await
            .map_err(map_status)?;
        let value = serde_json::to_vec(&spec).map_err(|e| {
            Error::new(ErrorKind::Internal, "cannot encode the spec").with_source(e)
        })?;
        let container = Container {
            id: id.to_string(),
            labels: labels.clone().into_iter().collect(),
            image,
            runtime: Some(Runtime {
                name: RUNTIME.to_string(),
                options: None,
            }),
            spec: Some(any(SPEC_TYPE, value)),
            snapshotter: SNAPSHOTTER.to_string(),
            snapshot_key: name.to_string(),
            ..Container::default()
        };
        let created = ContainersClient::new(self.c.channel.clone())
            .create(self.c.leased(
                CreateContainerRequest {
                    container: Some(container),
                },
                Some(lease),
            )?)
            .await;
        // A failure leaves the snapshot to the create's lease (`CreateLease`).
        created.map(drop).map_err(map_status)
    }

    pub(super) async fn running_or_conflict(&self, id: &str) -> Result<()> {
        let record = self.container(id).await?;
        let id = record.id.as_str();
        match self.task(id).await? {
            Some(p) if p.status == RUNNING => Ok(()),
            _ => Err(state_conflict(
                format!("container {id} is not running: copies need it running"),
                "not running",
            )),
        }
    }
}

pub(super) async fn create(
    engine: &ContainerdEngine,
    name: &str,
    config: &ContainerConfig,
    labels: &Labels,
) -> Result<String> {
    let image_name = ImageRef::parse(&config.image)?.engine_name();
    let (defaults, top) = engine.image_config(&image_name).await?;
    let mut spec = spec::build(name, engine.c.namespace(), config, &defaults, &|v| {
        engine.volume_dir(v)
    })?;
    let all = serde_json::to_string(labels)
        .map_err(|e| Error::new(ErrorKind::Internal, "cannot encode labels").with_source(e))?;
    spec["annotations"][spec::LABELS] = Value::String(all);
    for m in &config.mounts {
        if let container_core::Mount::Volume { name: v, .. } = m {
            if !engine.volume_dir(v).is_dir() {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("no such volume: {v}"),
                ));
            }
        }
    }
    // Under a lease until the container record references the snapshot: a garbage
    // collection in between would take it.
    let lease = CreateLease::new(engine, engine.c.lease().await?);
    // A new id for every container, the name as a label (and as the snapshot key,
    // which makes the name unique: a second prepare of it is `Conflict`).
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let id = if name.len() + 13 <= MAX_ID {
        format!("{name}-{}", &suffix[..12])
    } else {
        suffix
    };
    let mut labels = labels.clone();
    labels.insert(NAME_LABEL.to_string(), name.to_string());
    // The snapshot and the record are made in a task of their own: a caller that gives
    // up midway never cuts a request off (containerd would finish it unseen, leaving a
    // snapshot keyed by the name); the task then undoes what it made.
    let (caller, mut gone) = tokio::sync::oneshot::channel::<()>();
    let making = {
        let (engine, name, id) = (engine.clone(), name.to_string(), id.clone());
        tokio::spawn(async move {
            let mut made = engine
                .make_container(&name, &id, &labels, image_name, top, spec, lease.id())
                .await;
            if made.is_ok() {
                made = engine.hold_name(&name, &id).await;
            }
            let abandoned = matches!(
                gone.try_recv(),
                Err(tokio::sync::oneshot::error::TryRecvError::Closed)
            );
            if made.is_ok() && abandoned {
                tracing::debug!(container = %id, "create abandoned by its caller, undone");
                if let Ok(record) = engine.container(&id).await {
                    if let Err(e) = engine.remove_record(&record, true).await {
                        tracing::debug!(error = %e, "an abandoned create's container not removed");
                    }
                }
                lease.release(None).await;
                return made;
            }
            lease.release(made.is_ok().then_some(id.as_str())).await;
            made
        })
    };
    let made = making
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, "the create task failed").with_source(e))?;
    drop(caller);
    made?;
    Ok(id)
}

impl ContainerdEngine {
    /// After the create of record `id` named `name`: `Conflict` (its record undone) when
    /// an older record carries the name too. The snapshot keyed by the name makes a name
    /// unique, yet under heavy load two creates of one name were seen to both succeed
    /// (cause not found: the first snapshot was gone when the second prepare ran); the
    /// oldest record then keeps the name, every other create gives way, and all callers
    /// adopt the same container. The snapshot is left alone: the key is the oldest
    /// record's too.
    async fn hold_name(&self, name: &str, id: &str) -> Result<()> {
        // Unverified is better than failed: the record made is a good one.
        let Ok(named) = self.records_named(name).await else {
            return Ok(());
        };
        match named.first() {
            Some(oldest) if oldest.id != id => {
                let undo = self
                    .c
                    .request(DeleteContainerRequest { id: id.to_string() })?;
                ContainersClient::new(self.c.channel.clone())
                    .delete(undo)
                    .await
                    .map_err(map_status)?;
                tracing::debug!(container = %id, holder = %oldest.id, "name held by an older record, create undone");
                Err(Error::new(
                    ErrorKind::Conflict,
                    format!("the name {name} is in use by {}", oldest.id),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// A create's lease, until the create is over. Released after a failure, or dropped
/// because the caller gave up midway, it takes what the create prepared with it: the
/// snapshot its prepare made (found through the lease, so another create's snapshot of
/// the same name is never touched) unless a container record now holds it. Without
/// this, a cancelled create left a snapshot whose key is the name, and every retry was
/// `Conflict` until the lease expired.
struct CreateLease {
    engine: ContainerdEngine,
    lease: Option<Lease>,
}

impl CreateLease {
    fn new(engine: &ContainerdEngine, lease: Lease) -> Self {
        CreateLease {
            engine: engine.clone(),
            lease: Some(lease),
        }
    }

    fn id(&self) -> &str {
        self.lease.as_ref().map_or("", Lease::id)
    }

    /// Ends the lease; `made` is the container the create made, if it did.
    async fn release(mut self, made: Option<&str>) {
        if let Some(lease) = self.lease.take() {
            release_create(self.engine.clone(), lease, made.map(str::to_string)).await;
        }
    }
}

impl Drop for CreateLease {
    fn drop(&mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(release_create(self.engine.clone(), lease, None));
        }
    }
}

/// See [`CreateLease`]. A container record made before the caller gave up stays (a
/// create by the same name adopts it).
async fn release_create(engine: ContainerdEngine, lease: Lease, made: Option<String>) {
    if made.is_none() {
        match engine.c.leased_snapshots(lease.id()).await {
            Ok(keys) => {
                for key in keys {
                    let held = engine
                        .container(&key)
                        .await
                        .is_ok_and(|c| c.snapshot_key == key);
                    if held {
                        continue;
                    }
                    let remove = RemoveSnapshotRequest {
                        snapshotter: SNAPSHOTTER.to_string(),
                        key,
                    };
                    if let Ok(r) = engine.c.request(remove) {
                        let mut snapshots = SnapshotsClient::new(engine.c.channel.clone());
                        if let Err(e) = snapshots.remove(r).await {
                            tracing::debug!(error = %map_status(e), "snapshot of a failed create not removed");
                        }
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, lease = lease.id(), "cannot list what a failed create made");
            }
        }
    }
    lease.release().await;
}

pub(super) async fn remove(engine: &ContainerdEngine, id: &str, force: bool) -> Result<Removal> {
    let record = engine.container(id).await?;
    match engine.remove_record(&record, force).await {
        // Another caller's removal is under way (its kill closed the task's
        // connection, or it deleted what this one was about to): wait for it.
        Err(e) if e.kind() == ErrorKind::NotFound || e.message().contains("ttrpc: closed") => {
            Ok(Removal::InProgress)
        }
        other => other,
    }
}

pub(super) async fn inspect(engine: &ContainerdEngine, id: &str) -> Result<ContainerInfo> {
    let container = engine.container(id).await?;
    let id = container.id.as_str();
    let task = engine.task(id).await?;
    Ok(engine.info_of(&container, task.as_ref()))
}

pub(super) async fn list(engine: &ContainerdEngine, labels: &Labels) -> Result<Vec<ContainerInfo>> {
    let filter = labels
        .iter()
        .map(|(k, v)| format!("labels.\"{k}\"==\"{v}\""))
        .collect::<Vec<_>>()
        .join(",");
    let request = ListContainersRequest {
        filters: if filter.is_empty() {
            Vec::new()
        } else {
            vec![filter]
        },
    };
    let containers = ContainersClient::new(engine.c.channel.clone())
        .list(engine.c.request(request)?)
        .await
        .map_err(map_status)?
        .into_inner()
        .containers;
    // One task list for all of them, not a Get per container.
    let tasks = engine.tasks_by_container().await?;
    let mut out = Vec::new();
    for c in containers {
        out.push(engine.info_of(&c, tasks.get(&c.id)));
    }
    Ok(out)
}
