//! Cases 32-36: the exec stream: latency, order, binary volume, backpressure, drop.

use std::time::{Duration, Instant};

use container::exec::DEFAULT_KILL_GRACE;
use container::{ExecEvent, ExecSpec, StreamKind};
use sha2::{Digest, Sha256};

use crate::ctx::{Ctx, SLACK};
use crate::failure::Failure;
use crate::support::{next_event, running, sh, wait_gone, wait_present};
use crate::{ensure, ensure_eq, fail};

/// A unique `$0` for `sh -c`, so `ps` finds exactly this exec's shell.
fn marker(case: u32) -> String {
    format!(
        "crs-mark-{case}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Case 32: The first chunk arrives while the process still runs.
pub async fn case_32_first_chunk_early(ctx: &Ctx) -> Result<(), Failure> {
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 32).await?;
    let mut stream = ctx
        .manager()
        .exec_stream(&id, &ExecSpec::shell("echo a; sleep 2; echo b"))
        .await?;
    let opened = Instant::now();
    let (mut out, mut first, mut at_a, mut at_b, mut exit) = (Vec::new(), None, None, None, None);
    while exit.is_none() {
        match next_event(&mut stream, Duration::from_secs(5) + SLACK).await? {
            Some(ExecEvent::Output(chunk)) => {
                ensure_eq!(chunk.stream, StreamKind::Stdout, "stream of {chunk:?}");
                first.get_or_insert_with(|| chunk.data.clone());
                out.extend_from_slice(&chunk.data);
                if at_a.is_none() && out.starts_with(b"a\n") {
                    at_a = Some(opened.elapsed());
                }
                if at_b.is_none() && out.ends_with(b"b\n") {
                    at_b = Some(opened.elapsed());
                }
            }
            Some(ExecEvent::Exit(code)) => exit = Some(code),
            None => fail!("the stream ended without an exit event"),
        }
    }
    ensure_eq!(String::from_utf8_lossy(&out), "a\nb\n", "stdout");
    ensure_eq!(exit, Some(0), "exit code");
    ensure_eq!(first.as_deref(), Some(&b"a\n"[..]), "the first chunk");
    let (Some(at_a), Some(at_b)) = (at_a, at_b) else {
        fail!("a or b never arrived: {at_a:?} {at_b:?}");
    };
    ensure!(
        at_a < Duration::from_secs(2),
        "`a` arrived {at_a:?} after the stream opened, not before the 2 s sleep ended"
    );
    ensure!(
        at_b.saturating_sub(at_a) >= Duration::from_millis(1500),
        "`a` ({at_a:?}) and `b` ({at_b:?}) arrived together: output was held back"
    );
    Ok(())
}

/// Case 33: Order is kept within each stream; each chunk is tagged stdout or stderr.
pub async fn case_33_order_and_tags(ctx: &Ctx) -> Result<(), Failure> {
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 33).await?;
    let script = "i=1; while [ $i -le 500 ]; do echo o$i; echo e$i >&2; i=$((i+1)); done";
    let mut stream = ctx
        .manager()
        .exec_stream(&id, &ExecSpec::shell(script))
        .await?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    loop {
        match next_event(&mut stream, Duration::from_secs(10) + SLACK).await? {
            Some(ExecEvent::Output(chunk)) => match chunk.stream {
                StreamKind::Stdout => out.extend_from_slice(&chunk.data),
                StreamKind::Stderr => err.extend_from_slice(&chunk.data),
            },
            Some(ExecEvent::Exit(code)) => {
                ensure_eq!(code, 0, "exit code");
                break;
            }
            None => fail!("the stream ended without an exit event"),
        }
    }
    let expected = |p: &str| (1..=500).map(|i| format!("{p}{i}\n")).collect::<String>();
    ensure!(
        String::from_utf8_lossy(&out) == expected("o"),
        "stdout is not o1..o500 in order: {:?}",
        String::from_utf8_lossy(&out)
    );
    ensure!(
        String::from_utf8_lossy(&err) == expected("e"),
        "stderr is not e1..e500 in order: {:?}",
        String::from_utf8_lossy(&err)
    );
    ensure!(
        stream_is_done(&mut stream).await,
        "events after the exit status"
    );
    Ok(())
}

async fn stream_is_done(stream: &mut container::ExecStream) -> bool {
    use futures::StreamExt;
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.next()).await,
        Ok(None)
    )
}

