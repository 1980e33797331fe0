//! How a tool unit-tests its own container code without an engine: the mockall mock of
//! `ContainerManager` (feature `mock`). docs/embedding.md walks through it.
#![cfg(feature = "mock")]

use container::mock::MockContainerManager;
use container::{ContainerConfig, ContainerManager, Error, ErrorKind, ExecOutput, ExecSpec};

/// The tool's code under test: one build step in its build container.
async fn build_step(engine: &dyn ContainerManager, container: &str) -> Result<String, String> {
    let out = engine
        .exec(container, &ExecSpec::shell("bitbake core-image-minimal"))
        .await
        .map_err(|e| {
            if e.is_retryable() {
                format!("try again: {e}")
            } else {
                format!("failed: {e}")
            }
        })?;
    if out.exit_code == 0 {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("exit {}", out.exit_code))
    }
}

#[tokio::test]
async fn a_step_reports_output_exit_codes_and_retryable_errors() {
    let mut engine = MockContainerManager::new();
    let mut calls = 0;
    engine
        .expect_exec()
        .withf(|id, spec| id == "build" && spec.cmd.last().is_some_and(|c| c.contains("bitbake")))
        .times(3)
        .returning(move |_, _| {
            calls += 1;
            match calls {
                1 => Ok(ExecOutput::new(0, "done\n", "")),
                2 => Ok(ExecOutput::new(1, "", "error: no such recipe\n")),
                _ => Err(Error::new(ErrorKind::Unavailable, "engine restarting")),
            }
        });
    assert_eq!(build_step(&engine, "build").await, Ok("done\n".to_string()));
    assert_eq!(
        build_step(&engine, "build").await,
        Err("exit 1".to_string())
    );
    assert!(build_step(&engine, "build")
        .await
        .is_err_and(|e| e.starts_with("try again")));
}

#[tokio::test]
async fn creation_is_checked_by_what_the_tool_asks_for() {
    let mut engine = MockContainerManager::new();
    engine
        .expect_create()
        .withf(|c: &ContainerConfig| c.name.as_deref() == Some("build") && c.init)
        .returning(|_| Ok("3f2a".to_string()));
    let config = ContainerConfig::new("busybox").name("build").init(true);
    assert_eq!(engine.create(&config).await.ok().as_deref(), Some("3f2a"));
}
