//! Cases 8-17: create, start, exit codes, stop, remove, logs.

use std::time::{Duration, Instant};

use container::{ContainerConfig, ContainerState, ErrorKind, ExecSpec, Labels, LogOptions};

use crate::ctx::{Ctx, SLACK};
use crate::failure::{expect_kind, Failure};
use crate::support::{
    check_labels, exec_ok, logs, read_logs, run_config, running, wait_for_log, CASE_LABEL,
};
use crate::{ensure, ensure_eq};

/// `wait` with a bound, so a broken wait fails instead of hanging.
async fn wait_exit(ctx: &Ctx, id: &str, within: Duration) -> Result<i64, Failure> {
    match tokio::time::timeout(within, ctx.manager().wait(id)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(Failure::new(format!("wait({id}) hung for {within:?}"))),
    }
}

/// Case 8: Create → Created; labels come back exactly from inspect and list.
pub async fn case_08_create_and_labels(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let name = ctx.name(8);
    let config = ContainerConfig::new(ctx.image())
        .name(&name)
        .cmd(["sleep", "3600"])
        .label(CASE_LABEL, &name)
        .label("com.example.purpose", "conformance test: labels")
        .label("empty-value", "");
    t.container(name.clone());
    let id = m.create(&config).await?;

    let info = m.inspect(&id).await?;
    ensure_eq!(info.state, ContainerState::Created, "state after create");
    ensure_eq!(info.id, id, "inspect(id).id");
    ensure_eq!(info.name, name, "inspect name");
    ensure_eq!(info.image, ctx.image(), "inspect image");
    check_labels(ctx, &info.labels, &config.labels, "inspect")?;

    let by_name = m.inspect(&name).await?;
    ensure_eq!(by_name.id, id, "inspect by name");

    let mut selector = Labels::new();
    selector.insert(CASE_LABEL.into(), name.clone());
    let listed = m.list(&selector).await?;
    ensure_eq!(listed.len(), 1, "containers listed by the case label");
    ensure_eq!(listed[0].id, id, "listed id");
    ensure_eq!(listed[0].name, name, "listed name");
    ensure_eq!(listed[0].state, ContainerState::Created, "listed state");
    ensure_eq!(listed[0].labels, info.labels, "labels from list vs inspect");
    Ok(())
}

/// Case 9: Start → Running.
pub async fn case_09_start(ctx: &Ctx) -> Result<(), Failure> {
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 9).await?;
    let info = ctx.manager().inspect(&id).await?;
    ensure_eq!(info.state, ContainerState::Running, "state after start");
    let out = exec_ok(
        ctx.manager(),
        &id,
        &ExecSpec::new(["cat", "/proc/1/cmdline"]),
    )
    .await?;
    ensure_eq!(
        out.stdout,
        b"sleep\x003600\x00".to_vec(),
        "PID 1's command line"
    );
    Ok(())
}

/// Case 10: Exit 123 → inspect reports Exited(123); `wait` returns 123.
pub async fn case_10_exit_code(ctx: &Ctx) -> Result<(), Failure> {
    let mut t = ctx.tracker();
    let name = ctx.name(10);
    let config =
        ContainerConfig::new(ctx.image())
            .name(&name)
            .cmd(["sh", "-c", "sleep 0.5; exit 123"]);
    let id = run_config(ctx, &mut t, &config).await?;
    let code = wait_exit(ctx, &id, Duration::from_secs(10) + SLACK).await?;
    ensure_eq!(code, 123, "wait");
    let info = ctx.manager().inspect(&id).await?;
    ensure_eq!(info.state, ContainerState::Exited(123), "state after exit");
    // wait on an exited container returns the same code at once.
    let again = wait_exit(ctx, &id, SLACK).await?;
    ensure_eq!(again, 123, "second wait");
    Ok(())
}

/// Case 11: Stop with 2 s grace, PID 1 ignoring SIGTERM → returns after the grace (+ slack),
/// exit 137.
pub async fn case_11_stop_grace_kill(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let name = ctx.name(11);
    let config = ContainerConfig::new(ctx.image()).name(&name).cmd([
        "sh",
        "-c",
        "trap '' TERM; echo ready; while true; do sleep 1; done",
    ]);
    let id = run_config(ctx, &mut t, &config).await?;
    wait_for_log(m, &id, "ready", Duration::from_secs(10)).await?;
    let grace = Duration::from_secs(2);
    let started = Instant::now();
    m.stop(&id, Some(grace)).await?;
    let took = started.elapsed();
    ensure!(
        took >= grace - Duration::from_millis(500),
        "stop returned after {took:?}: the process was killed before its {grace:?} grace"
    );
    ensure!(
        took <= grace + SLACK,
        "stop took {took:?} (grace {grace:?}, slack {SLACK:?})"
    );
    let info = m.inspect(&id).await?;
    ensure_eq!(info.state, ContainerState::Exited(137), "state after stop");
    Ok(())
}

