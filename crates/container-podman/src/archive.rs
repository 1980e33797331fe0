//! Copying out with a `tar` run in the container: libpod's archive endpoint rounds
//! mtimes to the nearest second (Podman 4.3), so a file modified at `x.6` s comes back
//! one second late. A `tar` exec keeps what `stat` says, in whole seconds, as Docker's
//! archive does. Used for running containers whose image has `tar`; otherwise the
//! engine's archive endpoint is the fallback (docs/adr/0007-podman.md).

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use container_core::raw::ByteStream;
use container_core::raw::Engine;
use container_core::{Error, ErrorKind, ExecSpec, Result, StreamKind};
use futures::stream::{self, StreamExt};

use crate::engine::PodmanEngine;

/// How much of tar's stderr is kept for an error message.
const STDERR_KEPT: usize = 4096;
/// The exit code of a shell for a missing command.
const NOT_FOUND: i64 = 127;

/// A tar archive of `path` in the running container `id`, named by its last component
/// (`dir/...`, as the archive endpoint names it). `None` when the container has no `tar`:
/// the caller falls back to the archive endpoint.
pub(crate) async fn tar_out(
    engine: &PodmanEngine,
    id: &str,
    path: &str,
) -> Result<Option<ByteStream>> {
    let p = Path::new(path);
    let (parent, name) = match (p.parent(), p.file_name()) {
        (Some(parent), Some(name)) => (
            parent.to_string_lossy().into_owned(),
            name.to_string_lossy().into_owned(),
        ),
        _ => ("/".to_string(), ".".to_string()),
    };
    let spec = ExecSpec::new(["tar", "-cf", "-", "-C", parent.as_str(), name.as_str()]).user(0, 0);
    let exec = Arc::new(engine.exec_create(id, &spec).await?);
    let mut output = engine.exec_start(&exec, &spec).await?;
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let keep = |stderr: &Mutex<Vec<u8>>, data: &[u8]| {
        let mut kept = stderr.lock().unwrap_or_else(PoisonError::into_inner);
        let room = STDERR_KEPT.saturating_sub(kept.len());
        kept.extend_from_slice(&data[..data.len().min(room)]);
    };
    // Up to the first archive bytes: a missing tar or path shows before any.
    let first = loop {
        match output.next().await {
            Some(Ok(chunk)) if chunk.stream == StreamKind::Stdout => break Some(chunk.data),
            Some(Ok(chunk)) => keep(&stderr, &chunk.data),
            Some(Err(e)) => return Err(e),
            None => break None,
        }
    };
    let Some(first) = first else {
        let code = exit_code(&exec).await?;
        let text = String::from_utf8_lossy(&stderr.lock().unwrap_or_else(PoisonError::into_inner))
            .into_owned();
        return match code {
            NOT_FOUND if !text.contains("No such file") => Ok(None),
            _ if text.contains("No such file") => Err(Error::new(
                ErrorKind::NotFound,
                format!("no such file or directory in the container: {path}"),
            )),
            code => Err(Error::new(
                ErrorKind::Internal,
                format!("tar in the container exited {code}: {}", text.trim()),
            )),
        };
    };
    let rest = {
        let stderr = stderr.clone();
        output.filter_map(move |item| {
            let item = match item {
                Ok(chunk) if chunk.stream == StreamKind::Stdout => Some(Ok(chunk.data)),
                Ok(chunk) => {
                    keep(&stderr, &chunk.data);
                    None
                }
                Err(e) => Some(Err(e)),
            };
            std::future::ready(item)
        })
    };
    // After the last bytes: a tar that failed midway makes the copy fail.
    let end = stream::once(async move {
        match exit_code(&exec).await {
            Ok(0) => None,
            Ok(code) => {
                let text =
                    String::from_utf8_lossy(&stderr.lock().unwrap_or_else(PoisonError::into_inner))
                        .into_owned();
                Some(Err(Error::new(
                    ErrorKind::Internal,
                    format!("tar in the container exited {code}: {}", text.trim()),
                )))
            }
            Err(e) => Some(Err(e)),
        }
    })
    .filter_map(std::future::ready);
    Ok(Some(
        stream::once(std::future::ready(Ok::<Bytes, Error>(first)))
            .chain(rest)
            .chain(end)
            .boxed(),
    ))
}

/// The exit code once libpod reports the exec ended.
async fn exit_code(exec: &crate::exec::PodmanExec) -> Result<i64> {
    for _ in 0..200 {
        let state = exec.state().await?;
        if !state.running {
            return state.exit_code.ok_or_else(|| {
                Error::new(
                    ErrorKind::Internal,
                    "the tar exec ended without an exit code",
                )
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    Err(Error::new(
        ErrorKind::Timeout,
        "the tar exec's output ended but libpod still reports it running",
    ))
}
