//! Cases 77-78: faults on the connection to the engine, through a proxy in front of its
//! socket. 77: the connection is cut mid-exec (an engine restart, a broken link): what
//! the exec then reports must be true (`Unavailable`, or its own exit code with all its
//! output), never a wrong exit, never a hang; the process is gone afterwards and the
//! manager works again. 78: a request whose connection closes unanswered is retried when
//! the call is idempotent (and then succeeds), never when it may have run.

use std::time::{Duration, Instant};

use container::exec::DEFAULT_KILL_GRACE;
use container::{ErrorKind, ExecEvent, ExecSpec, StreamKind};
use futures::StreamExt;

use crate::ctx::{Ctx, SLACK};
use crate::failure::{describe, Failure};
use crate::support::{counted_manager, running, wait_gone};
use crate::{ensure, ensure_eq, fail};

/// Case 78: see the module docs.
pub async fn case_78_unanswered_request_retried_only_when_idempotent(
    ctx: &Ctx,
) -> Result<(), Failure> {
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 78).await?;
    let (through, proxy) = counted_manager(ctx).await?;
    // Fresh connections for what follows: the open ones are cut, and given a moment
    // to be seen closed by the client's pool.
    let fresh = || async {
        proxy.cut();
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    fresh().await;
    proxy.drop_next(1);
    let info = through.inspect(&id).await.map_err(|e| {
        Failure::new(format!(
            "inspect after one unanswered request: {}",
            describe(&e)
        ))
    })?;
    ensure!(info.state.is_running(), "inspect answered {info:?}");
    ensure_eq!(proxy.dropped(), 1, "requests closed unanswered");

    fresh().await;
    let before = proxy.accepted();
    proxy.drop_next(1);
    let spec = ExecSpec::shell("echo ran");
    match through.exec(&id, &spec).await {
        Ok(out) => fail!("an exec whose request went unanswered returned {out:?}"),
        Err(e) => {
            ensure!(
                matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
                "the unanswered exec's error: {}",
                describe(&e)
            );
            ensure!(
                !e.is_retryable(),
                "an exec that may have run is retryable: {e}"
            );
        }
    }
    ensure_eq!(proxy.dropped(), 2, "requests closed unanswered");
    ensure_eq!(
        proxy.accepted() - before,
        1,
        "connections for one unanswered exec: it was sent again"
    );
    Ok(())
}

/// Case 77: see the module docs.
pub async fn case_77_connection_cut_mid_exec(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 77).await?;
    let (through, proxy) = counted_manager(ctx).await?;
    // 3.077 s: a number no other process of the container shows in `ps`.
    let work = Duration::from_millis(3077);
    let spec = ExecSpec::shell("echo started; sleep 3.077; echo done; exit 5");
    let mut stream = through.exec_stream(&id, &spec).await?;
    let mut stdout = Vec::new();
    // Cut once the exec has shown it runs.
    while !stdout.ends_with(b"started\n") {
        match tokio::time::timeout(SLACK, stream.next()).await {
            Ok(Some(Ok(ExecEvent::Output(chunk)))) if chunk.stream == StreamKind::Stdout => {
                stdout.extend_from_slice(&chunk.data);
            }
            Ok(Some(Ok(other))) => fail!("before the cut: {other:?}"),
            Ok(Some(Err(e))) => fail!("before the cut: {}", describe(&e)),
            Ok(None) => fail!("the exec ended before the cut"),
            Err(_) => fail!("no output within {SLACK:?}"),
        }
    }
    let cut = Instant::now();
    proxy.cut();
    let outcome = loop {
        match tokio::time::timeout(work + SLACK, stream.next()).await {
            Err(_) => fail!(
                "the exec neither ended nor failed {:?} after the cut",
                work + SLACK
            ),
            Ok(None) => fail!("the exec stream ended without an exit or an error"),
            Ok(Some(Ok(ExecEvent::Output(chunk)))) => {
                if chunk.stream == StreamKind::Stdout {
                    stdout.extend_from_slice(&chunk.data);
                }
            }
            Ok(Some(Ok(ExecEvent::Exit(code)))) => break Ok(code),
            Ok(Some(Err(e))) => break Err(e),
        }
    };
    match outcome {
        // The engine's answer survived the cut (containerd: output goes through FIFOs,
        // not the connection): it must be the process's own, with all its output.
        Ok(code) => {
            ensure_eq!(code, 5, "exit code after the cut");
            ensure_eq!(
                String::from_utf8_lossy(&stdout),
                "started\ndone\n",
                "output after the cut"
            );
        }
        Err(e) => {
            ensure_eq!(
                e.kind(),
                ErrorKind::Unavailable,
                "the cut exec's error: {}",
                describe(&e)
            );
            ensure!(
                !e.is_retryable(),
                "an exec that may have run is retryable: {e}"
            );
            ensure!(
                cut.elapsed() < work,
                "the cut was seen only after {:?}",
                cut.elapsed()
            );
        }
    }
    drop(stream);
    wait_gone(m, &id, "sleep 3.077", DEFAULT_KILL_GRACE + SLACK).await?;
    // The same manager works through the proxy once connections are made again.
    let info = through.inspect(&id).await?;
    ensure!(
        info.state.is_running(),
        "the container after the cut: {info:?}"
    );
    Ok(())
}
