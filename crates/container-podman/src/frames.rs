//! The attach-stream format, decoded here rather than by podman-api: its decoder
//! (containers-api `conn/tty.rs`) panics on a stream id it does not expect and takes a
//! frame cut short for the end of the stream. Written by hand because the format is eight
//! bytes of header and no maintained crate decodes it apart from an engine client.
//!
//! A frame is `[stream, 0, 0, 0, len: u32 big-endian]` then `len` bytes; stream 1 is
//! stdout, 2 stderr, 0 stdin (echo, skipped). A TTY stream has no frames: raw bytes,
//! all stdout. Payloads are handed on in pieces of at most [`PIECE`] bytes, so memory
//! stays bounded whatever a frame's declared length.

use bytes::Bytes;
use container_core::raw::OutputStream;
use container_core::{Error, ErrorKind, OutputChunk, Result, StreamKind};
use futures::stream::{self, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The largest piece of output handed on at once.
pub(crate) const PIECE: usize = 64 * 1024;

/// Where the decoder is.
struct State<R> {
    reader: R,
    tty: bool,
    /// Payload bytes of the current frame still to read, and its stream.
    left: usize,
    stream: StreamKind,
    skip: bool,
    done: bool,
}

/// The output chunks of an attach stream read from `reader` (read only when polled).
pub(crate) fn decode<R>(reader: R, tty: bool) -> OutputStream
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let state = State {
        reader,
        tty,
        left: 0,
        stream: StreamKind::Stdout,
        skip: false,
        done: false,
    };
    stream::unfold(state, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            match next(&mut st).await {
                Ok(Some(chunk)) => return Some((Ok(chunk), st)),
                Ok(None) if st.done => return None,
                Ok(None) => continue,
                Err(e) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
            }
        }
    })
    .boxed()
}

/// The next piece of output; `None` for a skipped or empty piece, or the end.
async fn next<R: AsyncRead + Unpin>(st: &mut State<R>) -> Result<Option<OutputChunk>> {
    if st.tty {
        let mut buf = vec![0u8; PIECE];
        let n = st.reader.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            st.done = true;
            return Ok(None);
        }
        buf.truncate(n);
        return Ok(Some(OutputChunk::new(StreamKind::Stdout, buf)));
    }
    if st.left == 0 {
        let mut header = [0u8; 8];
        if !read_header(&mut st.reader, &mut header).await? {
            st.done = true;
            return Ok(None);
        }
        let (stream, skip) = match header[0] {
            0 => (StreamKind::Stdout, true),
            1 => (StreamKind::Stdout, false),
            2 => (StreamKind::Stderr, false),
            other => {
                return Err(Error::new(
                    ErrorKind::Internal,
                    format!("the engine sent a frame of unknown stream {other}"),
                ))
            }
        };
        st.stream = stream;
        st.skip = skip;
        st.left = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        return Ok(None);
    }
    let mut buf = vec![0u8; st.left.min(PIECE)];
    st.reader.read_exact(&mut buf).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::new(
                ErrorKind::Unavailable,
                "the engine closed the output mid-frame",
            )
        } else {
            io(e)
        }
    })?;
    st.left -= buf.len();
    Ok((!st.skip).then(|| OutputChunk::new(st.stream, Bytes::from(buf))))
}

/// Reads a frame header; `false` at a clean end (no byte of a next header).
async fn read_header<R: AsyncRead + Unpin>(reader: &mut R, header: &mut [u8; 8]) -> Result<bool> {
    let mut got = 0;
    while got < header.len() {
        let n = reader.read(&mut header[got..]).await.map_err(io)?;
        if n == 0 {
            return if got == 0 {
                Ok(false)
            } else {
                Err(Error::new(
                    ErrorKind::Unavailable,
                    "the engine closed the output mid-header",
                ))
            };
        }
        got += n;
    }
    Ok(true)
}

