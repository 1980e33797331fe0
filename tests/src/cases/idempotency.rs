//! Cases 18-23: reaching the target state is success; create is idempotent by name.

use std::time::{Duration, Instant};

use container::labels::CONFIG_HASH_LABEL;
use container::{ContainerConfig, ContainerState, ErrorKind, ExecSpec, Labels, VolumeConfig};

use crate::ctx::{Ctx, SLACK};
use crate::failure::{expect_kind, Failure};
use crate::support::{exec_ok, running, sleeper, CASE_LABEL};
use crate::{ensure, ensure_eq};

fn selector(value: &str) -> Labels {
    let mut l = Labels::new();
    l.insert(CASE_LABEL.into(), value.into());
    l
}

/// Case 18: Start a running container → Ok; stop a stopped or never-started one → Ok.
pub async fn case_18_start_stop_twice(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 18).await?;
    m.start(&id).await?;
    ensure_eq!(
        m.inspect(&id).await?.state,
        ContainerState::Running,
        "state after starting a running container"
    );

    m.stop(&id, Some(Duration::from_secs(1))).await?;
    let stopped = m.inspect(&id).await?.state;
    ensure!(
        matches!(stopped, ContainerState::Exited(_)),
        "state after stop: {stopped:?}"
    );
    let started = Instant::now();
    m.stop(&id, Some(Duration::from_secs(1))).await?;
    let took = started.elapsed();
    ensure!(took < SLACK, "stopping a stopped container took {took:?}");
    ensure_eq!(
        m.inspect(&id).await?.state,
        stopped,
        "state after the second stop"
    );

    let created = ctx.name(18);
    t.container(created.clone());
    m.create(&sleeper(ctx, &created)).await?;
    m.stop(&created, Some(Duration::from_secs(1))).await?;
    ensure_eq!(
        m.inspect(&created).await?.state,
        ContainerState::Created,
        "state after stopping a never-started container"
    );
    Ok(())
}

/// Case 19: Remove a missing container → Ok; stop/start/exec/inspect it → `NotFound`.
pub async fn case_19_missing_container(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let missing = ctx.name(19);
    m.remove(&missing, false).await?;
    m.remove(&missing, true).await?;
    expect_kind(
        m.stop(&missing, Some(Duration::from_secs(1))).await,
        ErrorKind::NotFound,
        "stop of a missing container",
    )?;
    expect_kind(
        m.start(&missing).await,
        ErrorKind::NotFound,
        "start of a missing container",
    )?;
    expect_kind(
        m.exec(&missing, &ExecSpec::new(["true"])).await,
        ErrorKind::NotFound,
        "exec in a missing container",
    )?;
    expect_kind(
        m.inspect(&missing).await,
        ErrorKind::NotFound,
        "inspect of a missing container",
    )?;
    let hex_id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    expect_kind(
        m.inspect(hex_id).await,
        ErrorKind::NotFound,
        "inspect of a missing id",
    )?;
    Ok(())
}

/// Case 20: Create twice with the same name and config → the same id, one container.
pub async fn case_20_create_twice_same(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let name = ctx.name(20);
    let config = sleeper(ctx, &name).label(CASE_LABEL, &name);
    t.container(name.clone());
    let first = m.create(&config).await?;
    t.container(first.clone());
    let second = m.create(&config).await?;
    ensure_eq!(second, first, "id of the second create");

    // Also while it runs: create is a lookup, not a restart.
    m.start(&first).await?;
    let third = m.create(&config).await?;
    ensure_eq!(third, first, "id of create while running");
    ensure_eq!(
        m.inspect(&first).await?.state,
        ContainerState::Running,
        "state after the third create"
    );
    let listed = m.list(&selector(&name)).await?;
    ensure_eq!(listed.len(), 1, "containers with the case label");
    Ok(())
}

/// Case 21: Same name, different config → `Conflict`; the existing container is untouched.
pub async fn case_21_create_twice_different(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let name = ctx.name(21);
    let config = sleeper(ctx, &name).label(CASE_LABEL, &name);
    t.container(name.clone());
    let id = m.create(&config).await?;
    m.start(&id).await?;
    let before = m.inspect(&id).await?;

    let different = ContainerConfig::new(ctx.image())
        .name(&name)
        .cmd(["sleep", "3601"])
        .label(CASE_LABEL, &name);
    expect_kind(
        m.create(&different).await,
        ErrorKind::Conflict,
        "create with the same name and another command",
    )?;
    let env_differs = config.clone().env("EXTRA", "1");
    expect_kind(
        m.create(&env_differs).await,
        ErrorKind::Conflict,
        "create with the same name and another environment",
    )?;

    let after = m.inspect(&name).await?;
    ensure_eq!(after.id, before.id, "id after the refused creates");
    ensure_eq!(after.state, ContainerState::Running, "state");
    ensure_eq!(after.labels, before.labels, "labels");
    ensure!(
        after.labels.contains_key(CONFIG_HASH_LABEL),
        "no config hash label"
    );
    let cmdline = exec_ok(m, &id, &ExecSpec::new(["cat", "/proc/1/cmdline"])).await?;
    ensure_eq!(
        cmdline.stdout,
        b"sleep\x003600\x00".to_vec(),
        "PID 1 of the untouched container"
    );
    ensure_eq!(
        m.list(&selector(&name)).await?.len(),
        1,
        "containers with the case label"
    );
    Ok(())
}

/// Case 22: Remove, then create with the same name → succeeds (a new container).
pub async fn case_22_remove_then_create(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let name = ctx.name(22);
    let config = sleeper(ctx, &name);
    t.container(name.clone());
    let first = m.create(&config).await?;
    m.remove(&first, false).await?;
    let second = m.create(&config).await?;
    ensure!(second != first, "re-create returned the removed id {first}");
    let info = m.inspect(&name).await?;
    ensure_eq!(info.id, second, "inspect by name after re-create");
    ensure_eq!(info.state, ContainerState::Created, "state");
    Ok(())
}

/// Case 23: Create a volume twice → Ok, one volume; remove a missing volume → Ok.
pub async fn case_23_volume_twice(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let name = ctx.name(23);
    let mut config = VolumeConfig::new(&name);
    config.labels.insert(CASE_LABEL.into(), name.clone());
    t.volume(name.clone());
    let first = m.create_volume(&config).await?;
    let second = m.create_volume(&config).await?;
    ensure_eq!(first.name, name, "first volume name");
    ensure_eq!(second.name, name, "second volume name");
    ensure_eq!(second.labels, first.labels, "labels of the second create");
    ensure_eq!(
        m.list_volumes(&selector(&name)).await?.len(),
        1,
        "volumes with the case label"
    );
    m.remove_volume(&name, false).await?;
    expect_kind(
        m.inspect_volume(&name).await,
        ErrorKind::NotFound,
        "inspect of a removed volume",
    )?;
    m.remove_volume(&name, false).await?;
    m.remove_volume(&ctx.name(23), true).await?;
    Ok(())
}
