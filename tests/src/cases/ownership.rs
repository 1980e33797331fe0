//! Cases 50-53: ownership labels, listing by session, cleanup, foreign objects.
//!
//! Cases that call `cleanup` use managers of their own session (and, for owner-wide
//! cleanup, their own owner), so they never touch the objects of cases running in parallel.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use container::labels::{CONFIG_HASH_LABEL, OWNER_LABEL, SESSION_LABEL};
use container::{
    CleanupScope, ContainerConfig, ContainerInfo, ContainerManager, ContainerState, ErrorKind,
    Labels, Mount, VolumeConfig,
};

use crate::ctx::{Ctx, OWNER, SLACK};
use crate::failure::{expect_kind, Failure};
use crate::support::sleeper;
use crate::{ensure, ensure_eq};

fn names(list: &[ContainerInfo]) -> BTreeSet<String> {
    list.iter().map(|c| c.name.clone()).collect()
}

fn check_owned(labels: &Labels, m: &dyn ContainerManager, what: &str) -> Result<(), Failure> {
    ensure_eq!(
        labels.get(OWNER_LABEL).map(String::as_str),
        Some(m.ownership().owner()),
        "owner label of {what}"
    );
    ensure_eq!(
        labels.get(SESSION_LABEL).map(String::as_str),
        Some(m.ownership().session()),
        "session label of {what}"
    );
    Ok(())
}

/// Case 50: Every object carries the owner and session labels; a user label with the reserved
/// prefix → `InvalidInput`.
pub async fn case_50_labels_everywhere(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let name = ctx.name(50);
    t.container(name.clone());
    let id = m
        .create(&sleeper(ctx, &name).label("user", "label"))
        .await?;
    let info = m.inspect(&id).await?;
    check_owned(&info.labels, m, "a container")?;
    ensure!(
        info.labels.contains_key(CONFIG_HASH_LABEL),
        "no {CONFIG_HASH_LABEL} label on a container: {:?}",
        info.labels
    );
    let volume = ctx.name(50);
    t.volume(volume.clone());
    let created = m.create_volume(&VolumeConfig::new(&volume)).await?;
    check_owned(&created.labels, m, "the created volume")?;
    check_owned(&m.inspect_volume(&volume).await?.labels, m, "a volume")?;

    for key in [OWNER_LABEL, SESSION_LABEL, "io.container-rs.custom"] {
        let name = ctx.name(50);
        t.container(name.clone());
        expect_kind(
            m.create(&sleeper(ctx, &name).label(key, "mine")).await,
            ErrorKind::InvalidInput,
            &format!("create with the reserved label {key}"),
        )?;
        expect_kind(
            m.inspect(&name).await,
            ErrorKind::NotFound,
            "container after the refused create",
        )?;
        let volume = ctx.name(50);
        t.volume(volume.clone());
        let mut config = VolumeConfig::new(&volume);
        config.labels.insert(key.to_string(), "mine".to_string());
        expect_kind(
            m.create_volume(&config).await,
            ErrorKind::InvalidInput,
            &format!("create_volume with the reserved label {key}"),
        )?;
        expect_kind(
            m.inspect_volume(&volume).await,
            ErrorKind::NotFound,
            "volume after the refused create",
        )?;
    }
    Ok(())
}

async fn make(
    ctx: &Ctx,
    m: &Arc<dyn ContainerManager>,
    t: &mut crate::ctx::Tracker,
    start: bool,
) -> Result<String, Failure> {
    let name = ctx.name(51);
    t.container(name.clone());
    let id = m.create(&sleeper(ctx, &name)).await?;
    if start {
        m.start(&id).await?;
    }
    Ok(name)
}

/// Case 51: Listing by owner/session returns exactly this session's objects.
pub async fn case_51_list_by_session(ctx: &Ctx) -> Result<(), Failure> {
    let (m2, m3) = (
        ctx.isolated_manager(None).await?,
        ctx.isolated_manager(None).await?,
    );
    let (mut t2, mut t3) = (ctx.tracker_for(&m2), ctx.tracker_for(&m3));
    let mine = BTreeSet::from([
        make(ctx, &m2, &mut t2, false).await?,
        make(ctx, &m2, &mut t2, true).await?,
    ]);
    let theirs = make(ctx, &m3, &mut t3, true).await?;
    let volume = ctx.name(51);
    t2.volume(volume.clone());
    m2.create_volume(&VolumeConfig::new(&volume)).await?;
    let other_volume = ctx.name(51);
    t3.volume(other_volume.clone());
    m3.create_volume(&VolumeConfig::new(&other_volume)).await?;

    let session = m2.ownership().selector(CleanupScope::Session);
    ensure_eq!(
        names(&m2.list(&session).await?),
        mine,
        "containers listed by session"
    );
    let volumes: BTreeSet<String> = m2
        .list_volumes(&session)
        .await?
        .into_iter()
        .map(|v| v.name)
        .collect();
    ensure_eq!(
        volumes,
        BTreeSet::from([volume]),
        "volumes listed by session"
    );

    let owner = m2.ownership().selector(CleanupScope::Owner);
    let by_owner = m2.list(&owner).await?;
    let by_owner_names = names(&by_owner);
    ensure!(
        mine.is_subset(&by_owner_names) && by_owner_names.contains(&theirs),
        "listing by owner misses containers of the owner's sessions: {by_owner_names:?}"
    );
    ensure!(
        by_owner
            .iter()
            .all(|c| c.labels.get(OWNER_LABEL).map(String::as_str) == Some(OWNER)),
        "listing by owner returned a container of another owner"
    );
    let main_session = names(
        &ctx.manager()
            .list(&ctx.ownership().selector(CleanupScope::Session))
            .await?,
    );
    ensure!(
        main_session.is_disjoint(&mine) && !main_session.contains(&theirs),
        "the run's own session lists containers of other sessions"
    );
    Ok(())
}

