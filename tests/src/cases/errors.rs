//! Cases 54-56: invalid input, error context, non-UTF-8 output.

use std::time::Duration;

use bytes::Bytes;
use container::validate;
use container::{
    ConnectOptions, ContainerConfig, Error, ErrorKind, ExecSpec, LineEvent, Operation, PullOptions,
    RetryPolicy, VolumeConfig,
};
use futures::StreamExt;

use crate::ctx::{Ctx, OWNER, SLACK};
use crate::failure::{expect_kind, Failure};
use crate::support::{counted_manager, logs, run_config, running, split_image, unix_endpoint};
use crate::{ensure, ensure_eq};

/// Case 54: Empty image, empty command, invalid name, env without `=`, zero/negative limits →
/// `InvalidInput` with no engine call (checked with a byte-counting proxy).
pub async fn case_54_invalid_input(ctx: &Ctx) -> Result<(), Failure> {
    let (m, proxy) = counted_manager(ctx).await?;
    // Same session as the run: the run's own manager removes anything that slipped through.
    let mut t = ctx.tracker();
    let base = || {
        ContainerConfig::new(ctx.image())
            .name(ctx.name(54))
            .cmd(["sleep", "3600"])
    };
    let with = |change: &dyn Fn(&mut ContainerConfig)| {
        let mut c = base();
        change(&mut c);
        c
    };
    let raw_env = |entry: &str| {
        let mut c = base();
        c.env.push(entry.to_string());
        c
    };
    let mut configs: Vec<(&str, ContainerConfig)> = vec![
        ("empty image", with(&|c| c.image = String::new())),
        ("empty command", with(&|c| c.cmd = Some(Vec::new()))),
        (
            "empty argv[0]",
            with(&|c| c.cmd = Some(vec![String::new()])),
        ),
        (
            "empty entrypoint",
            with(&|c| c.entrypoint = Some(Vec::new())),
        ),
        ("env without =", raw_env("NOEQUALS")),
        ("env with an empty key", raw_env("=value")),
        ("relative working dir", base().working_dir("relative")),
    ];
    for bad_name in ["bad name!", "-leading-dash", "", "a/b", &"x".repeat(200)] {
        configs.push((
            "invalid container name",
            with(&|c| c.name = Some(bad_name.to_string())),
        ));
    }
    let mut limits = Vec::new();
    for bytes in [0, -1] {
        let mut c = base();
        c.resources.memory_bytes = Some(bytes);
        limits.push(c);
    }
    for cpus in [0.0, -1.0, f64::NAN] {
        let mut c = base();
        c.resources.cpus = Some(cpus);
        limits.push(c);
    }
    for pids in [0, -5] {
        let mut c = base();
        c.resources.pids_limit = Some(pids);
        limits.push(c);
    }
    configs.extend(limits.into_iter().map(|c| ("zero or negative limit", c)));

    let before = proxy.quiet_bytes_to_engine().await;
    for (what, config) in &configs {
        if let Some(name) = config
            .name
            .as_ref()
            .filter(|n| validate::container_name(n).is_ok())
        {
            t.container(name.clone());
        }
        expect_kind(
            m.create(config).await,
            ErrorKind::InvalidInput,
            &format!("create with {what}: {config:?}"),
        )?;
    }
    let missing = ctx.name(54);
    let specs = [
        (
            "exec with an empty command",
            ExecSpec::new(Vec::<String>::new()),
        ),
        ("exec with env without =", {
            let mut s = ExecSpec::new(["true"]);
            s.env.push("NOEQUALS".into());
            s
        }),
        (
            "exec with a relative working dir",
            ExecSpec::new(["true"]).working_dir("tmp"),
        ),
    ];
    for (what, spec) in &specs {
        expect_kind(m.exec(&missing, spec).await, ErrorKind::InvalidInput, what)?;
    }
    for bad in ["bad name!", ""] {
        expect_kind(
            m.create_volume(&VolumeConfig::new(bad)).await,
            ErrorKind::InvalidInput,
            &format!("create_volume named {bad:?}"),
        )?;
    }
    let after = proxy.quiet_bytes_to_engine().await;
    ensure_eq!(
        after - before,
        0,
        "bytes sent to the engine while refusing invalid input"
    );
    Ok(())
}

/// Checks the context an error must carry.
fn check_context(
    ctx: &Ctx,
    e: &Error,
    operation: Operation,
    resource: &str,
    needs_source: bool,
) -> Result<(), Failure> {
    let what = format!("{operation} error {e:?}");
    ensure_eq!(e.backend(), Some(ctx.kind()), "backend of the {what}");
    ensure_eq!(e.operation(), Some(operation), "operation of the {what}");
    ensure!(
        e.resource().is_some_and(|r| r.contains(resource)),
        "the {what} does not name the resource {resource:?}"
    );
    ensure_eq!(
        e.is_retryable(),
        matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::RateLimited),
        "retryable flag of the {what}"
    );
    if needs_source {
        use std::error::Error as _;
        ensure!(e.source().is_some(), "the {what} has no source chain");
    }
    let text = e.to_string();
    ensure!(
        !text.contains('\n') && !text.contains('\r'),
        "Display is not one line: {text:?}"
    );
    for part in [
        e.kind().as_str(),
        &format!("{}.{}", ctx.kind().as_str(), operation.as_str()),
        resource,
    ] {
        ensure!(text.contains(part), "Display {text:?} lacks {part:?}");
    }
    Ok(())
}

