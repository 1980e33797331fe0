//! Copying out with a `tar` run in the container, through the [`Engine`]'s own exec
//! calls: for engines with no archive endpoint (containerd) or a lossy one (libpod 4.3
//! rounds mtimes to the nearest second). The archive keeps what `stat` says, in whole
//! seconds, as Docker's archive endpoint does, and is unpacked by core as any other.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures::stream::{self, StreamExt};

use super::exec::{own_exec_failed, OwnExec};
use super::{ByteStream, Engine};
use crate::error::{Error, ErrorKind, Result};
use crate::exec::{ExecSpec, StreamKind};

/// How much of tar's stderr is kept for an error message.
const STDERR_KEPT: usize = 4096;
/// A shell's exit code for a missing command.
const NOT_FOUND: i64 = 127;

/// A tar archive of `path` in the running container `id`, its entries named from the
/// last component of `path` (`dir/...`, as archive endpoints name them), streamed as tar
/// writes it. `Ok(None)` when the container has no `tar` (the caller falls back or says
/// `Unsupported`); `NotFound` for a missing path; a tar that fails midway fails the stream.
pub async fn tar_out<E: Engine + Clone>(
    engine: &E,
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
    let spec = ExecSpec::new([
        "tar",
        "-cf",
        "-",
        "-C",
        parent.as_str(),
        "--",
        name.as_str(),
    ])
    .user(0, 0);
    // Ended with its processes if the copy is dropped before tar is done.
    let own = OwnExec::create(engine, id, &spec).await?;
    let mut output = engine.exec_start(own.exec(), own.spec()).await?;
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let keep = |stderr: &Mutex<Vec<u8>>, data: &[u8]| {
        let mut kept = stderr.lock().unwrap_or_else(PoisonError::into_inner);
        let room = STDERR_KEPT.saturating_sub(kept.len());
        kept.extend_from_slice(&data[..data.len().min(room)]);
    };
    let said = |stderr: &Mutex<Vec<u8>>| {
        std::mem::take(&mut *stderr.lock().unwrap_or_else(PoisonError::into_inner))
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
        let code = own.finished(engine).await?;
        let text = said(&stderr);
        return match code {
            _ if String::from_utf8_lossy(&text).contains("No such file") => Err(Error::new(
                ErrorKind::NotFound,
                format!("no such file or directory in the container: {path}"),
            )),
            NOT_FOUND => Ok(None),
            code => Err(own_exec_failed("tar", code, &text)),
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
    let engine = engine.clone();
    let end =
        stream::once(async move { own.succeeded(&engine, &said(&stderr)).await.err().map(Err) })
            .filter_map(std::future::ready);
    Ok(Some(
        stream::once(std::future::ready(Ok::<Bytes, Error>(first)))
            .chain(rest)
            .chain(end)
            .boxed(),
    ))
}