/// Case 52: cleanup(session) removes running and stopped containers and volumes; a second call
/// is a no-op.
pub async fn case_52_cleanup_session(ctx: &Ctx) -> Result<(), Failure> {
    let m2 = ctx.isolated_manager(None).await?;
    let mut t = ctx.tracker_for(&m2);
    let (used, unused) = (ctx.name(52), ctx.name(52));
    for v in [&used, &unused] {
        t.volume(v.clone());
        m2.create_volume(&VolumeConfig::new(v)).await?;
    }
    let running = ctx.name(52);
    t.container(running.clone());
    let id = m2
        .create(&sleeper(ctx, &running).mount(Mount::volume(&used, "/v")))
        .await?;
    m2.start(&id).await?;
    let stopped = ctx.name(52);
    t.container(stopped.clone());
    let id = m2
        .create(
            &ContainerConfig::new(ctx.image())
                .name(&stopped)
                .cmd(["true"]),
        )
        .await?;
    m2.start(&id).await?;
    let code = tokio::time::timeout(Duration::from_secs(10) + SLACK, m2.wait(&id))
        .await
        .map_err(|_| Failure::new("wait hung"))??;
    ensure_eq!(code, 0, "exit code of the stopped container");
    let created = ctx.name(52);
    t.container(created.clone());
    m2.create(&sleeper(ctx, &created)).await?;
    ensure_eq!(
        m2.inspect(&running).await?.state,
        ContainerState::Running,
        "state of the running container"
    );

    let report = m2.cleanup(CleanupScope::Session).await?;
    ensure_eq!(report.containers.len(), 3, "containers removed: {report:?}");
    ensure_eq!(
        report.volumes.iter().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([used, unused]),
        "volumes removed"
    );
    let session = m2.ownership().selector(CleanupScope::Session);
    ensure!(
        m2.list(&session).await?.is_empty(),
        "containers left after cleanup"
    );
    ensure!(
        m2.list_volumes(&session).await?.is_empty(),
        "volumes left after cleanup"
    );
    for name in [&running, &stopped, &created] {
        expect_kind(
            m2.inspect(name).await,
            ErrorKind::NotFound,
            &format!("{name} after cleanup"),
        )?;
    }
    let again = m2.cleanup(CleanupScope::Session).await?;
    ensure!(
        again.containers.is_empty() && again.volumes.is_empty(),
        "the second cleanup removed something: {again:?}"
    );
    Ok(())
}

/// Case 53: A foreign container (made with the engine's CLI, unlabelled) survives every cleanup.
pub async fn case_53_foreign_survives(ctx: &Ctx) -> Result<(), Failure> {
    let cli = ctx.cli();
    let foreign = ctx.name(53);
    cli.create_foreign(&foreign, ctx.image(), &Default::default())
        .await?;
    let checked = foreign_checks(ctx, &foreign).await;
    let removed = cli.remove(&foreign).await;
    checked?;
    removed?;
    ensure!(
        !cli.exists(&foreign).await?,
        "the CLI did not remove {foreign}"
    );
    Ok(())
}

async fn foreign_checks(ctx: &Ctx, foreign: &str) -> Result<(), Failure> {
    let cli = ctx.cli();
    let owner = format!("{OWNER}-c53-{}", ctx.short_session());
    let m2 = ctx.isolated_manager(Some(&owner)).await?;
    let mut t = ctx.tracker_for(&m2);
    let own = ctx.name(53);
    t.container(own.clone());
    let id = m2.create(&sleeper(ctx, &own)).await?;
    m2.start(&id).await?;

    let seen = ctx.manager().inspect(foreign).await?;
    ensure!(
        !seen.labels.contains_key(OWNER_LABEL),
        "the foreign container carries an owner label: {:?}",
        seen.labels
    );

    let by_owner = m2.cleanup(CleanupScope::Owner).await?;
    ensure!(
        !by_owner
            .containers
            .iter()
            .any(|c| *c == seen.id || c == foreign),
        "cleanup(Owner) reports removing the foreign container: {by_owner:?}"
    );
    ensure_eq!(
        by_owner.containers.len(),
        1,
        "containers removed by cleanup(Owner)"
    );
    ensure!(
        cli.exists(foreign).await?,
        "the foreign container is gone after cleanup(Owner)"
    );
    expect_kind(
        m2.inspect(&own).await,
        ErrorKind::NotFound,
        "the owner's container after cleanup(Owner)",
    )?;

    let by_session = m2.cleanup(CleanupScope::Session).await?;
    ensure!(
        by_session.containers.is_empty(),
        "cleanup(Session) after cleanup(Owner) removed {by_session:?}"
    );
    ensure!(
        cli.exists(foreign).await?,
        "the foreign container is gone after cleanup(Session)"
    );
    let state = ctx.manager().inspect(foreign).await?.state;
    ensure_eq!(
        state,
        ContainerState::Running,
        "state of the foreign container"
    );
    Ok(())
}