/// Case 55: Every error carries kind, retryable flag, backend, operation, resource and its source
/// chain; Display is one readable line.
pub async fn case_55_error_context(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let missing = ctx.name(55);

    let e = expect_kind(
        m.inspect(&missing).await,
        ErrorKind::NotFound,
        "inspect missing",
    )?;
    check_context(ctx, &e, Operation::Inspect, &missing, true)?;
    let e = expect_kind(
        m.start(&missing).await,
        ErrorKind::NotFound,
        "start missing",
    )?;
    check_context(ctx, &e, Operation::Start, &missing, true)?;

    let id = running(ctx, &mut t, 55).await?;
    let e = expect_kind(
        m.remove(&id, false).await,
        ErrorKind::Conflict,
        "remove running",
    )?;
    check_context(ctx, &e, Operation::Remove, &id, true)?;
    m.stop(&id, Some(Duration::from_secs(1))).await?;
    let e = expect_kind(
        m.exec(&id, &ExecSpec::new(["true"])).await,
        ErrorKind::Conflict,
        "exec in a stopped container",
    )?;
    check_context(ctx, &e, Operation::Exec, &id, true)?;

    let (host, _) = split_image(ctx.image())?;
    let image = format!("{host}/container-rs/no-such-repo-{}:1", ctx.short_session());
    let options = PullOptions::default().with_retry(RetryPolicy::none());
    let e = expect_kind(
        m.pull(&image, &options).await,
        ErrorKind::NotFound,
        "pull missing",
    )?;
    check_context(ctx, &e, Operation::Pull, &image, false)?;

    let bad = "bad name!";
    let e = expect_kind(
        m.create(&ContainerConfig::new(ctx.image()).name(bad)).await,
        ErrorKind::InvalidInput,
        "create with an invalid name",
    )?;
    check_context(ctx, &e, Operation::Create, bad, false)?;

    let dir = tempfile::tempdir()?;
    let endpoint = unix_endpoint(ctx.kind(), &dir.path().join("absent.sock"));
    let options = ConnectOptions::owned_by(OWNER)?
        .with_endpoint(endpoint)
        .with_connect_timeout(Duration::from_secs(2));
    let connected = tokio::time::timeout(Duration::from_secs(2) + SLACK, ctx.connect_with(options))
        .await
        .map_err(|_| Failure::new("connect to a missing socket hung"))?;
    let e = expect_kind(
        connected.map(|_| ()),
        ErrorKind::Unavailable,
        "connect to a missing socket",
    )?;
    check_context(ctx, &e, Operation::Connect, "absent.sock", true)?;
    Ok(())
}

/// Case 56: Non-UTF-8 output bytes arrive unchanged (exec, stream lines, logs).
pub async fn case_56_non_utf8_output(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let mut t = ctx.tracker();
    let id = running(ctx, &mut t, 56).await?;

    let out = m
        .exec(
            &id,
            &ExecSpec::shell("printf '\\377\\376\\200abc\\n'; printf '\\300\\301err' >&2"),
        )
        .await?;
    ensure_eq!(out.stdout, b"\xff\xfe\x80abc\n".to_vec(), "stdout bytes");
    ensure_eq!(out.stderr, b"\xc0\xc1err".to_vec(), "stderr bytes");

    let all: Vec<u8> = (0..=255u8).cycle().take(256 * 64).collect();
    let echoed = m
        .exec(&id, &ExecSpec::new(["cat"]).stdin(Bytes::from(all.clone())))
        .await?;
    ensure!(
        echoed.stdout == all,
        "every byte value through cat: {} bytes back, differing",
        echoed.stdout.len()
    );

    let mut lines = m
        .exec_stream(&id, &ExecSpec::shell("printf '\\377a\\n\\376b\\n'"))
        .await?
        .lines(64);
    let mut got = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(10), lines.next())
        .await
        .map_err(|_| Failure::new("line stream hung"))?
    {
        match event? {
            LineEvent::Line(l) => got.push(l.data.to_vec()),
            LineEvent::Exit(code) => ensure_eq!(code, 0, "exit code"),
        }
    }
    ensure_eq!(
        got,
        vec![b"\xffa".to_vec(), b"\xfeb".to_vec()],
        "lines of non-UTF-8 output"
    );

    let name = ctx.name(56);
    let config = ContainerConfig::new(ctx.image()).name(&name).cmd([
        "sh",
        "-c",
        "printf '\\377\\376\\200out\\n'; printf '\\300err\\n' >&2",
    ]);
    let logged = run_config(ctx, &mut t, &config).await?;
    let code = tokio::time::timeout(Duration::from_secs(10) + SLACK, m.wait(&logged))
        .await
        .map_err(|_| Failure::new("wait hung"))??;
    ensure_eq!(code, 0, "exit code of the logging container");
    let (out, err) = logs(m, &logged).await?;
    ensure_eq!(
        out,
        b"\xff\xfe\x80out\n".to_vec(),
        "stdout bytes in the logs"
    );
    ensure_eq!(err, b"\xc0err\n".to_vec(), "stderr bytes in the logs");
    Ok(())
}
