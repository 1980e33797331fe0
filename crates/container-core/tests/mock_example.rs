//! How a downstream build tool unit-tests its own code against `ContainerManager` with the
//! mocks from the `mock` feature: no engine needed.

use std::sync::Arc;

use container_core::mock::MockContainerManager;
use container_core::{
    ContainerConfig, ContainerManager, Error, ErrorKind, ExecEvent, ExecSpec, ExecStream,
    OutputChunk, StreamKind,
};

/// The code under test: a tiny "build step" a tool might write. It runs a script in a
/// container and turns a non-zero exit into its own error text.
async fn run_step(engine: Arc<dyn ContainerManager>, image: &str) -> Result<String, String> {
    let id = engine
        .create(
            &ContainerConfig::new(image)
                .name("step")
                .cmd(["sleep", "infinity"]),
        )
        .await
        .map_err(|e| e.to_string())?;
    engine.start(&id).await.map_err(|e| e.to_string())?;
    let out = engine
        .exec(&id, &ExecSpec::shell("make all"))
        .await
        .map_err(|e| e.to_string())?;
    engine.remove(&id, true).await.map_err(|e| e.to_string())?;
    if out.exit_code == 0 {
        Ok(out.stdout_lossy())
    } else {
        Err(format!(
            "step failed with {}: {}",
            out.exit_code,
            out.stderr_lossy()
        ))
    }
}

fn stream(stdout: &str, stderr: &str, code: i64) -> ExecStream {
    ExecStream::from_events(vec![
        ExecEvent::Output(OutputChunk {
            stream: StreamKind::Stdout,
            data: stdout.to_owned().into(),
        }),
        ExecEvent::Output(OutputChunk {
            stream: StreamKind::Stderr,
            data: stderr.to_owned().into(),
        }),
        ExecEvent::Exit(code),
    ])
}

#[tokio::test]
async fn a_successful_step_returns_stdout_and_removes_the_container() {
    let mut m = MockContainerManager::new();
    m.expect_create()
        .withf(|c| c.name.as_deref() == Some("step"))
        .times(1)
        .returning(|_| Ok("abc".into()));
    m.expect_start().times(1).returning(|_| Ok(()));
    // The buffered exec is a default method on the trait; the mock replaces it too.
    m.expect_exec().returning(|_, spec| {
        assert_eq!(spec.cmd, ["sh", "-c", "make all"]);
        futures::executor::block_on(stream("built\n", "", 0).collect_output(1024))
    });
    m.expect_remove()
        .withf(|id, force| id == "abc" && *force)
        .times(1)
        .returning(|_, _| Ok(()));
    let out = run_step(Arc::new(m), "busybox").await;
    assert_eq!(out, Ok("built\n".to_string()));
}

#[tokio::test]
async fn a_failing_step_reports_exit_code_and_stderr() {
    let mut m = MockContainerManager::new();
    m.expect_create().returning(|_| Ok("abc".into()));
    m.expect_start().returning(|_| Ok(()));
    m.expect_exec().returning(|_, _| {
        futures::executor::block_on(stream("", "no rule to make target", 2).collect_output(1024))
    });
    m.expect_remove().returning(|_, _| Ok(()));
    let err = run_step(Arc::new(m), "busybox").await.expect_err("fails");
    assert_eq!(err, "step failed with 2: no rule to make target");
}

#[tokio::test]
async fn engine_errors_pass_through_with_their_kind() {
    let mut m = MockContainerManager::new();
    m.expect_create()
        .returning(|_| Err(Error::new(ErrorKind::Unavailable, "engine down")));
    let err = run_step(Arc::new(m), "busybox").await.expect_err("fails");
    assert!(err.starts_with("unavailable (retryable)"), "{err}");
}