fn io(e: std::io::Error) -> Error {
    Error::new(ErrorKind::from_io(&e), "reading the engine's output failed").with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
        let mut f = vec![stream, 0, 0, 0];
        f.extend_from_slice(&(data.len() as u32).to_be_bytes());
        f.extend_from_slice(data);
        f
    }

    async fn all(bytes: Vec<u8>, tty: bool) -> Vec<Result<OutputChunk>> {
        decode(std::io::Cursor::new(bytes), tty).collect().await
    }

    /// Fuzz target (bolero; see container-core's `fuzz` module): whatever the engine
    /// sends, the decoder never panics, never hands on a piece above [`PIECE`], never
    /// more payload than it was given, and a clean run of frames decodes to their
    /// payloads.
    #[test]
    fn fuzz_any_attach_stream() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        bolero::check!()
            .with_type::<(bool, Vec<u8>)>()
            .for_each(|(tty, bytes)| {
                let chunks = rt.block_on(all(bytes.clone(), *tty));
                let mut total = 0;
                for chunk in chunks.iter().flatten() {
                    assert!(chunk.data.len() <= PIECE);
                    total += chunk.data.len();
                }
                assert!(total <= bytes.len());
            });
        bolero::check!()
            .with_type::<Vec<(u8, Vec<u8>)>>()
            .for_each(|frames| {
                let bytes = frames
                    .iter()
                    .flat_map(|(s, d)| frame(1 + s % 2, d))
                    .collect::<Vec<_>>();
                let chunks = rt.block_on(all(bytes, false));
                let got: Vec<u8> = chunks
                    .into_iter()
                    .map(|c| c.expect("well-formed frames").data)
                    .flat_map(|d| d.to_vec())
                    .collect();
                let sent: Vec<u8> = frames.iter().flat_map(|(_, d)| d.clone()).collect();
                assert_eq!(got, sent);
            });
    }

    #[tokio::test]
    async fn frames_become_chunks_per_stream_and_stdin_is_skipped() {
        let mut bytes = frame(1, b"out");
        bytes.extend(frame(0, b"echo"));
        bytes.extend(frame(2, b"err"));
        bytes.extend(frame(1, b""));
        let got: Vec<OutputChunk> = all(bytes, false)
            .await
            .into_iter()
            .map(|c| c.expect("chunk"))
            .collect();
        assert_eq!(
            got,
            vec![
                OutputChunk::new(StreamKind::Stdout, &b"out"[..]),
                OutputChunk::new(StreamKind::Stderr, &b"err"[..]),
            ]
        );
    }

    #[tokio::test]
    async fn an_unknown_stream_is_an_error_not_a_panic() {
        let got = all(frame(7, b"x"), false).await;
        assert_eq!(got.len(), 1);
        let e = got
            .into_iter()
            .next()
            .expect("one")
            .expect_err("unknown stream");
        assert_eq!(e.kind(), ErrorKind::Internal);
    }

    #[tokio::test]
    async fn a_frame_cut_short_is_an_error_not_the_end() {
        let mut bytes = frame(1, b"hello");
        bytes.truncate(10);
        let got = all(bytes, false).await;
        let e = got.into_iter().last().expect("some").expect_err("cut");
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        let got = all(vec![1, 0, 0], false).await;
        assert!(got.into_iter().last().expect("some").is_err(), "cut header");
    }

    #[tokio::test]
    async fn large_frames_come_in_bounded_pieces() {
        let data = vec![7u8; PIECE * 2 + 5];
        let got = all(frame(1, &data), false).await;
        let sizes: Vec<usize> = got
            .iter()
            .map(|c| c.as_ref().expect("c").data.len())
            .collect();
        assert_eq!(sizes, vec![PIECE, PIECE, 5]);
    }

    #[tokio::test]
    async fn a_tty_stream_is_raw_stdout() {
        let got = all(b"\x01raw\r\n".to_vec(), true).await;
        let text: Vec<u8> = got
            .into_iter()
            .flat_map(|c| c.expect("c").data.to_vec())
            .collect();
        assert_eq!(text, b"\x01raw\r\n");
    }
}
