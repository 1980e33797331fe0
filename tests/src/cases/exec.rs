//! Cases 24-31: the buffered exec.

use std::time::Duration;

use bytes::Bytes;
use container::{ContainerConfig, ErrorKind, ExecOutput, ExecSpec};

use crate::ctx::{Ctx, SLACK};
use crate::failure::{describe, expect_kind, Failure};
use crate::support::{run_config, running, sh};
use crate::{ensure, ensure_eq};

/// Runs `spec`, failing instead of hanging after `within`.
async fn exec_within(
    ctx: &Ctx,
    id: &str,
    spec: &ExecSpec,
    within: Duration,
) -> Result<ExecOutput, Failure> {
    match tokio::time::timeout(within, ctx.manager().exec(id, spec)).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(Failure::new(format!(
            "exec {:?}: {}",
            spec.cmd,
            describe(&e)
        ))),
        Err(_) => Err(Failure::new(format!(
            "exec {:?} hung for {within:?}",
            spec.cmd
        ))),
    }
}

/// Case 24: `echo -n hello` → stdout exactly `hello`, stderr empty, exit 0.
pub async fn case_24_echo(ctx: &Ctx) -> Result<(), Failure> {
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 24).await?;
    let out = exec_within(
        ctx,
        &id,
        &ExecSpec::new(["echo", "-n", "hello"]),
        Duration::from_secs(10),
    )
    .await?;
    ensure_eq!(out.stdout, b"hello".to_vec(), "stdout");
    ensure_eq!(out.stderr, Vec::<u8>::new(), "stderr");
    ensure_eq!(out.exit_code, 0, "exit code");
    ensure!(!out.truncated, "truncated flag set on 5 bytes");
    Ok(())
}

/// Case 25: `exit 7` → Ok with exit code 7.
pub async fn case_25_nonzero_exit(ctx: &Ctx) -> Result<(), Failure> {
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 25).await?;
    let out = exec_within(
        ctx,
        &id,
        &ExecSpec::shell("echo partial; exit 7"),
        Duration::from_secs(10),
    )
    .await?;
    ensure_eq!(out.exit_code, 7, "exit code");
    ensure_eq!(out.stdout, b"partial\n".to_vec(), "stdout before the exit");
    let killed = exec_within(
        ctx,
        &id,
        &ExecSpec::shell("kill -KILL $$"),
        Duration::from_secs(10),
    )
    .await?;
    ensure_eq!(
        killed.exit_code,
        137,
        "exit code of a process killed by SIGKILL"
    );
    Ok(())
}

/// Case 26: Stderr is captured separately from stdout.
pub async fn case_26_stderr_separate(ctx: &Ctx) -> Result<(), Failure> {
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 26).await?;
    let out = exec_within(
        ctx,
        &id,
        &ExecSpec::shell("echo out1; echo err1 >&2; echo out2; echo err2 >&2"),
        Duration::from_secs(10),
    )
    .await?;
    ensure_eq!(out.stdout_lossy(), "out1\nout2\n", "stdout");
    ensure_eq!(out.stderr_lossy(), "err1\nerr2\n", "stderr");
    ensure_eq!(out.exit_code, 0, "exit code");
    Ok(())
}

/// Case 27: Binary not found → 127, not executable → 126, with a message on stderr; never a hang.
pub async fn case_27_not_found(ctx: &Ctx) -> Result<(), Failure> {
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 27).await?;
    sh(
        ctx.manager(),
        &id,
        "printf 'plain text\\n' > /tmp/not-executable; chmod 0644 /tmp/not-executable",
    )
    .await?;
    let cases: [(&[&str], i64); 4] = [
        (&["/nonexistent/binary"], 127),
        (&["no-such-command-anywhere"], 127),
        (&["/tmp/not-executable"], 126),
        (&["/etc"], 126),
    ];
    for (cmd, expected) in cases {
        let out = exec_within(
            ctx,
            &id,
            &ExecSpec::new(cmd.iter().copied()),
            Duration::from_secs(10) + SLACK,
        )
        .await?;
        ensure_eq!(out.exit_code, expected, "exit code of {cmd:?}");
        ensure!(
            !out.stderr.is_empty(),
            "no message on stderr for {cmd:?} (stdout {:?})",
            out.stdout_lossy()
        );
    }
    // The container is still usable afterwards.
    ensure_eq!(
        sh(ctx.manager(), &id, "echo ok").await?,
        "ok\n",
        "exec after failures"
    );
    Ok(())
}