/// Case 12: Stop where PID 1 traps SIGTERM → the handler runs (leaves a marker), exits promptly.
pub async fn case_12_stop_trapped_term(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let name = ctx.name(12);
    let config = ContainerConfig::new(ctx.image()).name(&name).cmd([
        "sh",
        "-c",
        "trap 'echo trapped-term; exit 0' TERM; echo ready; while true; do sleep 0.1; done",
    ]);
    let id = run_config(ctx, &mut t, &config).await?;
    wait_for_log(m, &id, "ready", Duration::from_secs(10)).await?;
    let started = Instant::now();
    m.stop(&id, Some(Duration::from_secs(20))).await?;
    let took = started.elapsed();
    ensure!(
        took < SLACK,
        "stop of a process that exits on SIGTERM took {took:?} (grace 20 s)"
    );
    let (out, _) = logs(m, &id).await?;
    ensure!(
        String::from_utf8_lossy(&out).contains("trapped-term"),
        "the SIGTERM handler did not run: logs {:?}",
        String::from_utf8_lossy(&out)
    );
    ensure_eq!(
        m.inspect(&id).await?.state,
        ContainerState::Exited(0),
        "state after stop"
    );
    Ok(())
}

/// Case 13: A configured stop signal is delivered instead of SIGTERM.
pub async fn case_13_stop_signal(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let name = ctx.name(13);
    let config = ContainerConfig::new(ctx.image())
        .name(&name)
        .cmd([
            "sh",
            "-c",
            "trap 'echo got-usr1; exit 0' USR1; trap 'echo got-term; exit 0' TERM; \
             echo ready; while true; do sleep 0.1; done",
        ])
        .stop_signal(container::Signal::USR1);
    let id = run_config(ctx, &mut t, &config).await?;
    wait_for_log(m, &id, "ready", Duration::from_secs(10)).await?;
    let started = Instant::now();
    m.stop(&id, Some(Duration::from_secs(20))).await?;
    let took = started.elapsed();
    let (out, _) = logs(m, &id).await?;
    let out = String::from_utf8_lossy(&out).into_owned();
    ensure!(
        out.contains("got-usr1") && !out.contains("got-term"),
        "stop did not deliver SIGUSR1 (instead of SIGTERM): logs {out:?}"
    );
    ensure!(took < SLACK, "stop took {took:?}");
    ensure_eq!(
        m.inspect(&id).await?.state,
        ContainerState::Exited(0),
        "state after stop"
    );
    Ok(())
}

/// Case 14: Start again after stop → Running.
pub async fn case_14_restart(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 14).await?;
    m.stop(&id, Some(Duration::from_secs(1))).await?;
    let state = m.inspect(&id).await?.state;
    ensure!(
        matches!(state, ContainerState::Exited(_)),
        "state after stop: {state:?}"
    );
    m.start(&id).await?;
    ensure_eq!(
        m.inspect(&id).await?.state,
        ContainerState::Running,
        "state after the second start"
    );
    let out = exec_ok(m, &id, &ExecSpec::new(["echo", "-n", "again"])).await?;
    ensure_eq!(out.stdout, b"again".to_vec(), "exec after restart");
    Ok(())
}

/// Case 15: Remove a stopped or a created container → gone (inspect: `NotFound`).
pub async fn case_15_remove_stopped(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();

    let created = ctx.name(15);
    t.container(created.clone());
    m.create(
        &ContainerConfig::new(ctx.image())
            .name(&created)
            .cmd(["true"]),
    )
    .await?;
    m.remove(&created, false).await?;
    expect_kind(
        m.inspect(&created).await,
        ErrorKind::NotFound,
        "inspect of a removed created container",
    )?;

    let stopped = ctx.name(15);
    let id = run_config(
        ctx,
        &mut t,
        &ContainerConfig::new(ctx.image())
            .name(&stopped)
            .cmd(["true"]),
    )
    .await?;
    wait_exit(ctx, &id, Duration::from_secs(10) + SLACK).await?;
    m.remove(&id, false).await?;
    expect_kind(
        m.inspect(&id).await,
        ErrorKind::NotFound,
        "inspect of a removed stopped container",
    )?;
    expect_kind(
        m.inspect(&stopped).await,
        ErrorKind::NotFound,
        "inspect by name of a removed stopped container",
    )?;
    Ok(())
}

/// Case 16: Remove running without force → `Conflict`; with force → gone.
pub async fn case_16_remove_running(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 16).await?;
    expect_kind(
        m.remove(&id, false).await,
        ErrorKind::Conflict,
        "remove of a running container without force",
    )?;
    ensure_eq!(
        m.inspect(&id).await?.state,
        ContainerState::Running,
        "state after the refused remove"
    );
    m.remove(&id, true).await?;
    expect_kind(
        m.inspect(&id).await,
        ErrorKind::NotFound,
        "inspect after force remove",
    )?;
    Ok(())
}

/// Case 17: The main process's stdout and stderr stream, following, from the start.
pub async fn case_17_logs_follow(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let name = ctx.name(17);
    let config = ContainerConfig::new(ctx.image()).name(&name).cmd([
        "sh",
        "-c",
        "echo out1; echo err1 >&2; sleep 1; echo out2; echo err2 >&2; sleep 1; echo done",
    ]);
    let id = run_config(ctx, &mut t, &config).await?;
    let options = LogOptions::follow();
    let (out, err) = read_logs(m, &id, &options, Duration::from_secs(10) + SLACK).await?;
    ensure_eq!(
        String::from_utf8_lossy(&out),
        "out1\nout2\ndone\n",
        "followed stdout (from the start, to the end)"
    );
    ensure_eq!(
        String::from_utf8_lossy(&err),
        "err1\nerr2\n",
        "followed stderr"
    );
    Ok(())
}
