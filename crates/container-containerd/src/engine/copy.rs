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
    // Ended with its processes if the copy is dropped before tar is done.
    let own = container_core::raw::OwnExec::create(engine, id, &spec).await?;
    let archive = Box::new(tokio::fs::File::from_std(archive));
    let mut output = super::exec::start_with(engine, own.exec(), Some(archive)).await?;
    let mut stderr = Vec::new();
    while let Some(chunk) = output.next().await {
        stderr.extend_from_slice(&chunk?.data);
    }
    own.succeeded(engine, &stderr).await
}