/// Case 34: 64 MiB of binary output (NUL bytes included) arrives intact.
pub async fn case_34_binary_64mib(ctx: &Ctx) -> Result<(), Failure> {
    const SIZE: u64 = 64 << 20;
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 34).await?;
    // The container hashes exactly the bytes it writes to stdout, through a FIFO.
    let script = format!(
        "mkfifo /tmp/tap && {{ sha256sum < /tmp/tap >&2 & }} && \
         head -c {SIZE} /dev/urandom | tee /tmp/tap; wait"
    );
    let mut stream = ctx
        .manager()
        .exec_stream(&id, &ExecSpec::shell(script))
        .await?;
    let mut hasher = Sha256::new();
    let (mut received, mut zeros, mut err) = (0u64, 0u64, Vec::new());
    let started = Instant::now();
    loop {
        match next_event(&mut stream, Duration::from_secs(30)).await? {
            Some(ExecEvent::Output(chunk)) => match chunk.stream {
                StreamKind::Stdout => {
                    hasher.update(&chunk.data);
                    received += chunk.data.len() as u64;
                    zeros += chunk.data.iter().filter(|b| **b == 0).count() as u64;
                }
                StreamKind::Stderr => err.extend_from_slice(&chunk.data),
            },
            Some(ExecEvent::Exit(code)) => {
                ensure_eq!(
                    code,
                    0,
                    "exit code (stderr {:?})",
                    String::from_utf8_lossy(&err)
                );
                break;
            }
            None => fail!("the stream ended without an exit event"),
        }
        if started.elapsed() > Duration::from_secs(120) {
            fail!("64 MiB took over 120 s ({received} bytes so far)");
        }
    }
    ensure_eq!(received, SIZE, "bytes received");
    ensure!(zeros > 0, "64 MiB of random bytes without one NUL byte");
    let inside = String::from_utf8_lossy(&err);
    let inside = inside.split_whitespace().next().unwrap_or_default();
    let outside = hex::encode(hasher.finalize());
    ensure_eq!(
        outside,
        inside,
        "sha256 received vs. computed in the container"
    );
    Ok(())
}

/// Case 35: A slow consumer applies backpressure: the producer stalls far below the total.
pub async fn case_35_backpressure(ctx: &Ctx) -> Result<(), Failure> {
    const BLOCK: u64 = 64 << 10;
    const BLOCKS: u64 = 8192; // 512 MiB in total
    const LIMIT: u64 = 32 << 20; // at most this much may be produced while the consumer pauses
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 35).await?;
    let mark = marker(35);
    let script = format!(
        "i=0; while [ $i -lt {BLOCKS} ]; do head -c {BLOCK} /dev/zero || exit 1; \
         i=$((i+1)); echo $i > /tmp/progress; done"
    );
    let mut stream = m
        .exec_stream(&id, &ExecSpec::new(["sh", "-c", &script, &mark]))
        .await?;
    let mut received = 0u64;
    while received < (1 << 20) {
        match next_event(&mut stream, Duration::from_secs(10) + SLACK).await? {
            Some(ExecEvent::Output(chunk)) => received += chunk.data.len() as u64,
            Some(ExecEvent::Exit(code)) => {
                fail!("the producer exited ({code}) after {received} bytes")
            }
            None => fail!("the stream ended after {received} bytes"),
        }
    }
    // The consumer pauses; the producer must stall once the bounded buffers fill.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let progress = |text: String| text.trim().parse::<u64>().unwrap_or(0);
    let first = progress(sh(m, &id, "cat /tmp/progress").await?);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = progress(sh(m, &id, "cat /tmp/progress").await?);
    let produced = second * BLOCK;
    ensure!(
        produced < LIMIT,
        "the producer wrote {produced} bytes ({second} blocks; {first} a second earlier) while \
         the consumer had read {received} and paused: output is buffered without bound"
    );
    ensure!(
        produced + BLOCK >= received,
        "progress file says {produced} bytes but {received} were received"
    );
    wait_present(m, &id, &mark, SLACK).await?;
    drop(stream);
    wait_gone(m, &id, &mark, DEFAULT_KILL_GRACE + SLACK).await?;
    Ok(())
}

/// Case 36: Dropping the stream midway: nothing hangs, and the processes are gone shortly after.
pub async fn case_36_drop_midway(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 36).await?;
    let variants = [
        // A background child in the same exec must go too.
        (
            "sleep 1036 & while true; do echo tick; sleep 0.1; done",
            "sleep 1036",
        ),
        // A process that ignores SIGTERM needs the SIGKILL after the grace.
        (
            "trap '' TERM; sleep 1037 & while true; do echo tick; sleep 0.1; done",
            "sleep 1037",
        ),
    ];
    for (script, child) in variants {
        let mark = marker(36);
        let mut stream = m
            .exec_stream(&id, &ExecSpec::new(["sh", "-c", script, &mark]))
            .await?;
        let mut ticks = 0;
        while ticks < 3 {
            match next_event(&mut stream, Duration::from_secs(5) + SLACK).await? {
                Some(ExecEvent::Output(chunk)) => {
                    ticks += chunk.data.windows(4).filter(|w| w == b"tick").count();
                }
                other => fail!("unexpected event before the drop: {other:?}"),
            }
        }
        wait_present(m, &id, child, SLACK).await?;
        let dropping = Instant::now();
        drop(stream);
        let took = dropping.elapsed();
        ensure!(
            took < Duration::from_millis(500),
            "dropping the stream blocked for {took:?}"
        );
        wait_gone(m, &id, &mark, DEFAULT_KILL_GRACE + SLACK).await?;
        wait_gone(m, &id, child, DEFAULT_KILL_GRACE + SLACK).await?;
    }
    ensure_eq!(sh(m, &id, "echo ok").await?, "ok\n", "exec after the drops");
    Ok(())
}
