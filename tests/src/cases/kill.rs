//! Cases 68-70: an exec kill reaches the exec and nothing else. A build tool keeps one
//! long-lived container (an init as PID 1, `sleep infinity`) and runs every step with
//! exec; a step that times out or is dropped must end that step's processes only.

use std::time::{Duration, Instant};

use container::exec::DEFAULT_KILL_GRACE;
use container::{ContainerConfig, ContainerInfo, ContainerManager, ErrorKind, ExecSpec};

use crate::ctx::{Ctx, Tracker, SLACK};
use crate::failure::{describe, expect_kind, Failure};
use crate::support::{processes, run_config, wait_gone};
use crate::{ensure, ensure_eq, fail};

/// A build container: `sleep infinity` under an init (when the backend has one), which
/// forwards SIGTERM: a stray signal to PID 1 ends the container.
pub(crate) async fn build_container(
    ctx: &Ctx,
    t: &mut Tracker,
    case: u32,
    cmd: &[&str],
) -> Result<(String, ContainerInfo), Failure> {
    let config = ContainerConfig::new(ctx.image())
        .name(ctx.name(case))
        .cmd(cmd.iter().copied())
        .init(ctx.capabilities().init);
    let id = run_config(ctx, t, &config).await?;
    let info = ctx.manager().inspect(&id).await?;
    ensure!(
        info.state.is_running(),
        "build container not running: {info:?}"
    );
    ensure!(info.pid.is_some(), "inspect reports no main PID: {info:?}");
    ensure!(
        info.started_at.is_some(),
        "inspect reports no start time: {info:?}"
    );
    Ok((id, info))
}

/// The container still runs with the same main process (same PID, same start time).
pub(crate) async fn same_main_process(
    m: &dyn ContainerManager,
    id: &str,
    before: &ContainerInfo,
) -> Result<(), Failure> {
    let after = m.inspect(id).await?;
    ensure!(
        after.state.is_running(),
        "the build container died: {:?} (before: {:?})",
        after.state,
        before.state
    );
    ensure_eq!(after.pid, before.pid, "main PID of the build container");
    ensure_eq!(
        after.started_at,
        before.started_at,
        "start time of the build container's main process"
    );
    Ok(())
}

/// PIDs in `ps` output (first column), header skipped.
fn pids(ps: &str) -> Vec<String> {
    let mut pids: Vec<String> = ps
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    pids.sort();
    pids
}

/// Case 68: a build container with an init as PID 1 survives 60 execs timing out at
/// 300 ms (10 that never end, 50 that end right around the deadline), then one that
/// ignores SIGTERM; every timed-out exec is `Timeout` and is gone.
pub async fn case_68_build_container_survives_exec_timeouts(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let (id, before) = build_container(ctx, &mut t, 68, &["sleep", "infinity"]).await?;
    let timeout = Duration::from_millis(300);

    for i in 0..10 {
        let spec = ExecSpec::new(["sleep", "100"]).timeout(timeout);
        expect_kind(
            m.exec(&id, &spec).await,
            ErrorKind::Timeout,
            &format!("exec {i} of sleep 100 with a 300 ms timeout"),
        )?;
    }
    let (mut finished, mut timed_out) = (0, 0);
    for step in 0..50u32 {
        let secs = format!("{:.3}", 0.200 + f64::from(step) * 0.002);
        let spec = ExecSpec::new(["sleep", secs.as_str()]).timeout(timeout);
        match m.exec(&id, &spec).await {
            Ok(out) => {
                ensure_eq!(
                    out.exit_code,
                    0,
                    "exit of sleep {secs} that beat its deadline"
                );
                finished += 1;
            }
            Err(e) if e.kind() == ErrorKind::Timeout => timed_out += 1,
            Err(e) => fail!("exec sleep {secs} racing its timeout: {}", describe(&e)),
        }
    }
    same_main_process(m, &id, &before).await?;

    let grace = DEFAULT_KILL_GRACE;
    let spec = ExecSpec::shell("trap '' TERM; sleep 1068")
        .timeout(Duration::from_secs(1))
        .kill_grace(grace);
    let started = Instant::now();
    expect_kind(
        m.exec(&id, &spec).await,
        ErrorKind::Timeout,
        "exec ignoring SIGTERM with a 1 s timeout",
    )?;
    let took = started.elapsed();
    ensure!(
        took <= Duration::from_secs(1) + grace + SLACK,
        "the TERM-ignoring exec ended after {took:?} (timeout 1 s, grace {grace:?}, slack {SLACK:?})"
    );
    wait_gone(m, &id, "sleep 1068", SLACK).await?;
    wait_gone(m, &id, "sleep 100", SLACK).await?;
    same_main_process(m, &id, &before).await.map_err(|f| {
        f.context(format!(
            "after {finished} finished and {timed_out} timed-out racing execs"
        ))
    })
}

