//! Cases 57-60 and 90: real concurrency with `tokio::spawn` and `join_all`.

use std::time::{Duration, Instant};

use container::{ContainerConfig, ContainerState, ErrorKind, ExecSpec, Labels, PullOptions};
use futures::future::join_all;

use crate::ctx::{Ctx, SLACK};
use crate::failure::{describe, expect_kind, Failure};
use crate::support::{run_config, running, sleeper, split_image, wait_present, CASE_LABEL};
use crate::{ensure, ensure_eq, fail};

/// Awaits spawned tasks; a panicked task is a failure.
async fn joined<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Result<Vec<T>, Failure> {
    let mut out = Vec::with_capacity(handles.len());
    for (i, r) in join_all(handles).await.into_iter().enumerate() {
        match r {
            Ok(v) => out.push(v),
            Err(e) => fail!("task {i} failed: {e}"),
        }
    }
    Ok(out)
}

/// Case 57: 8 parallel creates with one name → one container, every caller gets the same id.
pub async fn case_57_parallel_create(ctx: &Ctx) -> Result<(), Failure> {
    let mut t = ctx.tracker();
    let name = ctx.name(57);
    t.container(name.clone());
    let config = sleeper(ctx, &name).label(CASE_LABEL, &name);
    let handles = (0..8)
        .map(|_| {
            let (m, config) = (ctx.manager_arc(), config.clone());
            tokio::spawn(async move { m.create(&config).await })
        })
        .collect();
    let results = joined(handles).await?;
    let mut ids = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(id) => ids.push(id),
            Err(e) => fail!("create #{i} of 8 failed: {}", describe(&e)),
        }
    }
    ensure!(
        ids.iter().all(|id| *id == ids[0]),
        "parallel creates returned different ids: {ids:?}"
    );
    let mut selector = Labels::new();
    selector.insert(CASE_LABEL.into(), name.clone());
    let listed = ctx.manager().list(&selector).await?;
    ensure_eq!(listed.len(), 1, "containers after 8 parallel creates");
    ensure_eq!(listed[0].id, ids[0], "the one container's id");
    Ok(())
}

/// Case 58: 16 parallel execs in one container → each gets exactly its own output.
pub async fn case_58_parallel_exec(ctx: &Ctx) -> Result<(), Failure> {
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 58).await?;
    let handles = (0..16)
        .map(|n| {
            let (m, id) = (ctx.manager_arc(), id.clone());
            let script = format!(
                "i=0; while [ $i -lt 300 ]; do echo out-{n}-$i; echo err-{n}-$i >&2; \
                 i=$((i+1)); done; exit {n}"
            );
            tokio::spawn(async move { m.exec(&id, &ExecSpec::shell(script)).await })
        })
        .collect();
    let results = joined(handles).await?;
    for (n, r) in results.into_iter().enumerate() {
        let out = r.map_err(|e| Failure::new(format!("exec #{n}: {}", describe(&e))))?;
        let expected = |p: &str| {
            (0..300)
                .map(|i| format!("{p}-{n}-{i}\n"))
                .collect::<String>()
        };
        ensure_eq!(out.exit_code, n as i64, "exit code of exec #{n}");
        ensure!(
            out.stdout_lossy() == expected("out"),
            "stdout of exec #{n} is not exactly its own: {:?}",
            out.stdout_lossy()
        );
        ensure!(
            out.stderr_lossy() == expected("err"),
            "stderr of exec #{n} is not exactly its own: {:?}",
            out.stderr_lossy()
        );
    }
    Ok(())
}

/// Case 59: 4 parallel removes of one container → all Ok.
pub async fn case_59_parallel_remove(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let running_id = running(ctx, &mut t, 59).await?;
    let stopped = ctx.name(59);
    let stopped_id = run_config(
        ctx,
        &mut t,
        &ContainerConfig::new(ctx.image())
            .name(&stopped)
            .cmd(["true"]),
    )
    .await?;
    tokio::time::timeout(Duration::from_secs(10) + SLACK, m.wait(&stopped_id))
        .await
        .map_err(|_| Failure::new("wait hung"))??;

    for (id, force) in [(running_id, true), (stopped_id, false)] {
        let handles = (0..4)
            .map(|_| {
                let (m, id) = (ctx.manager_arc(), id.clone());
                tokio::spawn(async move { m.remove(&id, force).await })
            })
            .collect();
        for (i, r) in joined(handles).await?.into_iter().enumerate() {
            if let Err(e) = r {
                fail!("remove #{i} of 4 (force {force}) failed: {}", describe(&e));
            }
        }
        expect_kind(
            m.inspect(&id).await,
            ErrorKind::NotFound,
            "inspect after parallel removes",
        )?;
    }
    Ok(())
}

