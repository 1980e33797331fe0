//! Cases 37-39: exec deadlines, dropped exec futures, unreachable engines.

use std::path::Path;
use std::time::{Duration, Instant};

use container::exec::DEFAULT_KILL_GRACE;
use container::{BackendKind, ConnectOptions, Error, ErrorKind, ExecSpec};
use tokio::net::{TcpListener, UnixListener};

use crate::ctx::{Ctx, OWNER, SLACK};
use crate::failure::{describe, expect_kind, Failure};
use crate::support::{running, sh, unix_endpoint, wait_gone, wait_present};
use crate::{ensure, ensure_eq, fail};

/// Case 37: An exec past its timeout → `Timeout` within timeout + slack, and its processes are
/// gone: SIGTERM first (to the whole group), SIGKILL after the grace.
pub async fn case_37_exec_timeout(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 37).await?;
    let timeout = Duration::from_secs(1);

    // A plain sleep: SIGTERM ends it.
    let started = Instant::now();
    let spec = ExecSpec::new(["sleep", "1000"]).timeout(timeout);
    expect_kind(
        m.exec(&id, &spec).await,
        ErrorKind::Timeout,
        "exec sleep 1000 with a 1 s timeout",
    )?;
    let took = started.elapsed();
    ensure!(
        took >= timeout && took <= timeout + SLACK,
        "Timeout after {took:?} (timeout {timeout:?}, slack {SLACK:?})"
    );
    wait_gone(m, &id, "sleep 1000", Duration::from_secs(1)).await?;

    // SIGTERM reaches the whole process group: the shell's foreground child dies, so
    // the shell's TERM handler runs before any SIGKILL.
    let spec = ExecSpec::shell("trap 'echo term > /tmp/term-mark; exit 0' TERM; sleep 1001")
        .timeout(timeout);
    expect_kind(
        m.exec(&id, &spec).await,
        ErrorKind::Timeout,
        "exec with a TERM trap",
    )?;
    wait_gone(m, &id, "sleep 1001", Duration::from_secs(1)).await?;
    let mark = sh(m, &id, "cat /tmp/term-mark 2>/dev/null || true").await?;
    ensure_eq!(
        mark,
        "term\n",
        "the shell's SIGTERM handler did not run: SIGTERM was not sent first to the group"
    );

    // A process group that ignores SIGTERM is killed after the grace.
    let grace = Duration::from_secs(1);
    let mut spec = ExecSpec::shell("trap '' TERM; sleep 1002").timeout(timeout);
    spec.kill_grace = grace;
    let started = Instant::now();
    expect_kind(
        m.exec(&id, &spec).await,
        ErrorKind::Timeout,
        "exec ignoring SIGTERM",
    )?;
    let took = started.elapsed();
    ensure!(
        took >= timeout + grace - Duration::from_millis(200) && took <= timeout + grace + SLACK,
        "Timeout of a TERM-ignoring exec after {took:?} (timeout {timeout:?}, grace {grace:?})"
    );
    wait_gone(m, &id, "sleep 1002", Duration::from_secs(1)).await?;
    Ok(())
}

