#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod client;
mod engine;
mod error;
mod images;
mod logs;
mod pull;
mod seccomp;
mod spec;

pub use client::{Containerd, DEFAULT_NAMESPACE, DEFAULT_SOCKET};
pub use engine::{connect, ContainerdEngine, ContainerdExec, ContainerdManager};
pub use logs::{MAX_FILE_BYTES, ROTATED_FILES};

/// containerd's logging binary: how a program lets the shim run it as the writer of the
/// log files (`binary://` log URI), so output flows while no program of this library runs.
pub mod logger {
    pub use crate::logs::{run_if_invoked, LOGGER_ENV};
}