/// Case 69: timing out and dropping execs in container A leaves every process of
/// container B alive (its main process and its children).
pub async fn case_69_other_containers_untouched(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let (a, a_before) = build_container(ctx, &mut t, 69, &["sleep", "infinity"]).await?;
    let (b, b_before) = build_container(
        ctx,
        &mut t,
        69,
        &["sh", "-c", "sleep 1069 & exec sleep infinity"],
    )
    .await?;
    let b_ps = processes(m, &b).await?;
    // The `ps` exec shows itself, differently each time: compare the rest.
    let b_procs: Vec<&str> = b_ps
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().last() != Some("ps"))
        .collect();
    ensure!(
        b_procs.iter().any(|l| l.contains("sleep 1069")),
        "container B's child is not running:\n{b_ps}"
    );

    let timeout = Duration::from_millis(300);
    for step in 0..20u32 {
        let secs = format!("{:.3}", 0.250 + f64::from(step) * 0.005);
        let spec = ExecSpec::new(["sleep", secs.as_str()]).timeout(timeout);
        match m.exec(&a, &spec).await {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Timeout => {}
            Err(e) => fail!("exec sleep {secs} in A: {}", describe(&e)),
        }
    }
    for delay_ms in [0u64, 20, 60, 150, 300] {
        let spec = ExecSpec::new(["sleep", "1169"]);
        tokio::select! {
            r = m.exec(&a, &spec) => fail!("exec in A returned: {r:?}"),
            () = tokio::time::sleep(Duration::from_millis(delay_ms)) => {}
        }
    }
    wait_gone(m, &a, "sleep 1169", DEFAULT_KILL_GRACE + SLACK).await?;
    same_main_process(m, &a, &a_before).await?;
    same_main_process(m, &b, &b_before).await?;

    let b_after = processes(m, &b).await?;
    let after = pids(&b_after);
    for line in b_procs {
        let pid = line.split_whitespace().next().unwrap_or_default();
        ensure!(
            after.iter().any(|p| p == pid),
            "process {line:?} of container B is gone:\nbefore:\n{b_ps}\nafter:\n{b_after}"
        );
    }
    Ok(())
}

/// Case 70: an exec that forks a background child and times out leaves no process of
/// that exec behind.
pub async fn case_70_exec_children_killed(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let (id, before) = build_container(ctx, &mut t, 70, &["sleep", "infinity"]).await?;
    let spec = ExecSpec::shell("sleep 1070 & exec sleep 1071").timeout(Duration::from_secs(1));
    let started = Instant::now();
    expect_kind(
        m.exec(&id, &spec).await,
        ErrorKind::Timeout,
        "exec with a background child and a 1 s timeout",
    )?;
    let took = started.elapsed();
    ensure!(
        took <= Duration::from_secs(1) + SLACK,
        "Timeout after {took:?} (timeout 1 s, slack {SLACK:?})"
    );
    wait_gone(m, &id, "sleep 1071", SLACK).await?;
    wait_gone(m, &id, "sleep 1070", SLACK)
        .await
        .map_err(|f| f.context("the exec's background child outlived it"))?;
    same_main_process(m, &id, &before).await
}
