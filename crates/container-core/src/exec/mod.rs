//! Exec: the spec, the streamed output, the timeout and drop-kill logic shared by every
//! backend, and the buffered form built on top of the stream.
//!
//! The contract layer ([`raw::EngineManager`](crate::raw::EngineManager)) turns an
//! engine's output into a stream of [`ExecEvent`]s plus an [`ExecControl`] that can
//! signal the exec's processes. [`ExecStream`] adds the rest once, for all backends: the
//! deadline (SIGTERM to every process of the exec, SIGKILL after the grace), kill on
//! drop, and the `exit status must come last` rule.
//!
//! The parts, one concern each: `spec` (what to run, what comes back), `stream` (the
//! [`ExecStream`] state machine), `control` (the kill: [`ExecControl`], [`terminate`],
//! [`ExecKiller`]), `lines` (line framing, [`Lines`]) and `stdin` ([`feed_stdin`]).

mod control;
mod lines;
mod spec;
mod stdin;
mod stream;

pub use control::{terminate, terminate_draining, ExecControl};
pub use lines::{Line, LineEvent, Lines};
pub use spec::{
    ExecEvent, ExecOutput, ExecSpec, OutputChunk, StdinStream, StreamKind, DEFAULT_KILL_GRACE,
    DEFAULT_OUTPUT_LIMIT,
};
pub use stdin::{feed_stdin, StdinFeed};
pub use stream::{ExecExit, ExecKiller, ExecSource, ExecStream, EXIT_DRAIN};
