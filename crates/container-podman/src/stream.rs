//! Engine streams read in their own task: podman-api's streams borrow their handles. The
//! task owns what it reads from and hands items over through a one-slot channel
//! (backpressure kept: it reads the next item only when the previous one was taken); a
//! panic of the task becomes an `Internal` error.

use std::future::Future;

use bytes::Bytes;
use container_core::Result;
use futures::stream::{BoxStream, StreamExt};
use tokio::sync::mpsc;

use crate::error::{map_error, text_error};

/// Where a reader task sends its items.
pub(crate) type Sender<T> = mpsc::Sender<Result<T>>;

/// Runs `read` in a task and returns what it sends as a stream; see the module docs.
pub(crate) fn in_task<T, F, Fut>(read: F) -> BoxStream<'static, Result<T>>
where
    T: Send + 'static,
    F: FnOnce(Sender<T>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Result<T>>(1);
    let task = tokio::spawn(read(tx));
    futures::stream::unfold((rx, Some(task)), |(mut rx, task)| async move {
        match rx.recv().await {
            Some(item) => Some((item, (rx, task))),
            None => match task?.await {
                Ok(()) => None,
                Err(e) => Some((
                    Err(text_error(&format!("output could not be decoded: {e}"))),
                    (rx, None),
                )),
            },
        }
    })
    .boxed()
}

/// Sends each piece of `body` to `tx` as bytes until either side ends.
pub(crate) async fn forward_bytes<S>(body: S, tx: Sender<Bytes>)
where
    S: futures::Stream<Item = std::result::Result<Vec<u8>, podman_api::Error>>,
{
    let mut body = std::pin::pin!(body);
    while let Some(item) = body.next().await {
        if tx
            .send(item.map(Bytes::from).map_err(map_error))
            .await
            .is_err()
        {
            return;
        }
    }
}
