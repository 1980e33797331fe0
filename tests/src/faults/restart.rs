//! Engine restart: the engine's daemon is crashed (SIGKILL) and started again while a
//! step streams its output and a pull is under way (stalled mid-blob by a proxy, so it
//! is surely in flight), with the command the harness is given in [`RESTART_ENV`]
//! (`cargo xtask faults` sets it to its own `engines restart --backend <name>`).
//!
//! What must hold, on every engine:
//! - the streamed step never hangs and never reports a result it did not have: it ends
//!   within [`EXEC_END`] of the restart either with `Unavailable` (the engine lost it:
//!   Docker and Podman, whose attach connection dies with the daemon) or with its real
//!   end (exit 0 after every line, in order: containerd, whose shim keeps the step and
//!   its pipes while the daemon is away);
//! - the pull ends within [`PULL_END`] with a retryable kind (`Unavailable` from a daemon
//!   that went away, or `Timeout` from the stall deadline where the library downloads
//!   itself: containerd);
//! - the same manager works again once the engine answers: the image pulls directly, a
//!   new container runs an exec;
//! - then the harness's checks: cleanup leaves nothing, no descriptor or task leaked.

use std::time::{Duration, Instant};

use container::{ErrorKind, ExecEvent, ExecSpec, PullOptions, RetryPolicy};
use container_test_registry::{StallProxy, UniqueImage, FAULT_PROXY_PORT, REGISTRY_PORT};
use futures::StreamExt;

use super::{unique_name, Body, OpStats};
use crate::ctx::Ctx;
use crate::failure::describe;
use crate::support::sleeper;

/// The variable that holds the command restarting the engine.
pub(crate) const RESTART_ENV: &str = "CONTAINER_RS_FAULTS_RESTART";
/// Lines the streamed step prints, one every 100 ms (30 s in all).
const LINES: u32 = 300;
/// How long after the restart command returns the step may take to end: its own 30 s,
/// plus, on Podman, the engine's `exit_command_delay` (30 s in the test service): a
/// restarted service learns an attached exec's end only when Podman's cleanup records
/// it, then finds the session gone.
const EXEC_END: Duration = Duration::from_secs(120);
/// The pull's stall deadline, and how long after the restart it may take to end.
const STALL: Duration = Duration::from_secs(5);
const PULL_END: Duration = Duration::from_secs(30);
/// How long the engine may take to answer again after the restart command returned.
const BACK: Duration = Duration::from_secs(60);
/// Bytes of the layer the proxy lets through before it stalls.
const PASS: usize = 256 << 10;

/// The restart; see the module docs.
pub(crate) async fn run(ctx: &Ctx) -> Body {
    let mut body = Body::default();
    let started = Instant::now();
    body.iterations = 1;
    match once(ctx, &mut body).await {
        Ok(()) => body.completed = 1,
        Err(e) => body.error(e),
    }
    body.loop_time = started.elapsed();
    body
}

/// Records `name` as one operation that took `took`.
fn record(body: &mut Body, name: &'static str, took: Duration, ok: bool) {
    let stats: &mut OpStats = body.ops.entry(name).or_default();
    stats.attempts += 1;
    stats.finished(took, ok);
}

