//! Cases 71-75: what real build steps do to an exec (`docker exec` is the reference).
//! A step may leave a background child holding its output, redirect its own output and
//! keep working, or daemonize (a BitBake server); its consumer may stop reading; it may
//! time out or be dropped midway through its kill. The end of an exec is its process's
//! exit, and a cancelled step ends everything it started, nothing else.

use std::time::{Duration, Instant};

use container::exec::{DEFAULT_KILL_GRACE, EXIT_DRAIN};
use container::{ErrorKind, ExecSpec};
use futures::StreamExt;

use crate::cases::kill::{build_container, same_main_process};
use crate::ctx::{Ctx, SLACK};
use crate::failure::{describe, expect_kind, Failure};
use crate::support::{matching_processes, processes, running, sh, wait_gone, wait_present};
use crate::{ensure, ensure_eq, fail};

/// A bound for an exec that should end by itself well before it: a defect then fails
/// the case instead of hanging the run.
const BOUND: Duration = Duration::from_secs(40);

/// Case 71: a step that leaves a background child holding its stdout ends with its own
/// exit code within the exit drain (plus slack); the child is left running.
pub async fn case_71_background_child_holds_output(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 71).await?;
    let spec = ExecSpec::shell("sleep 2071 & echo ok; exit 3");
    let started = Instant::now();
    let out = match tokio::time::timeout(BOUND, m.exec(&id, &spec)).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => fail!("exec leaving a background child: {}", describe(&e)),
        Err(_) => fail!("exec leaving a background child still runs after {BOUND:?}"),
    };
    let took = started.elapsed();
    ensure_eq!(out.exit_code, 3, "exit code of the step");
    ensure_eq!(out.stdout_lossy(), "ok\n", "stdout of the step");
    ensure!(
        took <= EXIT_DRAIN + SLACK,
        "the step ended after {took:?} (exit drain {EXIT_DRAIN:?}, slack {SLACK:?})"
    );
    wait_present(m, &id, "sleep 2071", SLACK)
        .await
        .map_err(|f| f.context("a finished step's background child must be left running"))
}

/// Case 72: a step that redirects its own output and keeps working runs to its end and
/// reports its exit code; it is never a `Timeout` when no timeout was asked for.
pub async fn case_72_redirected_output_runs_to_end(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 72).await?;
    let work = Duration::from_secs(12);
    let spec = ExecSpec::shell(format!(
        "exec >/tmp/c72.log 2>&1; sleep {}; echo done; exit 4",
        work.as_secs()
    ));
    let started = Instant::now();
    let out = match tokio::time::timeout(work + BOUND, m.exec(&id, &spec)).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => fail!("exec redirecting its own output: {}", describe(&e)),
        Err(_) => fail!(
            "exec redirecting its own output still runs after {:?}",
            work + BOUND
        ),
    };
    let took = started.elapsed();
    ensure_eq!(out.exit_code, 4, "exit code of the step");
    ensure!(
        took >= work,
        "the step was reported ended after {took:?}, before its {work:?} of work"
    );
    ensure!(out.stdout.is_empty(), "stdout went to the file: {out:?}");
    ensure_eq!(
        sh(m, &id, "cat /tmp/c72.log").await?,
        "done\n",
        "the step's log"
    );
    Ok(())
}

/// Case 73: an exec's deadline holds while nobody reads its stream: the process is gone
/// within the timeout + kill grace + slack; reading afterwards gives `Timeout`.
pub async fn case_73_deadline_holds_unread(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 73).await?;
    let timeout = Duration::from_secs(1);
    // Writes until its pipe is full, then blocks: nobody reads.
    let spec = ExecSpec::new(["yes", "2073"]).timeout(timeout);
    let stream = m.exec_stream(&id, &spec).await?;
    wait_gone(m, &id, "yes 2073", timeout + DEFAULT_KILL_GRACE + SLACK)
        .await
        .map_err(|f| f.context("an unread exec outlived its deadline"))?;
    let read = tokio::time::timeout(BOUND, stream.collect_output(1 << 20)).await;
    match read {
        Ok(r) => expect_kind(r, ErrorKind::Timeout, "reading the timed-out exec").map(drop),
        Err(_) => fail!("reading the timed-out exec still blocks after {BOUND:?}"),
    }
}

/// Case 74: dropping a stream during the TERM grace still ends in SIGKILL for a process
/// that ignores SIGTERM.
pub async fn case_74_drop_in_grace_still_kills(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 74).await?;
    let grace = Duration::from_secs(3);
    let spec = ExecSpec::shell("trap '' TERM; sleep 2074")
        .timeout(Duration::from_secs(1))
        .kill_grace(grace);
    let mut stream = m.exec_stream(&id, &spec).await?;
    // Read past the deadline: the kill begins (SIGTERM, ignored), then drop mid-grace.
    let first = tokio::time::timeout(Duration::from_millis(1500), stream.next()).await;
    ensure!(
        first.is_err(),
        "the exec yielded {first:?} before its grace ended"
    );
    drop(stream);
    wait_gone(m, &id, "sleep 2074", grace + SLACK)
        .await
        .map_err(|f| f.context("a TERM-ignoring exec dropped during its grace survived"))
        .map(drop)
}

/// Case 75: a step that double-forks a daemon and times out, or is dropped, leaves none
/// of its processes, the daemon included; a concurrent exec in the same container and
/// the container's main process are untouched.
pub async fn case_75_daemonized_children_end_with_step(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let (id, before) = build_container(ctx, &mut t, 75, &["sleep", "infinity"]).await?;
    let neighbour = m
        .exec_stream(&id, &ExecSpec::new(["sleep", "2275"]))
        .await?;
    wait_present(m, &id, "sleep 2275", SLACK).await?;

    let spec =
        ExecSpec::shell("setsid sh -c 'sleep 2075 &'; sleep 2175").timeout(Duration::from_secs(2));
    expect_kind(
        m.exec(&id, &spec).await,
        ErrorKind::Timeout,
        "a step that daemonized a child, with a 2 s timeout",
    )?;
    wait_gone(m, &id, "sleep 2175", SLACK).await?;
    wait_gone(m, &id, "sleep 2075", SLACK)
        .await
        .map_err(|f| f.context("the timed-out step's daemon survived"))?;

    let spec = ExecSpec::shell("setsid sh -c 'sleep 2375 &'; sleep 2475");
    tokio::select! {
        r = m.exec(&id, &spec) => fail!("the step returned: {r:?}"),
        () = tokio::time::sleep(Duration::from_secs(1)) => {}
    }
    wait_gone(m, &id, "sleep 2475", DEFAULT_KILL_GRACE + SLACK).await?;
    wait_gone(m, &id, "sleep 2375", DEFAULT_KILL_GRACE + SLACK)
        .await
        .map_err(|f| f.context("the dropped step's daemon survived"))?;

    let ps = processes(m, &id).await?;
    ensure!(
        !matching_processes(&ps, "sleep 2275").is_empty(),
        "the concurrent exec was killed with the step:\n{ps}"
    );
    same_main_process(m, &id, &before).await?;
    neighbour.cancel().await;
    wait_gone(m, &id, "sleep 2275", DEFAULT_KILL_GRACE + SLACK)
        .await
        .map(drop)
}
