//! Concurrent workers: each runs whole lifecycles (create under a unique name, start,
//! four execs: buffered, streamed, a non-zero exit with stderr, and one that times out,
//! whose process must then be gone from `ps`; a file copied in and back out, stop,
//! remove) until the time is up. No error is acceptable but the `Timeout` of the exec
//! meant to time out.

use std::path::Path;
use std::time::{Duration, Instant};

use container::{ContainerManager, ErrorKind, ExecEvent, ExecSpec, StreamKind};
use futures::StreamExt;

use super::checks::settle_time;
use super::{merge_ops, unique_name, Body, OpStats, Ops, Options, MAX_ERRORS};
use crate::ctx::Ctx;
use crate::failure::describe;
use crate::support::{matching_processes, processes, sleeper};

/// The exec that must time out, and its timeout.
const TIMED_OUT_CMD: [&str; 2] = ["sleep", "1013"];
const EXEC_TIMEOUT: Duration = Duration::from_secs(1);
/// The grace `stop` gives (PID 1 `sleep` ignores SIGTERM).
const STOP_GRACE: Duration = Duration::from_secs(1);
/// A lifecycle that takes longer than this is a hang.
const LIFECYCLE_CAP: Duration = Duration::from_secs(300);

/// What one worker did.
#[derive(Debug, Default)]
struct Worker {
    lifecycles: u64,
    completed: u64,
    ops: Ops,
    errors: Vec<String>,
    error_count: usize,
}

impl Worker {
    /// Runs `op`, timing it; `Err` is an unexpected error, described.
    async fn op<T, F>(&mut self, name: &'static str, op: F) -> Result<T, String>
    where
        F: std::future::Future<Output = Result<T, String>>,
    {
        let started = Instant::now();
        let result = op.await;
        let stats: &mut OpStats = self.ops.entry(name).or_default();
        stats.attempts += 1;
        stats.finished(started.elapsed(), result.is_ok());
        result.map_err(|e| format!("{name}: {e}"))
    }
}

/// The workers; see the module docs.
pub(crate) async fn run(ctx: &Ctx, options: &Options) -> Body {
    let mut body = Body::default();
    let tmp = match tempfile::tempdir() {
        Ok(t) => t,
        Err(e) => {
            body.error(format!("setup: no temporary folder: {e}"));
            return body;
        }
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.worker_secs);
    let mut handles = Vec::new();
    for w in 0..options.workers {
        let (ctx, dir) = (ctx.clone(), tmp.path().join(format!("w{w}")));
        handles.push(tokio::spawn(async move {
            let mut worker = Worker::default();
            if let Err(e) = std::fs::create_dir(&dir) {
                worker.errors.push(format!("worker {w}: {e}"));
                worker.error_count += 1;
                return worker;
            }
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                worker.lifecycles += 1;
                let name = unique_name(&ctx, &format!("w{w}"), n);
                let outcome =
                    tokio::time::timeout(LIFECYCLE_CAP, lifecycle(&ctx, &mut worker, &name, &dir))
                        .await;
                let failure = match outcome {
                    Ok(Ok(())) => {
                        worker.completed += 1;
                        None
                    }
                    Ok(Err(e)) => Some(e),
                    Err(_) => Some(format!("the lifecycle hung for {LIFECYCLE_CAP:?}")),
                };
                if let Some(e) = failure {
                    worker.error_count += 1;
                    if worker.errors.len() < 10 {
                        worker
                            .errors
                            .push(format!("worker {w}, lifecycle {name}: {e}"));
                    }
                    // What the failed lifecycle left, cleanup also finds.
                    let _ = ctx.manager().remove(&name, true).await;
                }
            }
            worker
        }));
    }
    for (w, h) in handles.into_iter().enumerate() {
        match h.await {
            Ok(worker) => {
                body.iterations += worker.lifecycles;
                body.completed += worker.completed;
                merge_ops(&mut body.ops, &worker.ops);
                // Errors not tied to one operation (a hang, a setup error) count here.
                let op_errors: u64 = worker.ops.values().map(|s| s.errors).sum();
                let other = (worker.error_count as u64).saturating_sub(op_errors);
                body.ops.entry("other").or_default().errors += other;
                for e in worker.errors {
                    if body.errors.len() < MAX_ERRORS {
                        body.error(e);
                    }
                }
            }
            Err(e) => body.error(format!("worker {w} did not finish: {e}")),
        }
    }
    if body.ops.get("other").is_some_and(|s| s.errors == 0) {
        body.ops.remove("other");
    }
    body.loop_time = started.elapsed();
    body
}

