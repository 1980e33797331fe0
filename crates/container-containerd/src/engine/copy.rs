//! Copies in and out: a `tar` exec in the running container (containerd has no archive API).

use super::*;

pub(super) async fn copy_from(
    engine: &ContainerdEngine,
    id: &str,
    path: &str,
) -> Result<ByteStream> {
    // containerd has no archive endpoint: a `tar` exec in the running container.
    engine.running_or_conflict(id).await?;
    container_core::raw::tar_out(engine, id, path)
        .await?
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Unsupported,
                "copying out of a containerd container needs `tar` in it; this image has none",
            )
        })
}

pub(super) async fn copy_to(
    engine: &ContainerdEngine,
    id: &str,
    dir: &str,
    archive: File,
) -> Result<()> {
    engine.running_or_conflict(id).await?;
    // The archive streams from its file into tar's stdin: never whole in memory.
    let spec = ExecSpec::new(["tar", "-xf", "-", "-C", dir])
        .user(0, 0)
        .stdin(Vec::new());
    let exec = engine.exec_create(id, &spec).await?;
    let archive = Box::new(tokio::fs::File::from_std(archive));
    let mut output = super::exec::start_with(engine, &exec, Some(archive)).await?;
    let mut stderr = Vec::new();
    while let Some(chunk) = output.next().await {
        stderr.extend_from_slice(&chunk?.data);
    }
    match container_core::raw::exec_exit_code(engine, &exec, "tar").await? {
        0 => Ok(()),
        code => Err(Error::new(
            ErrorKind::Internal,
            format!(
                "tar in the container exited {code}: {}",
                String::from_utf8_lossy(&stderr).trim()
            ),
        )),
    }
}