/// Case 60: Stop racing running execs → each exec returns (an exit status or `Conflict`);
/// nothing hangs.
pub async fn case_60_stop_races_exec(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 60).await?;
    let execs: Vec<_> = (0..3)
        .map(|n| {
            let (m, id) = (ctx.manager_arc(), id.clone());
            let spec = ExecSpec::shell(format!("echo started; sleep {}", 60 + n));
            tokio::spawn(async move { m.exec(&id, &spec).await })
        })
        .collect();
    for n in 0..3 {
        wait_present(
            m,
            &id,
            &format!("sleep {}", 60 + n),
            Duration::from_secs(10),
        )
        .await?;
    }
    // Late racers: execs that start while the stop is under way.
    let late: Vec<_> = (0..3)
        .map(|_| {
            let (m, id) = (ctx.manager_arc(), id.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                m.exec(&id, &ExecSpec::shell("sleep 70")).await
            })
        })
        .collect();
    let grace = Duration::from_secs(1);
    let started = Instant::now();
    m.stop(&id, Some(grace)).await?;
    let took = started.elapsed();
    ensure!(
        took <= grace + SLACK,
        "stop with running execs took {took:?}"
    );

    let within = grace + SLACK + SLACK;
    let all = execs.into_iter().chain(late);
    let outcomes = tokio::time::timeout(within, joined(all.collect()))
        .await
        .map_err(|_| Failure::new(format!("an exec still hangs {within:?} after the stop")))??;
    for (i, r) in outcomes.into_iter().enumerate() {
        match r {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Conflict => {}
            Err(e) => fail!(
                "exec #{i} racing a stop returned neither an exit status nor Conflict: {}",
                describe(&e)
            ),
        }
    }
    let state = m.inspect(&id).await?.state;
    ensure!(
        matches!(state, ContainerState::Exited(_)),
        "state after the stop: {state:?}"
    );
    Ok(())
}

/// Case 90: 4 pulls of one absent image at once all succeed, and what they made runs.
/// (A build farm's runners start together and pull the same build image: an engine that
/// fetches into one shared write per blob must wait for it, not fail.) The image is the
/// harness's `container-rs/layers:1` (busybox and 8 layers of 4 MiB): writes that take
/// long enough to overlap. No other case uses it.
pub async fn case_90_parallel_pulls(ctx: &Ctx) -> Result<(), Failure> {
    let (host, _) = split_image(ctx.image())?;
    let image = format!("{host}/container-rs/layers:1");
    let mut t = ctx.tracker();
    for round in 1..=3 {
        ctx.manager().remove_image(&image, true).await?;
        let handles = (0..4)
            .map(|_| {
                let (m, image) = (ctx.manager_arc(), image.clone());
                tokio::spawn(async move { m.pull(&image, &PullOptions::default()).await })
            })
            .collect();
        for (i, r) in joined(handles).await?.into_iter().enumerate() {
            if let Err(e) = r {
                fail!(
                    "round {round}: pull {i} of 4 at once failed: {}",
                    describe(&e)
                );
            }
        }
        ensure!(
            ctx.manager().image_exists(&image).await?,
            "round {round}: {image} missing after 4 pulls at once"
        );
    }
    let m = ctx.manager();
    let config = ContainerConfig::new(&image)
        .name(ctx.name(90))
        .cmd(["true"]);
    let id = run_config(ctx, &mut t, &config).await?;
    let code = tokio::time::timeout(Duration::from_secs(30), m.wait(&id))
        .await
        .map_err(|_| Failure::new("wait hung for 30 s"))??;
    ensure_eq!(code, 0, "exit code of `true` in the image 4 pulls made");
    m.remove(&id, true).await?;
    m.remove_image(&image, true).await?;
    Ok(())
}