async fn once(ctx: &Ctx, body: &mut Body) -> Result<(), String> {
    let command = std::env::var(RESTART_ENV).map_err(|_| {
        format!(
            "{RESTART_ENV} is not set: run this part through `cargo xtask faults --part restart`"
        )
    })?;
    let m = ctx.manager_arc();
    let err = |e: container::Error| describe(&e);

    // A step streaming its output.
    let name = unique_name(ctx, "restart", 1);
    let id = m.create(&sleeper(ctx, &name)).await.map_err(err)?;
    m.start(&id).await.map_err(err)?;
    let script =
        format!("i=0; while [ $i -lt {LINES} ]; do echo line $i; i=$((i+1)); sleep 0.1; done");
    let mut stream = m
        .exec_stream(
            &id,
            &ExecSpec::shell(&script).timeout(Duration::from_secs(120)),
        )
        .await
        .map_err(err)?;
    let mut text = String::new();
    while !text.contains("line 2\n") {
        match tokio::time::timeout(Duration::from_secs(20), stream.next()).await {
            Ok(Some(Ok(ExecEvent::Output(chunk)))) => {
                text.push_str(&String::from_utf8_lossy(&chunk.data))
            }
            other => {
                return Err(format!(
                    "the step gave no output before the restart: {other:?}"
                ))
            }
        }
    }

    // A pull stalled mid-blob, so that it is in flight when the engine goes.
    let image = UniqueImage::push("container-rs/restart")
        .await
        .map_err(|e| format!("cannot push the test image: {e}"))?;
    let proxy = StallProxy::start_at(
        FAULT_PROXY_PORT,
        REGISTRY_PORT,
        &image.layer_request(),
        PASS,
        Duration::from_secs(300),
    )
    .await
    .map_err(|e| format!("cannot start the registry proxy on port {FAULT_PROXY_PORT}: {e}"))?;
    let pull = {
        let (m, reference) = (m.clone(), image.reference(proxy.addr()));
        let options = PullOptions::default()
            .with_retry(RetryPolicy::none())
            .with_stall_timeout(Some(STALL));
        tokio::spawn(async move {
            let pulled = m.pull(&reference, &options).await;
            (pulled, Instant::now())
        })
    };
    let waited = Instant::now();
    while proxy.stalled() == 0 {
        if waited.elapsed() > Duration::from_secs(30) || pull.is_finished() {
            return Err("the pull never reached the layer through the proxy".to_string());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The crash and the start again.
    let restart = Instant::now();
    let output = tokio::process::Command::new("sh")
        .args(["-c", &command])
        .output()
        .await
        .map_err(|e| format!("cannot run `{command}`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`{command}` failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let restarted = Instant::now();
    record(body, "restart", restart.elapsed(), true);

    // The step: its real end, or Unavailable; never a hang, never a made-up end.
    let ended = tokio::time::timeout(EXEC_END, async {
        loop {
            match stream.next().await {
                Some(Ok(ExecEvent::Output(chunk))) => {
                    text.push_str(&String::from_utf8_lossy(&chunk.data))
                }
                Some(Ok(ExecEvent::Exit(code))) => return Ok(code),
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(container::Error::new(
                        ErrorKind::Internal,
                        "the stream ended with neither an exit nor an error",
                    ))
                }
            }
        }
    })
    .await;
    let exec_took = restarted.elapsed();
    println!(
        "faults: restart: the step ended {:.1} s after the restart: {}",
        exec_took.as_secs_f64(),
        match &ended {
            Ok(Ok(code)) => format!("exit {code} after {} bytes", text.len()),
            Ok(Err(e)) => describe(e),
            Err(_) => "not at all".to_string(),
        }
    );
    let step = match ended {
        Err(_) => Err(format!(
            "the step did not end within {EXEC_END:?} of the restart"
        )),
        Ok(Err(e)) if e.kind() == ErrorKind::Unavailable => Ok(()),
        Ok(Err(e)) => Err(format!(
            "the step ended in {} (expected Unavailable or its real end)",
            describe(&e)
        )),
        Ok(Ok(0)) => {
            let expected: String = (0..LINES).map(|i| format!("line {i}\n")).collect();
            if text == expected {
                Ok(())
            } else {
                Err(format!(
                    "the step reported exit 0 but its output is not every line in order ({} bytes of {})",
                    text.len(),
                    expected.len()
                ))
            }
        }
        Ok(Ok(code)) => Err(format!(
            "the step reported exit {code}, a code it never gave"
        )),
    };
    record(body, "exec_stream", exec_took, step.is_ok());
    step?;

    // The pull: a retryable error within its deadline.
    let pulled = tokio::time::timeout(PULL_END, pull).await;
    let pull_took = match &pulled {
        Ok(Ok((_, at))) => at.saturating_duration_since(restarted),
        _ => restarted.elapsed(),
    };
    let pulled = pulled.map(|joined| joined.map(|(result, _)| result));
    println!(
        "faults: restart: the pull ended {:.1} s after the restart: {}",
        pull_took.as_secs_f64(),
        match &pulled {
            Ok(Ok(Ok(_))) => "ok".to_string(),
            Ok(Ok(Err(e))) => describe(e),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "not at all".to_string(),
        }
    );
    let pulled = match pulled {
        Err(_) => Err(format!(
            "the pull did not end within {PULL_END:?} of the restart"
        )),
        Ok(Err(e)) => Err(format!("the pull task failed: {e}")),
        // A kind a retry can help (this pull was told not to retry, so the error itself
        // says its retries are spent).
        Ok(Ok(Err(e))) if matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Timeout) => Ok(()),
        Ok(Ok(Err(e))) => Err(format!(
            "the pull ended in {}, not Unavailable or Timeout",
            describe(&e)
        )),
        // Through a proxy that never sends the rest of the layer.
        Ok(Ok(Ok(_))) => Err("the pull succeeded through a stalled registry".to_string()),
    };
    record(body, "pull", pull_took, pulled.is_ok());
    pulled?;
    drop(proxy);

    // The same manager, once the engine answers again.
    let back = Instant::now();
    loop {
        match m.info().await {
            Ok(_) => break,
            Err(e) if back.elapsed() > BACK => {
                return Err(format!(
                    "the engine did not answer {BACK:?} after its restart: {}",
                    describe(&e)
                ))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    record(body, "back", restarted.elapsed(), true);
    let again = Instant::now();
    let after = async {
        m.pull(&image.direct(), &PullOptions::default())
            .await
            .map_err(|e| format!("pull after the restart: {}", describe(&e)))?;
        let name = unique_name(ctx, "restart", 2);
        let id = m
            .create(&sleeper(ctx, &name))
            .await
            .map_err(|e| format!("create after the restart: {}", describe(&e)))?;
        m.start(&id)
            .await
            .map_err(|e| format!("start after the restart: {}", describe(&e)))?;
        let out = m
            .exec(&id, &ExecSpec::new(["echo", "-n", "back"]))
            .await
            .map_err(|e| format!("exec after the restart: {}", describe(&e)))?;
        if out.exit_code != 0 || out.stdout_lossy() != "back" {
            return Err(format!("exec after the restart gave {out:?}"));
        }
        Ok(())
    };
    let after = after.await;
    record(body, "after", again.elapsed(), after.is_ok());
    after?;
    if let Err(e) = m.remove_image(&image.direct(), true).await {
        body.error(format!("cannot remove the test image: {}", describe(&e)));
    }
    Ok(())
}