/// Case 38: Dropping the exec future (`select!`, task abort) kills the process the same way,
/// also when it is dropped while the exec is still being set up.
pub async fn case_38_drop_exec_future(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 38).await?;

    // Dropped by select! once the process demonstrably runs.
    let spec = ExecSpec::new(["sleep", "1100"]);
    tokio::select! {
        r = m.exec(&id, &spec) => fail!("exec returned: {r:?}"),
        r = wait_present(m, &id, "sleep 1100", Duration::from_secs(10)) => r?,
    }
    wait_gone(m, &id, "sleep 1100", DEFAULT_KILL_GRACE + SLACK).await?;

    // Dropped by aborting the task that runs it.
    let task = {
        let (m, id) = (ctx.manager_arc(), id.clone());
        tokio::spawn(async move { m.exec(&id, &ExecSpec::new(["sleep", "1101"])).await })
    };
    wait_present(m, &id, "sleep 1101", Duration::from_secs(10)).await?;
    task.abort();
    let _ = task.await;
    wait_gone(m, &id, "sleep 1101", DEFAULT_KILL_GRACE + SLACK).await?;

    // Dropped at many points of the setup (create, start, attach): nothing may start
    // afterwards and linger.
    const DELAYS_MS: [u64; 16] = [0, 1, 2, 4, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 70, 100];
    let pattern = |i: usize| format!("sleep {}", 1110 + i);
    for (i, delay_ms) in DELAYS_MS.into_iter().enumerate() {
        let spec = ExecSpec::new(["sleep".to_string(), (1110 + i).to_string()]);
        let _ = tokio::time::timeout(Duration::from_millis(delay_ms), m.exec(&id, &spec)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (i, delay_ms) in DELAYS_MS.into_iter().enumerate() {
        wait_gone(m, &id, &pattern(i), DEFAULT_KILL_GRACE + SLACK)
            .await
            .map_err(|f| f.context(format!("exec dropped {delay_ms} ms into its setup")))?;
    }
    Ok(())
}

/// Connects to `endpoint` with a short connect timeout; expects a prompt, retryable
/// `Unavailable`.
async fn expect_unavailable(ctx: &Ctx, endpoint: String, what: &str) -> Result<Error, Failure> {
    let connect_timeout = Duration::from_secs(2);
    let options = ConnectOptions::owned_by(OWNER)?
        .with_endpoint(endpoint.clone())
        .with_connect_timeout(connect_timeout);
    let started = Instant::now();
    let outcome =
        tokio::time::timeout(connect_timeout + SLACK + SLACK, ctx.connect_with(options)).await;
    let took = started.elapsed();
    let e = match outcome {
        Err(_) => fail!("{what} ({endpoint}): connect hung for {took:?}"),
        Ok(Ok(_)) => fail!("{what} ({endpoint}): connect succeeded"),
        Ok(Err(e)) => e,
    };
    ensure!(
        e.kind() == ErrorKind::Unavailable,
        "{what} ({endpoint}): expected Unavailable, got {}",
        describe(&e)
    );
    ensure!(e.is_retryable(), "{what}: Unavailable not retryable: {e}");
    ensure!(
        took <= connect_timeout + SLACK,
        "{what}: connect failed after {took:?} (connect timeout {connect_timeout:?}, slack {SLACK:?})"
    );
    Ok(e)
}

/// A listener that accepts connections and never answers, until the returned task is aborted.
fn silent_unix(path: &Path) -> Result<tokio::task::JoinHandle<()>, Failure> {
    let listener = UnixListener::bind(path)?;
    Ok(tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    }))
}

/// Case 39: An engine socket that does not exist or does not answer → `Unavailable`
/// (retryable) within the connect timeout.
pub async fn case_39_unreachable_engine(ctx: &Ctx) -> Result<(), Failure> {
    let kind = ctx.kind();
    let dir = tempfile::tempdir()?;

    let missing = dir.path().join("no-engine.sock");
    expect_unavailable(ctx, unix_endpoint(kind, &missing), "missing unix socket").await?;

    let silent_path = dir.path().join("silent.sock");
    let silent = silent_unix(&silent_path)?;
    let result =
        expect_unavailable(ctx, unix_endpoint(kind, &silent_path), "silent unix socket").await;
    silent.abort();
    result?;

    if kind != BackendKind::Containerd {
        // A TCP listener on 127.0.0.1 that accepts and never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        let result = expect_unavailable(ctx, format!("tcp://{addr}"), "silent TCP listener").await;
        silent.abort();
        result?;

        // A closed port on 127.0.0.1: connection refused.
        let closed = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
        expect_unavailable(ctx, format!("tcp://{closed}"), "refused TCP port").await?;
    }
    Ok(())
}
