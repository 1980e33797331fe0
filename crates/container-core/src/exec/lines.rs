//! Line framing for log consumers: [`Lines`] splits an [`ExecStream`] into lines per
//! stream with a bounded length.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::stream::{Stream, StreamExt};

use super::spec::{ExecEvent, StreamKind};
use super::stream::ExecStream;
use crate::error::Result;

/// One line of output: the bytes up to and without the newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The stream it came from.
    pub stream: StreamKind,
    /// The bytes, without `\n` (a trailing `\r` is kept).
    pub data: Bytes,
    /// True when the line was longer than the limit and cut; the rest is dropped.
    pub truncated: bool,
}

/// A line from [`Lines`]: a line of output or the exit code at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineEvent {
    /// A line of output.
    Line(Line),
    /// The exit code; the last event.
    Exit(i64),
}

#[derive(Default)]
struct LineBuf {
    buf: BytesMut,
    truncated: bool,
}

/// Splits an [`ExecStream`] into lines per stream, each at most `max_line` bytes, for log
/// consumers. Memory stays bounded by `2 * max_line` whatever the process writes, plus
/// the output chunks (64 KiB at most each) that lines the consumer still holds share.
pub struct Lines {
    inner: ExecStream,
    max_line: usize,
    stdout: LineBuf,
    stderr: LineBuf,
    ready: VecDeque<LineEvent>,
    done: bool,
}

impl fmt::Debug for Lines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lines")
            .field("max_line", &self.max_line)
            .finish_non_exhaustive()
    }
}

impl Lines {
    pub(super) fn new(inner: ExecStream, max_line: usize) -> Self {
        Lines {
            inner,
            max_line: max_line.max(1),
            stdout: LineBuf::default(),
            stderr: LineBuf::default(),
            ready: VecDeque::new(),
            done: false,
        }
    }

    fn push(&mut self, stream: StreamKind, data: Bytes) {
        let max = self.max_line;
        let lb = match stream {
            StreamKind::Stdout => &mut self.stdout,
            StreamKind::Stderr => &mut self.stderr,
        };
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', &data) {
            // A whole line inside one chunk is a slice of it: no copy, no allocation (a
            // line per allocation halved the throughput), one reference count taken.
            let line_data = if lb.buf.is_empty() && !lb.truncated && end - start <= max {
                data.slice(start..end)
            } else {
                append_capped(lb, &data[start..end], max);
                lb.buf.split().freeze()
            };
            self.ready.push_back(LineEvent::Line(Line {
                stream,
                data: line_data,
                truncated: std::mem::take(&mut lb.truncated),
            }));
            start = end + 1;
        }
        if start < data.len() {
            append_capped(lb, &data[start..], max);
        }
    }

    fn flush(&mut self) {
        for (stream, lb) in [
            (StreamKind::Stdout, &mut self.stdout),
            (StreamKind::Stderr, &mut self.stderr),
        ] {
            if !lb.buf.is_empty() || lb.truncated {
                self.ready.push_back(LineEvent::Line(Line {
                    stream,
                    data: lb.buf.split().freeze(),
                    truncated: std::mem::take(&mut lb.truncated),
                }));
            }
        }
    }
}

fn append_capped(lb: &mut LineBuf, bytes: &[u8], max: usize) {
    let room = max.saturating_sub(lb.buf.len());
    if bytes.len() > room {
        lb.truncated = true;
    }
    lb.buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

impl Stream for Lines {
    type Item = Result<LineEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(event) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(event)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(this.inner.poll_next_unpin(cx)) {
                Some(Ok(ExecEvent::Output(chunk))) => this.push(chunk.stream, chunk.data),
                Some(Ok(ExecEvent::Exit(code))) => {
                    this.flush();
                    this.ready.push_back(LineEvent::Exit(code));
                    this.done = true;
                }
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                None => this.done = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::spec::out;

    #[tokio::test]
    async fn lines_split_per_stream_and_cap_length() {
        let s = ExecStream::from_events(vec![
            out(StreamKind::Stdout, b"ab"),
            out(StreamKind::Stderr, b"e1\ne"),
            out(StreamKind::Stdout, b"c\n0123456789abc\nta"),
            out(StreamKind::Stderr, b"2\n"),
            ExecEvent::Exit(0),
        ]);
        let events: Vec<_> = s
            .lines(10)
            .map(|e| e.expect("line"))
            .collect::<Vec<_>>()
            .await;
        let line = |stream, d: &[u8], truncated| {
            LineEvent::Line(Line {
                stream,
                data: Bytes::copy_from_slice(d),
                truncated,
            })
        };
        assert_eq!(
            events,
            vec![
                line(StreamKind::Stderr, b"e1", false),
                line(StreamKind::Stdout, b"abc", false),
                line(StreamKind::Stdout, b"0123456789", true),
                line(StreamKind::Stderr, b"e2", false),
                line(StreamKind::Stdout, b"ta", false),
                LineEvent::Exit(0),
            ]
        );
    }

    #[tokio::test]
    async fn a_line_inside_one_chunk_is_a_slice_of_it() {
        let chunk = Bytes::from_static(b"first\nsecond\nthi");
        let range = chunk.as_ptr() as usize..chunk.as_ptr() as usize + chunk.len();
        let s = ExecStream::from_events(vec![
            ExecEvent::Output(crate::exec::OutputChunk::new(StreamKind::Stdout, chunk)),
            out(StreamKind::Stdout, b"rd\n"),
            ExecEvent::Exit(0),
        ]);
        let lines: Vec<Bytes> = s
            .lines(64)
            .filter_map(|e| async move {
                match e.expect("line") {
                    LineEvent::Line(l) => Some(l.data),
                    LineEvent::Exit(_) => None,
                }
            })
            .collect()
            .await;
        assert_eq!(
            lines,
            [&b"first"[..], b"second", b"third"].map(Bytes::from_static)
        );
        for whole in &lines[..2] {
            assert!(
                range.contains(&(whole.as_ptr() as usize)),
                "{whole:?} was copied out of its chunk"
            );
        }
    }
}