/// One lifecycle of container `name`, with every step checked.
async fn lifecycle(ctx: &Ctx, w: &mut Worker, name: &str, dir: &Path) -> Result<(), String> {
    let m = ctx.manager();
    let err = |e: container::Error| describe(&e);
    let id = w
        .op("create", async {
            m.create(&sleeper(ctx, name)).await.map_err(err)
        })
        .await?;
    w.op("start", async { m.start(&id).await.map_err(err) })
        .await?;

    let token = format!("{name}-token");
    w.op("exec", async {
        let out = m
            .exec(&id, &ExecSpec::new(["echo", "-n", token.as_str()]))
            .await
            .map_err(err)?;
        if out.exit_code != 0 || out.stdout_lossy() != token || !out.stderr.is_empty() {
            return Err(format!("echo gave {out:?}"));
        }
        Ok(())
    })
    .await?;
    w.op("exec_exit_3", async {
        let out = m
            .exec(&id, &ExecSpec::shell("echo oops >&2; exit 3"))
            .await
            .map_err(err)?;
        if out.exit_code != 3 || out.stderr_lossy() != "oops\n" || !out.stdout.is_empty() {
            return Err(format!("`exit 3` gave {out:?}"));
        }
        Ok(())
    })
    .await?;
    w.op("exec_stream", streamed(m, &id)).await?;
    w.op("exec_timeout", async {
        let spec = ExecSpec::new(TIMED_OUT_CMD).timeout(EXEC_TIMEOUT);
        match m.exec(&id, &spec).await {
            Err(e) if e.kind() == ErrorKind::Timeout => {}
            Err(e) => return Err(format!("expected Timeout, got {}", describe(&e))),
            Ok(out) => return Err(format!("expected Timeout, got {out:?}")),
        }
        let pattern = TIMED_OUT_CMD.join(" ");
        let started = Instant::now();
        loop {
            let ps = processes(m, &id).await.map_err(|f| f.to_string())?;
            if matching_processes(&ps, &pattern).is_empty() {
                return Ok(());
            }
            if started.elapsed() > settle_time() {
                return Err(format!(
                    "`{pattern}` still runs {:?} after its Timeout:\n{ps}",
                    settle_time()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await?;

    let file = dir.join(format!("{name}.txt"));
    let content = format!("{name} was here\n");
    std::fs::write(&file, &content).map_err(|e| format!("host file: {e}"))?;
    w.op("copy_to", async {
        m.copy_to(&id, &file, "/tmp").await.map_err(err)
    })
    .await?;
    let out = dir.join(format!("{name}.out"));
    std::fs::create_dir(&out).map_err(|e| format!("host folder: {e}"))?;
    w.op("copy_from", async {
        m.copy_from(&id, &format!("/tmp/{name}.txt"), &out)
            .await
            .map_err(err)?;
        let back = std::fs::read_to_string(out.join(format!("{name}.txt")))
            .map_err(|e| format!("the copied file: {e}"))?;
        if back != content {
            return Err(format!("copied back {back:?}, not {content:?}"));
        }
        Ok(())
    })
    .await?;
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_dir_all(&out);

    w.op("stop", async {
        m.stop(&id, Some(STOP_GRACE)).await.map_err(err)
    })
    .await?;
    w.op("remove", async { m.remove(&id, false).await.map_err(err) })
        .await?;
    Ok(())
}

/// A streamed exec read to its end: five lines, in order, then exit 0.
async fn streamed(m: &dyn ContainerManager, id: &str) -> Result<(), String> {
    let spec = ExecSpec::shell("for i in 1 2 3 4 5; do echo line$i; sleep 0.05; done");
    let mut stream = m.exec_stream(id, &spec).await.map_err(|e| describe(&e))?;
    let mut stdout = Vec::new();
    let mut exit = None;
    while let Some(event) = stream.next().await {
        match event.map_err(|e| describe(&e))? {
            ExecEvent::Output(chunk) if chunk.stream == StreamKind::Stdout => {
                stdout.extend_from_slice(&chunk.data);
            }
            ExecEvent::Output(chunk) => {
                return Err(format!("unexpected stderr {:?}", chunk.data));
            }
            ExecEvent::Exit(code) => exit = Some(code),
        }
    }
    let expected = "line1\nline2\nline3\nline4\nline5\n";
    if exit != Some(0) || stdout != expected.as_bytes() {
        return Err(format!(
            "streamed exec gave exit {exit:?}, stdout {:?}",
            String::from_utf8_lossy(&stdout)
        ));
    }
    Ok(())
}
