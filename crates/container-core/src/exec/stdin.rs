//! Feeding an exec's stdin, written once for every backend: the engines differ only in
//! how the write end is reached (an attach connection's write half, a FIFO the shim
//! opens when the process starts) and how the process is told that stdin ended (a
//! shutdown of that half, a request to the engine).

use std::future::Future;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::AbortHandle;

/// Copies `source` into the sink `open` gives, then hands the sink to `close` (which
/// makes the process see EOF), all in a task of its own: the exec's start never waits
/// for a process to read its input. A sink that cannot be opened, or a process that
/// stops reading (the write fails), ends the copy; `close` runs in either case once the
/// sink exists. The handle aborts the task (an exec that ended while its input was still
/// being written: nobody will read the rest).
pub fn feed_stdin<W, O, C, CF>(
    mut source: Box<dyn AsyncRead + Send + Unpin>,
    open: O,
    close: C,
) -> AbortHandle
where
    W: AsyncWrite + Send + Unpin + 'static,
    O: Future<Output = std::io::Result<W>> + Send + 'static,
    C: FnOnce(W) -> CF + Send + 'static,
    CF: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut sink = match open.await {
            Ok(sink) => sink,
            Err(e) => {
                tracing::debug!(error = %e, "cannot open the exec's stdin");
                return;
            }
        };
        if let Err(e) = tokio::io::copy(&mut source, &mut sink).await {
            tracing::debug!(error = %e, "writing the exec's stdin stopped");
        }
        close(sink).await;
    })
    .abort_handle()
}

/// The feed of a main process's stdin made by
/// [`attach_stdin`](crate::ContainerManager::attach_stdin): it copies its source into the
/// process until the source ends (the process then reads EOF) or the process stops
/// reading. Dropping it stops the copy; the process's stdin is closed then as well.
#[derive(Debug)]
#[must_use = "dropping the feed stops it"]
pub struct StdinFeed(AbortHandle);

impl StdinFeed {
    /// A feed over the task `feed_stdin` runs.
    pub fn new(task: AbortHandle) -> Self {
        StdinFeed(task)
    }

    /// Whether the copy has ended (the source ended, or the process stopped reading).
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl Drop for StdinFeed {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn copies_then_closes() {
        let (sink, mut far) = tokio::io::duplex(8);
        let source = Box::new(std::io::Cursor::new(b"hello, stdin".to_vec()));
        feed_stdin(source, async move { Ok(sink) }, |mut sink| async move {
            let _ = sink.shutdown().await;
        });
        let mut got = Vec::new();
        far.read_to_end(&mut got).await.expect("read the far end");
        assert_eq!(got, b"hello, stdin");
    }

    #[tokio::test]
    async fn a_sink_that_cannot_open_ends_the_feed() {
        let source = Box::new(std::io::Cursor::new(b"x".to_vec()));
        let open = async { Err::<tokio::io::DuplexStream, _>(std::io::Error::other("no reader")) };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        feed_stdin(source, open, |_sink| async move {
            let _ = tx.send(());
        });
        assert!(rx.await.is_err(), "close must not run without a sink");
    }
}