/// Case 28: Env, working dir and user are honoured, per exec and from the container config.
pub async fn case_28_env_workdir_user(ctx: &Ctx) -> Result<(), Failure> {
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 28).await?;
    let spec = ExecSpec::shell("printf '%s\\n' \"$GREETING\" \"$(pwd)\" \"$(id -u)\" \"$(id -g)\"")
        .env("GREETING", "hello = world")
        .working_dir("/tmp")
        .user(1000, 1000);
    let out = exec_within(ctx, &id, &spec, Duration::from_secs(10)).await?;
    ensure_eq!(
        out.exit_code,
        0,
        "exit code (stderr {:?})",
        out.stderr_lossy()
    );
    ensure_eq!(
        out.stdout_lossy(),
        "hello = world\n/tmp\n1000\n1000\n",
        "env, working dir, uid, gid of the exec"
    );

    let name = ctx.name(28);
    let config = ContainerConfig::new(ctx.image())
        .name(&name)
        .cmd(["sleep", "3600"])
        .env("FROM_CONFIG", "yes")
        .working_dir("/etc")
        .user(1000, 1000);
    let configured = run_config(ctx, &mut t, &config).await?;
    let out = exec_within(
        ctx,
        &configured,
        &ExecSpec::shell("printf '%s\\n' \"$FROM_CONFIG\" \"$(pwd)\" \"$(id -u)\" \"$(id -g)\""),
        Duration::from_secs(10),
    )
    .await?;
    ensure_eq!(
        out.stdout_lossy(),
        "yes\n/etc\n1000\n1000\n",
        "an exec inherits the container's env, working dir and user"
    );
    let root = exec_within(
        ctx,
        &configured,
        &ExecSpec::new(["id", "-u"]).user(0, 0),
        Duration::from_secs(10),
    )
    .await?;
    ensure_eq!(
        root.stdout_lossy(),
        "0\n",
        "exec user overrides the container's"
    );
    Ok(())
}

/// Case 29: Exec in a stopped container → `Conflict`; in a missing one → `NotFound`.
pub async fn case_29_stopped_or_missing(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 29).await?;
    m.stop(&id, Some(Duration::from_secs(1))).await?;
    expect_kind(
        m.exec(&id, &ExecSpec::new(["true"])).await,
        ErrorKind::Conflict,
        "exec in a stopped container",
    )?;

    let created = ctx.name(29);
    t.container(created.clone());
    m.create(
        &ContainerConfig::new(ctx.image())
            .name(&created)
            .cmd(["sleep", "3600"]),
    )
    .await?;
    expect_kind(
        m.exec(&created, &ExecSpec::new(["true"])).await,
        ErrorKind::Conflict,
        "exec in a never-started container",
    )?;
    expect_kind(
        m.exec(&ctx.name(29), &ExecSpec::new(["true"])).await,
        ErrorKind::NotFound,
        "exec in a missing container",
    )?;
    Ok(())
}

/// Case 30: Stdin is fed to the process and EOF ends it.
pub async fn case_30_stdin(ctx: &Ctx) -> Result<(), Failure> {
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 30).await?;
    let input: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    let out = exec_within(
        ctx,
        &id,
        &ExecSpec::new(["cat"]).stdin(Bytes::from(input.clone())),
        Duration::from_secs(30),
    )
    .await?;
    ensure_eq!(out.exit_code, 0, "exit code of cat");
    ensure!(
        out.stdout == input,
        "cat returned {} bytes that differ from the {} bytes fed in",
        out.stdout.len(),
        input.len()
    );
    let counted = exec_within(
        ctx,
        &id,
        &ExecSpec::shell("wc -c").stdin(Bytes::from_static(b"12345")),
        Duration::from_secs(10),
    )
    .await?;
    ensure_eq!(counted.stdout_lossy().trim(), "5", "wc -c of the stdin");
    let empty = exec_within(
        ctx,
        &id,
        &ExecSpec::new(["cat"]).stdin(Bytes::new()),
        Duration::from_secs(10),
    )
    .await?;
    ensure_eq!(empty.stdout, Vec::<u8>::new(), "cat of an empty stdin");
    Ok(())
}

/// Case 31: The buffered form caps what it keeps and says so; the exit code is still right.
pub async fn case_31_output_cap(ctx: &Ctx) -> Result<(), Failure> {
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 31).await?;
    let out = exec_within(
        ctx,
        &id,
        &ExecSpec::shell("head -c 1000000 /dev/zero; exit 3").output_limit(1000),
        Duration::from_secs(30),
    )
    .await?;
    ensure_eq!(out.stdout.len(), 1000, "stdout bytes kept");
    ensure!(
        out.truncated,
        "1 MB capped at 1000 bytes is not flagged truncated"
    );
    ensure_eq!(out.exit_code, 3, "exit code after truncation");

    let err = exec_within(
        ctx,
        &id,
        &ExecSpec::shell("head -c 5000 /dev/zero >&2; echo -n abc").output_limit(100),
        Duration::from_secs(10),
    )
    .await?;
    ensure_eq!(err.stderr.len(), 100, "stderr bytes kept");
    ensure_eq!(err.stdout, b"abc".to_vec(), "stdout under the cap");
    ensure!(err.truncated, "stderr truncation not flagged");

    let exact = exec_within(
        ctx,
        &id,
        &ExecSpec::new(["echo", "-n", "abc"]).output_limit(3),
        Duration::from_secs(10),
    )
    .await?;
    ensure_eq!(exact.stdout, b"abc".to_vec(), "output exactly at the cap");
    ensure!(
        !exact.truncated,
        "output exactly at the cap flagged truncated"
    );
    Ok(())
}
