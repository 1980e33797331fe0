//! Cases 47-49: named volumes.

use std::collections::BTreeSet;
use std::time::Duration;

use container::{CleanupScope, ContainerConfig, ErrorKind, Labels, Mount, VolumeConfig};

use crate::ctx::{Ctx, SLACK};
use crate::failure::{expect_kind, Failure};
use crate::support::{check_labels, run_config, sh, sleeper, CASE_LABEL};
use crate::{ensure, ensure_eq};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Case 47: Volume labels round-trip; list filters by label.
pub async fn case_47_labels_and_filter(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let group = ctx.name(47);
    let (red, blue) = (ctx.name(47), ctx.name(47));
    let mut red_config = VolumeConfig::new(red.clone());
    red_config.labels = labels(&[
        (CASE_LABEL, &group),
        ("color", "red"),
        ("com.example.note", "two words"),
    ]);
    let mut blue_config = VolumeConfig::new(blue.clone());
    blue_config.labels = labels(&[(CASE_LABEL, &group), ("color", "blue")]);
    for c in [&red_config, &blue_config] {
        t.volume(c.name.clone());
        m.create_volume(c).await?;
    }

    let info = m.inspect_volume(&red).await?;
    ensure_eq!(info.name, red, "inspected volume name");
    check_labels(ctx, &info.labels, &red_config.labels, "inspect_volume")?;

    let names =
        |v: Vec<container::VolumeInfo>| v.into_iter().map(|v| v.name).collect::<BTreeSet<_>>();
    ensure_eq!(
        names(m.list_volumes(&labels(&[(CASE_LABEL, &group)])).await?),
        BTreeSet::from([red.clone(), blue.clone()]),
        "volumes of the group"
    );
    let reds = m
        .list_volumes(&labels(&[(CASE_LABEL, &group), ("color", "red")]))
        .await?;
    ensure_eq!(reds.len(), 1, "red volumes of the group");
    ensure_eq!(reds[0].name, red, "the red volume");
    ensure_eq!(reds[0].labels, info.labels, "labels from list vs inspect");
    ensure!(
        m.list_volumes(&labels(&[(CASE_LABEL, &ctx.name(47)), ("color", "red")]))
            .await?
            .is_empty(),
        "a filter on an unused label value matched volumes"
    );
    Ok(())
}

/// Case 48: Data written to a named volume is seen by a second container.
pub async fn case_48_shared_data(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let volume = ctx.name(48);
    t.volume(volume.clone());
    m.create_volume(&VolumeConfig::new(&volume)).await?;

    let writer = ctx.name(48);
    let config = ContainerConfig::new(ctx.image())
        .name(&writer)
        .cmd(["sh", "-c", "echo shared-data > /v/file"])
        .mount(Mount::volume(&volume, "/v"));
    let id = run_config(ctx, &mut t, &config).await?;
    let code = tokio::time::timeout(Duration::from_secs(10) + SLACK, m.wait(&id))
        .await
        .map_err(|_| Failure::new("wait hung"))??;
    ensure_eq!(code, 0, "writer exit code");
    m.remove(&id, false).await?;

    let reader = ctx.name(48);
    let config = sleeper(ctx, &reader).mount(Mount::volume(&volume, "/v").read_only());
    let id = run_config(ctx, &mut t, &config).await?;
    ensure_eq!(
        sh(m, &id, "cat /v/file").await?,
        "shared-data\n",
        "data seen by the second container"
    );
    Ok(())
}

/// Case 49: Removing a volume in use → `Conflict`; cleanup removes it after its container.
pub async fn case_49_in_use(ctx: &Ctx) -> Result<(), Failure> {
    let m2 = ctx.isolated_manager(None).await?;
    let mut t = ctx.tracker_for(&m2);
    let volume = ctx.name(49);
    t.volume(volume.clone());
    m2.create_volume(&VolumeConfig::new(&volume)).await?;
    let name = ctx.name(49);
    t.container(name.clone());
    let id = m2
        .create(&sleeper(ctx, &name).mount(Mount::volume(&volume, "/v")))
        .await?;
    m2.start(&id).await?;

    expect_kind(
        m2.remove_volume(&volume, false).await,
        ErrorKind::Conflict,
        "remove of a volume a running container uses",
    )?;
    m2.inspect_volume(&volume).await?;

    let report = m2.cleanup(CleanupScope::Session).await?;
    ensure_eq!(
        report.containers.len(),
        1,
        "containers removed by cleanup: {report:?}"
    );
    ensure_eq!(
        report.volumes,
        vec![volume.clone()],
        "volumes removed by cleanup"
    );
    expect_kind(
        m2.inspect_volume(&volume).await,
        ErrorKind::NotFound,
        "inspect_volume after cleanup",
    )?;
    expect_kind(
        m2.inspect(&id).await,
        ErrorKind::NotFound,
        "inspect of the container after cleanup",
    )?;
    Ok(())
}
